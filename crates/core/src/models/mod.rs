//! Model families. A model sees tensors and its config, nothing else: no datasets, no
//! training loop, no sampling policy.

pub mod bert;
pub mod classifier;
pub mod diffusion;
pub mod gan;
pub mod gguf;
pub mod gpt;
pub mod llama;
pub mod llama2c;
pub mod pretrained;
pub mod seq2seq;
pub mod vae;

use candle_core::{Device, Result, Tensor};

use crate::nn::KvCache;

/// A decoder-only language model that generation can drive token by token.
pub trait CausalLm {
    /// Longest context the model was built for (positions).
    fn context_len(&self) -> usize;

    /// Where the weights live.
    fn device(&self) -> &Device;

    /// Vocabulary size of the output logits.
    fn vocab_size(&self) -> usize;

    /// A fresh, empty cache sized for `batch` sequences of up to `context_len()` positions.
    fn new_cache(&self, batch: usize) -> Result<KvCache>;

    /// Runs `ids` after the positions already in `cache`, appends their keys and values, and
    /// returns the logits of the last new position.
    ///
    /// # Shapes
    /// `ids`: (B, T_new) u32 -> (B, vocab).
    fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor>;
}
