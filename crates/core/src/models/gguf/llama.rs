//! Llama from a GGUF file, with quantised weights: the architecture of
//! [`crate::models::llama`] (Touvron et al. 2023: RMSNorm, rotary positions, SwiGLU MLP,
//! grouped-query attention) run through candle's quantised matmul (`QMatMul`), so Q4/Q8/K-quant
//! weights stay quantised in memory.
//!
//! Tensor names are llama.cpp's (`token_embd`, `blk.N.attn_q`, `output_norm`, ...). llama.cpp's
//! converter permutes the query and key rows of Hugging Face checkpoints into Meta's interleaved
//! rotary layout, so rotation here pairs neighbouring dimensions (`rope_i`), not the two halves
//! of a head as transformers does.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Result, Tensor};

use super::GgufFile;
use crate::models::CausalLm;
use crate::models::llama::LlamaConfig;
use crate::nn::attention::causal_attention;
use crate::nn::ops::q4_1::Q4_1Matrix;
use crate::nn::ops::q8_0::Q8_0Matrix;
use crate::nn::ops::row_chunks::RowChunks;
use crate::nn::ops::{rms_norm, swiglu};
use crate::nn::{Dropout, KvCache};

/// Reads the Llama architecture from `llama.*` metadata, in Hugging Face field names.
pub fn config_from_gguf(f: &GgufFile) -> Result<LlamaConfig> {
    let hidden_size = f.usize("llama.embedding_length")?;
    let num_attention_heads = f.usize("llama.attention.head_count")?;
    let head_dim = match f.usize_opt("llama.attention.key_length")? {
        Some(d) => d,
        None => hidden_size / num_attention_heads.max(1),
    };
    let vocab_size = match f.usize_opt("llama.vocab_size")? {
        Some(v) => v,
        None => match f.get("tokenizer.ggml.tokens") {
            Some(candle_core::quantized::gguf_file::Value::Array(a)) => a.len(),
            _ => f.content.tensor_infos["token_embd.weight"].shape.dims()[0],
        },
    };
    let cfg = LlamaConfig {
        vocab_size,
        hidden_size,
        intermediate_size: f.usize("llama.feed_forward_length")?,
        num_hidden_layers: f.usize("llama.block_count")?,
        num_attention_heads,
        num_key_value_heads: f
            .usize_opt("llama.attention.head_count_kv")?
            .unwrap_or(num_attention_heads),
        head_dim,
        max_position_embeddings: f.usize("llama.context_length")?,
        rms_norm_eps: f
            .f64_opt("llama.attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-5),
        rope_theta: f.f64_opt("llama.rope.freq_base")?.unwrap_or(10_000.0),
        tie_word_embeddings: !f.has_tensor("output.weight"),
        bos_token_id: f
            .usize_opt("tokenizer.ggml.bos_token_id")?
            .map(|v| v as u32),
        eos_token_id: f
            .usize_opt("tokenizer.ggml.eos_token_id")?
            .map(|v| v as u32),
    };
    cfg.validate()
        .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", f.path.display())))?;
    Ok(cfg)
}

/// A weight matrix as it multiplies: candle's quantised matmul (in row chunks over Muse's
/// threads, [`crate::nn::ops::row_chunks`]), or Muse's Q4_1 and Q8_0 kernels on the CPU
/// (candle's Q4_1 is its scalar fallback; see [`crate::nn::ops::q4_1`] and
/// [`crate::nn::ops::q8_0`]).
#[derive(Debug)]
enum QLinear {
    Candle(RowChunks),
    Q4_1(Q4_1Matrix),
    Q8_0(Q8_0Matrix),
}

impl QLinear {
    fn new(t: QTensor) -> Result<Self> {
        if t.device().is_cpu() {
            let (rows, cols) = t.shape().dims2()?;
            match t.dtype() {
                GgmlDType::Q4_1 => {
                    return Ok(Self::Q4_1(Q4_1Matrix::from_ggml(&t.data()?, rows, cols)?));
                }
                GgmlDType::Q8_0 => {
                    return Ok(Self::Q8_0(Q8_0Matrix::from_ggml(&t.data()?, rows, cols)?));
                }
                _ => {}
            }
        }
        // Block formats multiply on the kernel pool in chunks, one a thread.
        RowChunks::new(t, crate::device::cpu_threads()).map(Self::Candle)
    }

    /// # Shapes
    /// `x`: (..., in) -> (..., out).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(m) => m.forward(x),
            Self::Q4_1(m) => m.forward(x),
            Self::Q8_0(m) => m.forward(x),
        }
    }

    /// Rows `ids` as f32: the matrix as a token embedding, left quantised.
    ///
    /// # Shapes
    /// `ids`: (...) u32 -> (..., in).
    fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(m) => m.embedding(ids),
            Self::Q4_1(m) => m.embedding(ids),
            Self::Q8_0(m) => m.embedding(ids),
        }
    }
}

