//! Corpus BLEU (Papineni et al., 2002, "BLEU: a Method for Automatic Evaluation of Machine
//! Translation") with sacreBLEU's defaults: `13a` tokens, clipped n-gram precisions for
//! n = 1..4 summed over the corpus, their geometric mean, the brevity penalty, and the
//! "exponential" smoothing of `mteval-v13a.pl` for orders without any match.
//!
//! One reference per line. Statistics are summed over sentences first and the score is computed
//! once for the corpus (never an average of sentence scores).

use std::collections::HashMap;

use serde::Serialize;

use super::tok13a::{py_rstrip, py_words, tokenize_13a};

/// The highest n-gram order.
pub const MAX_ORDER: usize = 4;

/// Corpus BLEU and the statistics it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bleu {
    /// BLEU on the 0-100 scale.
    pub score: f64,
    /// Clipped n-gram matches for n = 1..4.
    pub counts: [u64; MAX_ORDER],
    /// Hypothesis n-grams for n = 1..4.
    pub totals: [u64; MAX_ORDER],
    /// n-gram precisions in percent (smoothed where an order has no match).
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty: 1 when the hypotheses are at least as long as the references.
    pub bp: f64,
    /// Hypothesis length / reference length, in tokens (0 when the references are empty).
    pub ratio: f64,
    /// Tokens in all hypotheses and in all references.
    pub sys_len: u64,
    pub ref_len: u64,
}

/// Sufficient statistics of one or more sentence pairs: they add up over a corpus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BleuStats {
    pub counts: [u64; MAX_ORDER],
    pub totals: [u64; MAX_ORDER],
    pub sys_len: u64,
    pub ref_len: u64,
}

impl BleuStats {
    /// Adds the statistics of one hypothesis against its reference (both untokenised).
    pub fn add(&mut self, hyp: &str, reference: &str) {
        let hyp = tokenize_13a(py_rstrip(hyp));
        let reference = tokenize_13a(py_rstrip(reference));
        let hyp: Vec<&str> = py_words(&hyp).collect();
        let reference: Vec<&str> = py_words(&reference).collect();
        let ref_ngrams = ngram_counts(&reference);
        for (ngram, count) in ngram_counts(&hyp) {
            let n = ngram.len() - 1;
            self.totals[n] += count;
            if let Some(&r) = ref_ngrams.get(ngram) {
                self.counts[n] += count.min(r);
            }
        }
        self.sys_len += hyp.len() as u64;
        self.ref_len += reference.len() as u64;
    }

    /// BLEU from the summed statistics.
    pub fn score(&self) -> Bleu {
        let (sys, refl) = (self.sys_len, self.ref_len);
        let bp = match (sys < refl, sys > 0) {
            (false, _) => 1.0,
            (true, true) => (1.0 - refl as f64 / sys as f64).exp(),
            (true, false) => 0.0,
        };
        let mut precisions = [0.0; MAX_ORDER];
        let ratio = if refl > 0 {
            sys as f64 / refl as f64
        } else {
            0.0
        };
        let mut out = Bleu {
            score: 0.0,
            counts: self.counts,
            totals: self.totals,
            precisions,
            bp,
            ratio,
            sys_len: sys,
            ref_len: refl,
        };
        if self.counts.iter().all(|&c| c == 0) {
            return out;
        }
        // Exponential smoothing: the k-th order without a match gets precision 1 / (2^k total).
        let mut smooth = 1.0;
        for (n, precision) in precisions.iter_mut().enumerate() {
            if self.totals[n] == 0 {
                // No n-grams this long at all: this and higher orders stay at 0, so BLEU is 0.
                break;
            }
            *precision = if self.counts[n] == 0 {
                smooth *= 2.0;
                100.0 / (smooth * self.totals[n] as f64)
            } else {
                100.0 * self.counts[n] as f64 / self.totals[n] as f64
            };
        }
        let log_sum: f64 = precisions.iter().map(|&p| floored_log(p)).sum();
        out.precisions = precisions;
        out.score = bp * (log_sum / MAX_ORDER as f64).exp();
        out
    }
}

/// ln(p), with ln(0) taken as -9999999999 (a zero precision drives the score to 0).
fn floored_log(p: f64) -> f64 {
    if p == 0.0 { -9_999_999_999.0 } else { p.ln() }
}

/// Every n-gram of order 1..=4 of `tokens` with its count.
fn ngram_counts<'a>(tokens: &'a [&'a str]) -> HashMap<&'a [&'a str], u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER.min(tokens.len()) {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

impl Bleu {
    /// The figures after the score as sacreBLEU prints them:
    /// `95.8/71.0/60.0/53.5 (BP = 0.878 ratio = 0.885 hyp_len = 1373 ref_len = 1551)`.
    pub fn details(&self) -> String {
        let p: Vec<String> = self.precisions.iter().map(|p| format!("{p:.1}")).collect();
        format!(
            "{} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            p.join("/"),
            self.bp,
            self.ratio,
            self.sys_len,
            self.ref_len
        )
    }
}
