//! The encoder-decoder transformer of "Attention Is All You Need" (Vaswani et al. 2017) for
//! translation, pre-LayerNorm (see [`super::layers`]), with one embedding shared by the
//! encoder input, the decoder input and the output projection (the paper's section 3.4, over a
//! joint source-target vocabulary), embeddings scaled by `sqrt(d_model)`, and the paper's
//! sinusoidal positions.
//!
//! Training runs the whole target at once ([`Seq2Seq::forward`]); decoding encodes the source
//! once into an [`EncoderMemory`] (encoder states and every layer's cross-attention keys and
//! values) and then feeds one token at a time with an explicit self-attention [`KvCache`].

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::Seq2SeqConfig;
use super::layers::{DecoderLayer, EncoderLayer, MASKED, causal_bias};
use crate::nn::ops::{self, IGNORE_INDEX};
use crate::nn::{Dropout, Embedding, KvCache, LayerNorm};

/// The dtype of every weight.
pub const DTYPE: DType = DType::F32;

/// What the decoder reads of one batch of sources, computed once.
#[derive(Clone, Debug)]
pub struct EncoderMemory {
    /// Additive attention bias: 0 for source tokens, a large negative number for padding.
    /// (B, 1, 1, Ts).
    pub bias: Tensor,
    /// Cross-attention keys and values of each decoder layer, (B, Ts, C) each.
    pub cross_kv: Vec<(Tensor, Tensor)>,
}

impl EncoderMemory {
    /// The memory of rows `rows` (indices into the batch, repeats allowed), in that order: how
    /// beam search follows its hypotheses.
    ///
    /// # Shapes
    /// `rows`: (N) u32 -> a memory of batch N.
    pub fn select(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            bias: self.bias.index_select(rows, 0)?,
            cross_kv: self
                .cross_kv
                .iter()
                .map(|(k, v)| Ok((k.index_select(rows, 0)?, v.index_select(rows, 0)?)))
                .collect::<Result<_>>()?,
        })
    }

    /// Sources in the batch.
    pub fn batch(&self) -> Result<usize> {
        self.bias.dim(0)
    }
}

/// The encoder-decoder translation model.
#[derive(Clone, Debug)]
pub struct Seq2Seq {
    cfg: Seq2SeqConfig,
    shared: Embedding,
    /// Sinusoidal positions. (max_position_embeddings, C).
    positions: Tensor,
    encoder: Vec<EncoderLayer>,
    encoder_norm: LayerNorm,
    decoder: Vec<DecoderLayer>,
    decoder_norm: LayerNorm,
}

