//! Sampling from trained models: logit processing and token-by-token generation.

pub mod attention_map;
pub mod beam;
pub mod beam_lm;
pub mod chat;
pub mod diffusion;
pub mod gan;
pub mod generate;
pub mod gguf;
pub mod logits;
pub mod open;
pub mod prefix_cache;
pub mod translate;
pub mod vae;
pub mod watermark;

pub use generate::{
    GenerateOptions, Generated, Generation, StopReason, TokenEvent, generate, step_together,
};
pub use logits::{Sampler, SamplingParams, unescape};
pub use open::{TextModel, open_text_model};
pub use prefix_cache::PrefixCache;

use crate::error::Result;
use crate::models::CausalLm;
use crate::tokenizer::TextTokenizer;

/// Generates `max_tokens` after `prompt` and returns the prompt followed by the new text.
/// Used for the samples a training run writes.
pub fn complete(
    model: &dyn CausalLm,
    tokenizer: &TextTokenizer,
    prompt: &str,
    max_tokens: usize,
    params: SamplingParams,
    seed: u64,
) -> Result<String> {
    let ids = tokenizer.encode(prompt)?;
    let opts = GenerateOptions {
        max_tokens,
        ..Default::default()
    };
    let mut sampler = Sampler::new(params, seed);
    let out = generate(model, tokenizer, &ids, &opts, &mut sampler, &mut |_| Ok(()))?;
    Ok(format!("{prompt}{}", out.text))
}
