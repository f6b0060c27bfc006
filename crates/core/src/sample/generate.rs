//! Autoregressive generation with a KV cache, streaming text as it is decoded.
//!
//! The context is cropped to the model's length exactly as nanoGPT crops it (`idx[:, -T:]`):
//! while it fits, each step runs one new token against the cache; once it would overflow, the
//! cache is cleared and the last `T` tokens are run afresh, so the logits always equal a full
//! recomputation over the cropped context.

use std::borrow::BorrowMut;
use std::time::Instant;

use candle_core::{DType, Tensor};

use super::logits::{Sampler, top_n};
use super::prefix_cache::PrefixCache;
use crate::error::{Error, Result};
use crate::models::CausalLm;
use crate::nn::KvCache;
use crate::tokenizer::{TextTokenizer, TokenStream};

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
    let mut g = Generation::new(model, tokenizer, prompt, opts.clone(), sampler)?;
    while !g.is_finished() {
        let logits = g.forward_alone()?;
        g.accept(&logits, on_token)?;
    }
    Ok(g.finish())
}

/// One generation, a token at a time: [`Generation::accept`] takes the logits of the next
/// token, samples it, streams its text and sets up the input of the next forward. The forward
/// itself is the caller's: alone ([`Generation::forward_alone`]) or batched with other
/// generations of the same model ([`step_together`], the server's continuous batching).
///
/// `S` is the sampler, owned (the server) or borrowed (callers that reuse it afterwards).
pub struct Generation<'m, S: BorrowMut<Sampler> = Sampler> {
    model: &'m dyn CausalLm,
    tokenizer: &'m TextTokenizer,
    opts: GenerateOptions,
    sampler: S,
    /// Prompt and generated ids so far.
    context: Vec<u32>,
    cache: KvCache,
    /// What the next forward runs: the (cropped) prompt, the last token against the cache, or
    /// the cropped window afresh once the cache is full.
    pending: Vec<u32>,
    stream: TokenStream<'m>,
    text: String,
    /// Bytes of `text` already handed to `on_token`.
    emitted: usize,
    ids: Vec<u32>,
    /// Set once generation has ended.
    reason: Option<StopReason>,
    prompt_tokens: usize,
    start: Instant,
}

impl<'m, S: BorrowMut<Sampler>> Generation<'m, S> {
    pub fn new(
        model: &'m dyn CausalLm,
        tokenizer: &'m TextTokenizer,
        prompt: &[u32],
        opts: GenerateOptions,
        sampler: S,
    ) -> Result<Self> {
        if prompt.is_empty() {
            return Err(Error::usage(
                "the prompt is empty: give at least one character with --prompt",
            ));
        }
        if opts.max_tokens == 0 {
            return Err(Error::usage("--max-tokens must be at least 1"));
        }
        Ok(Self {
            model,
            tokenizer,
            sampler,
            context: prompt.to_vec(),
            cache: model.new_cache(1)?,
            pending: crop(prompt, model.context_len()).to_vec(),
            stream: tokenizer.stream(),
            text: String::new(),
            emitted: 0,
            ids: Vec::new(),
            reason: None,
            prompt_tokens: prompt.len(),
            start: Instant::now(),
            opts,
        })
    }

    pub fn is_finished(&self) -> bool {
        self.reason.is_some()
    }

    /// Whether the next forward is one token after a non-empty cache, the step that
    /// [`CausalLm::forward_step_many`] batches.
    fn is_single_step(&self) -> bool {
        self.pending.len() == 1 && !self.cache.is_empty()
    }

    /// Runs the prompt but its last token through the model now, starting from the longest
    /// start it shares with the prompt `prefixes` last saw (copied, not computed), and
    /// remembers it there. The last token is left for the first step, which [`step_together`]
    /// then batches with the other generations' decode steps. Does nothing once a step ran.
    pub fn prefill(&mut self, prefixes: &PrefixCache) -> Result<()> {
        if !self.cache.is_empty() || !self.ids.is_empty() || self.pending.len() < 2 {
            return Ok(());
        }
        let (&last, head) = self.pending.split_last().expect("two ids or more");
        let head = head.to_vec();
        if let Some(shared) = prefixes.longest_shared(&head)? {
            self.cache = shared;
        }
        let start = self.cache.len();
        if start < head.len() {
            let input = Tensor::new(&head[start..], self.model.device())?.unsqueeze(0)?; // (1, T)
            // The logits of the prompt's second-to-last token are not needed: the last
            // token's step gives the first new token's.
            self.model.forward_cached(&input, &mut self.cache)?;
            prefixes.remember(&head, &self.cache)?;
        }
        self.pending = vec![last];
        Ok(())
    }

