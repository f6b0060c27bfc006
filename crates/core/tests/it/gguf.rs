//! GGUF files against `transformers`: tiny random Llamas written by the `gguf` package in F32,
//! F16, Q8_0 and Q4_1 (`scripts/fixtures/gguf_tiny_llama.py`); the tokenizer built from GGUF
//! metadata against the Hugging Face tokenizer; Jinja chat templates against Python `jinja2`;
//! and the errors for files Muse cannot load.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use muse_core::models::CausalLm;
use muse_core::sample::gguf::load_gguf;
use muse_core::sample::{GenerateOptions, Sampler, SamplingParams, generate, open_text_model};
use muse_core::tokenizer::chat::{ChatMessage, Role};
use muse_core::tokenizer::jinja::JinjaTemplate;

use crate::common::{fixture, largest_abs};

fn file(name: &str) -> PathBuf {
    fixture(&format!("gguf/{name}"))
}

fn expected() -> (HashMap<String, Tensor>, serde_json::Value) {
    let t = candle_core::safetensors::load(file("expected.safetensors"), &Device::Cpu).unwrap();
    let meta = std::fs::read_to_string(file("expected.json")).unwrap();
    (t, serde_json::from_str(&meta).unwrap())
}

/// Largest |a - b| over `scale` (the largest reference logit of the sequence).
fn scaled_err(a: &Tensor, b: &Tensor, scale: f32) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    let err = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    err / scale
}

/// `model`'s logits for `ids` (1, T), whole and one token at a time through the KV cache,
/// within `tol` of the largest of `want` (T, V).
fn assert_logits(
    model: &muse_core::models::gguf::QLlama,
    ids: &Tensor,
    want: &Tensor,
    tol: f32,
    name: &str,
) {
    let scale = largest_abs(want);
    let logits = model.forward(ids).unwrap(); // (T, V)
    let err = scaled_err(&logits, want, scale);
    assert!(err < tol, "{name}: logits differ by {err}");
    let mut cache = model.new_cache(1).unwrap();
    for pos in 0..ids.dim(1).unwrap() {
        let step = model
            .forward_cached(&ids.i((.., pos..pos + 1)).unwrap(), &mut cache)
            .unwrap(); // (1, V)
        let err = scaled_err(&step, &want.i(pos..pos + 1).unwrap(), scale);
        assert!(err < tol, "{name}: cached logits at {pos} differ by {err}");
    }
}

/// Logits of the full sequence and of one-token-at-a-time cached decoding against
/// transformers on the weights the file holds, then greedy ids.
///
/// Tolerances, as a fraction of the largest reference logit: F32 and F16 files hold exactly
/// the reference's weights (F16 widened to f32), so only summation order differs (measured
/// 7e-7; bound 1e-4). For Q8_0 and Q4_1 the weights are exact too (with
/// `CANDLE_DEQUANTIZE_ALL=1`, which makes candle multiply by the dequantised weights, the error
/// is 5e-7), but candle's quantised matmul, like llama.cpp's, first rounds each activation row
/// to 8 bits per block of 32, a relative error of up to 1/254 per element, compounded over
/// the 7 matmuls of each of 2 blocks and the head: measured up to 1.8e-2; bound 3e-2. Greedy
/// ids must be equal all the same.
fn check(name: &str, tol: f32) {
    let (t, meta) = expected();
    let ids = t["input_ids"].to_dtype(DType::U32).unwrap(); // (1, T)
    let want = &t[&format!("logits_{name}")]; // (T, V)
    let g = load_gguf(
        &file(&format!("tiny_llama_{name}.gguf")),
        None,
        &Device::Cpu,
    )
    .unwrap();
    let scale = largest_abs(want);
    assert_logits(&g.model, &ids, want, tol, name);

    let m = &meta["greedy"][name];
    let prompt: Vec<u32> = serde_json::from_value(m["prompt_ids"].clone()).unwrap();
    let greedy: Vec<u32> = serde_json::from_value(m["greedy_ids"].clone()).unwrap();
    let opts = GenerateOptions {
        max_tokens: greedy.len(),
        stop_at_eos: false,
        ..Default::default()
    };
    let params = SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    let out = generate(
        &g.model,
        &g.tokenizer,
        &prompt,
        &opts,
        &mut Sampler::new(params, 0),
        &mut |_| Ok(()),
    )
    .unwrap();
    // Equal ids; a quantised model may part from the reference only at a near-tie, where the
    // reference's top-2 margin is within the logits' tolerance (both sides of it).
    let margins: Vec<f32> = serde_json::from_value(m["margins"].clone()).unwrap();
    match out.ids.iter().zip(&greedy).position(|(a, b)| a != b) {
        None => assert_eq!(
            out.ids, greedy,
            "{name}: greedy ids differ from transformers"
        ),
        Some(i) => assert!(
            margins[i] < 2.0 * tol * scale,
            "{name}: greedy ids differ from transformers at step {i} (margin {}): {:?} vs {:?}",
            margins[i],
            out.ids,
            greedy
        ),
    }
    if tol <= 1e-4 {
        assert_eq!(
            out.ids, greedy,
            "{name}: greedy ids differ from transformers"
        );
    }
}

