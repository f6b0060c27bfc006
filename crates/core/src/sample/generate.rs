//! Autoregressive generation with a KV cache, streaming text as it is decoded.
//!
//! The context is cropped to the model's length exactly as nanoGPT crops it (`idx[:, -T:]`):
//! while it fits, each step runs one new token against the cache; once it would overflow, the
//! cache is cleared and the last `T` tokens are run afresh, so the logits always equal a full
//! recomputation over the cropped context.

use std::time::Instant;

use candle_core::{DType, Tensor};

use super::logits::{Sampler, top_n};
use crate::error::{Error, Result};
use crate::models::CausalLm;
use crate::tokenizer::TextTokenizer;

/// Limits and extras of one generation.
#[derive(Clone, Debug, Default)]
pub struct GenerateOptions {
    /// New tokens to generate at most.
    pub max_tokens: usize,
    /// Stop when the text contains any of these (the stop string is not returned).
    pub stop: Vec<String>,
    /// Stop at the tokenizer's end-of-text token.
    pub stop_at_eos: bool,
    /// Report this many most likely candidates with every token (0: none).
    pub candidates: usize,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    EndOfText,
    StopString,
}

/// One generated token as it streams out.
pub struct TokenEvent<'a> {
    pub id: u32,
    /// The text this token completes (may be empty inside a multi-byte character, or held
    /// back while it could be the start of a stop string).
    pub text: &'a str,
    /// The most likely candidates at this step: (token text, probability).
    pub candidates: &'a [(String, f32)],
    /// The probability of this token in the same distribution as `candidates` (`None` when
    /// no candidates were asked for): the server's `logprobs`.
    pub prob: Option<f32>,
}

/// The result of one generation.
#[derive(Clone, Debug)]
pub struct Generated {
    pub ids: Vec<u32>,
    pub text: String,
    pub reason: StopReason,
    pub prompt_tokens: usize,
    pub seconds: f64,
}

/// Generates from `prompt` (token ids), calling `on_token` for every new token.
pub fn generate(
    model: &dyn CausalLm,
    tokenizer: &TextTokenizer,
    prompt: &[u32],
    opts: &GenerateOptions,
    sampler: &mut Sampler,
    on_token: &mut dyn FnMut(TokenEvent) -> Result<()>,
) -> Result<Generated> {
    if prompt.is_empty() {
        return Err(Error::usage(
            "the prompt is empty: give at least one character with --prompt",
        ));
    }
    if opts.max_tokens == 0 {
        return Err(Error::usage("--max-tokens must be at least 1"));
    }
    let start = Instant::now();
    let ctx_len = model.context_len();
    let mut context: Vec<u32> = prompt.to_vec();
    let mut cache = model.new_cache(1)?;
    let mut pending: &[u32] = crop(&context, ctx_len);
    let mut cropped;
    let mut stream = tokenizer.stream();
    let mut text = String::new();
    let mut emitted = 0;
    let mut ids = Vec::new();
    let mut reason = StopReason::MaxTokens;
    let device = model.device().clone();

    for _ in 0..opts.max_tokens {
        let input = Tensor::new(pending, &device)?.unsqueeze(0)?; // (1, T_new)
        let logits: Vec<f32> = model
            .forward_cached(&input, &mut cache)?
            .squeeze(0)?
            .to_dtype(DType::F32)?
            .to_vec1()?;
        if logits.iter().any(|l| l.is_nan() || *l == f32::INFINITY) {
            return Err(Error::input(
                "the model's outputs are not numbers (NaN or +inf logits): its weights are \
                 damaged or its training diverged; retrain it or resume from a good checkpoint",
            ));
        }
        let id = sampler.sample(&logits, &context);
        let (candidates, prob) = if opts.candidates > 0 {
            let probs = sampler.shown_distribution(&logits, &context);
            let top = top_n(&probs, opts.candidates)
                .into_iter()
                .map(|(c, p)| Ok((tokenizer.decode(&[c])?, p)))
                .collect::<Result<Vec<_>>>()?;
            (top, probs.get(id as usize).copied())
        } else {
            (Vec::new(), None)
        };
        context.push(id);
        ids.push(id);
        if opts.stop_at_eos && tokenizer.is_eos(id) {
            reason = StopReason::EndOfText;
            on_token(TokenEvent {
                id,
                text: "",
                candidates: &candidates,
                prob,
            })?;
            break;
        }
        if let Some(piece) = stream.step(id)? {
            text.push_str(&piece);
        }
        let (release, stopped) = releasable(&text, emitted, &opts.stop);
        on_token(TokenEvent {
            id,
            text: &text[emitted..release],
            candidates: &candidates,
            prob,
        })?;
        emitted = release;
        if let Some(at) = stopped {
            text.truncate(at);
            reason = StopReason::StopString;
            break;
        }
        // Next input: one token against the cache, or the cropped window afresh.
        if cache.len() < ctx_len {
            cropped = [id];
            pending = &cropped;
        } else {
            cache.clear();
            pending = crop(&context, ctx_len);
        }
    }
    Ok(Generated {
        ids,
        text,
        reason,
        prompt_tokens: prompt.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The last `n` ids.
fn crop(ids: &[u32], n: usize) -> &[u32] {
    &ids[ids.len().saturating_sub(n)..]
}

/// How far `text` may be shown, holding back any tail that could begin a stop string, and
/// where a completed stop string starts.
fn releasable(text: &str, emitted: usize, stops: &[String]) -> (usize, Option<usize>) {
    let mut release = text.len();
    for stop in stops.iter().filter(|s| !s.is_empty()) {
        let from = emitted.saturating_sub(stop.len());
        let from = (from..=emitted)
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(emitted);
        if let Some(pos) = text[from..].find(stop.as_str()) {
            return ((from + pos).max(emitted), Some(from + pos));
        }
        // Longest suffix of the text that is a proper prefix of the stop string.
        for (i, _) in text.char_indices().rev().take(stop.chars().count()) {
            if stop.starts_with(&text[i..]) {
                release = release.min(i);
            }
        }
    }
    (release.max(emitted), None)
}

#[cfg(test)]
mod tests {
    use super::releasable;

    #[test]
    fn stop_strings_hold_back_and_cut() {
        let stops = vec!["\n\n".to_string()];
        assert_eq!(releasable("hello\n", 0, &stops), (5, None));
        assert_eq!(releasable("hello\n\nmore", 5, &stops), (5, Some(5)));
        assert_eq!(releasable("hello world", 0, &stops), (11, None));
        let stops = vec!["END".to_string()];
        assert_eq!(releasable("abcEN", 0, &stops), (3, None));
        assert_eq!(releasable("abcENX", 3, &stops), (6, None));
    }
}
