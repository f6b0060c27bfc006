//! A statistical text watermark (Kirchenbauer et al. 2023, "A Watermark for Large Language
//! Models"): before each token is drawn, a secret key and the preceding token(s) pick a "green"
//! share `gamma` of the vocabulary, and `delta` is added to the green tokens' logits. Text
//! written this way holds far more green tokens than chance; anyone with the key and the
//! tokenizer (never the weights) can count them and compute a z-score.
//!
//! Green-list membership is a keyed hash of (seed, token) compared with `gamma`: each token is
//! green with probability `gamma` independently of the others, which is the null hypothesis
//! the z-test assumes (the paper draws an exact-size list by permutation; the statistics are
//! the same). Two seeding schemes:
//!
//! - [`Scheme::PrevToken`] (the paper's "LeftHash", context width 1): the seed is a hash of
//!   the key and the previous token.
//! - [`Scheme::SelfHash`] (the paper's "SelfHash"): the seed is the minimum hash of the key with
//!   each of the previous four tokens, salted by the candidate token itself, so a token is
//!   green by its own choice; more robust to edits around it.

use std::collections::HashSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::tokenizer::TextTokenizer;

/// Fewer scored tokens than this and the test says it cannot judge (the paper's figures start
/// around 50 tokens; at 25 a fully green text already reaches z = 8.7).
pub const MIN_SCORED_TOKENS: usize = 25;

/// A text as the detector sees it: re-tokenized by the tokenizer of the model that may have
/// written it.
#[derive(Clone, Debug, PartialEq)]
pub enum Retokenized {
    /// The ids the tokenizer gives the text; they decode back to it.
    Ids(Vec<u32>),
    /// The tokenizer cannot have written the text: the ids it got and why.
    Foreign { tokens: usize, why: String },
}

/// The ids `tokenizer` writes `text` with, or why that tokenizer cannot have written it
/// (characters outside its vocabulary, or ids that do not decode back to the text).
pub fn retokenize(tokenizer: &TextTokenizer, text: &str) -> Retokenized {
    let ids = match tokenizer.encode(text) {
        Ok(ids) => ids,
        Err(e) => {
            return Retokenized::Foreign {
                tokens: 0,
                why: e.to_string(),
            };
        }
    };
    if tokenizer.decode(&ids).ok().as_deref() != Some(text) {
        return Retokenized::Foreign {
            tokens: ids.len(),
            why: "its tokens do not decode back to the text".into(),
        };
    }
    Retokenized::Ids(ids)
}

/// How the green list is seeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    PrevToken,
    SelfHash,
}

impl Scheme {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "prev-token" | "lefthash" => Ok(Self::PrevToken),
            "self-hash" | "selfhash" => Ok(Self::SelfHash),
            other => Err(Error::usage(format!(
                "unknown watermark scheme '{other}': choose prev-token or self-hash"
            ))),
        }
    }

    /// Preceding tokens the seed reads.
    pub fn context(self) -> usize {
        match self {
            Self::PrevToken => 1,
            Self::SelfHash => 4,
        }
    }
}

/// The watermark's settings; the key is the secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Watermark {
    pub key: String,
    /// Share of the vocabulary that is green (the paper's default 0.25).
    pub gamma: f64,
    /// Logit bias of green tokens (the paper's default 2.0).
    pub delta: f32,
    pub scheme: Scheme,
}

impl Watermark {
    /// The paper's defaults: gamma 0.25, delta 2, previous-token seeding.
    pub fn new(key: &str) -> Result<Self> {
        let w = Self {
            key: key.to_string(),
            gamma: 0.25,
            delta: 2.0,
            scheme: Scheme::PrevToken,
        };
        w.validate()?;
        Ok(w)
    }

    pub fn validate(&self) -> Result<()> {
        if self.key.is_empty() {
            return Err(Error::usage("the watermark key is empty"));
        }
        if !(self.gamma > 0.0 && self.gamma < 1.0) {
            return Err(Error::usage(format!(
                "watermark gamma {}: must be in (0, 1)",
                self.gamma
            )));
        }
        if !(self.delta.is_finite() && self.delta >= 0.0) {
            return Err(Error::usage(format!(
                "watermark delta {}: must be a number >= 0",
                self.delta
            )));
        }
        Ok(())
    }

