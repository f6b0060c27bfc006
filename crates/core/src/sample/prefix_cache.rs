//! The cache of the last prompt a model served, for the next prompt that starts the same way.
//! Chat prompts to one model share their start (the template's system prompt and role
//! markers: 24 of the 31 tokens of a short question to SmolLM2), and the `n` choices of one
//! request share all of it; their keys and values are copied instead of computed again.

use std::sync::Mutex;

use crate::error::Result;
use crate::nn::KvCache;

/// Shared positions below which the cache is not copied: a few tokens cost little to compute,
/// and the copy takes every layer's buffers whatever the share.
const MIN_REUSED: usize = 8;

/// The prompt (all but its last token) that a model last prefilled, with its cache.
#[derive(Default)]
pub struct PrefixCache {
    last: Mutex<Option<(Vec<u32>, KvCache)>>,
    /// Prompt positions served from here instead of computed, over the model's life.
    reused: std::sync::atomic::AtomicU64,
}

impl PrefixCache {
    /// A copy of the cache of the longest start that `prompt` shares with the remembered
    /// prompt, when it is worth reusing.
    pub fn longest_shared(&self, prompt: &[u32]) -> Result<Option<KvCache>> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let Some((ids, cache)) = last.as_ref() else {
            return Ok(None);
        };
        let shared = ids.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        if shared < MIN_REUSED {
            return Ok(None);
        }
        self.reused
            .fetch_add(shared as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(cache.copy_prefix(shared)?))
    }

    /// Remembers `prompt` and its cache (which holds exactly the prompt's positions).
    pub fn remember(&self, prompt: &[u32], cache: &KvCache) -> Result<()> {
        let copy = cache.copy_prefix(prompt.len())?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((prompt.to_vec(), copy));
        Ok(())
    }

    /// Prompt positions copied instead of computed so far.
    pub fn reused_tokens(&self) -> u64 {
        self.reused.load(std::sync::atomic::Ordering::Relaxed)
    }
}