/// One block's weights.
#[derive(Debug)]
struct Block {
    attn_norm: Tensor,
    attn_q: QLinear,
    attn_k: QLinear,
    attn_v: QLinear,
    attn_output: QLinear,
    ffn_norm: Tensor,
    ffn_gate: QLinear,
    ffn_up: QLinear,
    ffn_down: QLinear,
}

/// The Llama language model with quantised weights.
#[derive(Debug)]
pub struct QLlama {
    cfg: LlamaConfig,
    /// (vocab, C), kept in the file's type: rows are widened as tokens are looked up, so a
    /// Q8_0 table is not held as f32 too (SmolLM2: 30 MB, not 113).
    token_embd: QLinear,
    blocks: Vec<Block>,
    output_norm: Tensor,
    /// The head; `None` when it is tied to `token_embd`, which then multiplies as well.
    output: Option<QLinear>,
    /// (max_positions, head_dim / 2) each.
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// The weight types of a model, for messages ("Q4_1 x210, F32 x61").
pub fn weight_types(f: &GgufFile) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for info in f.content.tensor_infos.values() {
        *counts.entry(format!("{:?}", info.ggml_dtype)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(t, n)| format!("{t} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl QLlama {
    /// Loads the model of `f` (its `general.architecture` must be `llama`).
    pub fn load(f: &mut GgufFile, device: &Device) -> Result<Self> {
        let arch = f.architecture()?;
        if arch != "llama" {
            candle_core::bail!("architecture '{arch}' is not a Llama");
        }
        let cfg = config_from_gguf(f)?;
        let embd = f.tensor("token_embd.weight", device)?; // (V, C)
        check_shape(
            f,
            "token_embd.weight",
            embd.shape().dims(),
            (cfg.vocab_size, cfg.hidden_size),
        )?;
        let token_embd = QLinear::new(embd)?;
        let output = if cfg.tie_word_embeddings {
            None
        } else {
            Some(QLinear::new(f.tensor("output.weight", device)?)?)
        };
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let mut mm = |name: &str, shape: (usize, usize)| -> Result<QLinear> {
                let t = f.tensor(&format!("blk.{i}.{name}.weight"), device)?;
                check_shape(
                    f,
                    &format!("blk.{i}.{name}.weight"),
                    t.shape().dims(),
                    shape,
                )?;
                QLinear::new(t)
            };
            let (c, h) = (cfg.hidden_size, cfg.intermediate_size);
            let attn_q = mm("attn_q", (cfg.q_dim(), c))?;
            let attn_k = mm("attn_k", (cfg.kv_dim(), c))?;
            let attn_v = mm("attn_v", (cfg.kv_dim(), c))?;
            let attn_output = mm("attn_output", (c, cfg.q_dim()))?;
            let ffn_gate = mm("ffn_gate", (h, c))?;
            let ffn_up = mm("ffn_up", (h, c))?;
            let ffn_down = mm("ffn_down", (c, h))?;
            let mut norm = |name: &str| -> Result<Tensor> {
                f.tensor(&format!("blk.{i}.{name}.weight"), device)?
                    .dequantize(device)
            };
            blocks.push(Block {
                attn_norm: norm("attn_norm")?,
                ffn_norm: norm("ffn_norm")?,
                attn_q,
                attn_k,
                attn_v,
                attn_output,
                ffn_gate,
                ffn_up,
                ffn_down,
            });
        }
        let output_norm = f.tensor("output_norm.weight", device)?.dequantize(device)?;
        let (cos, sin) = rope_tables(&cfg, device)?;
        Ok(Self {
            cfg,
            token_embd,
            blocks,
            output_norm,
            output,
            cos,
            sin,
            device: device.clone(),
        })
    }

    /// The output head: its own matrix, or the token embedding when they are tied.
    fn head(&self) -> &QLinear {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// The token embeddings of `idx` (the input of the first block).
    ///
    /// # Shapes
    /// `idx`: (B, T) u32 -> (B, T, C).
    pub fn embed(&self, idx: &Tensor) -> Result<Tensor> {
        self.token_embd.embedding(idx)
    }

    /// The architecture, in Hugging Face field names.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Logits for every position (evaluation forward; no cache).
    ///
    /// # Shapes
    /// `idx`: (B, T) u32 -> (B * T, vocab).
    pub fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        let x = self.hidden(idx, 0, None)?; // (B, T, C)
        let x = rms_norm(&x, &self.output_norm, self.cfg.rms_norm_eps)?.flatten_to(1)?; // (B * T, C)
        self.head().forward(&x)
    }

    /// The residual stream after every block, for `idx` whose first position is `offset`.
    ///
    /// # Shapes
    /// `idx`: (B, T) u32 -> (B, T, C).
    fn hidden(
        &self,
        idx: &Tensor,
        offset: usize,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (_b, t) = idx.dims2()?;
        if offset + t > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {} positions exceeds the context of {}",
                offset + t,
                self.cfg.max_position_embeddings
            );
        }
        let mut x = self.embed(idx)?; // (B, T, C)
        let cos = self.cos.narrow(0, offset, t)?; // (T, hs/2)
        let sin = self.sin.narrow(0, offset, t)?; // (T, hs/2)
        let eps = self.cfg.rms_norm_eps;
        for (i, blk) in self.blocks.iter().enumerate() {
            let h = rms_norm(&x, &blk.attn_norm, eps)?;
            let y = self.attention(blk, &h, &cos, &sin, cache.as_deref_mut().map(|c| (c, i)))?;
            x = (x + y)?;
            x = (&x + self.mlp(blk, &x)?)?;
        }
        Ok(x)
    }

