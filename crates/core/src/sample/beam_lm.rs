//! Beam search for a decoder-only language model (the GPT family): the prompt is run once,
//! then [`super::beam`] searches its continuations, forking the model's [`KvCache`] rows as
//! hypotheses fork. Deterministic: the most likely continuation (length-normalised), not a
//! sample.

use candle_core::{D, Tensor};

use super::beam::{SearchOptions, StepDecoder, search};
use crate::error::{Error, Result};
use crate::models::CausalLm;
use crate::nn::KvCache;

/// A language model after a prompt, as a [`StepDecoder`].
pub struct LmDecoder<'a> {
    model: &'a dyn CausalLm,
    cache: KvCache,
    /// Log-probabilities after the prompt, returned by the first step.
    pending: Option<Vec<f32>>,
}

impl<'a> LmDecoder<'a> {
    /// Runs `prompt` (at least one id) through `model`.
    pub fn new(model: &'a dyn CausalLm, prompt: &[u32]) -> Result<Self> {
        if prompt.is_empty() {
            return Err(Error::usage(
                "beam search needs a prompt of at least one token",
            ));
        }
        let mut cache = model.new_cache(1)?;
        let ids = Tensor::from_slice(prompt, (1, prompt.len()), model.device())?;
        let logits = model.forward_cached(&ids, &mut cache)?; // (1, V)
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        Ok(Self {
            model,
            cache,
            pending: Some(lp.flatten_all()?.to_vec1::<f32>()?),
        })
    }
}

impl StepDecoder for LmDecoder<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if let Some(lp) = self.pending.take() {
            // The first step's token is the search's start marker: the prompt stands for it.
            return Ok(lp);
        }
        let ids = Tensor::from_slice(tokens, (tokens.len(), 1), self.model.device())?;
        let logits = self.model.forward_cached(&ids, &mut self.cache)?; // (N, V)
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        Ok(lp.flatten_all()?.to_vec1::<f32>()?)
    }

    fn keep_rows(&mut self, rows: &[usize]) -> Result<()> {
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::from_vec(idx, rows.len(), self.model.device())?;
        self.cache.select_rows(&idx)?;
        Ok(())
    }
}

/// The best continuation of `prompt` of up to `max_tokens` tokens by beam search, stopping at
/// `eos` (not included); `length_penalty` is GNMT's alpha.
pub fn beam_continue(
    model: &dyn CausalLm,
    prompt: &[u32],
    beam: usize,
    length_penalty: f64,
    max_tokens: usize,
    eos: Option<u32>,
) -> Result<Vec<u32>> {
    let room = model.context_len().saturating_sub(prompt.len());
    if room == 0 {
        return Err(Error::usage(format!(
            "the prompt of {} tokens fills the model's context of {}: shorten it",
            prompt.len(),
            model.context_len()
        )));
    }
    let opts = SearchOptions {
        beam,
        length_penalty,
        max_len: max_tokens.min(room),
        // The start marker is never fed (the prompt stands for it); an EOS the model lacks
        // is never produced.
        bos: u32::MAX,
        eos: eos.unwrap_or(u32::MAX - 1),
    };
    let mut dec = LmDecoder::new(model, prompt)?;
    Ok(search(&mut dec, 1, &opts)?
        .into_iter()
        .next()
        .unwrap_or_default())
}
