//! Configuration of the encoder-decoder transformer ("Attention Is All You Need", Vaswani et
//! al. 2017), with the Tatoeba English-French preset.

use serde::{Deserialize, Serialize};

/// Architecture of an encoder-decoder transformer with one joint vocabulary.
///
/// Field names follow Hugging Face's Marian/BART configs where one exists (`d_model`,
/// `encoder_layers`, `encoder_ffn_dim`, `max_position_embeddings`, `pad_token_id`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seq2SeqConfig {
    /// Joint source and target vocabulary; 0 in a preset means "the tokenizer's size".
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Attention heads in every attention layer; must divide `d_model`.
    pub attention_heads: usize,
    /// Encoder layers (self-attention + feed-forward).
    pub encoder_layers: usize,
    /// Decoder layers (causal self-attention + cross-attention + feed-forward).
    pub decoder_layers: usize,
    /// Inner width of the position-wise feed-forward networks.
    pub ffn_dim: usize,
    /// Longest source or target sequence in tokens, special tokens included.
    pub max_position_embeddings: usize,
    /// Dropout on embeddings, residual branches and attention weights while training.
    pub dropout: f32,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    pub pad_token_id: u32,
    /// Id the decoder input starts with.
    pub bos_token_id: u32,
    /// Id that ends a source and a target.
    pub eos_token_id: u32,
}

impl Seq2SeqConfig {
    /// The Tatoeba English-French model: 3 + 3 layers, width 256, 4 heads, feed-forward 1024,
    /// sequences up to 64 tokens, dropout 0.1.
    pub fn tatoeba_en_fr() -> Self {
        Self {
            vocab_size: 0,
            d_model: 256,
            attention_heads: 4,
            encoder_layers: 3,
            decoder_layers: 3,
            ffn_dim: 1024,
            max_position_embeddings: 64,
            dropout: 0.1,
            layer_norm_eps: 1e-5,
            pad_token_id: 0,
            bos_token_id: 1,
            eos_token_id: 2,
        }
    }

    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.d_model / self.attention_heads
    }

    /// Checks the shape constraints once, with messages that say what to change.
    pub fn validate(&self) -> Result<(), String> {
        let specials = [self.pad_token_id, self.bos_token_id, self.eos_token_id];
        let checks = [
            (self.vocab_size > 0, "vocab_size must be positive".into()),
            (self.d_model > 0, "d_model must be positive".into()),
            (
                self.attention_heads > 0 && self.d_model.is_multiple_of(self.attention_heads),
                format!(
                    "d_model ({}) must be a positive multiple of attention_heads ({})",
                    self.d_model, self.attention_heads
                ),
            ),
            (
                self.d_model.is_multiple_of(2),
                "d_model must be even (sinusoidal positions come in sin/cos pairs)".into(),
            ),
            (
                self.encoder_layers > 0 && self.decoder_layers > 0,
                "encoder_layers and decoder_layers must be positive".into(),
            ),
            (self.ffn_dim > 0, "ffn_dim must be positive".into()),
            (
                self.max_position_embeddings >= 2,
                "max_position_embeddings must be at least 2".into(),
            ),
            (
                (0.0..1.0).contains(&self.dropout),
                "dropout must be in [0, 1)".into(),
            ),
            (
                specials.iter().all(|&id| (id as usize) < self.vocab_size),
                format!(
                    "the special token ids {specials:?} must be below vocab_size ({})",
                    self.vocab_size
                ),
            ),
            (
                self.pad_token_id != self.eos_token_id && self.pad_token_id != self.bos_token_id,
                "pad_token_id must differ from bos_token_id and eos_token_id".into(),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg),
            None => Ok(()),
        }
    }
}
