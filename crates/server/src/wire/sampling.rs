//! The sampling fields completions and chat share, checked once into [`TextSettings`]. Ranges
//! are OpenAI's where OpenAI has one, so a request that works there works here.

use muse_core::run::generation::SamplingParams;
use serde::Deserialize;

use super::{OneOrMany, StreamOptions};
use crate::error::ApiError;

/// Most choices one request may ask for (`n`).
pub const MAX_N: i64 = 16;
/// Most stop strings (`stop`), as OpenAI allows.
pub const MAX_STOP: usize = 4;
/// Most alternatives per token (`top_logprobs`), as OpenAI allows.
pub const MAX_TOP_LOGPROBS: i64 = 20;

/// The sampling fields as sent. Integers are read signed so that a negative value is named
/// as out of range rather than as a type error.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RawSampling {
    pub max_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Muse's extension: sample among the k likeliest tokens (0: no limit).
    pub top_k: Option<i64>,
    /// Muse's extension: CTRL's repetition penalty (1: off).
    pub repetition_penalty: Option<f32>,
    pub n: Option<i64>,
    pub seed: Option<i64>,
    pub stop: Option<OneOrMany>,
    #[serde(default)]
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
}

/// Checked settings of one text request.
#[derive(Clone, Debug)]
pub struct TextSettings {
    pub params: SamplingParams,
    /// Choice `i` samples with `seed + i`.
    pub seed: u64,
    pub n: usize,
    /// `None`: the endpoint's default.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    /// `Some(k)`: report each token's probability and its k likeliest alternatives.
    pub top_logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
}

impl RawSampling {
    /// Checks every field; `top_logprobs` comes from the endpoint's own fields.
    pub fn check(self, top_logprobs: Option<i64>) -> Result<TextSettings, ApiError> {
        let n = self.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return Err(ApiError::invalid_param(
                "n",
                format!("n is {n}: it must be between 1 and {MAX_N}"),
            ));
        }
        let max_tokens = match self.max_tokens {
            Some(m) if m < 1 => {
                return Err(ApiError::invalid_param(
                    "max_tokens",
                    format!("max_tokens is {m}: it must be at least 1"),
                ));
            }
            Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
            None => None,
        };
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid_param(
                "temperature",
                format!("temperature is {temperature}: it must be between 0 and 2 (0: greedy)"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid_param(
                "top_p",
                format!("top_p is {top_p}: it must be in (0, 1] (1: no limit)"),
            ));
        }
        let top_k = self.top_k.unwrap_or(0);
        if top_k < 0 {
            return Err(ApiError::invalid_param(
                "top_k",
                format!("top_k is {top_k}: it must be 0 (no limit) or more"),
            ));
        }
        let repetition_penalty = self.repetition_penalty.unwrap_or(1.0);
        if !(repetition_penalty.is_finite() && repetition_penalty > 0.0) {
            return Err(ApiError::invalid_param(
                "repetition_penalty",
                format!("repetition_penalty is {repetition_penalty}: it must be > 0 (1: off)"),
            ));
        }
        let stop = self.stop.map(OneOrMany::into_vec).unwrap_or_default();
        if stop.len() > MAX_STOP {
            return Err(ApiError::invalid_param(
                "stop",
                format!("{} stop strings: give at most {MAX_STOP}", stop.len()),
            ));
        }
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid_param("stop", "a stop string is empty"));
        }
        let top_logprobs = match top_logprobs {
            Some(k) if !(0..=MAX_TOP_LOGPROBS).contains(&k) => {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    format!("top_logprobs is {k}: it must be between 0 and {MAX_TOP_LOGPROBS}"),
                ));
            }
            Some(k) => Some(k as usize),
            None => None,
        };
        Ok(TextSettings {
            params: SamplingParams {
                temperature,
                top_k: top_k as usize,
                top_p,
                repetition_penalty,
            },
            // Without a seed every request draws a new one, as OpenAI's sampling does.
            seed: self.seed.map_or_else(fresh_seed, |s| s as u64),
            n: n as usize,
            max_tokens,
            stop,
            top_logprobs,
            stream: self.stream.unwrap_or(false),
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
        })
    }
}

fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
