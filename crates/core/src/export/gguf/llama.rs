//! A Llama in Hugging Face layout (Muse runs and folders, llama2.c files once loaded) as
//! llama.cpp's `llama` architecture: its `llama.*` hyperparameters and tensor names, as
//! `convert_hf_to_gguf.py` writes them.
//!
//! transformers rotates the two halves of each head; llama.cpp (like Meta's original code)
//! rotates neighbouring pairs. The converter therefore permutes the query and key rows of
//! each head from halves to interleaved pairs, and so does this; Muse's GGUF loader rotates
//! pairs (`rope_i`), so the file runs the same function in both.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use candle_core::{Result, Tensor};

use crate::models::llama::LlamaConfig;

/// `llama.*` metadata for `cfg`.
pub(super) fn metadata(cfg: &LlamaConfig) -> Vec<(String, Value)> {
    let u32 = |n: usize| Value::U32(n as u32);
    let mut meta = vec![
        ("llama.context_length", u32(cfg.max_position_embeddings)),
        ("llama.embedding_length", u32(cfg.hidden_size)),
        ("llama.block_count", u32(cfg.num_hidden_layers)),
        ("llama.feed_forward_length", u32(cfg.intermediate_size)),
        ("llama.attention.head_count", u32(cfg.num_attention_heads)),
        (
            "llama.attention.head_count_kv",
            u32(cfg.num_key_value_heads),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        ("llama.rope.freq_base", Value::F32(cfg.rope_theta as f32)),
        ("llama.rope.dimension_count", u32(cfg.head_dim)),
        ("llama.vocab_size", u32(cfg.vocab_size)),
    ];
    if cfg.head_dim * cfg.num_attention_heads != cfg.hidden_size {
        meta.push(("llama.attention.key_length", u32(cfg.head_dim)));
        meta.push(("llama.attention.value_length", u32(cfg.head_dim)));
    }
    meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The weights under llama.cpp's names, queries and keys permuted to interleaved pairs; the
/// head is left out when it is tied to the embedding (llama.cpp then uses `token_embd`).
pub(super) fn tensors(
    cfg: &LlamaConfig,
    hf: &HashMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>> {
    let get = |name: &str| super::weight(hf, name);
    let mut out = vec![(
        "token_embd.weight".to_string(),
        get("model.embed_tokens.weight")?,
    )];
    for i in 0..cfg.num_hidden_layers {
        let hf_name = |part: &str| format!("model.layers.{i}.{part}.weight");
        for (gguf, part) in crate::models::gguf::dequantized::BLOCK_TENSORS {
            let w = get(&hf_name(part))?;
            let w = match gguf {
                "attn_q" => halves_to_interleaved(&w, cfg.num_attention_heads)?,
                "attn_k" => halves_to_interleaved(&w, cfg.num_key_value_heads)?,
                _ => w,
            };
            out.push((format!("blk.{i}.{gguf}.weight"), w));
        }
    }
    out.push(("output_norm.weight".into(), get("model.norm.weight")?));
    if !cfg.tie_word_embeddings {
        out.push(("output.weight".into(), get("lm_head.weight")?));
    }
    Ok(out)
}

/// Reorders the rows of each head from halves `(x0, x2, ...), (x1, x3, ...)` to interleaved
/// pairs `(x0, x1), (x2, x3), ...` (`convert_hf_to_gguf.py`'s `permute`).
///
/// # Shapes
/// `w`: (n_heads * hs, in) -> (n_heads * hs, in).
fn halves_to_interleaved(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    w.reshape((n_heads, 2, rows / n_heads / 2, cols))? // (nh, 2, hs/2, in)
        .transpose(1, 2)? // (nh, hs/2, 2, in)
        .contiguous()?
        .reshape((rows, cols))
}
