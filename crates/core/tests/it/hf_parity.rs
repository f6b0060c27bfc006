//! Hugging Face folders against `transformers`: logits, KV-cached logits, greedy ids and
//! tokenization on tiny random-weight GPT-2 and Llama (GQA, tied and untied) folders written by
//! `scripts/fixtures/hf_tiny_models.py`; and the errors for folders Muse cannot load.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use muse_core::models::pretrained::load_pretrained;
use muse_core::nn::Dropout;
use muse_core::sample::{GenerateOptions, Sampler, SamplingParams, generate, open_text_model};

use crate::common::fixture;

struct Expected {
    input_ids: Tensor,
    logits: Tensor,
    meta: serde_json::Value,
}

fn expected(name: &str) -> Expected {
    let t = candle_core::safetensors::load(
        fixture(&format!("hf/expected_{name}.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("hf/expected_{name}.json"))).unwrap(),
    )
    .unwrap();
    Expected {
        input_ids: t["input_ids"].to_dtype(DType::U32).unwrap(),
        logits: t["logits"].clone(),
        meta,
    }
}

/// Largest |a - b| / (1 + |b|): relative for logits of magnitude above one.
fn max_rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

fn folder(name: &str) -> PathBuf {
    fixture(&format!("hf/{name}"))
}

/// Full-sequence logits, position-by-position cached logits, greedy ids and tokenizer ids
/// all equal what transformers computed.
fn check_parity(name: &str) {
    let e = expected(name);
    let dir = folder(name);
    let model = load_pretrained(&dir, &Device::Cpu).unwrap();
    let (b, t) = e.input_ids.dims2().unwrap();
    let logits = model.forward(&e.input_ids, &mut Dropout::eval()).unwrap(); // (B*T, V)
    let v = logits.dim(1).unwrap();
    let want = e.logits.reshape((b * t, v)).unwrap();
    let err = max_rel_err(&logits, &want);
    assert!(
        err < 1e-4,
        "{name}: logits differ from transformers by {err}"
    );

    // KV-cached decoding of the first sequence, one token at a time.
    let tm = open_text_model(&dir, &Device::Cpu).unwrap();
    let mut cache = tm.model.new_cache(1).unwrap();
    for pos in 0..t {
        let id = e.input_ids.i((0..1, pos..pos + 1)).unwrap();
        let step = tm.model.forward_cached(&id, &mut cache).unwrap(); // (1, V)
        let want = e.logits.i((0, pos)).unwrap().unsqueeze(0).unwrap();
        let err = max_rel_err(&step, &want);
        assert!(err < 1e-4, "{name}: cached logits at {pos} differ by {err}");
    }

    // Greedy generation.
    let prompt: Vec<u32> = serde_json::from_value(e.meta["prompt_ids"].clone()).unwrap();
    let want: Vec<u32> = serde_json::from_value(e.meta["greedy_ids"].clone()).unwrap();
    let opts = GenerateOptions {
        max_tokens: want.len(),
        ..Default::default()
    };
    let params = SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    let mut sampler = Sampler::new(params, 0);
    let out = generate(
        tm.model.as_ref(),
        &tm.tokenizer,
        &prompt,
        &opts,
        &mut sampler,
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(out.ids, want, "{name}: greedy ids differ from transformers");

    // The tokenizer (tokenizer.json, or vocab.json + merges.txt for gpt2).
    for (text, ids) in e.meta["tokenized"].as_object().unwrap() {
        let want: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
        assert_eq!(
            tm.tokenizer.encode(text).unwrap(),
            want,
            "{name}: ids of {text:?}"
        );
    }
}

#[test]
fn gpt2_folder_matches_transformers() {
    check_parity("gpt2");
}

#[test]
fn llama_with_grouped_query_attention_matches_transformers() {
    check_parity("llama_gqa");
}

#[test]
fn llama_with_tied_head_and_v4_config_matches_transformers() {
    check_parity("llama_tied");
}

/// BOS as the tokenizer says (issue 11): the llama_gqa folder, made by transformers, has a
/// post-processor that adds nothing, so its prompts start with the text; `add_bos_token: true`
/// in tokenizer_config.json adds `<s>` (transformers' LlamaTokenizerFast does the same).
#[test]
fn llama_prompts_start_with_bos_only_when_the_tokenizer_adds_one() {
    let tm = open_text_model(&folder("llama_gqa"), &Device::Cpu).unwrap();
    assert_eq!(tm.bos_id, None);
    assert_eq!(
        tm.encode_prompt("hi").unwrap(),
        tm.tokenizer.encode("hi").unwrap()
    );
    let gpt = open_text_model(&folder("gpt2"), &Device::Cpu).unwrap();
    assert_eq!(gpt.bos_id, None);

    let tmp = copy_folder("llama_gqa");
    let path = tmp.path().join("tokenizer_config.json");
    let mut tc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    tc["add_bos_token"] = serde_json::json!(true);
    std::fs::write(&path, tc.to_string()).unwrap();
    let tm = open_text_model(tmp.path(), &Device::Cpu).unwrap();
    assert_eq!(tm.bos_id, Some(1));
    assert_eq!(tm.encode_prompt("hi").unwrap()[0], 1);
}

/// A copy of a fixture folder in a temp dir, for breaking it.
fn copy_folder(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(folder(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    tmp
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, v.to_string()).unwrap();
}

fn open_err(dir: &Path) -> String {
    match open_text_model(dir, &Device::Cpu) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unsupported_model_type_is_a_clear_error() {
    let tmp = copy_folder("llama_gqa");
    edit_config(tmp.path(), |v| v["model_type"] = "mistral".into());
    let msg = open_err(tmp.path());
    assert!(msg.contains("mistral") && msg.contains("llama"), "{msg}");
    let e = load_pretrained(tmp.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model_type 'mistral' is not supported"), "{e}");
}

#[test]
fn unsupported_llama_options_are_clear_errors() {
    let tmp = copy_folder("llama_gqa");
    edit_config(tmp.path(), |v| {
        v["rope_parameters"] = serde_json::json!({"rope_type": "yarn", "rope_theta": 1e4})
    });
    let e = load_pretrained(tmp.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rope scaling 'yarn'"), "{e}");
    edit_config(tmp.path(), |v| {
        v["rope_parameters"] = serde_json::Value::Null;
        v["attention_bias"] = true.into();
    });
    let e = load_pretrained(tmp.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("attention_bias"), "{e}");
}

#[test]
fn missing_tokenizer_is_a_clear_error() {
    let tmp = copy_folder("llama_gqa");
    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    let msg = open_err(tmp.path());
    assert!(msg.contains("no tokenizer.json"), "{msg}");
    let tmp = copy_folder("gpt2");
    std::fs::remove_file(tmp.path().join("merges.txt")).unwrap();
    let msg = open_err(tmp.path());
    assert!(msg.contains("vocab.json + merges.txt"), "{msg}");
}

#[test]
fn weights_that_do_not_match_the_config_are_a_clear_error() {
    for name in ["llama_gqa", "gpt2"] {
        let tmp = copy_folder(name);
        edit_config(tmp.path(), |v| {
            if name == "gpt2" {
                v["n_embd"] = 64.into();
            } else {
                v["intermediate_size"] = 64.into();
            }
        });
        let msg = open_err(tmp.path());
        assert!(
            msg.contains("do not match") || msg.contains("does not match"),
            "{name}: {msg}"
        );
        let tmp = copy_folder(name);
        edit_config(tmp.path(), |v| {
            let key = if name == "gpt2" {
                "n_layer"
            } else {
                "num_hidden_layers"
            };
            v[key] = 3.into();
        });
        let e = load_pretrained(tmp.path(), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("do not match"), "{name}: {e}");
    }
}

/// A SentencePiece tokenizer (here llama2.c's tokenizer.bin) adds `<s>` in front, as
/// transformers' LlamaConverter writes it, so Llama folders Muse exports keep their BOS.
#[test]
fn sentencepiece_tokenizers_add_bos_like_llama_converter() {
    let Some(l2c) = crate::common::manual_dataset("llama2c") else {
        return;
    };
    let path = l2c.join("tokenizer.bin");
    let tok = muse_core::tokenizer::sentencepiece::load(&path).unwrap();
    assert_eq!(tok.post_processor_prefix(), Some(1));
}