/// The token embedding stays in the file's type and widens only the rows looked up: equal to
/// the rows of the whole table dequantised to f32, for a tied Q8_0 and Q4_1 table (where the
/// same matrix is also the head) and an F16 one.
#[test]
fn gguf_embedding_lookup_equals_the_dequantised_table() {
    use muse_core::models::gguf::GgufFile;
    let ids = Tensor::new(&[[0u32, 5, 299, 5], [42, 7, 1, 250]], &Device::Cpu).unwrap();
    for name in ["q8_0", "q4_1", "f16"] {
        let path = file(&format!("tiny_llama_{name}.gguf"));
        let g = load_gguf(&path, None, &Device::Cpu).unwrap();
        let got = g.model.embed(&ids).unwrap(); // (2, 4, C)
        let table = GgufFile::open(&path)
            .unwrap()
            .tensor("token_embd.weight", &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap(); // (V, C)
        let c = table.dim(1).unwrap();
        let want = table
            .index_select(&ids.flatten_all().unwrap(), 0)
            .unwrap()
            .reshape((2, 4, c))
            .unwrap();
        let err = scaled_err(&got, &want, 1.0);
        assert!(err < 1e-6, "{name}: embedding rows differ by {err}");
    }
}

/// What fine-tuning, alignment and export start from: every tensor widened to f32 under
/// Hugging Face names, queries and keys back in transformers' rotary layout, run by Muse's
/// f32 Llama. Its logits equal transformers' on the file's weights for every type, without the
/// quantised matmul's 8-bit activations: the same bound as the F32 file's.
#[test]
fn gguf_widened_for_training_matches_transformers() {
    use muse_core::models::pretrained::{DTYPE, load_tensors};
    let (t, _) = expected();
    let ids = t["input_ids"].to_dtype(DType::U32).unwrap(); // (1, T)
    for name in ["f32", "f16", "q8_0", "q4_1"] {
        let path = file(&format!("tiny_llama_{name}.gguf"));
        let (cfg, tensors) = load_tensors(&path, &Device::Cpu).unwrap();
        assert_eq!(cfg.model_type(), "llama");
        let vb = candle_nn::VarBuilder::from_tensors(tensors, DTYPE, &Device::Cpu);
        let model = cfg.build(vb).unwrap();
        let logits = model
            .forward(&ids, &mut muse_core::nn::Dropout::eval())
            .unwrap(); // (T, V)
        let want = &t[&format!("logits_{name}")];
        let err = scaled_err(&logits, want, largest_abs(want));
        assert!(
            err < 1e-4,
            "{name}: widened logits differ from transformers by {err}"
        );
    }
}

#[test]
fn gguf_f32_matches_transformers() {
    check("f32", 1e-4);
}

#[test]
fn gguf_f16_matches_transformers() {
    check("f16", 1e-4);
}

#[test]
fn gguf_q8_0_matches_transformers() {
    check("q8_0", 3e-2);
}

#[test]
fn gguf_q4_1_matches_transformers() {
    check("q4_1", 3e-2);
}

#[test]
fn gguf_tokenizer_matches_hugging_face() {
    let (_, meta) = expected();
    let tm = open_text_model(&file("tiny_llama_q8_0.gguf"), &Device::Cpu).unwrap();
    for (text, ids) in meta["probe"].as_object().unwrap() {
        let want: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
        let got = tm.tokenizer.encode(text).unwrap();
        assert_eq!(got, want, "ids of {text:?}");
        assert_eq!(tm.tokenizer.decode(&got).unwrap(), *text);
    }
    // add_bos_token is false: prompts start with the text's own ids.
    assert_eq!(tm.bos_id, None);
    assert_eq!(
        tm.encode_prompt("Hello").unwrap(),
        tm.tokenizer.encode("Hello").unwrap()
    );
    // <|im_end|> (eos_token_id) ends generation, as does <|endoftext|>.
    let im_end = tm.tokenizer.token_to_id("<|im_end|>").unwrap();
    assert_eq!(tm.tokenizer.eos_id(), Some(im_end));
    assert!(tm.tokenizer.is_eos(im_end));
    assert!(
        tm.tokenizer
            .is_eos(tm.tokenizer.token_to_id("<|endoftext|>").unwrap())
    );
    assert!(
        !tm.tokenizer
            .is_eos(tm.tokenizer.token_to_id("<|im_start|>").unwrap())
    );
}

#[derive(serde::Deserialize)]
struct TemplateCases {
    templates: HashMap<String, String>,
    conversations: HashMap<String, Vec<ChatMessage>>,
    bos_token: String,
    eos_token: String,
    cases: Vec<TemplateCase>,
}

#[derive(serde::Deserialize)]
struct TemplateCase {
    template: String,
    conversation: String,
    add_generation_prompt: bool,
    expected: Option<String>,
    error: Option<String>,
}

#[test]
fn chat_templates_render_as_jinja2() {
    let text = std::fs::read_to_string(file("chat_templates.json")).unwrap();
    let c: TemplateCases = serde_json::from_str(&text).unwrap();
    assert!(c.cases.iter().any(|k| k.error.is_some()));
    for k in &c.cases {
        let t = JinjaTemplate::new(
            c.templates[&k.template].clone(),
            "fixture",
            c.bos_token.clone(),
            c.eos_token.clone(),
        );
        let got = t.render(&c.conversations[&k.conversation], k.add_generation_prompt);
        let what = format!(
            "{} / {} / {}",
            k.template, k.conversation, k.add_generation_prompt
        );
        match (&k.expected, &k.error) {
            (Some(want), _) => assert_eq!(got.unwrap(), *want, "{what}"),
            (None, Some(msg)) => {
                let e = got.unwrap_err().to_string();
                assert!(e.contains(msg.as_str()), "{what}: {e}");
                assert!(e.contains("failed to render"), "{what}: {e}");
            }
            (None, None) => unreachable!(),
        }
    }
}

#[test]
fn gguf_chat_template_comes_from_the_file() {
    let text = std::fs::read_to_string(file("chat_templates.json")).unwrap();
    let c: TemplateCases = serde_json::from_str(&text).unwrap();
    let tm = open_text_model(&file("tiny_llama_q4_1.gguf"), &Device::Cpu).unwrap();
    let t = tm
        .chat_template
        .expect("the file has tokenizer.chat_template");
    assert_eq!(t.source, c.templates["smollm2"]);
    assert_eq!(
        (t.bos_token.as_str(), t.eos_token.as_str()),
        ("<|im_start|>", "<|im_end|>")
    );
    let msgs = [ChatMessage::new(
        Role::User,
        "What is the capital of France?",
    )];
    let want = c
        .cases
        .iter()
        .find(|k| {
            k.template == "smollm2" && k.conversation == "one_user" && k.add_generation_prompt
        })
        .and_then(|k| k.expected.clone())
        .unwrap();
    assert_eq!(t.render(&msgs, true).unwrap(), want);
}

#[test]
fn broken_template_is_an_error_not_a_panic() {
    let t = JinjaTemplate::new("{% for m in messages %}{{ m.content ", "test", "", "");
    let e = t.check().unwrap_err().to_string();
    assert!(e.contains("does not parse"), "{e}");
    let e = t.render(&[], true).unwrap_err().to_string();
    assert!(e.contains("chat template in test"), "{e}");
}

/// The message of a failed open, which must not panic.
fn open_err(path: &std::path::Path) -> String {
    match open_text_model(path, &Device::Cpu) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_gguf_files_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(file("tiny_llama_q8_0.gguf")).unwrap();
    // Cut in the tensor data, and cut in the header.
    for (cut, what) in [(bytes.len() / 2, "truncated"), (300, "truncated")] {
        let p = tmp.path().join(format!("cut_{cut}.gguf"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = open_err(&p);
        assert!(e.contains(what) && e.contains("cut_"), "{e}");
    }
    let p = tmp.path().join("notes.gguf");
    std::fs::write(&p, "just some text, not a model\n").unwrap();
    let e = open_err(&p);
    assert!(e.contains("not a GGUF file"), "{e}");
    // A header-only gpt2 file lacks its hyperparameters; an architecture Muse does not build
    // is named with the ones it does.
    let e = open_err(&file("arch_gpt2.gguf"));
    assert!(e.contains("gpt2.embedding_length"), "{e}");
    let mamba = tmp.path().join("mamba.gguf");
    use candle_core::quantized::gguf_file;
    let arch = gguf_file::Value::String("mamba".into());
    gguf_file::write(
        &mut std::fs::File::create(&mamba).unwrap(),
        &[("general.architecture", &arch)],
        &[],
    )
    .unwrap();
    let e = open_err(&mamba);
    assert!(
        e.contains("'mamba'") && e.contains("llama") && e.contains("gpt2"),
        "{e}"
    );
    // An unknown tensor type: patch the first tensor's type field (after its name and dims).
    let mut patched = bytes.clone();
    let name = b"token_embd.weight";
    let at = patched.windows(name.len()).position(|w| w == name).unwrap();
    let type_at = at + name.len() + 4 + 2 * 8; // n_dims u32, two u64 dims
    patched[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let p = tmp.path().join("odd_type.gguf");
    std::fs::write(&p, &patched).unwrap();
    let e = open_err(&p);
    assert!(e.contains("odd_type.gguf") && e.contains("99"), "{e}");
}

/// A `llama` (SentencePiece) vocabulary in GGUF metadata, as llama.cpp's converter writes it
/// from Llama 2's tokenizer.model (pieces, scores, token types), gives sentencepiece's ids;
/// BOS is added by default for this kind, as llama.cpp does.
#[test]
fn gguf_sentencepiece_vocabulary_matches_sentencepiece() {
    use candle_core::quantized::gguf_file::{Content, Value, write};
    use muse_core::tokenizer::sentencepiece::{PieceKind, parse_model_proto};
    let Some(l2c) = crate::common::manual_dataset("llama2c") else {
        return;
    };
    let model = l2c.join("tokenizer.model");
    let pieces = parse_model_proto(&std::fs::read(model).unwrap()).unwrap();
    let kind = |k: PieceKind| match k {
        PieceKind::Normal => 1,
        PieceKind::Unknown => 2,
        PieceKind::Control => 3,
        PieceKind::UserDefined => 4,
        PieceKind::Unused => 5,
        PieceKind::Byte => 6,
    };
    let meta = [
        ("general.architecture", Value::String("llama".into())),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(
                pieces
                    .iter()
                    .map(|p| Value::String(p.piece.clone()))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array(pieces.iter().map(|p| Value::F32(p.score)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(pieces.iter().map(|p| Value::I32(kind(p.kind))).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
    ];
    let refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    write(&mut buf, &refs, &[]).unwrap();
    buf.set_position(0);
    let content = Content::read(&mut buf).unwrap();
    let (tok, specials) = muse_core::tokenizer::gguf::from_gguf(&content).unwrap();
    assert_eq!(
        (specials.bos, specials.eos, specials.add_bos),
        (Some(1), Some(2), true)
    );
    assert_eq!(tok.vocab_size(), 32000);
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("hf/llama2c_tokenizer_ids.json")).unwrap(),
    )
    .unwrap();
    for (text, ids) in want["ids"].as_object().unwrap() {
        let want: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
        assert_eq!(tok.encode(text).unwrap(), want, "ids of {text:?}");
    }
}

/// K-quants, what most downloaded files hold (Q4_K_M mixes Q4_K and Q6_K), load and multiply
/// through candle's quantised matmul. Their blocks span 256 weights, wider than the fixtures,
/// so this writes a Llama 256 wide with the fixtures' tokenizer and metadata: a tied Q4_K token
/// embedding, Q4_K attention and gate, Q6_K values and down projections, a Q5_K up projection.
/// Its logits equal those of the same weights widened to F32 in a second file.
///
/// Tolerance: the weights are the same numbers; the K-quant product rounds each activation
/// row to 8 bits per block of 256 (Q8_K), where Q8_0 and Q4_1 round per block of 32, so each
/// step is set by the largest of 256 values rather than of 32. Measured on this model: 3.1e-2
/// of the largest logit for this mix, 2.7e-2 with every matrix Q4_K, and 1.3e-2 with every
/// matrix Q8_0 (Muse's kernel, for scale). Bound 5e-2: a wrong block layout errs by 100%.
#[test]
fn gguf_k_quants_match_their_weights_widened_to_f32() {
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
    let dev = Device::Cpu;
    let mut src = std::fs::File::open(file("tiny_llama_f32.gguf")).unwrap();
    let content = gguf_file::Content::read(&mut src).unwrap();
    let mut meta = content.metadata.clone();
    let (c, ffn, heads, kv_heads) = (256usize, 512usize, 4usize, 2usize);
    for (k, v) in [
        ("llama.embedding_length", c),
        ("llama.feed_forward_length", ffn),
        ("llama.attention.head_count", heads),
        ("llama.attention.head_count_kv", kv_heads),
        ("llama.rope.dimension_count", c / heads),
    ] {
        meta.insert(k.into(), gguf_file::Value::U32(v as u32));
    }
    let vocab = content.tensor_infos["token_embd.weight"].shape.dims()[0];
    // Weights from a fixed hash of their index (uniform, standard deviation 0.05, so that
    // activations keep their scale through 256-wide products): no generator to keep in step.
    let weights = |salt: usize, shape: (usize, usize)| {
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|i| {
                let h = (i.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)) % 10_007;
                (h as f32 / 10_007.0 - 0.5) * 0.17
            })
            .collect();
        Tensor::from_vec(v, shape, &dev).unwrap()
    };
    let mut named: Vec<(String, Tensor, GgmlDType)> = vec![(
        "token_embd.weight".into(),
        weights(1, (vocab, c)),
        GgmlDType::Q4K,
    )];
    for l in 0..2 {
        let b = format!("blk.{l}.");
        let kv = c / heads * kv_heads;
        for (i, (name, shape, ty)) in [
            ("attn_q.weight", (c, c), GgmlDType::Q4K),
            ("attn_k.weight", (kv, c), GgmlDType::Q4K),
            ("attn_v.weight", (kv, c), GgmlDType::Q6K),
            ("attn_output.weight", (c, c), GgmlDType::Q4K),
            ("ffn_gate.weight", (ffn, c), GgmlDType::Q4K),
            ("ffn_up.weight", (ffn, c), GgmlDType::Q5K),
            ("ffn_down.weight", (c, ffn), GgmlDType::Q6K),
        ]
        .into_iter()
        .enumerate()
        {
            named.push((b.clone() + name, weights(10 * l + i + 2, shape), ty));
        }
        for norm in ["attn_norm.weight", "ffn_norm.weight"] {
            let ones = (Tensor::ones(c, DType::F32, &dev).unwrap() * 1.1).unwrap();
            named.push((b.clone() + norm, ones, GgmlDType::F32));
        }
    }
    named.push((
        "output_norm.weight".into(),
        Tensor::ones(c, DType::F32, &dev).unwrap(),
        GgmlDType::F32,
    ));
    let quantised: Vec<(String, QTensor)> = named
        .iter()
        .map(|(n, w, ty)| (n.clone(), QTensor::quantize(w, *ty).unwrap()))
        .collect();
    let widened: Vec<(String, QTensor)> = quantised
        .iter()
        .map(|(n, q)| {
            let w = q.dequantize(&dev).unwrap();
            (n.clone(), QTensor::quantize(&w, GgmlDType::F32).unwrap())
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, tensors: &[(String, QTensor)]| {
        let path = tmp.path().join(name);
        let meta: Vec<(&str, &gguf_file::Value)> =
            meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        let mut f = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut f, &meta, &tensors).unwrap();
        path
    };
    let k = load_gguf(&write("k.gguf", &quantised), None, &dev).unwrap();
    let f = load_gguf(&write("f32.gguf", &widened), None, &dev).unwrap();

    let (t, _) = expected();
    let ids = t["input_ids"].to_dtype(DType::U32).unwrap(); // (1, T)
    let want = f.model.forward(&ids).unwrap(); // (T, V)
    assert_logits(&k.model, &ids, &want, 5e-2, "K-quants against F32");
    // The tied Q4_K table looks rows up as the widened one does.
    let rows = Tensor::new(&[[0u32, 5, 42]], &dev).unwrap();
    let err = scaled_err(
        &k.model.embed(&rows).unwrap(),
        &f.model.embed(&rows).unwrap(),
        1.0,
    );
    assert!(err < 1e-6, "K-quant embedding rows differ by {err}");
}

/// A Q4_K_M file made by llama.cpp's own quantiser (`scripts/fixtures/gguf_k_quants_llama_cpp.py`:
/// Q4_K and Q6_K matrices, 256 wide) against the logits llama.cpp computes on it, whole and
/// through the KV cache. Both round activations to 8 bits per block of 256 (Q8_K) before each
/// K-quant product, which on these small random logits moves them by a few percent of the
/// largest: measured 2.3e-2 between Muse and llama.cpp, and 2.8e-2 between llama.cpp and
/// Muse multiplying by the exactly dequantised weights (`CANDLE_DEQUANTIZE_ALL=1`), so the
/// file is read right and the gap is the rounding. Bound 5e-2, as for the K-quant test above.
#[test]
fn gguf_q4_k_m_from_llama_cpp_matches_llama_cpp() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file("expected_q4_k_m.json")).unwrap())
            .unwrap();
    let types: Vec<&str> = meta["types"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"Q4_K") && types.contains(&"Q6_K"),
        "{types:?}"
    );
    let ids: Vec<u32> = serde_json::from_value(meta["input_ids"].clone()).unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(meta["logits"].clone()).unwrap();
    let (t, v) = (rows.len(), rows[0].len());
    let want = Tensor::from_vec(rows.concat(), (t, v), &Device::Cpu).unwrap();
    let g = load_gguf(&file("tiny_llama_q4_k_m.gguf"), None, &Device::Cpu).unwrap();
    let ids = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    assert_logits(&g.model, &ids, &want, 5e-2, "Q4_K_M against llama.cpp");
}
