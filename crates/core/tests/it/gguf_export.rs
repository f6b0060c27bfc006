//! `muse export --format gguf` round trips: Hugging Face Llama folders and GGUF files written as
//! GGUF, read back with Muse's own GGUF loader, against the source model: logits at every
//! position of a prompt, greedy ids, tokenizer ids and the BOS rule. (llama.cpp itself reads
//! the files in `scripts/gguf_export_vs_llama_cpp.py`, a manual check.)

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use muse_core::export::{GgufQuant, export_gguf};
use muse_core::models::gguf::GgufFile;
use muse_core::sample::open::open_text_model_with;
use muse_core::sample::{GenerateOptions, Sampler, SamplingParams, TextModel, generate};

use crate::common::{fixture, scaled_err};

const PROMPT: &str = "ROMEO: But soft, what light";

/// Logits of each prompt position, decoded one token at a time: (T, V).
fn logits(m: &TextModel, ids: &[u32]) -> Tensor {
    let mut cache = m.model.new_cache(1).unwrap();
    let rows: Vec<Tensor> = ids
        .iter()
        .map(|&id| {
            let x = Tensor::new(&[[id]], &Device::Cpu).unwrap();
            m.model.forward_cached(&x, &mut cache).unwrap()
        })
        .collect();
    Tensor::cat(&rows, 0).unwrap()
}

fn greedy(m: &TextModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let opts = GenerateOptions {
        max_tokens: n,
        stop_at_eos: false,
        ..Default::default()
    };
    let params = SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    generate(
        m.model.as_ref(),
        &m.tokenizer,
        prompt,
        &opts,
        &mut Sampler::new(params, 0),
        &mut |_| Ok(()),
    )
    .unwrap()
    .ids
}

fn export(src: &Path, out: &Path, quant: GgufQuant) {
    export_gguf(src, None, out, quant, false, false)
        .unwrap_or_else(|e| panic!("export of {} as {quant:?}: {e}", src.display()));
}

fn open(path: &Path) -> TextModel {
    open_text_model_with(path, None, &Device::Cpu).unwrap()
}

/// The exported model against its source: same prompt ids and BOS rule, logits within `tol`
/// of the largest, and (when `same_greedy`) the same greedy continuation.
fn check_against(src: &TextModel, gguf: &Path, tol: f32, same_greedy: bool) {
    let back = open(gguf);
    let ids = src.encode_prompt(PROMPT).unwrap();
    assert_eq!(back.encode_prompt(PROMPT).unwrap(), ids, "prompt ids");
    assert_eq!(back.bos_id, src.bos_id, "BOS rule");
    let e = scaled_err(&logits(&back, &ids), &logits(src, &ids));
    assert!(e < tol, "{}: logits differ by {e}", gguf.display());
    if same_greedy {
        assert_eq!(greedy(&back, &ids, 12), greedy(src, &ids, 12));
    }
}

/// Hugging Face folders (grouped-query attention with its own head; a tied head): f32 gives
/// the same function and greedy ids (only the summation order differs: rotary pairs permuted
/// to llama.cpp's layout and rotated back; measured 9e-7 and 1.3e-6 of the largest logit).
/// q8_0 rounds weights and, in the matmul, activations to 8 bits per block: these random
/// weights (std 0.3) move the logits by up to 8.7% of the largest (measured 0.087 and 0.070;
/// bound 0.2), so only the f32 file must keep the greedy ids.
#[test]
fn hf_llama_folders_round_trip_through_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["llama_gqa", "llama_tied"] {
        let dir = fixture(&format!("hf/{name}"));
        let src = open(&dir);
        for (quant, tol) in [(GgufQuant::F32, 1e-4), (GgufQuant::Q8_0, 0.2)] {
            let out = tmp.path().join(format!("{name}_{}.gguf", quant.name()));
            export(&dir, &out, quant);
            check_against(&src, &out, tol, quant == GgufQuant::F32);
        }
        // llama.cpp's metadata and names; the tied head is token_embd itself.
        let f = GgufFile::open(&tmp.path().join(format!("{name}_f32.gguf"))).unwrap();
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(f.string("tokenizer.ggml.model").unwrap(), "llama");
        assert!(f.has_tensor("blk.1.attn_q.weight") && f.has_tensor("output_norm.weight"));
        assert_eq!(f.has_tensor("output.weight"), name == "llama_gqa");
    }
}

