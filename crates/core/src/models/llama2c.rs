//! llama2.c checkpoints (Karpathy's `run.c` "legacy" v0 export) mapped onto Muse's Llama.
//!
//! The file is a header of 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads,
//! n_kv_heads, vocab_size, seq_len), then f32 weights in `run.c`'s order: token embedding,
//! every layer's attention RMSNorm, wq, wk, wv, wo, FFN RMSNorm, w1, w2, w3, the final RMSNorm,
//! the RoPE cos/sin tables (skipped: Muse computes them), and the classifier unless it is
//! shared with the embedding (a positive vocab_size means shared). Matrices are stored like
//! `torch.nn.Linear` weights, `(out, in)`.
//!
//! llama2.c rotates adjacent pairs of each head (Meta's interleaved RoPE); transformers rotates
//! the two halves. The query and key rows of each head are permuted as transformers'
//! `convert_llama_weights_to_hf.py` does, which leaves every attention score unchanged.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Result, Tensor};

use super::llama::{Llama, LlamaConfig};

/// The `run.c` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Llama2cHeader {
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
    /// The output head is the token embedding (positive vocab_size in the file).
    pub shared_classifier: bool,
}

impl Llama2cHeader {
    /// The Llama architecture this checkpoint describes (llama2.c: eps 1e-5, theta 10000,
    /// BOS 1, EOS 2).
    pub fn config(&self) -> LlamaConfig {
        LlamaConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.dim,
            intermediate_size: self.hidden_dim,
            num_hidden_layers: self.n_layers,
            num_attention_heads: self.n_heads,
            num_key_value_heads: self.n_kv_heads,
            head_dim: self.dim / self.n_heads.max(1),
            max_position_embeddings: self.seq_len,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            tie_word_embeddings: self.shared_classifier,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
        }
    }

    /// f32 values the file must hold after the header.
    fn expected_floats(&self) -> usize {
        let (d, h, l) = (self.dim, self.hidden_dim, self.n_layers);
        let hs = d / self.n_heads.max(1);
        let kv = self.n_kv_heads * hs;
        let per_layer = 2 * d + d * d * 2 + 2 * d * kv + 3 * d * h;
        let head = if self.shared_classifier {
            0
        } else {
            self.vocab_size * d
        };
        self.vocab_size * d + l * per_layer + d + self.seq_len * hs + head
    }
}

/// Parses the header of a legacy llama2.c checkpoint.
pub fn read_header(bytes: &[u8]) -> std::result::Result<Llama2cHeader, String> {
    if bytes.len() < 28 {
        return Err("too short for a llama2.c header (7 int32)".into());
    }
    let int = |i: usize| i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    if int(0) == 0x616b_3432 {
        return Err(format!(
            "this is a llama2.c version {} export (magic 'ak42'); Muse reads the legacy v0 \
             format (`export.py --version 0`)",
            int(1)
        ));
    }
    let v = int(5);
    let h = Llama2cHeader {
        dim: int(0).max(0) as usize,
        hidden_dim: int(1).max(0) as usize,
        n_layers: int(2).max(0) as usize,
        n_heads: int(3).max(0) as usize,
        n_kv_heads: int(4).max(0) as usize,
        vocab_size: v.unsigned_abs() as usize,
        seq_len: int(6).max(0) as usize,
        shared_classifier: v > 0,
    };
    h.config()
        .validate()
        .map_err(|e| format!("not a llama2.c checkpoint ({e})"))?;
    if !h.dim.is_multiple_of(h.n_heads) {
        return Err(format!(
            "not a llama2.c checkpoint (dim {} is not a multiple of n_heads {})",
            h.dim, h.n_heads
        ));
    }
    Ok(h)
}

