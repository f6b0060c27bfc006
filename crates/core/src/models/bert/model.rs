//! BERT: a bidirectional transformer encoder ("BERT: Pre-training of Deep Bidirectional
//! Transformers for Language Understanding", Devlin et al. 2018), post-LayerNorm blocks with
//! learned absolute positions and token types, GELU feed-forward.
//!
//! Tensor names follow Hugging Face `BertModel` (`embeddings.word_embeddings.weight`,
//! `encoder.layer.0.attention.self.query.weight`, linear weights stored `(out, in)`), so HF and
//! sentence-transformers folders load as they are. The pooler is not built: sentence encoders
//! pool the token states themselves (see [`crate::embed`]).

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::BertConfig;
use crate::nn::ops::{self, GeluKind, WeightLayout};
use crate::nn::{Embedding, LayerNorm, Linear};

/// The dtype BERT weights are converted to on load.
pub const DTYPE: DType = DType::F32;

fn linear(i: usize, o: usize, vb: VarBuilder) -> Result<Linear> {
    Linear::new(i, o, true, WeightLayout::OutIn, vb)
}

/// Word, position and token-type embeddings, summed and layer-normalised.
#[derive(Clone, Debug)]
struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
}

impl BertEmbeddings {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            word_embeddings: Embedding::new(cfg.vocab_size, h, vb.pp("word_embeddings"))?,
            position_embeddings: Embedding::new(
                cfg.max_position_embeddings,
                h,
                vb.pp("position_embeddings"),
            )?,
            token_type_embeddings: Embedding::new(
                cfg.type_vocab_size,
                h,
                vb.pp("token_type_embeddings"),
            )?,
            layer_norm: LayerNorm::new(h, true, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// # Shapes
    /// `input_ids`, `token_type_ids`: (B, T) u32 -> (B, T, H).
    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> Result<Tensor> {
        let t = input_ids.dim(1)?;
        let words = self.word_embeddings.forward(input_ids)?; // (B, T, H)
        let types = self.token_type_embeddings.forward(token_type_ids)?; // (B, T, H)
        let pos = self.position_embeddings.weight.narrow(0, 0, t)?; // (T, H)
        let x = (words + types)?.broadcast_add(&pos)?; // (B, T, H)
        self.layer_norm.forward(&x)
    }
}

/// Bidirectional multi-head self-attention (`attention.self`) with its output projection and
/// residual LayerNorm (`attention.output`).
#[derive(Clone, Debug)]
struct BertAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    layer_norm: LayerNorm,
    n_head: usize,
}

impl BertAttention {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let sa = vb.pp("self");
        let out = vb.pp("output");
        Ok(Self {
            query: linear(h, h, sa.pp("query"))?,
            key: linear(h, h, sa.pp("key"))?,
            value: linear(h, h, sa.pp("value"))?,
            dense: linear(h, h, out.pp("dense"))?,
            layer_norm: LayerNorm::new(h, true, cfg.layer_norm_eps, out.pp("LayerNorm"))?,
            n_head: cfg.num_attention_heads,
        })
    }

    /// `mask` is additive: 0 for keys to attend to, a large negative number for padding.
    ///
    /// # Shapes
    /// `x`: (B, T, H); `mask`: (B, 1, 1, T) -> (B, T, H).
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let nh = self.n_head;
        let hs = h / nh;
        let heads = |y: Tensor| -> Result<Tensor> {
            y.reshape((b, t, nh, hs))?.transpose(1, 2)?.contiguous() // (B, nh, T, hs)
        };
        let q = heads(self.query.forward(x)?)?; // (B, nh, T, hs)
        let k = heads(self.key.forward(x)?)?; // (B, nh, T, hs)
        let v = heads(self.value.forward(x)?)?; // (B, nh, T, hs)
        let scale = 1.0 / (hs as f64).sqrt();
        let scores = q.matmul(&k.t()?)?; // (B, nh, T, T)
        let att = ops::softmax_last_dim_scaled(&scores, scale, Some(mask))?;
        let y = att.matmul(&v)?; // (B, nh, T, hs)
        let y = y.transpose(1, 2)?.reshape((b, t, h))?; // (B, T, H)
        let y = self.dense.forward(&y)?; // (B, T, H)
        self.layer_norm.forward(&(y + x)?)
    }
}

