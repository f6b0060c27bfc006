//! A GPT-2-family model in Hugging Face layout (Muse GPT runs, Hugging Face gpt2 folders) as
//! llama.cpp's `gpt2` architecture: its `gpt2.*` hyperparameters and tensor names, as
//! `convert_hf_to_gguf.py` writes them.
//!
//! llama.cpp's GPT-2 has biases everywhere and the tanh GELU. A Muse run without biases gets
//! zero ones (the same function); one trained with the exact GELU runs with the tanh form in
//! llama.cpp, which differs by at most 4.7e-4 per activation.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use candle_core::{Result, Tensor};

use crate::models::gguf::gpt2::BLOCK_TENSORS;
use crate::models::gpt::GptConfig;

/// `gpt2.*` metadata for `cfg`.
pub(super) fn metadata(cfg: &GptConfig) -> Vec<(String, Value)> {
    let u32 = |n: usize| Value::U32(n as u32);
    [
        ("gpt2.context_length", u32(cfg.n_positions)),
        ("gpt2.embedding_length", u32(cfg.n_embd)),
        ("gpt2.feed_forward_length", u32(4 * cfg.n_embd)),
        ("gpt2.block_count", u32(cfg.n_layer)),
        ("gpt2.attention.head_count", u32(cfg.n_head)),
        (
            "gpt2.attention.layer_norm_epsilon",
            Value::F32(cfg.layer_norm_epsilon as f32),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The weights under llama.cpp's names, `Conv1D` weights transposed to (out, in), zero biases
/// where the model has none; the head is left out when it is tied to the embedding (llama.cpp
/// then uses `token_embd`).
pub(super) fn tensors(
    cfg: &GptConfig,
    hf: &HashMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>> {
    let get = |name: &str| super::weight(hf, name);
    // The bias of a layer whose weight is `w` (out features first after the transpose).
    let bias = |name: &str, out: usize, like: &Tensor| -> Result<Tensor> {
        if cfg.bias {
            get(name)
        } else {
            Tensor::zeros(out, like.dtype(), like.device())
        }
    };
    let mut out = vec![
        (
            "token_embd.weight".to_string(),
            get("transformer.wte.weight")?,
        ),
        (
            "position_embd.weight".to_string(),
            get("transformer.wpe.weight")?,
        ),
    ];
    for i in 0..cfg.n_layer {
        for (gguf, part, conv1d) in BLOCK_TENSORS {
            let hf_name = |what: &str| format!("transformer.h.{i}.{part}.{what}");
            let w = get(&hf_name("weight"))?;
            let w = if conv1d { w.t()?.contiguous()? } else { w };
            let b = bias(&hf_name("bias"), w.dim(0)?, &w)?;
            out.push((format!("blk.{i}.{gguf}.weight"), w));
            out.push((format!("blk.{i}.{gguf}.bias"), b));
        }
    }
    let norm = get("transformer.ln_f.weight")?;
    let norm_b = bias("transformer.ln_f.bias", cfg.n_embd, &norm)?;
    out.push(("output_norm.weight".into(), norm));
    out.push(("output_norm.bias".into(), norm_b));
    if !cfg.tie_word_embeddings {
        out.push(("output.weight".into(), get("lm_head.weight")?));
    }
    Ok(out)
}