    fn key_hash(&self) -> u64 {
        // FNV-1a of the key: stable across platforms and versions.
        self.key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// What the green list after `context` depends on, besides the candidate token: the key
    /// and the seeding tokens, hashed once per position (`None`: the context is too short).
    fn context_hash(&self, context: &[u32]) -> Option<u64> {
        let k = self.key_hash();
        let width = self.scheme.context();
        let tail = context.get(context.len().checked_sub(width)?..)?;
        match self.scheme {
            Scheme::PrevToken => Some(mix(k ^ mix(tail[0] as u64 + 1))),
            Scheme::SelfHash => tail.iter().map(|&t| mix(k ^ mix(t as u64 + 1))).min(),
        }
    }

    /// Whether `token` is green given the [`Self::context_hash`] of its position.
    fn green_at(&self, context_hash: u64, token: u32) -> bool {
        let seed = match self.scheme {
            Scheme::PrevToken => context_hash,
            // The candidate salts its own seed.
            Scheme::SelfHash => mix(context_hash ^ mix((token as u64 + 1) << 32)),
        };
        let h = mix(seed ^ mix(token as u64 ^ 0x9e37_79b9_7f4a_7c15));
        ((h >> 11) as f64 / (1u64 << 53) as f64) < self.gamma
    }

    /// Whether `token` is green after `context` (`None`: the context is too short).
    pub fn is_green(&self, context: &[u32], token: u32) -> Option<bool> {
        Some(self.green_at(self.context_hash(context)?, token))
    }

    /// Adds `delta` to the logits of the green tokens after `context` (the context is hashed
    /// once, not once per vocabulary entry).
    pub fn bias(&self, logits: &mut [f32], context: &[u32]) {
        let Some(ctx) = self.context_hash(context) else {
            return;
        };
        for (v, l) in logits.iter_mut().enumerate() {
            if self.green_at(ctx, v as u32) {
                *l += self.delta;
            }
        }
    }

    /// Counts green tokens in `ids` and tests them against chance.
    ///
    /// With `ignore_repeats`, each (context, token) tuple is scored once, so a repeated phrase
    /// cannot inflate the count (as the reference implementation's `ignore_repeated_ngrams`).
    pub fn detect(&self, ids: &[u32], ignore_repeats: bool) -> Detection {
        let width = self.scheme.context();
        let mut seen = HashSet::new();
        let (mut scored, mut green) = (0usize, 0usize);
        for i in width..ids.len() {
            let context = &ids[..i];
            if ignore_repeats && !seen.insert(ids[i - width..=i].to_vec()) {
                continue;
            }
            if let Some(g) = self.is_green(context, ids[i]) {
                scored += 1;
                green += g as usize;
            }
        }
        Detection::new(scored, green, self.gamma)
    }
}

/// What the detector found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    pub scored_tokens: usize,
    pub green_tokens: usize,
    pub green_share: f64,
    /// `(green - gamma T) / sqrt(T gamma (1 - gamma))`.
    pub z: f64,
    /// One-sided: the chance of this many green tokens or more in text without the watermark.
    pub p_value: f64,
}

impl Detection {
    pub fn new(scored: usize, green: usize, gamma: f64) -> Self {
        let t = scored as f64;
        let z = if scored == 0 {
            0.0
        } else {
            (green as f64 - gamma * t) / (t * gamma * (1.0 - gamma)).sqrt()
        };
        Self {
            scored_tokens: scored,
            green_tokens: green,
            green_share: if scored == 0 { 0.0 } else { green as f64 / t },
            z,
            p_value: normal_sf(z),
        }
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `P(Z > z)` for a standard normal Z, through `erfc` (Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7 everywhere).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn green_lists_are_a_pure_function_of_key_and_context() {
        let w = Watermark::new("secret").unwrap();
        let other = Watermark::new("other").unwrap();
        let greens = |w: &Watermark, prev: u32| -> Vec<u32> {
            (0..1000)
                .filter(|&v| w.is_green(&[prev], v) == Some(true))
                .collect()
        };
        let a = greens(&w, 17);
        assert_eq!(a, greens(&w, 17), "same key and token, same list");
        assert_ne!(a, greens(&w, 18), "another previous token, another list");
        assert_ne!(a, greens(&other, 17), "another key, another list");
        // About gamma of the vocabulary (binomial: 250 +- 14 sd).
        assert!((200..300).contains(&a.len()), "{}", a.len());
        // Fixed values, so a change of the hash is noticed: the first green ids after 17.
        assert_eq!(&a[..5], &FIRST_GREEN[..]);
        assert_eq!(w.is_green(&[], 5), None, "no context, no seed");
    }

    // Recorded from this implementation; the test fails if the green lists ever change.
    const FIRST_GREEN: [u32; 5] = [11, 21, 22, 23, 30];

    #[test]
    fn z_score_follows_the_formula() {
        // 100 scored, 50 green, gamma 0.25: z = (50 - 25) / sqrt(100 * 0.25 * 0.75).
        let d = Detection::new(100, 50, 0.25);
        assert!((d.z - 25.0 / 18.75f64.sqrt()).abs() < 1e-12);
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_sf(1.959_964) - 0.025).abs() < 1e-7);
        assert!((normal_sf(4.0) - 3.167_124e-5).abs() < 1e-9);
        assert!((normal_sf(-1.0) - 0.841_344_7).abs() < 1e-6);
    }

    #[test]
    fn biased_choices_are_detected_and_plain_ones_are_not() {
        for scheme in [Scheme::PrevToken, Scheme::SelfHash] {
            let w = Watermark {
                scheme,
                ..Watermark::new("k").unwrap()
            };
            // "Generation" from a flat distribution over 500 tokens, greedy after the bias
            // with a pseudo-random tie-break: every choice green. Plain text: a fixed LCG.
            let mut ids = vec![1u32, 2, 3, 4];
            let mut plain = ids.clone();
            let mut x = 12345u64;
            for _ in 0..200 {
                x = mix(x);
                let mut logits: Vec<f32> = (0..500)
                    .map(|v| ((mix(x ^ v) >> 40) as f32) * 1e-9)
                    .collect();
                w.bias(&mut logits, &ids);
                ids.push(crate::sample::logits::argmax(&logits));
                plain.push((x % 500) as u32);
            }
            let d = w.detect(&ids, true);
            assert!(d.z > 4.0, "{scheme:?}: {d:?}");
            let p = w.detect(&plain, true);
            assert!(p.z < 4.0, "{scheme:?}: {p:?}");
            // Repeats are scored once.
            let rep: Vec<u32> = std::iter::repeat_n([7u32, 8], 50).flatten().collect();
            assert!(w.detect(&rep, true).scored_tokens <= 2 * scheme.context().max(1) + 2);
        }
    }
}
