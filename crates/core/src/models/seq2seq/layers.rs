//! The layers of the encoder-decoder transformer (Vaswani et al. 2017, "Attention Is All You
//! Need"), in the pre-LayerNorm arrangement (Wang et al. 2019, "Learning Deep Transformer
//! Models for Machine Translation"; fairseq's `normalize_before`): each sub-layer computes
//! `x + dropout(f(LayerNorm(x)))`.
//!
//! Tensor names follow Hugging Face Marian/BART: `self_attn.{q,k,v,out}_proj`,
//! `self_attn_layer_norm`, `encoder_attn`, `encoder_attn_layer_norm`, `fc1`, `fc2`,
//! `final_layer_norm`; linear weights are stored `(out, in)` as `nn.Linear` stores them.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::Seq2SeqConfig;
use crate::nn::attention::{causal_attention, causal_mask};
use crate::nn::ops::{self, WeightLayout};
use crate::nn::{Dropout, KvCache, LayerNorm, Linear};

/// Scores added for keys that must not be seen (padding): softmax gives them nothing, and a
/// row of padding alone still gives finite numbers.
pub const MASKED: f64 = -1e9;

/// Multi-head attention with separate query, key, value and output projections.
#[derive(Clone, Debug)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    n_head: usize,
}

impl Attention {
    pub fn new(cfg: &Seq2SeqConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let lin = |name| Linear::new(d, d, true, WeightLayout::OutIn, vb.pp(name));
        Ok(Self {
            q_proj: lin("q_proj")?,
            k_proj: lin("k_proj")?,
            v_proj: lin("v_proj")?,
            out_proj: lin("out_proj")?,
            n_head: cfg.attention_heads,
        })
    }

    /// Keys and values of `memory`, computed once per source for cross-attention.
    ///
    /// # Shapes
    /// `memory`: (B, Tk, C) -> ((B, Tk, C), (B, Tk, C)).
    pub fn keys_values(&self, memory: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.k_proj.forward(memory)?, self.v_proj.forward(memory)?))
    }

    /// Attention of `x` over precomputed keys and values, with an additive `bias` (padding
    /// and/or causal mask).
    ///
    /// # Shapes
    /// `x`: (B, Tq, C); `k`, `v`: (B, Tk, C); `bias`: broadcastable to (B, nh, Tq, Tk)
    /// -> (B, Tq, C).
    pub fn attend(
        &self,
        x: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        dropout: &mut Dropout,
    ) -> Result<Tensor> {
        Ok(self.attend_weights(x, k, v, bias, dropout)?.0)
    }

    /// [`Attention::attend`], also returning the attention weights. (B, nh, Tq, Tk).
    pub fn attend_weights(
        &self,
        x: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        dropout: &mut Dropout,
    ) -> Result<(Tensor, Tensor)> {
        let q = self.q_proj.forward(x)?;
        let (y, att) = attend_with_weights(&q, k, v, self.n_head, bias, dropout)?;
        Ok((self.out_proj.forward(&y)?, att))
    }

    /// Self-attention over `x` itself.
    ///
    /// # Shapes
    /// `x`: (B, T, C) -> (B, T, C).
    pub fn self_attend(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        dropout: &mut Dropout,
    ) -> Result<Tensor> {
        let (k, v) = self.keys_values(x)?;
        self.attend(x, &k, &v, bias, dropout)
    }

    /// Causal self-attention of new positions over the cached ones and themselves.
    ///
    /// # Shapes
    /// `x`: (B, T_new, C) -> (B, T_new, C).
    pub fn self_attend_cached(
        &self,
        x: &Tensor,
        layer: usize,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let q = self.q_proj.forward(x)?;
        let (k, v) = self.keys_values(x)?;
        let (k, v) = cache.append(layer, &k, &v)?; // (B, len + T_new, C) each
        let y = causal_attention(&q, &k, &v, self.n_head, self.n_head, &mut Dropout::eval())?;
        self.out_proj.forward(&y)
    }
}

/// Scaled dot-product attention with an additive bias, returning the output and the
/// attention weights (before dropout).
///
/// # Shapes
/// `q`: (B, Tq, C); `k`, `v`: (B, Tk, C); `bias`: broadcastable to (B, nh, Tq, Tk)
/// -> ((B, Tq, C), (B, nh, Tq, Tk)).
pub fn attend_with_weights(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    n_head: usize,
    bias: Option<&Tensor>,
    dropout: &mut Dropout,
) -> Result<(Tensor, Tensor)> {
    let (b, tq, c) = q.dims3()?;
    let tk = k.dim(1)?;
    let hs = c / n_head;
    let heads = |x: &Tensor, t: usize| {
        x.reshape((b, t, n_head, hs))?.transpose(1, 2)?.contiguous() // (B, nh, T, hs)
    };
    let (q, k, v) = (heads(q, tq)?, heads(k, tk)?, heads(v, tk)?);
    let scores = q.matmul(&k.t()?)?; // (B, nh, Tq, Tk)
    let att = ops::softmax_last_dim_scaled(&scores, 1.0 / (hs as f64).sqrt(), bias)?;
    let y = dropout.apply(&att)?.matmul(&v)?; // (B, nh, Tq, hs)
    Ok((y.transpose(1, 2)?.reshape((b, tq, c))?, att)) // (B, Tq, C)
}

/// The causal mask of `t` positions as an additive bias.
///
/// # Shapes
/// -> (T, T).
pub fn causal_bias(t: usize, like: &Tensor) -> Result<Tensor> {
    causal_mask(t, t, 0, like.dtype(), like.device())
}

