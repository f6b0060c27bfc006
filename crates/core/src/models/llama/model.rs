//! Llama: a decoder-only transformer with RMSNorm, rotary position embeddings, a SwiGLU MLP and
//! grouped-query attention ("LLaMA: Open and Efficient Foundation Language Models", Touvron et
//! al. 2023; "Llama 2", Touvron et al. 2023; RoPE from Su et al. 2021, "RoFormer"; SwiGLU from
//! Shazeer 2020; GQA from Ainslie et al. 2023).
//!
//! Tensor names follow Hugging Face `LlamaForCausalLM` (`model.layers.0.self_attn.q_proj.weight`,
//! linear weights stored `(out, in)`), and RoPE uses transformers' rotate-half convention
//! (the two halves of each head are the real and imaginary parts), so HF folders load as they
//! are. Checkpoints in the interleaved convention (Meta's, llama2.c's) are permuted on load
//! (see [`super::super::llama2c`]).

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::LlamaConfig;
use crate::models::CausalLm;
use crate::nn::attention::causal_attention;
use crate::nn::ops::{self, WeightLayout};
use crate::nn::{Dropout, Embedding, KvCache, Linear, RmsNorm};

/// Cosine and sine of every (position, frequency) pair, in transformers' convention:
/// frequency `i` is `theta^(-2i / head_dim)`.
#[derive(Clone, Debug)]
struct Rope {
    /// (max_positions, head_dim / 2)
    cos: Tensor,
    /// (max_positions, head_dim / 2)
    sin: Tensor,
}

impl Rope {
    fn new(cfg: &LlamaConfig, dtype: DType, dev: &Device) -> Result<Self> {
        let half = cfg.head_dim / 2;
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64))
            .collect();
        let n = cfg.max_position_embeddings;
        let angles: Vec<f64> = (0..n)
            .flat_map(|p| inv_freq.iter().map(move |f| p as f64 * f))
            .collect();
        let table = |f: fn(f64) -> f64| {
            let v: Vec<f32> = angles.iter().map(|&a| f(a) as f32).collect();
            Tensor::from_vec(v, (n, half), dev)?.to_dtype(dtype)
        };
        Ok(Self {
            cos: table(f64::cos)?,
            sin: table(f64::sin)?,
        })
    }

    /// Rotates `x` whose first position sits at absolute position `offset`.
    ///
    /// # Shapes
    /// `x`: (B, T, H, hs) -> (B, T, H, hs).
    fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (_b, t, _h, hs) = x.dims4()?;
        let cos = self.cos.narrow(0, offset, t)?; // (T, hs/2)
        let sin = self.sin.narrow(0, offset, t)?; // (T, hs/2)
        if !x.track_op() {
            // candle's fused kernel: same maths, no backward.
            return candle_nn::rotary_emb::rope_thd(&x.contiguous()?, &cos, &sin);
        }
        // Differentiable composed form: x * cos + rotate_half(x) * sin.
        let cos = Tensor::cat(&[&cos, &cos], D::Minus1)?.reshape((1, t, 1, hs))?; // (1, T, 1, hs)
        let sin = Tensor::cat(&[&sin, &sin], D::Minus1)?.reshape((1, t, 1, hs))?; // (1, T, 1, hs)
        let x1 = x.narrow(D::Minus1, 0, hs / 2)?;
        let x2 = x.narrow(D::Minus1, hs / 2, hs / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?; // (B, T, H, hs)
        x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
    }
}

/// Grouped-query causal self-attention with rotary positions.
#[derive(Clone, Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.hidden_size;
        let lin = |i, o, name| Linear::new(i, o, false, WeightLayout::OutIn, vb.pp(name));
        Ok(Self {
            q_proj: lin(c, cfg.q_dim(), "q_proj")?,
            k_proj: lin(c, cfg.kv_dim(), "k_proj")?,
            v_proj: lin(c, cfg.kv_dim(), "v_proj")?,
            o_proj: lin(cfg.q_dim(), c, "o_proj")?,
            n_head: cfg.num_attention_heads,
            n_kv_head: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
        })
    }

    /// Attention of `x` (first position at `offset`) over itself, or over the cached positions
    /// and itself when `cache` is given (its keys and values are appended).
    ///
    /// # Shapes
    /// `x`: (B, T, C) -> (B, T, C).
    fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        offset: usize,
        cache: Option<(&mut KvCache, usize)>,
        dropout: &mut Dropout,
    ) -> Result<Tensor> {
        let (b, t, _c) = x.dims3()?;
        let (nh, nkv, hs) = (self.n_head, self.n_kv_head, self.head_dim);
        let q = self.q_proj.forward(x)?.reshape((b, t, nh, hs))?; // (B, T, nh, hs)
        let k = self.k_proj.forward(x)?.reshape((b, t, nkv, hs))?; // (B, T, nkv, hs)
        let v = self.v_proj.forward(x)?; // (B, T, nkv * hs)
        let q = rope.apply(&q, offset)?.reshape((b, t, nh * hs))?; // (B, T, nh * hs)
        let k = rope.apply(&k, offset)?.reshape((b, t, nkv * hs))?; // (B, T, nkv * hs)
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v)?, // (B, offset + T, nkv * hs)
            None => (k, v),
        };
        let y = causal_attention(&q, &k, &v, nh, nkv, dropout)?; // (B, T, nh * hs)
        self.o_proj.forward(&y)
    }
}