    /// The block's feed-forward half: RMSNorm, then the SwiGLU MLP.
    ///
    /// # Shapes
    /// `x`: (..., C) -> (..., C).
    fn mlp(&self, blk: &Block, x: &Tensor) -> Result<Tensor> {
        let h = rms_norm(x, &blk.ffn_norm, self.cfg.rms_norm_eps)?;
        let gate = blk.ffn_gate.forward(&h)?; // (..., H)
        let up = blk.ffn_up.forward(&h)?; // (..., H)
        blk.ffn_down.forward(&swiglu(&gate, &up)?)
    }

    /// # Shapes
    /// `x`: (B, T, C) -> (B, T, C).
    fn attention(
        &self,
        blk: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Tensor> {
        let q = blk.attn_q.forward(x)?; // (B, T, nh * hs)
        let k = blk.attn_k.forward(x)?; // (B, T, nkv * hs)
        let v = blk.attn_v.forward(x)?; // (B, T, nkv * hs)
        let y = self.attend(&q, &k, &v, cos, sin, cache)?;
        blk.attn_output.forward(&y)
    }

    /// Rotary positions on the projected queries and keys, the cache, and causal attention.
    ///
    /// # Shapes
    /// `q`: (B, T, nh * hs), `k`, `v`: (B, T, nkv * hs), `cos`, `sin`: (T, hs / 2)
    /// -> (B, T, nh * hs).
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Tensor> {
        let (b, t, _) = q.dims3()?;
        let (nh, nkv, hs) = (
            self.cfg.num_attention_heads,
            self.cfg.num_key_value_heads,
            self.cfg.head_dim,
        );
        let rope = |y: &Tensor, heads: usize| -> Result<Tensor> {
            let y = y
                .reshape((b, t, heads, hs))?
                .transpose(1, 2)?
                .contiguous()?; // (B, H, T, hs)
            candle_nn::rotary_emb::rope_i(&y, cos, sin)?
                .transpose(1, 2)? // (B, T, H, hs)
                .reshape((b, t, heads * hs))
        };
        let q = rope(q, nh)?;
        let k = rope(k, nkv)?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, v)?, // (B, offset + T, nkv * hs)
            None => (k, v.clone()),
        };
        causal_attention(&q.contiguous()?, &k, &v, nh, nkv, &mut Dropout::eval())
    }

    /// [`CausalLm::forward_step_many`]: the projections, the MLP and the head take the n
    /// tokens as one (n, 1, C) batch, so each quantised matrix is read once per step for all
    /// of them; rotary positions, the cache and attention are each sequence's own.
    fn step_many(&self, ids: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        let n = ids.len();
        if n != caches.len() {
            candle_core::bail!("{n} tokens for {} caches", caches.len());
        }
        if let Some(full) = caches
            .iter()
            .find(|c| c.len() >= self.cfg.max_position_embeddings)
        {
            candle_core::bail!(
                "a sequence of {} positions has no room in the context of {}",
                full.len(),
                self.cfg.max_position_embeddings
            );
        }
        let offsets: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        let mut x = self.embed(&Tensor::from_slice(ids, (n, 1), &self.device)?)?; // (n, 1, C)
        let eps = self.cfg.rms_norm_eps;
        for (layer, blk) in self.blocks.iter().enumerate() {
            let h = rms_norm(&x, &blk.attn_norm, eps)?;
            let q = blk.attn_q.forward(&h)?; // (n, 1, nh * hs)
            let k = blk.attn_k.forward(&h)?; // (n, 1, nkv * hs)
            let v = blk.attn_v.forward(&h)?; // (n, 1, nkv * hs)
            let ys = (0..n)
                .map(|s| {
                    let cos = self.cos.narrow(0, offsets[s], 1)?;
                    let sin = self.sin.narrow(0, offsets[s], 1)?;
                    let one = |t: &Tensor| t.narrow(0, s, 1);
                    let cache = Some((&mut *caches[s], layer));
                    self.attend(&one(&q)?, &one(&k)?, &one(&v)?, &cos, &sin, cache)
                })
                .collect::<Result<Vec<_>>>()?;
            x = (x + blk.attn_output.forward(&Tensor::cat(&ys, 0)?)?)?;
            x = (&x + self.mlp(blk, &x)?)?;
        }
        for cache in caches.iter_mut() {
            cache.advance(1);
        }
        let last = rms_norm(&x.squeeze(1)?, &self.output_norm, eps)?; // (n, C)
        self.head().forward(&last) // (n, V)
    }
}