    /// Runs the pending ids through the model alone: the logits of the next token.
    pub fn forward_alone(&mut self) -> Result<Vec<f32>> {
        let input = Tensor::new(self.pending.as_slice(), self.model.device())?.unsqueeze(0)?; // (1, T_new)
        let logits = self.model.forward_cached(&input, &mut self.cache)?; // (1, V)
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()?)
    }

    /// Takes the logits of the next token: samples it, streams what it releases through
    /// `on_token`, and either ends the generation or prepares the next forward's input.
    pub fn accept(
        &mut self,
        logits: &[f32],
        on_token: &mut dyn FnMut(TokenEvent) -> Result<()>,
    ) -> Result<()> {
        if self.is_finished() {
            return Ok(());
        }
        if logits.iter().any(|l| l.is_nan() || *l == f32::INFINITY) {
            return Err(Error::input(
                "the model's outputs are not numbers (NaN or +inf logits): its weights are \
                 damaged or its training diverged; retrain it or resume from a good checkpoint",
            ));
        }
        let sampler = self.sampler.borrow_mut();
        let id = sampler.sample(logits, &self.context);
        let (candidates, prob) = if self.opts.candidates > 0 {
            let probs = sampler.shown_distribution(logits, &self.context);
            let top = top_n(&probs, self.opts.candidates)
                .into_iter()
                .map(|(c, p)| Ok((self.tokenizer.decode(&[c])?, p)))
                .collect::<Result<Vec<_>>>()?;
            (top, probs.get(id as usize).copied())
        } else {
            (Vec::new(), None)
        };
        self.context.push(id);
        self.ids.push(id);
        if self.opts.stop_at_eos && self.tokenizer.is_eos(id) {
            self.reason = Some(StopReason::EndOfText);
            return on_token(TokenEvent {
                id,
                text: "",
                candidates: &candidates,
                prob,
            });
        }
        if let Some(piece) = self.stream.step(id)? {
            self.text.push_str(&piece);
        }
        let (release, stopped) = releasable(&self.text, self.emitted, &self.opts.stop);
        let shown = self.text[self.emitted..release].to_string();
        self.emitted = release;
        if let Some(at) = stopped {
            self.text.truncate(at);
            self.reason = Some(StopReason::StopString);
        } else if self.ids.len() == self.opts.max_tokens {
            self.reason = Some(StopReason::MaxTokens);
        }
        // Next input: one token against the cache, or the cropped window afresh.
        let ctx_len = self.model.context_len();
        if self.cache.len() < ctx_len {
            self.pending = vec![id];
        } else {
            self.cache.clear();
            self.pending = crop(&self.context, ctx_len).to_vec();
        }
        on_token(TokenEvent {
            id,
            text: &shown,
            candidates: &candidates,
            prob,
        })
    }

    /// What was generated (the text without its stop string).
    pub fn finish(self) -> Generated {
        Generated {
            ids: self.ids,
            text: self.text,
            reason: self.reason.unwrap_or(StopReason::MaxTokens),
            prompt_tokens: self.prompt_tokens,
            seconds: self.start.elapsed().as_secs_f64(),
        }
    }
}

/// One token for each unfinished generation in `gens` (all of `model`): those whose next
/// input is one token after their cache share a single batched forward
/// ([`CausalLm::forward_step_many`]), which reads each weight once for all of them; the others
/// (a prompt, a re-cropped window) run alone. `on_token(i, event)` streams generation `i`'s
/// token. Returns each generation's own outcome (a failing `on_token`, NaN logits); a failing
/// forward is an error for the whole step.
pub fn step_together<S: BorrowMut<Sampler>>(
    model: &dyn CausalLm,
    gens: &mut [&mut Generation<'_, S>],
    on_token: &mut dyn FnMut(usize, TokenEvent) -> Result<()>,
) -> Result<Vec<Result<()>>> {
    let mut logits: Vec<Option<Vec<f32>>> = vec![None; gens.len()];
    let batched: Vec<usize> = (0..gens.len())
        .filter(|&i| !gens[i].is_finished() && gens[i].is_single_step())
        .collect();
    if !batched.is_empty() {
        let ids: Vec<u32> = batched.iter().map(|&i| gens[i].pending[0]).collect();
        let mut caches: Vec<&mut KvCache> = gens
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| batched.contains(i))
            .map(|(_, g)| &mut g.cache)
            .collect();
        let rows = model.forward_step_many(&ids, &mut caches)?; // (n, V)
        for (&i, row) in batched.iter().zip(rows.to_dtype(DType::F32)?.to_vec2()?) {
            logits[i] = Some(row);
        }
    }
    let mut outcomes = Vec::with_capacity(gens.len());
    for (i, g) in gens.iter_mut().enumerate() {
        if g.is_finished() {
            outcomes.push(Ok(()));
            continue;
        }
        let row = match logits[i].take() {
            Some(row) => row,
            None => g.forward_alone()?,
        };
        outcomes.push(g.accept(&row, &mut |ev| on_token(i, ev)));
    }
    Ok(outcomes)
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