/// The SwiGLU feed-forward network: `down(silu(gate(x)) * up(x))`.
#[derive(Clone, Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (c, h) = (cfg.hidden_size, cfg.intermediate_size);
        let lin = |i, o, name| Linear::new(i, o, false, WeightLayout::OutIn, vb.pp(name));
        Ok(Self {
            gate_proj: lin(c, h, "gate_proj")?,
            up_proj: lin(c, h, "up_proj")?,
            down_proj: lin(h, c, "down_proj")?,
        })
    }

    /// # Shapes
    /// `x`: (B, T, C) -> (B, T, C).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?; // (B, T, H)
        let h = ops::swiglu(&gate, &self.up_proj.forward(x)?)?; // (B, T, H)
        self.down_proj.forward(&h)
    }
}

/// One block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Clone, Debug)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let norm = |name| RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp(name));
        Ok(Self {
            input_layernorm: norm("input_layernorm")?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        offset: usize,
        cache: Option<(&mut KvCache, usize)>,
        dropout: &mut Dropout,
    ) -> Result<Tensor> {
        let h = self.input_layernorm.forward(x)?;
        let x = (x + self.self_attn.forward(&h, rope, offset, cache, dropout)?)?;
        let h = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&x)?)?;
        x + h
    }
}

/// The Llama language model.
#[derive(Clone, Debug)]
pub struct Llama {
    cfg: LlamaConfig,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
}

impl Llama {
    /// Builds the model under `vb` (fresh from a `VarMap`, or loaded from safetensors).
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let m = vb.pp("model");
        let embed_tokens = Embedding::new(cfg.vocab_size, cfg.hidden_size, m.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Block::new(cfg, m.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear {
                weight: embed_tokens.weight.clone(),
                bias: None,
                layout: WeightLayout::OutIn,
                lora: None,
            }
        } else {
            Linear::new(
                cfg.hidden_size,
                cfg.vocab_size,
                false,
                WeightLayout::OutIn,
                vb.pp("lm_head"),
            )?
        };
        let rope = Rope::new(
            cfg,
            embed_tokens.weight.dtype(),
            embed_tokens.weight.device(),
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Logits for every position: the training and evaluation forward. Changes no state;
    /// `dropout` (on the attention weights) is [`Dropout::eval`] outside training.
    ///
    /// # Shapes
    /// `idx`: (B, T) u32 with T <= max_position_embeddings -> (B * T, vocab).
    pub fn forward(&self, idx: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let (_b, t) = idx.dims2()?;
        self.check_len(t, 0)?;
        let mut x = self.embed_tokens.forward(idx)?; // (B, T, C)
        for block in &self.layers {
            x = block.forward(&x, &self.rope, 0, None, dropout)?;
        }
        let x = self.norm.forward(&x)?.flatten_to(1)?; // (B * T, C)
        self.lm_head.forward(&x) // (B * T, V)
    }

    /// Mean next-token cross-entropy of `idx` against `targets` (ids equal to
    /// [`ops::IGNORE_INDEX`] are skipped).
    ///
    /// # Shapes
    /// `idx`, `targets`: (B, T) u32 -> scalar.
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let logits = self.forward(idx, dropout)?;
        ops::cross_entropy(&logits, &targets.flatten_all()?)
    }

    fn check_len(&self, t: usize, offset: usize) -> Result<()> {
        if offset + t > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {} positions exceeds the context of {}",
                offset + t,
                self.cfg.max_position_embeddings
            );
        }
        Ok(())
    }
}

impl CausalLm for Llama {
    fn context_len(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn device(&self) -> &Device {
        self.embed_tokens.weight.device()
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn new_cache(&self, batch: usize) -> Result<KvCache> {
        let w = &self.embed_tokens.weight;
        KvCache::new(
            self.cfg.num_hidden_layers,
            batch,
            self.cfg.max_position_embeddings,
            self.cfg.kv_dim(),
            w.dtype(),
            w.device(),
        )
    }

    fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (_b, t) = ids.dims2()?;
        let offset = cache.len();
        self.check_len(t, offset)?;
        let mut x = self.embed_tokens.forward(ids)?; // (B, T_new, C)
        let mut dropout = Dropout::eval();
        for (i, block) in self.layers.iter().enumerate() {
            x = block.forward(&x, &self.rope, offset, Some((cache, i)), &mut dropout)?;
        }
        cache.advance(t);
        let last = self.norm.forward(&x.narrow(1, t - 1, 1)?.squeeze(1)?)?; // (B, C)
        self.lm_head.forward(&last) // (B, V)
    }
}

/// Llama's initialisation for fresh weights: N(0, 0.02) for matrices and embeddings, unit
/// RMSNorm gains (transformers' `_init_weights`).
pub fn llama_init(name: &str, dims: &[usize]) -> crate::nn::Init {
    let _ = name;
    if dims.len() < 2 {
        crate::nn::Init::Const(1.0)
    } else {
        crate::nn::Init::Normal(0.02)
    }
}

/// The number of parameters, counting a tied head once.
pub fn parameter_count(cfg: &LlamaConfig) -> usize {
    let c = cfg.hidden_size;
    let attn = c * cfg.q_dim() * 2 + c * cfg.kv_dim() * 2;
    let mlp = 3 * c * cfg.intermediate_size;
    let block = attn + mlp + 2 * c;
    let head = if cfg.tie_word_embeddings {
        0
    } else {
        cfg.vocab_size * c
    };
    cfg.vocab_size * c + cfg.num_hidden_layers * block + c + head
}
