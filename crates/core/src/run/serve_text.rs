//! Text generation for `muse serve`: one choice of a request as a [`TextGeneration`] that the
//! engine advances a token at a time, so that the choices of every request to one model
//! share each decode step ([`ServedModel::step_texts`], continuous batching).

use super::serve_api::ServedModel;
use crate::error::{Error, Result};
use crate::sample::{
    GenerateOptions, Generated, Generation, Sampler, SamplingParams, StopReason, step_together,
};
use crate::tokenizer::TextTokenizer;

/// One text generation's settings (one choice of a request).
#[derive(Clone, Debug)]
pub struct TextJob {
    pub prompt_ids: Vec<u32>,
    pub params: SamplingParams,
    pub seed: u64,
    pub max_tokens: usize,
    /// Stop strings (not returned in the text).
    pub stop: Vec<String>,
    /// Report the chosen token's probability and this many likeliest alternatives (`None`:
    /// no probabilities).
    pub top_logprobs: Option<usize>,
    /// Watermark the text (`muse serve --watermark-key`).
    pub watermark: Option<crate::sample::watermark::Watermark>,
}

/// One generated token, as it streams out.
pub struct TokenOut<'a> {
    /// The text this token releases (may be empty: inside a character, or held back while it
    /// could begin a stop string).
    pub text: &'a str,
    /// With `top_logprobs`: the token's own text, its probability and the alternatives.
    pub probs: Option<TokenProbs<'a>>,
}

/// Probabilities of one generated token.
pub struct TokenProbs<'a> {
    pub token: String,
    pub prob: f32,
    /// (token text, probability), likeliest first.
    pub top: &'a [(String, f32)],
}

/// How a generation ended, in OpenAI's words.
pub fn finish_reason(g: &Generated) -> &'static str {
    match g.reason {
        StopReason::MaxTokens => "length",
        StopReason::EndOfText | StopReason::StopString => "stop",
    }
}

/// One choice being generated: the engine calls [`ServedModel::step_texts`] until it is
/// finished.
pub struct TextGeneration<'m> {
    inner: Generation<'m>,
    tokenizer: &'m TextTokenizer,
    /// Alternatives reported with each token (`top_logprobs`).
    shown: usize,
}

impl TextGeneration<'_> {
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// What was generated.
    pub fn finish(self) -> Generated {
        self.inner.finish()
    }
}

impl ServedModel {
    /// Starts one choice: checks the job against the model's context and computes its
    /// prompt but the last token (reusing the start it shares with the model's previous
    /// prompt); the last token is the first step's.
    pub fn start_text(&self, job: &TextJob) -> Result<TextGeneration<'_>> {
        let (tm, prefixes) = self.text_and_prefixes()?;
        job.params.validate()?;
        let context = tm.model.context_len();
        if job.prompt_ids.len() + job.max_tokens > context {
            return Err(Error::usage(format!(
                "the prompt has {} tokens and max_tokens is {}: together more than the model's \
                 context of {context} tokens; shorten the prompt or ask for at most {} tokens",
                job.prompt_ids.len(),
                job.max_tokens,
                context.saturating_sub(job.prompt_ids.len())
            )));
        }
        let opts = GenerateOptions {
            max_tokens: job.max_tokens,
            stop: job.stop.clone(),
            stop_at_eos: true,
            // The chosen token's probability comes with the candidates: ask for one at least.
            candidates: job.top_logprobs.map_or(0, |k| k.max(1)),
        };
        let sampler =
            Sampler::new(job.params.clone(), job.seed).with_watermark(job.watermark.clone());
        let mut inner = Generation::new(
            tm.model.as_ref(),
            &tm.tokenizer,
            &job.prompt_ids,
            opts,
            sampler,
        )?;
        inner.prefill(prefixes)?;
        Ok(TextGeneration {
            inner,
            tokenizer: &tm.tokenizer,
            shown: job.top_logprobs.unwrap_or(0),
        })
    }

    /// One token for every unfinished choice in `gens` (all started on this model), the
    /// decode steps batched into one forward; `on_token(i, token)` streams choice `i`'s token.
    /// Returns each choice's own outcome (an error from `on_token`, a client that went away,
    /// stops that choice only); a failing forward fails the whole step.
    pub fn step_texts(
        &self,
        gens: &mut [&mut TextGeneration<'_>],
        on_token: &mut dyn FnMut(usize, TokenOut) -> Result<()>,
    ) -> Result<Vec<Result<()>>> {
        let tm = self.text()?;
        let shown: Vec<(usize, &TextTokenizer)> =
            gens.iter().map(|g| (g.shown, g.tokenizer)).collect();
        let mut inner: Vec<&mut Generation<'_>> = gens.iter_mut().map(|g| &mut g.inner).collect();
        step_together(tm.model.as_ref(), &mut inner, &mut |i, ev| {
            let (shown, tokenizer) = shown[i];
            let probs = match ev.prob {
                Some(prob) => Some(TokenProbs {
                    token: tokenizer.decode(&[ev.id])?,
                    prob,
                    top: &ev.candidates[..shown.min(ev.candidates.len())],
                }),
                None => None,
            };
            on_token(
                i,
                TokenOut {
                    text: ev.text,
                    probs,
                },
            )
        })
    }

    /// Generates one choice alone, calling `on_token` for every new token; an error from
    /// `on_token` (the client went away) stops generation and is returned.
    pub fn generate(
        &self,
        job: &TextJob,
        on_token: &mut dyn FnMut(TokenOut) -> Result<()>,
    ) -> Result<Generated> {
        let mut g = self.start_text(job)?;
        while !g.is_finished() {
            let outcome = self.step_texts(&mut [&mut g], &mut |_, t| on_token(t))?;
            outcome.into_iter().next().unwrap_or(Ok(()))?;
        }
        Ok(g.finish())
    }
}
