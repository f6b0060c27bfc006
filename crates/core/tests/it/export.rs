//! `export_hf`: the folder has the files, names, shapes and config fields transformers needs,
//! and loads back into Muse with the same logits. (That transformers itself loads an export and
//! generates the same ids was checked with `scripts/fixtures/hf_tiny_models.py --check-export`;
//! see crates/core/tests/fixtures/hf/NOTES.md.)

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use muse_core::export::export_hf;
use muse_core::models::gpt::{Activation, Gpt, GptConfig, gpt2_init, save_config};
use muse_core::models::pretrained::load_pretrained;
use muse_core::nn::{Dropout, init_varmap};
use muse_core::tokenizer::TextTokenizer;
use muse_core::tokenizer::chat::ChatTemplate;

use crate::common::fixture;

/// A Muse-style GPT folder (config.json, model.safetensors, tokenizer.json) with random weights.
fn gpt_folder(dir: &Path, bias: bool, tied: bool) -> Gpt {
    let tok = TextTokenizer::char_level("hello world, HELLO WORLD!\n:;").unwrap();
    let cfg = GptConfig {
        vocab_size: tok.vocab_size(),
        n_positions: 16,
        n_embd: 16,
        n_layer: 2,
        n_head: 2,
        bias,
        dropout: 0.0,
        layer_norm_epsilon: 1e-5,
        activation_function: if bias {
            Activation::GeluNew
        } else {
            Activation::Gelu
        },
        tie_word_embeddings: tied,
    };
    let varmap = VarMap::new();
    let model = Gpt::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_varmap(&varmap, 7, |n, d| match gpt2_init(&cfg)(n, d) {
        muse_core::nn::Init::Normal(_) => muse_core::nn::Init::Normal(0.3),
        muse_core::nn::Init::Const(0.0) => muse_core::nn::Init::Normal(0.1),
        other => other,
    })
    .unwrap();
    save_config(dir, &cfg).unwrap();
    varmap.save(dir.join("model.safetensors")).unwrap();
    tok.save(&dir.join("tokenizer.json")).unwrap();
    model
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn logits(model: &dyn Fn(&Tensor) -> Tensor) -> Tensor {
    let x = Tensor::new(&[[1u32, 5, 9, 3, 2, 8, 0, 4]], &Device::Cpu).unwrap();
    model(&x)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn bias_free_tied_gpt_exports_zero_biases_and_reloads_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, out) = (tmp.path().join("run"), tmp.path().join("hf"));
    std::fs::create_dir(&run).unwrap();
    let model = gpt_folder(&run, false, true);
    let report = export_hf(&run, None, &out, false).unwrap();
    assert_eq!(report.model_type, "gpt2");
    assert!(report.notes.iter().any(|n| n.contains("zero biases")));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.json",
        "README.md",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    let cfg = read_json(&out.join("config.json"));
    assert_eq!(cfg["model_type"], "gpt2");
    assert_eq!(cfg["architectures"][0], "GPT2LMHeadModel");
    assert_eq!(cfg["activation_function"], "gelu");
    assert_eq!(cfg["n_embd"], 16);
    assert_eq!(cfg["n_positions"], 16);
    assert_eq!(cfg["tie_word_embeddings"], true);
    assert!(cfg.get("bias").is_none(), "HF GPT-2 has no 'bias' key");

    let w: HashMap<String, Tensor> =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(!w.contains_key("lm_head.weight"), "tied head is not stored");
    assert_eq!(w["transformer.h.0.attn.c_attn.weight"].dims(), [16, 48]);
    assert_eq!(w["transformer.h.1.mlp.c_fc.weight"].dims(), [16, 64]);
    for (name, n) in [
        ("transformer.h.0.attn.c_attn.bias", 48),
        ("transformer.h.1.mlp.c_fc.bias", 64),
        ("transformer.h.1.mlp.c_proj.bias", 16),
        ("transformer.h.0.ln_1.bias", 16),
        ("transformer.ln_f.bias", 16),
    ] {
        let b = &w[name];
        assert_eq!(b.dims(), [n], "{name}");
        let s: f32 = b.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert_eq!(s, 0.0, "{name} is not zero");
    }
    assert_eq!(w.len(), 2 + 2 * 12 + 2, "wte, wpe, 12 per block, ln_f");

    let tc = read_json(&out.join("tokenizer_config.json"));
    assert_eq!(tc["tokenizer_class"], "PreTrainedTokenizerFast");
    assert_eq!(tc["model_max_length"], 16);
    assert!(
        tc["chat_template"]
            .as_str()
            .unwrap()
            .contains("add_generation_prompt")
    );
    assert_eq!(
        ChatTemplate::load(&out).unwrap().unwrap(),
        ChatTemplate::plain()
    );
    let tok = TextTokenizer::from_file(&out.join("tokenizer.json")).unwrap();
    assert_eq!(
        tok.encode("hello").unwrap(),
        TextTokenizer::from_file(&run.join("tokenizer.json"))
            .unwrap()
            .encode("hello")
            .unwrap()
    );

    let back = load_pretrained(&out, &Device::Cpu).unwrap();
    let a = logits(&|x| model.forward(x, &mut Dropout::eval()).unwrap());
    let b = logits(&|x| back.forward(x, &mut Dropout::eval()).unwrap());
    assert!(max_abs_diff(&a, &b) < 1e-6);
}

