//! GPT: a decoder-only transformer language model ("Language Models are Unsupervised Multitask
//! Learners", Radford et al. 2019), in the pre-LayerNorm form of GPT-2 and nanoGPT.
//!
//! Tensor names follow Hugging Face `GPT2LMHeadModel` (`transformer.h.0.attn.c_attn.weight`,
//! linear weights stored `(in, out)`), so checkpoints move between Muse and transformers.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{Activation, GptConfig};
use crate::models::CausalLm;
use crate::nn::attention::causal_attention;
use crate::nn::ops::{self, GeluKind, WeightLayout};
use crate::nn::{Dropout, Embedding, KvCache, LayerNorm, Linear};

/// Multi-head causal self-attention with a packed q|k|v projection.
#[derive(Clone, Debug)]
struct Attention {
    c_attn: Linear,
    c_proj: Linear,
    n_head: usize,
}

impl Attention {
    fn new(cfg: &GptConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.n_embd;
        Ok(Self {
            c_attn: Linear::new(c, 3 * c, cfg.bias, WeightLayout::InOut, vb.pp("c_attn"))?,
            c_proj: Linear::new(c, c, cfg.bias, WeightLayout::InOut, vb.pp("c_proj"))?,
            n_head: cfg.n_head,
        })
    }

    /// # Shapes
    /// `x`: (B, T, C) -> (B, T, C).
    fn forward(&self, x: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let c = x.dim(2)?;
        let qkv = self.c_attn.forward(x)?; // (B, T, 3C)
        let y = if dropout.is_active() {
            let (q, k, v) = (
                qkv.narrow(2, 0, c)?,
                qkv.narrow(2, c, c)?,
                qkv.narrow(2, 2 * c, c)?,
            );
            causal_attention(&q, &k, &v, self.n_head, self.n_head, dropout)?
        } else {
            ops::causal_self_attention(&qkv, self.n_head)?
        }; // (B, T, C)
        dropout.apply(&self.c_proj.forward(&y)?)
    }

    /// # Shapes
    /// `x`: (B, T_new, C) -> (B, T_new, C).
    fn forward_cached(&self, x: &Tensor, layer: usize, cache: &mut KvCache) -> Result<Tensor> {
        let c = x.dim(2)?;
        let qkv = self.c_attn.forward(x)?; // (B, T_new, 3C)
        let q = qkv.narrow(2, 0, c)?;
        let (k, v) = cache.append(layer, &qkv.narrow(2, c, c)?, &qkv.narrow(2, 2 * c, c)?)?;
        let y = causal_attention(&q, &k, &v, self.n_head, self.n_head, &mut Dropout::eval())?;
        self.c_proj.forward(&y)
    }
}

/// The position-wise feed-forward network: 4x expansion, GELU, projection.
#[derive(Clone, Debug)]
struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    gelu: GeluKind,
}

impl Mlp {
    fn new(cfg: &GptConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.n_embd;
        let gelu = match cfg.activation_function {
            Activation::Gelu => GeluKind::Erf,
            Activation::GeluNew => GeluKind::Tanh,
        };
        Ok(Self {
            c_fc: Linear::new(c, 4 * c, cfg.bias, WeightLayout::InOut, vb.pp("c_fc"))?,
            c_proj: Linear::new(4 * c, c, cfg.bias, WeightLayout::InOut, vb.pp("c_proj"))?,
            gelu,
        })
    }

    /// # Shapes
    /// `x`: (B, T, C) -> (B, T, C).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = ops::gelu(&self.c_fc.forward(x)?, self.gelu)?; // (B, T, 4C)
        self.c_proj.forward(&h)
    }
}

/// One transformer block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Clone, Debug)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &GptConfig, vb: VarBuilder) -> Result<Self> {
        let ln = |name| LayerNorm::new(cfg.n_embd, cfg.bias, cfg.layer_norm_epsilon, vb.pp(name));
        Ok(Self {
            ln_1: ln("ln_1")?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            ln_2: ln("ln_2")?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(&self, x: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, dropout)?)?;
        let h = dropout.apply(&self.mlp.forward(&self.ln_2.forward(&x)?)?)?;
        x + h
    }

    fn forward_cached(&self, x: &Tensor, layer: usize, cache: &mut KvCache) -> Result<Tensor> {
        let x = (x + self
            .attn
            .forward_cached(&self.ln_1.forward(x)?, layer, cache)?)?;
        &x + self.mlp.forward(&self.ln_2.forward(&x)?)?
    }
}

/// The GPT language model.
#[derive(Clone, Debug)]
pub struct Gpt {
    cfg: GptConfig,
    wte: Embedding,
    wpe: Embedding,
    h: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Linear,
}