fn check_shape(f: &GgufFile, name: &str, dims: &[usize], want: (usize, usize)) -> Result<()> {
    if dims != [want.0, want.1] {
        return Err(candle_core::Error::Msg(format!(
            "{}: {name} has shape {dims:?}, the metadata says {want:?}: the file is damaged",
            f.path.display()
        )));
    }
    Ok(())
}

/// Cosine and sine of every (position, frequency) pair: frequency `i` is
/// `theta^(-2i / head_dim)`.
fn rope_tables(cfg: &LlamaConfig, dev: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let n = cfg.max_position_embeddings;
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64))
        .collect();
    let table = |f: fn(f64) -> f64| -> Result<Tensor> {
        let v: Vec<f32> = (0..n)
            .flat_map(|p| inv_freq.iter().map(move |w| f(p as f64 * w) as f32))
            .collect();
        Tensor::from_vec(v, (n, half), dev)
    };
    Ok((table(f64::cos)?, table(f64::sin)?))
}

impl CausalLm for QLlama {
    fn context_len(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn new_cache(&self, batch: usize) -> Result<KvCache> {
        KvCache::new(
            self.cfg.num_hidden_layers,
            batch,
            self.cfg.max_position_embeddings,
            self.cfg.kv_dim(),
            DType::F32,
            &self.device,
        )
    }

    fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let t = ids.dim(1)?;
        let offset = cache.len();
        let x = self.hidden(ids, offset, Some(cache))?; // (B, T_new, C)
        cache.advance(t);
        let last = x.narrow(1, t - 1, 1)?.squeeze(1)?; // (B, C)
        let last = rms_norm(&last, &self.output_norm, self.cfg.rms_norm_eps)?;
        self.head().forward(&last) // (B, V)
    }

    fn forward_step_many(&self, ids: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        self.step_many(ids, caches)
    }
}