#[test]
fn untied_gpt_with_biases_keeps_its_head() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, out) = (tmp.path().join("run"), tmp.path().join("hf"));
    std::fs::create_dir(&run).unwrap();
    let model = gpt_folder(&run, true, false);
    let report = export_hf(&run, None, &out, false).unwrap();
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    let cfg = read_json(&out.join("config.json"));
    assert_eq!(cfg["activation_function"], "gelu_new");
    assert_eq!(cfg["tie_word_embeddings"], false);
    let w = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(w["lm_head.weight"].dims(), [model.config().vocab_size, 16]);
    let back = load_pretrained(&out, &Device::Cpu).unwrap();
    let a = logits(&|x| model.forward(x, &mut Dropout::eval()).unwrap());
    let b = logits(&|x| back.forward(x, &mut Dropout::eval()).unwrap());
    assert!(max_abs_diff(&a, &b) < 1e-6);
}

#[test]
fn llama_folder_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hf");
    let src = fixture("hf/llama_gqa");
    export_hf(&src, None, &out, false).unwrap();
    let cfg = read_json(&out.join("config.json"));
    assert_eq!(cfg["model_type"], "llama");
    assert_eq!(cfg["num_key_value_heads"], 2);
    assert_eq!(cfg["rope_theta"], 500000.0);
    assert_eq!(cfg["rope_parameters"]["rope_theta"], 500000.0);
    assert_eq!(cfg["bos_token_id"], 1);
    assert_eq!(cfg["eos_token_id"], 2);
    let tc = read_json(&out.join("tokenizer_config.json"));
    assert_eq!(
        (tc["bos_token"].as_str(), tc["eos_token"].as_str()),
        (Some("<s>"), Some("</s>"))
    );
    let a = load_pretrained(&src, &Device::Cpu).unwrap();
    let b = load_pretrained(&out, &Device::Cpu).unwrap();
    let la = logits(&|x| a.forward(x, &mut Dropout::eval()).unwrap());
    let lb = logits(&|x| b.forward(x, &mut Dropout::eval()).unwrap());
    assert!(max_abs_diff(&la, &lb) == 0.0);
}

#[test]
fn export_refuses_a_non_empty_folder_and_mismatched_tokenizers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hf");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let e = export_hf(&fixture("hf/llama_gqa"), None, &out, false).unwrap_err();
    assert!(e.to_string().contains("--force"), "{e}");
    assert!(e.is_usage());
    export_hf(&fixture("hf/llama_gqa"), None, &out, true).unwrap();

    let Some(data) = crate::common::manual_dataset("llama2c") else {
        return;
    };
    let e = export_hf(
        &data.join("stories260K-plctlab.bin"),
        Some(&data.join("tokenizer.bin")),
        &tmp.path().join("l2c"),
        false,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("32000 tokens but the model only 512"),
        "{e}"
    );
}