impl Seq2Seq {
    /// Builds the model under `vb` (fresh from a `VarMap`, or loaded from safetensors).
    pub fn new(cfg: &Seq2SeqConfig, vb: VarBuilder) -> Result<Self> {
        let shared = Embedding::new(cfg.vocab_size, cfg.d_model, vb.pp("shared"))?;
        let (enc, dec) = (vb.pp("encoder"), vb.pp("decoder"));
        let encoder = (0..cfg.encoder_layers)
            .map(|i| EncoderLayer::new(cfg, enc.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let decoder = (0..cfg.decoder_layers)
            .map(|i| DecoderLayer::new(cfg, dec.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = |vb: VarBuilder| LayerNorm::new(cfg.d_model, true, cfg.layer_norm_eps, vb);
        Ok(Self {
            positions: sinusoidal_positions(cfg.max_position_embeddings, cfg.d_model, vb.device())?,
            encoder_norm: norm(enc.pp("layer_norm"))?,
            decoder_norm: norm(dec.pp("layer_norm"))?,
            cfg: cfg.clone(),
            shared,
            encoder,
            decoder,
        })
    }

    pub fn config(&self) -> &Seq2SeqConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        self.shared.weight.device()
    }

    /// Scaled token embeddings plus the positions from `offset`.
    ///
    /// # Shapes
    /// `ids`: (B, T) u32 -> (B, T, C).
    fn embed(&self, ids: &Tensor, offset: usize) -> Result<Tensor> {
        let t = ids.dim(1)?;
        if offset + t > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "a sequence of {} tokens exceeds max_position_embeddings ({})",
                offset + t,
                self.cfg.max_position_embeddings
            );
        }
        let scale = (self.cfg.d_model as f64).sqrt();
        let pos = self.positions.narrow(0, offset, t)?; // (T, C)
        (self.shared.forward(ids)? * scale)?.broadcast_add(&pos) // (B, T, C)
    }

    /// The additive padding bias of a batch of sources.
    ///
    /// # Shapes
    /// `src`: (B, Ts) u32 -> (B, 1, 1, Ts).
    pub fn source_bias(&self, src: &Tensor) -> Result<Tensor> {
        let (b, ts) = src.dims2()?;
        let keep = src.ne(self.cfg.pad_token_id)?.to_dtype(DTYPE)?; // (B, Ts)
        ((keep - 1.0)? * -MASKED)?.reshape((b, 1, 1, ts))
    }

    /// The encoder output.
    ///
    /// # Shapes
    /// `src`: (B, Ts) u32, `bias`: (B, 1, 1, Ts) -> (B, Ts, C).
    fn encode_states(&self, src: &Tensor, bias: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let mut x = dropout.apply(&self.embed(src, 0)?)?;
        for layer in &self.encoder {
            x = layer.forward(&x, bias, dropout)?;
        }
        self.encoder_norm.forward(&x)
    }

    /// Encodes a batch of sources (right-padded with `pad_token_id`) for decoding.
    ///
    /// # Shapes
    /// `src`: (B, Ts) u32 -> memory of batch B.
    pub fn encode(&self, src: &Tensor) -> Result<EncoderMemory> {
        let bias = self.source_bias(src)?;
        let states = self.encode_states(src, &bias, &mut Dropout::eval())?;
        let cross_kv = self
            .decoder
            .iter()
            .map(|l| l.encoder_attn.keys_values(&states))
            .collect::<Result<_>>()?;
        Ok(EncoderMemory { bias, cross_kv })
    }

    /// Logits for every target position given the whole decoder input: the training and
    /// evaluation forward. Changes no state; `dropout` is [`Dropout::eval`] outside training.
    ///
    /// # Shapes
    /// `src`: (B, Ts) u32, `tgt_in`: (B, Tt) u32 -> (B * Tt, vocab).
    pub fn forward(&self, src: &Tensor, tgt_in: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let bias = self.source_bias(src)?;
        let states = self.encode_states(src, &bias, dropout)?; // (B, Ts, C)
        let tt = tgt_in.dim(1)?;
        let mut x = dropout.apply(&self.embed(tgt_in, 0)?)?; // (B, Tt, C)
        let causal = causal_bias(tt, &x)?; // (Tt, Tt)
        for layer in &self.decoder {
            let (k, v) = layer.encoder_attn.keys_values(&states)?;
            x = layer.forward(&x, &causal, (&k, &v), &bias, dropout)?;
        }
        self.project(&self.decoder_norm.forward(&x)?.flatten_to(1)?) // (B * Tt, V)
    }

    /// Mean cross-entropy with label smoothing over the target positions that are not
    /// padding (PyTorch's `CrossEntropyLoss(ignore_index=pad, label_smoothing=eps)`).
    ///
    /// # Shapes
    /// `src`: (B, Ts), `tgt_in`, `tgt_out`: (B, Tt) u32 -> scalar.
    pub fn loss(
        &self,
        src: &Tensor,
        tgt_in: &Tensor,
        tgt_out: &Tensor,
        label_smoothing: f64,
        dropout: &mut Dropout,
    ) -> Result<Tensor> {
        let logits = self.forward(src, tgt_in, dropout)?;
        label_smoothed_cross_entropy(
            &logits,
            &tgt_out.flatten_all()?,
            self.cfg.pad_token_id,
            label_smoothing,
        )
    }

    /// A fresh self-attention cache for `batch` target sequences of up to `capacity` tokens
    /// (at most `max_position_embeddings`).
    pub fn new_cache(&self, batch: usize, capacity: usize) -> Result<KvCache> {
        let w = &self.shared.weight;
        KvCache::new(
            self.cfg.decoder_layers,
            batch,
            capacity.min(self.cfg.max_position_embeddings),
            self.cfg.d_model,
            w.dtype(),
            w.device(),
        )
    }

    /// Runs `ids` after the target positions already in `cache`, appends their keys and
    /// values, and returns the logits of the last new position.
    ///
    /// # Shapes
    /// `ids`: (B, T_new) u32, `memory` of batch B -> (B, vocab).
    pub fn decode_step(
        &self,
        ids: &Tensor,
        memory: &EncoderMemory,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        Ok(self.decode_step_attention(ids, memory, cache)?.0)
    }

    /// [`Seq2Seq::decode_step`], also returning the last decoder layer's cross-attention
    /// weights of the last new position, averaged over heads: where in the source the
    /// prediction looked.
    ///
    /// # Shapes
    /// `ids`: (B, T_new) u32 -> ((B, vocab), (B, Ts)).
    pub fn decode_step_attention(
        &self,
        ids: &Tensor,
        memory: &EncoderMemory,
        cache: &mut KvCache,
    ) -> Result<(Tensor, Tensor)> {
        let t = ids.dim(1)?;
        let mut x = self.embed(ids, cache.len())?; // (B, T_new, C)
        let mut att = None;
        for (i, layer) in self.decoder.iter().enumerate() {
            let (k, v) = &memory.cross_kv[i];
            let (y, a) = layer.forward_cached(&x, i, cache, (k, v), &memory.bias)?;
            (x, att) = (y, Some(a));
        }
        cache.advance(t);
        let Some(att) = att else {
            candle_core::bail!("a seq2seq model needs at least one decoder layer")
        }; // (B, nh, T_new, Ts)
        let att = att.narrow(2, t - 1, 1)?.squeeze(2)?.mean(1)?; // (B, Ts)
        let last = x.narrow(1, t - 1, 1)?.squeeze(1)?; // (B, C)
        let logits = self.project(&self.decoder_norm.forward(&last)?)?; // (B, V)
        Ok((logits, att))
    }

    /// The output projection, tied to the shared embedding.
    ///
    /// # Shapes
    /// (N, C) -> (N, V).
    fn project(&self, x: &Tensor) -> Result<Tensor> {
        ops::linear(x, &self.shared.weight, None, ops::WeightLayout::OutIn)
    }
}

/// The sinusoidal positions of the paper (section 3.5): `PE(pos, 2i) = sin(pos / 10000^(2i/d))`,
/// `PE(pos, 2i + 1) = cos(pos / 10000^(2i/d))`.
///
/// # Shapes
/// -> (n, d).
pub fn sinusoidal_positions(n: usize, d: usize, device: &Device) -> Result<Tensor> {
    let mut pe = vec![0f32; n * d];
    for pos in 0..n {
        for i in 0..d / 2 {
            let angle = pos as f64 / 10000f64.powf(2.0 * i as f64 / d as f64);
            pe[pos * d + 2 * i] = angle.sin() as f32;
            pe[pos * d + 2 * i + 1] = angle.cos() as f32;
        }
    }
    Tensor::from_vec(pe, (n, d), device)
}

/// Mean label-smoothed cross-entropy over the rows whose target is not `pad`:
/// `(1 - eps) * nll + eps * mean_v(-log p_v)` per row, as PyTorch computes it.
///
/// # Shapes
/// `logits`: (N, V), `targets`: (N) u32 -> scalar.
pub fn label_smoothed_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    pad: u32,
    eps: f64,
) -> Result<Tensor> {
    let keep = targets.ne(pad)?; // (N) u8
    let ignored = Tensor::full(IGNORE_INDEX, targets.shape(), targets.device())?;
    let nll = ops::cross_entropy(logits, &keep.where_cond(targets, &ignored)?)?; // ()
    if eps == 0.0 {
        return Ok(nll);
    }
    let keep = keep.to_dtype(logits.dtype())?; // (N)
    let count = keep
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?
        .max(1.0);
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?; // (N, V)
    let smooth = (logp.mean(D::Minus1)?.neg()? * keep)?.sum_all()?; // ()
    (nll * (1.0 - eps))? + (smooth * (eps / count))?
}

/// The number of parameters (the shared embedding counted once).
pub fn parameter_count(cfg: &Seq2SeqConfig) -> usize {
    let (d, f) = (cfg.d_model, cfg.ffn_dim);
    let ln = 2 * d;
    let attn = 4 * (d * d + d);
    let ffn = d * f + f + f * d + d;
    let enc = attn + ffn + 2 * ln;
    let dec = 2 * attn + ffn + 3 * ln;
    cfg.vocab_size * d + cfg.encoder_layers * enc + cfg.decoder_layers * dec + 2 * ln
}

/// The initialisation: embeddings N(0, d^-1/2) (unit variance once scaled by sqrt(d)), matrices
/// N(0, 0.02), zero biases, unit LayerNorm gains.
pub fn seq2seq_init(cfg: &Seq2SeqConfig) -> impl Fn(&str, &[usize]) -> crate::nn::Init + '_ {
    move |name, dims| {
        use crate::nn::Init;
        if name.ends_with(".bias") {
            Init::Const(0.0)
        } else if dims.len() < 2 {
            Init::Const(1.0)
        } else if name.starts_with("shared") {
            Init::Normal((cfg.d_model as f64).powf(-0.5))
        } else {
            Init::Normal(0.02)
        }
    }
}
