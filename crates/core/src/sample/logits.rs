//! Turning next-token logits into a choice: repetition penalty, temperature, top-k, top-p,
//! in that order (as Hugging Face `generate` applies them), then a seeded draw.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How to pick the next token.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: no limit).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: no limit).
    pub top_p: f32,
    /// Divide positive (multiply negative) logits of tokens already in the context by this
    /// (CTRL, Keskar et al. 2019); 1 turns it off.
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
        }
    }
}

impl SamplingParams {
    /// Checks each value, naming the flag to change: `--temperature` finite and >= 0,
    /// `--top-p` in (0, 1], `--repetition-penalty` finite and > 0.
    pub fn validate(&self) -> crate::error::Result<()> {
        let bad = |flag: &str, want: &str, v: f32| {
            Err(crate::error::Error::usage(format!(
                "{flag} {v}: must be {want}"
            )))
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(
                "--temperature",
                "a number >= 0 (0: greedy)",
                self.temperature,
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("--top-p", "in (0, 1] (1: no limit)", self.top_p);
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(
                "--repetition-penalty",
                "a number > 0 (1: off)",
                self.repetition_penalty,
            );
        }
        Ok(())
    }
}

/// Turns the escapes people type in a stop string (`\n`, `\t`, `\\`) into the characters
/// they mean, as other tools do: a shell passes `--stop "\n\n"` as backslash and `n`.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A seeded sampler, optionally watermarking what it picks.
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    watermark: Option<super::watermark::Watermark>,
}

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64) -> Self {
        Self {
            params,
            rng: ChaCha8Rng::seed_from_u64(seed),
            watermark: None,
        }
    }

    /// Biases every choice towards the watermark's green list (`None`: no watermark).
    pub fn with_watermark(mut self, watermark: Option<super::watermark::Watermark>) -> Self {
        self.watermark = watermark;
        self
    }

    pub fn watermark(&self) -> Option<&super::watermark::Watermark> {
        self.watermark.as_ref()
    }

    /// The logits the choice is made from: repetition penalty, then the watermark's bias.
    fn processed(&self, logits: &[f32], context: &[u32]) -> Vec<f32> {
        let mut logits = logits.to_vec();
        apply_repetition_penalty(&mut logits, context, self.params.repetition_penalty);
        if let Some(w) = &self.watermark {
            w.bias(&mut logits, context);
        }
        logits
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits` given the ids already in the context.
    pub fn sample(&mut self, logits: &[f32], context: &[u32]) -> u32 {
        let logits = self.processed(logits, context);
        if self.params.temperature <= 0.0 {
            return argmax(&logits);
        }
        let mut probs = softmax(&logits, self.params.temperature);
        top_k_filter(&mut probs, self.params.top_k);
        top_p_filter(&mut probs, self.params.top_p);
        draw(&probs, self.rng.random::<f32>())
    }

    /// The distribution shown by `--show-probs`: softmax of the penalised (and watermarked)
    /// logits at the sampling temperature (at temperature 0, the model's plain softmax),
    /// before truncation.
    pub fn shown_distribution(&self, logits: &[f32], context: &[u32]) -> Vec<f32> {
        let logits = self.processed(logits, context);
        let t = if self.params.temperature > 0.0 {
            self.params.temperature
        } else {
            1.0
        };
        softmax(&logits, t)
    }
}

/// CTRL's repetition penalty on every id present in `context`.
pub fn apply_repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; logits.len()];
    for &id in context {
        if let Some(s) = seen.get_mut(id as usize) {
            *s = true;
        }
    }
    for (l, s) in logits.iter_mut().zip(seen) {
        if s {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// Softmax of `logits / temperature`, computed stably.
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut p: Vec<f32> = logits
        .iter()
        .map(|&l| ((l - max) / temperature).exp())
        .collect();
    let sum: f32 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= sum);
    p
}

/// Zeroes all but the `k` largest probabilities (ties at the boundary kept) and renormalises.
pub fn top_k_filter(probs: &mut [f32], k: usize) {
    if k == 0 || k >= probs.len() {
        return;
    }
    let mut sorted = probs.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let threshold = sorted[k - 1];
    probs
        .iter_mut()
        .filter(|p| **p < threshold)
        .for_each(|p| *p = 0.0);
    renormalise(probs);
}

/// Keeps the most likely tokens until their total reaches `p` (nucleus sampling, Holtzman
/// et al. 2019): a token stays if the tokens more likely than it sum to less than `p`.
pub fn top_p_filter(probs: &mut [f32], p: f32) {
    if p >= 1.0 {
        return;
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_unstable_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let mut cumulative = 0.0;
    let mut keep = vec![false; probs.len()];
    for &i in &order {
        if cumulative >= p {
            break;
        }
        keep[i] = true;
        cumulative += probs[i];
    }
    probs
        .iter_mut()
        .zip(keep)
        .filter(|(_, k)| !k)
        .for_each(|(p, _)| *p = 0.0);
    renormalise(probs);
}

fn renormalise(probs: &mut [f32]) {
    let sum: f32 = probs.iter().sum();
    if sum > 0.0 {
        probs.iter_mut().for_each(|x| *x /= sum);
    }
}

/// The index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Inverse-CDF draw with `u` uniform in [0, 1).
pub fn draw(probs: &[f32], u: f32) -> u32 {
    let mut cumulative = 0.0;
    let mut last_nonzero = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            last_nonzero = i;
            cumulative += p;
            if u < cumulative {
                return i as u32;
            }
        }
    }
    last_nonzero as u32
}

/// The `n` most likely tokens as (id, probability), most likely first.
pub fn top_n(probs: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    let n = n.min(probs.len());
    if n == 0 {
        return Vec::new();
    }
    order.select_nth_unstable_by(n - 1, |&a, &b| probs[b].total_cmp(&probs[a]));
    let mut best: Vec<(u32, f32)> = order[..n].iter().map(|&i| (i as u32, probs[i])).collect();
    best.sort_by(|a, b| b.1.total_cmp(&a.1));
    best
}
