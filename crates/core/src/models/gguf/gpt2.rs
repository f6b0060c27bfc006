//! A GGUF `gpt2` file (llama.cpp's GPT-2 architecture) as Muse's GPT: the hyperparameters from
//! `gpt2.*`, every tensor widened to f32 under Hugging Face GPT-2 names.
//!
//! Widened rather than kept quantised: GPT-2-family files are small next to the Llamas people
//! download, and Muse's GPT then runs, fine-tunes and exports them as it does a folder. The
//! linear layers of Hugging Face GPT-2 (`Conv1D`) store their weight as (in, out);
//! `convert_hf_to_gguf.py` transposes them to (out, in), so they are transposed back here.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};

use super::GgufFile;
use crate::models::gpt::{Activation, GptConfig};

/// llama.cpp's per-block tensor names, their Hugging Face parts (under `transformer.h.N.`), and
/// whether the weight is a `Conv1D` (stored transposed in GGUF). Each has a weight and a bias.
pub(crate) const BLOCK_TENSORS: [(&str, &str, bool); 6] = [
    ("attn_norm", "ln_1", false),
    ("attn_qkv", "attn.c_attn", true),
    ("attn_output", "attn.c_proj", true),
    ("ffn_norm", "ln_2", false),
    ("ffn_up", "mlp.c_fc", true),
    ("ffn_down", "mlp.c_proj", true),
];

/// The model's architecture from the `gpt2.*` metadata. llama.cpp's GPT-2 always has biases and
/// the tanh GELU; the head is tied unless the file has `output.weight`.
pub fn config_from_gguf(f: &GgufFile) -> Result<GptConfig> {
    let n_embd = f.usize("gpt2.embedding_length")?;
    let n_ff = f
        .usize_opt("gpt2.feed_forward_length")?
        .unwrap_or(4 * n_embd);
    if n_ff != 4 * n_embd {
        return Err(candle_core::Error::Msg(format!(
            "{}: gpt2.feed_forward_length is {n_ff}, not 4 x {n_embd}: Muse's GPT has the \
             GPT-2 MLP width",
            f.path.display()
        )));
    }
    let vocab_size = match f.content.tensor_infos.get("token_embd.weight") {
        Some(info) => info.shape.dims()[0],
        None => f.usize("gpt2.vocab_size")?,
    };
    let cfg = GptConfig {
        vocab_size,
        n_positions: f.usize("gpt2.context_length")?,
        n_embd,
        n_layer: f.usize("gpt2.block_count")?,
        n_head: f.usize("gpt2.attention.head_count")?,
        bias: true,
        dropout: 0.0,
        layer_norm_epsilon: f
            .f64_opt("gpt2.attention.layer_norm_epsilon")?
            .unwrap_or(1e-5),
        activation_function: Activation::GeluNew,
        tie_word_embeddings: !f.has_tensor("output.weight"),
    };
    cfg.validate()
        .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", f.path.display())))?;
    Ok(cfg)
}

/// The architecture and every weight of the GPT-2 in `f`, f32, under Hugging Face names (the
/// names [`crate::models::gpt::Gpt`] loads).
pub fn hf_tensors(
    f: &mut GgufFile,
    device: &Device,
) -> Result<(GptConfig, HashMap<String, Tensor>)> {
    let cfg = config_from_gguf(f)?;
    let mut widened = |name: &str| -> Result<Tensor> { f.tensor(name, device)?.dequantize(device) };
    let mut out = HashMap::new();
    out.insert(
        "transformer.wte.weight".into(),
        widened("token_embd.weight")?,
    );
    out.insert(
        "transformer.wpe.weight".into(),
        widened("position_embd.weight")?,
    );
    for i in 0..cfg.n_layer {
        for (gguf, hf, conv1d) in BLOCK_TENSORS {
            let w = widened(&format!("blk.{i}.{gguf}.weight"))?;
            let w = if conv1d { w.t()?.contiguous()? } else { w };
            out.insert(format!("transformer.h.{i}.{hf}.weight"), w);
            let b = widened(&format!("blk.{i}.{gguf}.bias"))?;
            out.insert(format!("transformer.h.{i}.{hf}.bias"), b);
        }
    }
    out.insert(
        "transformer.ln_f.weight".into(),
        widened("output_norm.weight")?,
    );
    out.insert("transformer.ln_f.bias".into(), widened("output_norm.bias")?);
    if !cfg.tie_word_embeddings {
        out.insert("lm_head.weight".into(), widened("output.weight")?);
    }
    Ok((cfg, out))
}