impl Gpt {
    /// Builds the model under `vb` (fresh from a `VarMap`, or loaded from safetensors).
    pub fn new(cfg: &GptConfig, vb: VarBuilder) -> Result<Self> {
        let t = vb.pp("transformer");
        let wte = Embedding::new(cfg.vocab_size, cfg.n_embd, t.pp("wte"))?;
        let wpe = Embedding::new(cfg.n_positions, cfg.n_embd, t.pp("wpe"))?;
        let h = (0..cfg.n_layer)
            .map(|i| Block::new(cfg, t.pp("h").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::new(cfg.n_embd, cfg.bias, cfg.layer_norm_epsilon, t.pp("ln_f"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear {
                weight: wte.weight.clone(),
                bias: None,
                layout: WeightLayout::OutIn,
                lora: None,
            }
        } else {
            Linear::new(
                cfg.n_embd,
                cfg.vocab_size,
                false,
                WeightLayout::OutIn,
                vb.pp("lm_head"),
            )?
        };
        Ok(Self {
            cfg: cfg.clone(),
            wte,
            wpe,
            h,
            ln_f,
            lm_head,
        })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// Logits for every position: the training and evaluation forward. Changes no state;
    /// `dropout` is [`Dropout::eval`] outside training.
    ///
    /// # Shapes
    /// `idx`: (B, T) u32 with T <= n_positions -> (B * T, vocab).
    pub fn forward(&self, idx: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let (_b, t) = idx.dims2()?;
        self.check_len(t, 0)?;
        let pos = self.wpe.weight.narrow(0, 0, t)?; // (T, C)
        let mut x = dropout.apply(&self.wte.forward(idx)?.broadcast_add(&pos)?)?; // (B, T, C)
        for block in &self.h {
            x = block.forward(&x, dropout)?;
        }
        let x = self.ln_f.forward(&x)?;
        let x = x.flatten_to(1)?; // (B * T, C)
        self.lm_head.forward(&x) // (B * T, V)
    }

    /// Mean next-token cross-entropy of `idx` against `targets`.
    ///
    /// # Shapes
    /// `idx`, `targets`: (B, T) u32 -> scalar.
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let logits = self.forward(idx, dropout)?;
        ops::cross_entropy(&logits, &targets.flatten_all()?)
    }

    fn check_len(&self, t: usize, offset: usize) -> Result<()> {
        if offset + t > self.cfg.n_positions {
            candle_core::bail!(
                "sequence of {} positions exceeds the context of {}",
                offset + t,
                self.cfg.n_positions
            );
        }
        Ok(())
    }
}

impl CausalLm for Gpt {
    fn context_len(&self) -> usize {
        self.cfg.n_positions
    }

    fn device(&self) -> &candle_core::Device {
        self.wte.weight.device()
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn new_cache(&self, batch: usize) -> Result<KvCache> {
        let w = &self.wte.weight;
        KvCache::new(
            self.cfg.n_layer,
            batch,
            self.cfg.n_positions,
            self.cfg.n_embd,
            w.dtype(),
            w.device(),
        )
    }

    fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (_b, t) = ids.dims2()?;
        let offset = cache.len();
        self.check_len(t, offset)?;
        let pos = self.wpe.weight.narrow(0, offset, t)?; // (T_new, C)
        let mut x = self.wte.forward(ids)?.broadcast_add(&pos)?; // (B, T_new, C)
        for (i, block) in self.h.iter().enumerate() {
            x = block.forward_cached(&x, i, cache)?;
        }
        cache.advance(t);
        let last = self.ln_f.forward(&x.narrow(1, t - 1, 1)?.squeeze(1)?)?; // (B, C)
        self.lm_head.forward(&last) // (B, V)
    }
}

/// GPT-2's initialisation: N(0, 0.02) for matrices and embeddings, residual projections scaled
/// by 1/sqrt(2 n_layer), zero biases, unit LayerNorm gains.
pub fn gpt2_init(cfg: &GptConfig) -> impl Fn(&str, &[usize]) -> crate::nn::Init + '_ {
    move |name, dims| {
        use crate::nn::Init;
        if name.ends_with(".bias") {
            Init::Const(0.0)
        } else if dims.len() < 2 {
            Init::Const(1.0)
        } else if name.ends_with("c_proj.weight") {
            Init::Normal(0.02 / (2.0 * cfg.n_layer as f64).sqrt())
        } else {
            Init::Normal(0.02)
        }
    }
}

/// The number of parameters, counting tied weights once.
pub fn parameter_count(cfg: &GptConfig) -> usize {
    let c = cfg.n_embd;
    let b = usize::from(cfg.bias);
    let ln = c + b * c;
    let block = 2 * ln
        + (c * 3 * c + b * 3 * c)
        + (c * c + b * c)
        + (c * 4 * c + b * 4 * c)
        + (4 * c * c + b * c);
    let head = if cfg.tie_word_embeddings {
        0
    } else {
        cfg.vocab_size * c
    };
    cfg.vocab_size * c + cfg.n_positions * c + cfg.n_layer * block + ln + head
}

/// The dtype every GPT weight uses.
pub const DTYPE: DType = DType::F32;
