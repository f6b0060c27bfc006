//! A GGUF Llama as plain f32 tensors under Hugging Face names, for what needs weights it can
//! train or rewrite (`muse finetune`, `muse align`, `muse export`): every tensor is widened,
//! and the query and key rows go back from llama.cpp's interleaved rotary pairs to the halves
//! layout of transformers' Llama (the inverse of `convert_hf_to_gguf.py`'s `permute`).

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};

use super::{GgufFile, config_from_gguf};
use crate::models::llama::LlamaConfig;

/// llama.cpp's per-block tensor names and their Hugging Face parts (also what `muse export
/// --format gguf` writes).
pub(crate) const BLOCK_TENSORS: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// The architecture and every weight of the Llama in `f`, f32, under Hugging Face names.
pub fn hf_tensors(
    f: &mut GgufFile,
    device: &Device,
) -> Result<(LlamaConfig, HashMap<String, Tensor>)> {
    let arch = f.architecture()?;
    if arch != "llama" {
        candle_core::bail!("architecture '{arch}' is not a Llama");
    }
    let cfg = config_from_gguf(f)?;
    let mut widened = |name: &str| -> Result<Tensor> { f.tensor(name, device)?.dequantize(device) };
    let mut out = HashMap::new();
    out.insert(
        "model.embed_tokens.weight".to_string(),
        widened("token_embd.weight")?,
    );
    for i in 0..cfg.num_hidden_layers {
        for (gguf, hf) in BLOCK_TENSORS {
            let w = widened(&format!("blk.{i}.{gguf}.weight"))?;
            let w = match gguf {
                "attn_q" => interleaved_to_halves(&w, cfg.num_attention_heads)?,
                "attn_k" => interleaved_to_halves(&w, cfg.num_key_value_heads)?,
                _ => w,
            };
            out.insert(format!("model.layers.{i}.{hf}.weight"), w);
        }
    }
    out.insert("model.norm.weight".into(), widened("output_norm.weight")?);
    if !cfg.tie_word_embeddings {
        out.insert("lm_head.weight".into(), widened("output.weight")?);
    }
    Ok((cfg, out))
}

/// Reorders the rows of each head from interleaved pairs `(x0, x1), (x2, x3), ...` to halves
/// `(x0, x2, ...), (x1, x3, ...)`.
///
/// # Shapes
/// `w`: (n_heads * hs, in) -> (n_heads * hs, in).
fn interleaved_to_halves(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    w.reshape((n_heads, rows / n_heads / 2, 2, cols))? // (nh, hs/2, 2, in)
        .transpose(1, 2)? // (nh, 2, hs/2, in)
        .contiguous()?
        .reshape((rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The export's permutation followed by this one gives back every row.
    #[test]
    fn undoes_the_interleaving_of_convert_hf_to_gguf() {
        let (nh, hs, cols) = (3, 8, 2);
        let w = Tensor::arange(0f32, (nh * hs * cols) as f32, &Device::Cpu)
            .unwrap()
            .reshape((nh * hs, cols))
            .unwrap();
        // convert_hf_to_gguf.py's permute: (nh, 2, hs/2, in) -> (nh, hs/2, 2, in).
        let interleaved = w
            .reshape((nh, 2, hs / 2, cols))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((nh * hs, cols))
            .unwrap();
        let back = interleaved_to_halves(&interleaved, nh).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    }
}