/// The position-wise feed-forward network: `fc2(relu(fc1(x)))`.
#[derive(Clone, Debug)]
pub struct FeedForward {
    fc1: Linear,
    fc2: Linear,
}

impl FeedForward {
    pub fn new(cfg: &Seq2SeqConfig, vb: VarBuilder) -> Result<Self> {
        let (d, f) = (cfg.d_model, cfg.ffn_dim);
        Ok(Self {
            fc1: Linear::new(d, f, true, WeightLayout::OutIn, vb.pp("fc1"))?,
            fc2: Linear::new(f, d, true, WeightLayout::OutIn, vb.pp("fc2"))?,
        })
    }

    /// # Shapes
    /// `x`: (B, T, C) -> (B, T, C).
    pub fn forward(&self, x: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let h = ops::relu(&self.fc1.forward(x)?)?; // (B, T, F)
        self.fc2.forward(&dropout.apply(&h)?)
    }
}

fn layer_norm(cfg: &Seq2SeqConfig, vb: VarBuilder) -> Result<LayerNorm> {
    LayerNorm::new(cfg.d_model, true, cfg.layer_norm_eps, vb)
}

/// One encoder layer: self-attention over the source (padding masked), then feed-forward.
#[derive(Clone, Debug)]
pub struct EncoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    ffn: FeedForward,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    pub fn new(cfg: &Seq2SeqConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            self_attn_layer_norm: layer_norm(cfg, vb.pp("self_attn_layer_norm"))?,
            ffn: FeedForward::new(cfg, vb.clone())?,
            final_layer_norm: layer_norm(cfg, vb.pp("final_layer_norm"))?,
        })
    }

    /// # Shapes
    /// `x`: (B, Ts, C), `src_bias`: (B, 1, 1, Ts) -> (B, Ts, C).
    pub fn forward(&self, x: &Tensor, src_bias: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let h = self.self_attn_layer_norm.forward(x)?;
        let h = self.self_attn.self_attend(&h, Some(src_bias), dropout)?;
        let x = (x + dropout.apply(&h)?)?;
        let h = self
            .ffn
            .forward(&self.final_layer_norm.forward(&x)?, dropout)?;
        &x + dropout.apply(&h)?
    }
}

/// One decoder layer: causal self-attention, cross-attention over the encoder states (source
/// padding masked), feed-forward.
#[derive(Clone, Debug)]
pub struct DecoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    pub(super) encoder_attn: Attention,
    encoder_attn_layer_norm: LayerNorm,
    ffn: FeedForward,
    final_layer_norm: LayerNorm,
}

impl DecoderLayer {
    pub fn new(cfg: &Seq2SeqConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            self_attn_layer_norm: layer_norm(cfg, vb.pp("self_attn_layer_norm"))?,
            encoder_attn: Attention::new(cfg, vb.pp("encoder_attn"))?,
            encoder_attn_layer_norm: layer_norm(cfg, vb.pp("encoder_attn_layer_norm"))?,
            ffn: FeedForward::new(cfg, vb.clone())?,
            final_layer_norm: layer_norm(cfg, vb.pp("final_layer_norm"))?,
        })
    }

    /// The training forward over every target position.
    ///
    /// # Shapes
    /// `x`: (B, Tt, C); `causal`: (Tt, Tt); `cross_kv`: (B, Ts, C) each; `src_bias`:
    /// (B, 1, 1, Ts) -> (B, Tt, C).
    pub fn forward(
        &self,
        x: &Tensor,
        causal: &Tensor,
        cross_kv: (&Tensor, &Tensor),
        src_bias: &Tensor,
        dropout: &mut Dropout,
    ) -> Result<Tensor> {
        let h = self.self_attn_layer_norm.forward(x)?;
        let h = self.self_attn.self_attend(&h, Some(causal), dropout)?;
        let x = (x + dropout.apply(&h)?)?;
        Ok(self.cross_and_ffn(&x, cross_kv, src_bias, dropout)?.0)
    }

    /// The decoding forward of new positions after those in `cache`, with the
    /// cross-attention weights.
    ///
    /// # Shapes
    /// `x`: (B, T_new, C) -> ((B, T_new, C), (B, nh, T_new, Ts)).
    pub fn forward_cached(
        &self,
        x: &Tensor,
        layer: usize,
        cache: &mut KvCache,
        cross_kv: (&Tensor, &Tensor),
        src_bias: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let h = self.self_attn_layer_norm.forward(x)?;
        let h = self.self_attn.self_attend_cached(&h, layer, cache)?;
        let x = (x + h)?;
        self.cross_and_ffn(&x, cross_kv, src_bias, &mut Dropout::eval())
    }

    /// The output and the cross-attention weights, (B, nh, T, Ts).
    fn cross_and_ffn(
        &self,
        x: &Tensor,
        (k, v): (&Tensor, &Tensor),
        src_bias: &Tensor,
        dropout: &mut Dropout,
    ) -> Result<(Tensor, Tensor)> {
        let h = self.encoder_attn_layer_norm.forward(x)?;
        let (h, att) = self
            .encoder_attn
            .attend_weights(&h, k, v, Some(src_bias), dropout)?;
        let x = (x + dropout.apply(&h)?)?;
        let h = self
            .ffn
            .forward(&self.final_layer_norm.forward(&x)?, dropout)?;
        Ok(((&x + dropout.apply(&h)?)?, att))
    }
}
