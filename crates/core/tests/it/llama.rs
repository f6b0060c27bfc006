//! Muse's Llama: the llama2.c checkpoint in the shared data against its reference greedy ids,
//! the Llama 2 SentencePiece tokenizer against sentencepiece, training through the
//! differentiable path, and KV-cached decoding against full recomputation.

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};
use muse_core::models::CausalLm;
use muse_core::models::llama::{Llama, LlamaConfig, llama_init};
use muse_core::models::llama2c::{load_llama2c, read_checkpoint};
use muse_core::models::pretrained::{load_pretrained, load_trainable};
use muse_core::nn::{Dropout, init_varmap};
use muse_core::sample::logits::argmax;
use muse_core::tokenizer::sentencepiece;
use muse_core::train::{AdamW, TrainConfig};

use crate::common::{fixture, manual_dataset};

/// From shared/data/README.md: run.c's greedy ids after BOS for stories260K-plctlab.bin.
const README_GREEDY: [u32; 40] = [
    461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264, 283, 452, 288,
    13, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 293, 430, 417, 363, 416,
    315, 342,
];

fn greedy(model: &dyn CausalLm, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut cache = model.new_cache(1).unwrap();
    let mut next = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let x = Tensor::new(next.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits: Vec<f32> = model
            .forward_cached(&x, &mut cache)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let id = argmax(&logits);
        out.push(id);
        next = vec![id];
    }
    out
}

#[test]
fn llama2c_checkpoint_reproduces_the_reference_greedy_ids() {
    let Some(l2c) = manual_dataset("llama2c") else {
        return;
    };
    let path = l2c.join("stories260K-plctlab.bin");
    let model = load_llama2c(&path, &Device::Cpu).unwrap();
    let cfg = model.config();
    assert_eq!(
        (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_hidden_layers
        ),
        (64, 172, 5)
    );
    assert_eq!(
        (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.vocab_size
        ),
        (8, 4, 512)
    );
    assert!(cfg.tie_word_embeddings);
    assert_eq!(greedy(&model, &[1], 40), README_GREEDY);
    // The generic loader takes the same file.
    let any = load_pretrained(&path, &Device::Cpu).unwrap();
    assert_eq!(greedy(&any, &[1], 10), README_GREEDY[..10]);
}

#[test]
fn llama2c_truncated_or_foreign_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(l2c) = manual_dataset("llama2c") else {
        return;
    };
    let bytes = std::fs::read(l2c.join("stories260K-plctlab.bin")).unwrap();
    let cut = tmp.path().join("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() - 400]).unwrap();
    let e = read_checkpoint(&cut, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let v1 = tmp.path().join("v1.bin");
    let mut header = 0x616b_3432_i32.to_le_bytes().to_vec();
    header.extend(1i32.to_le_bytes());
    header.extend([0u8; 248]);
    std::fs::write(&v1, header).unwrap();
    let e = read_checkpoint(&v1, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("version 1") && e.contains("legacy v0"), "{e}");
}

#[test]
fn llama2_tokenizer_matches_sentencepiece() {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("hf/llama2c_tokenizer_ids.json")).unwrap(),
    )
    .unwrap();
    let Some(l2c) = manual_dataset("llama2c") else {
        return;
    };
    for file in ["tokenizer.bin", "tokenizer.model"] {
        let tok = sentencepiece::load(&l2c.join(file)).unwrap();
        assert_eq!(tok.vocab_size(), 32000, "{file}");
        assert_eq!(tok.eos_id(), Some(2), "{file}");
        for (text, ids) in meta["ids"].as_object().unwrap() {
            let want: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
            let got = tok.encode(text).unwrap();
            assert_eq!(got, want, "{file}: ids of {text:?}");
            assert_eq!(
                tok.decode(&got).unwrap(),
                *text,
                "{file}: decode of {text:?}"
            );
        }
    }
}