/// The Hugging Face GPT-2 folder (which equals transformers, `hf_parity.rs`) as llama.cpp's
/// `gpt2` architecture, read back by Muse (widened to its GPT): f32 gives the folder's function
/// and greedy ids (only the Conv1D weights are transposed, and back; measured 0); q8_0 rounds
/// the weights alone, not the activations, since the file is widened on load (measured 3.4e-2
/// of the largest logit on these std-0.3 weights; bound 0.1). The file re-quantised keeps its
/// metadata and gives what the folder exported as that type gives.
#[test]
fn hf_gpt2_folder_round_trips_as_the_gpt2_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("hf/gpt2");
    let src = open(&dir);
    for (quant, tol) in [(GgufQuant::F32, 1e-6), (GgufQuant::Q8_0, 0.1)] {
        let out = tmp.path().join(format!("gpt2_{}.gguf", quant.name()));
        export(&dir, &out, quant);
        check_against(&src, &out, tol, quant == GgufQuant::F32);
    }
    let f32_file = tmp.path().join("gpt2_f32.gguf");
    let f = GgufFile::open(&f32_file).unwrap();
    assert_eq!(f.architecture().unwrap(), "gpt2");
    assert_eq!(f.string("tokenizer.ggml.model").unwrap(), "gpt2");
    // llama.cpp's name for GPT-2's pre-tokenizer: it refuses names it does not know.
    assert_eq!(f.string("tokenizer.ggml.pre").unwrap(), "gpt-2");
    assert_eq!(f.usize("gpt2.feed_forward_length").unwrap(), 4 * 32);
    for name in [
        "position_embd.weight",
        "blk.1.attn_qkv.weight",
        "blk.1.attn_qkv.bias",
        "blk.0.ffn_down.bias",
        "output_norm.bias",
    ] {
        assert!(f.has_tensor(name), "no {name}");
    }
    // Tied head: llama.cpp uses token_embd. Conv1D (in, out) became (out, in).
    assert!(!f.has_tensor("output.weight"));
    assert_eq!(
        f.content.tensor_infos["blk.0.attn_qkv.weight"].shape.dims(),
        &[3 * 32, 32]
    );
    let requantised = tmp.path().join("re_q8_0.gguf");
    export(&f32_file, &requantised, GgufQuant::Q8_0);
    let direct = open(&tmp.path().join("gpt2_q8_0.gguf"));
    check_against(&direct, &requantised, 1e-6, true);
}

/// A GGUF file re-quantised: f32 to f32 is the same model exactly (measured 0); q8_0, q4_0 and
/// q4_1 run close to it (measured 0.026, 0.39 and 0.33 of the largest logit: 4-bit rounding of
/// random weights moves logits that far; bounds 0.2 and 0.8), and the metadata is kept.
#[test]
fn gguf_files_requantise() {
    let tmp = tempfile::tempdir().unwrap();
    let path = fixture("gguf/tiny_llama_f32.gguf");
    let src = open(&path);
    let out = tmp.path().join("same.gguf");
    export(&path, &out, GgufQuant::F32);
    check_against(&src, &out, 1e-7, true);
    for (quant, tol) in [
        (GgufQuant::Q8_0, 0.2),
        (GgufQuant::Q4_0, 0.8),
        (GgufQuant::Q4_1, 0.8),
    ] {
        let out = tmp.path().join(format!("{}.gguf", quant.name()));
        export(&path, &out, quant);
        check_against(&src, &out, tol, false);
        let f = GgufFile::open(&out).unwrap();
        assert_eq!(
            f.string("tokenizer.chat_template").unwrap(),
            GgufFile::open(&path)
                .unwrap()
                .string("tokenizer.chat_template")
                .unwrap()
        );
    }
}

/// Bad requests are errors that say what to do, never panics.
#[test]
fn gguf_export_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let llama = fixture("hf/llama_gqa");
    let err = |src: &Path, out: &Path| -> String {
        export_gguf(src, None, out, GgufQuant::F16, false, false)
            .unwrap_err()
            .to_string()
    };
    let e = err(&llama, tmp.path());
    assert!(e.contains("is a folder") && e.contains("model.gguf"), "{e}");
    let e = err(&PathBuf::from("no/such/run"), &tmp.path().join("x.gguf"));
    assert!(e.contains("nothing at"), "{e}");
    // A gpt2 header without its hyperparameters is not a model to re-write.
    let e = err(&fixture("gguf/arch_gpt2.gguf"), &tmp.path().join("y.gguf"));
    assert!(e.contains("gpt2.embedding_length"), "{e}");
    let out = tmp.path().join("m.gguf");
    std::fs::write(&out, b"old").unwrap();
    assert!(err(&llama, &out).contains("--force"));
    assert!(
        "q3_x"
            .parse::<GgufQuant>()
            .unwrap_err()
            .to_string()
            .contains("q8_0")
    );
}
