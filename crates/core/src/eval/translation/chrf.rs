//! chrF (Popović, 2015, "chrF: character n-gram F-score for automatic MT evaluation") with
//! sacreBLEU's defaults: character n-grams of order 1..6 (no word n-grams), whitespace removed
//! before counting, beta = 2 (recall weighs four times as much as precision).
//!
//! Hypothesis, reference and matched n-gram counts are summed over the corpus per order. The
//! score is the F-beta of the precision and recall averaged over the orders that both sides
//! have n-grams of (sacreBLEU's default "effective order", signature `eff:yes`).

use std::collections::HashMap;

use serde::Serialize;

use super::tok13a::py_words;

/// Character n-gram orders.
pub const CHAR_ORDER: usize = 6;
/// Recall weight.
pub const BETA: u32 = 2;

/// Corpus chrF and the counts it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chrf {
    /// chrF on the 0-100 scale.
    pub score: f64,
    /// Per order 1..=6: [hypothesis n-grams, reference n-grams, matches], summed.
    pub stats: [[u64; 3]; CHAR_ORDER],
}

/// Summed character n-gram counts; they add up over a corpus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChrfStats {
    pub stats: [[u64; 3]; CHAR_ORDER],
}

impl ChrfStats {
    /// Adds one hypothesis against its reference.
    pub fn add(&mut self, hyp: &str, reference: &str) {
        let hyp: Vec<char> = py_words(hyp).flat_map(str::chars).collect();
        let reference: Vec<char> = py_words(reference).flat_map(str::chars).collect();
        for (n, slot) in (1..=CHAR_ORDER).zip(self.stats.iter_mut()) {
            let h = char_ngrams(&hyp, n);
            let r = char_ngrams(&reference, n);
            let matches: u64 = h
                .iter()
                .map(|(g, &c)| r.get(g).map_or(0, |&rc| c.min(rc)))
                .sum();
            // sacreBLEU counts a hypothesis's n-grams only where the reference has some.
            let hyp_count = if r.is_empty() { 0 } else { h.values().sum() };
            slot[0] += hyp_count;
            slot[1] += r.values().sum::<u64>();
            slot[2] += matches;
        }
    }

    /// chrF from the summed counts.
    pub fn score(&self) -> Chrf {
        let factor = (BETA * BETA) as f64;
        let (mut avg_prec, mut avg_rec, mut orders) = (0.0, 0.0, 0);
        for &[n_hyp, n_ref, n_match] in &self.stats {
            if n_hyp > 0 && n_ref > 0 {
                avg_prec += n_match as f64 / n_hyp as f64;
                avg_rec += n_match as f64 / n_ref as f64;
                orders += 1;
            }
        }
        let score = if orders == 0 {
            0.0
        } else {
            avg_prec /= orders as f64;
            avg_rec /= orders as f64;
            if avg_prec + avg_rec == 0.0 {
                0.0
            } else {
                100.0 * ((1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec))
            }
        };
        Chrf {
            score,
            stats: self.stats,
        }
    }
}

/// Every character n-gram of order `n` with its count.
fn char_ngrams(chars: &[char], n: usize) -> HashMap<&[char], u64> {
    let mut counts = HashMap::new();
    if chars.len() >= n {
        for gram in chars.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}