fn tiny_config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 29,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        max_position_embeddings: 32,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_word_embeddings: false,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
    }
}

fn fresh(cfg: &LlamaConfig, seed: u64) -> (Llama, VarMap) {
    let varmap = VarMap::new();
    let model = Llama::new(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_varmap(&varmap, seed, |name, dims| match llama_init(name, dims) {
        muse_core::nn::Init::Normal(_) => muse_core::nn::Init::Normal(0.2),
        other => other,
    })
    .unwrap();
    (model, varmap)
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
fn kv_cache_decoding_equals_full_recomputation() {
    let cfg = tiny_config();
    let (model, _varmap) = fresh(&cfg, 5);
    let ids: Vec<u32> = (0..12).map(|i| (i * 11 % 29) as u32).collect();
    let x = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let full = model.forward(&x, &mut Dropout::eval()).unwrap(); // (T, V)
    let mut cache = model.new_cache(1).unwrap();
    // A 5-token prompt, then one token at a time.
    let first = model
        .forward_cached(&x.i((.., 0..5)).unwrap(), &mut cache)
        .unwrap();
    assert!(max_abs_diff(&first, &full.i(4..5).unwrap()) < 1e-4);
    for pos in 5..12 {
        let step = model
            .forward_cached(&x.i((.., pos..pos + 1)).unwrap(), &mut cache)
            .unwrap();
        let d = max_abs_diff(&step, &full.i(pos..pos + 1).unwrap());
        assert!(d < 1e-4, "position {pos}: {d}");
    }
}

#[test]
fn overfits_a_single_batch() {
    let cfg = tiny_config();
    let (model, varmap) = fresh(&cfg, 3);
    let train = TrainConfig {
        lr: 3e-3,
        weight_decay: 0.0,
        ..TrainConfig::char_baby()
    };
    let mut opt = AdamW::new(&varmap, &train).unwrap();
    let x: Vec<u32> = (0..2 * 16).map(|i| (i * 7 % 29) as u32).collect();
    let y: Vec<u32> = (0..2 * 16).map(|i| (i * 5 % 29) as u32).collect();
    let x = Tensor::from_vec(x, (2, 16), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(y, (2, 16), &Device::Cpu).unwrap();
    let (mut first, mut last) = (f32::NAN, f32::NAN);
    for step in 0..150 {
        let loss = model.loss(&x, &y, &mut Dropout::eval()).unwrap();
        last = loss.to_scalar().unwrap();
        if step == 0 {
            first = last;
        }
        let mut grads = opt.grads(&loss.backward().unwrap());
        grads.clip(1.0).unwrap();
        opt.step(&grads, 3e-3).unwrap();
    }
    assert!(
        first > 2.5 && last < 0.1,
        "loss went from {first} to {last}"
    );
}

#[test]
fn trainable_load_gives_the_pretrained_logits_and_gradients_for_every_weight() {
    let dir = fixture("hf/llama_gqa");
    let frozen = load_pretrained(&dir, &Device::Cpu).unwrap();
    let varmap = VarMap::new();
    let model = load_trainable(&dir, &varmap, &Device::Cpu).unwrap();
    let x = Tensor::new(&[[3u32, 100, 200, 7, 50, 9]], &Device::Cpu).unwrap();
    let a = frozen.forward(&x, &mut Dropout::eval()).unwrap();
    let b = model.forward(&x, &mut Dropout::eval()).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-4);
    let y = Tensor::new(&[[100u32, 200, 7, 50, 9, 11]], &Device::Cpu).unwrap();
    let grads = model
        .loss(&x, &y, &mut Dropout::eval())
        .unwrap()
        .backward()
        .unwrap();
    let vars = varmap.data().lock().unwrap();
    assert_eq!(vars.len(), 2 * 9 + 3, "embedding, 9 per layer, norm, head");
    for (name, var) in vars.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no grad for {name}"));
        let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "{name}: grad norm {norm}");
    }
}