/// One encoder block: attention, then the feed-forward network (`intermediate`, `output`),
/// each followed by a residual LayerNorm.
#[derive(Clone, Debug)]
struct BertLayer {
    attention: BertAttention,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    act: GeluKind,
}

impl BertLayer {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            attention: BertAttention::new(cfg, vb.pp("attention"))?,
            intermediate: linear(h, i, vb.pp("intermediate").pp("dense"))?,
            output: linear(i, h, vb.pp("output").pp("dense"))?,
            output_norm: LayerNorm::new(
                h,
                true,
                cfg.layer_norm_eps,
                vb.pp("output").pp("LayerNorm"),
            )?,
            act: cfg.gelu_kind(),
        })
    }

    /// # Shapes
    /// `x`: (B, T, H); `mask`: (B, 1, 1, T) -> (B, T, H).
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let a = self.attention.forward(x, mask)?; // (B, T, H)
        let f = ops::gelu(&self.intermediate.forward(&a)?, self.act)?; // (B, T, I)
        let f = self.output.forward(&f)?; // (B, T, H)
        self.output_norm.forward(&(f + a)?)
    }
}

/// A BERT encoder without the pooler: ids in, one state per token out.
#[derive(Clone, Debug)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    cfg: BertConfig,
    device: Device,
}

impl BertModel {
    /// Builds the encoder under `vb` (`embeddings.*`, `encoder.layer.N.*`). Checkpoints whose
    /// names carry a `bert.` prefix (`BertForMaskedLM` and friends) load through
    /// [`super::load_bert`], which strips it.
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let embeddings = BertEmbeddings::new(cfg, vb.pp("embeddings"))?;
        let enc = vb.pp("encoder").pp("layer");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::new(cfg, enc.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            cfg: cfg.clone(),
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Width of the token states.
    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    /// The last layer's token states (transformers' `last_hidden_state`). `token_type_ids`
    /// defaults to all zeros and `attention_mask` to all ones; positions where the mask is 0
    /// (padding) are not attended to, and their own states are meaningless.
    ///
    /// # Shapes
    /// `input_ids`: (B, T) u32; `token_type_ids`: (B, T) u32; `attention_mask`: (B, T), 1 for
    /// tokens and 0 for padding, any dtype -> (B, T, H).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if t > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "{t} tokens is longer than the model's {} positions; truncate the input",
                self.cfg.max_position_embeddings
            );
        }
        let zeros;
        let token_type_ids = match token_type_ids {
            Some(tt) => tt,
            None => {
                zeros = Tensor::zeros((b, t), DType::U32, input_ids.device())?;
                &zeros
            }
        };
        let mask = match attention_mask {
            Some(m) => additive_mask(m, DTYPE)?, // (B, 1, 1, T)
            None => Tensor::zeros((b, 1, 1, t), DTYPE, input_ids.device())?,
        };
        let mut x = self.embeddings.forward(input_ids, token_type_ids)?; // (B, T, H)
        for layer in &self.layers {
            x = layer.forward(&x, &mask)?;
        }
        Ok(x)
    }
}

/// 0 where `mask` is 1, the dtype's lowest value where it is 0 (as transformers does: a fully
/// masked row stays finite).
///
/// # Shapes
/// `mask`: (B, T) -> (B, 1, 1, T).
fn additive_mask(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, t) = mask.dims2()?;
    let keep = mask.to_dtype(DType::F32)?.ne(0f32)?; // (B, T) u8
    let zero = Tensor::zeros((b, t), dtype, mask.device())?;
    let low = Tensor::full(f32::MIN, (b, t), mask.device())?.to_dtype(dtype)?;
    keep.where_cond(&zero, &low)?.reshape((b, 1, 1, t))
}