/// Reads a legacy llama2.c checkpoint: its Llama config and the weights under Hugging Face
/// Llama names, queries and keys permuted to the rotate-half convention.
pub fn read_checkpoint(
    path: &Path,
    device: &Device,
) -> Result<(LlamaConfig, HashMap<String, Tensor>)> {
    let err = |msg: String| candle_core::Error::Msg(format!("{}: {msg}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let h = read_header(&bytes).map_err(err)?;
    let payload = &bytes[28..];
    let expected = h.expected_floats();
    if payload.len() != 4 * expected {
        return Err(err(format!(
            "holds {} bytes of weights, but its header (dim {}, hidden {}, {} layers, {} heads, \
             {} kv heads, vocab {}, seq {}) needs {}: the file is truncated or not a legacy \
             llama2.c checkpoint",
            payload.len(),
            h.dim,
            h.hidden_dim,
            h.n_layers,
            h.n_heads,
            h.n_kv_heads,
            h.vocab_size,
            h.seq_len,
            4 * expected
        )));
    }
    let floats: Vec<f32> = payload
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let cfg = h.config();
    let mut reader = Reader {
        data: &floats,
        pos: 0,
        device,
    };
    let (d, hd, l) = (h.dim, h.hidden_dim, h.n_layers);
    let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
    let hs = cfg.head_dim;

    let mut t = HashMap::new();
    let embed = reader.take(&[h.vocab_size, d])?;
    t.insert("model.embed_tokens.weight".to_string(), embed.clone());
    let layer = |i: usize, name: &str| format!("model.layers.{i}.{name}.weight");
    // Each group holds every layer's tensor of one kind, one layer after another.
    let groups: [(&str, [usize; 2]); 4] = [
        ("input_layernorm", [1, d]),
        ("self_attn.q_proj", [q, d]),
        ("self_attn.k_proj", [kv, d]),
        ("self_attn.v_proj", [kv, d]),
    ];
    for (name, shape) in groups {
        for i in 0..l {
            let w = reader.take(&shape)?;
            let w = match name {
                "input_layernorm" => w.flatten_all()?,
                "self_attn.q_proj" => interleaved_to_halves(&w, h.n_heads, hs)?,
                "self_attn.k_proj" => interleaved_to_halves(&w, h.n_kv_heads, hs)?,
                _ => w,
            };
            t.insert(layer(i, name), w);
        }
    }
    let groups: [(&str, [usize; 2]); 5] = [
        ("self_attn.o_proj", [d, q]),
        ("post_attention_layernorm", [1, d]),
        ("mlp.gate_proj", [hd, d]),
        ("mlp.down_proj", [d, hd]),
        ("mlp.up_proj", [hd, d]),
    ];
    for (name, shape) in groups {
        for i in 0..l {
            let w = reader.take(&shape)?;
            let w = if shape[0] == 1 { w.flatten_all()? } else { w };
            t.insert(layer(i, name), w);
        }
    }
    t.insert("model.norm.weight".to_string(), reader.take(&[d])?);
    reader.skip(h.seq_len * hs); // freq_cis_real, freq_cis_imag: (seq_len, hs / 2) each
    let head = if h.shared_classifier {
        embed
    } else {
        reader.take(&[h.vocab_size, d])?
    };
    t.insert("lm_head.weight".to_string(), head);
    Ok((cfg, t))
}

/// Loads a llama2.c checkpoint as a Muse Llama, for generation.
pub fn load_llama2c(path: &Path, device: &Device) -> Result<Llama> {
    let (cfg, tensors) = read_checkpoint(path, device)?;
    Llama::new(
        &cfg,
        candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, device),
    )
}

/// Reorders the rows of each head from interleaved pairs `(x0, x1), (x2, x3), ...` to halves
/// `(x0, x2, ...), (x1, x3, ...)` (transformers' `permute`).
///
/// # Shapes
/// `w`: (n_heads * hs, in) -> (n_heads * hs, in).
fn interleaved_to_halves(w: &Tensor, n_heads: usize, hs: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    w.reshape((n_heads, hs / 2, 2, cols))? // (nh, hs/2, 2, in)
        .transpose(1, 2)? // (nh, 2, hs/2, in)
        .contiguous()?
        .reshape((rows, cols))
}

/// Sequential reader over the checkpoint's floats.
struct Reader<'a> {
    data: &'a [f32],
    pos: usize,
    device: &'a Device,
}

impl Reader<'_> {
    fn take(&mut self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let slice = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Tensor::from_slice(slice, shape, self.device)
    }

    fn skip(&mut self, n: usize) {
        self.pos += n;
    }
}
