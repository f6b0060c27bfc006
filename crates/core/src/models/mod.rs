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

    /// One new token for each of several sequences, each after the positions in its own cache
    /// (which may differ): the decode step of continuous batching. Appends to every cache and
    /// returns the logits of each new token. This default runs the sequences one by one; a
    /// model that overrides it multiplies each weight matrix once for all of them, which is
    /// what makes a batch cheaper than its sequences apart (decoding reads every weight per
    /// step).
    ///
    /// # Shapes
    /// `ids`: n tokens, one per cache -> (n, vocab).
    fn forward_step_many(&self, ids: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        if ids.len() != caches.len() {
            candle_core::bail!("{} tokens for {} caches", ids.len(), caches.len());
        }
        let rows = ids
            .iter()
            .zip(caches.iter_mut())
            .map(|(&id, cache)| self.forward_cached(&Tensor::new(&[[id]], self.device())?, cache))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&rows, 0)
    }
}
