//! Translation metrics: corpus BLEU and chrF, computed as the `sacrebleu` package computes them
//! with its defaults (checked against sacrebleu 2.6.0 on committed fixtures made by
//! `scripts/fixtures/translation_metrics.py`), with sacreBLEU's signature strings so that a
//! figure says how it was measured.

pub mod bleu;
pub mod chrf;
pub mod tok13a;

use serde::Serialize;

pub use bleu::{Bleu, BleuStats};
pub use chrf::{Chrf, ChrfStats};
pub use tok13a::tokenize_13a;

use crate::error::{Error, Result};

/// The sacrebleu release whose figures and signatures these metrics reproduce.
pub const SACREBLEU_VERSION: &str = "2.6.0";

/// sacreBLEU's signature of default BLEU with one reference per line.
pub fn bleu_signature() -> String {
    format!("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{SACREBLEU_VERSION}")
}

/// sacreBLEU's signature of default chrF with one reference per line.
pub fn chrf_signature() -> String {
    format!(
        "nrefs:1|case:mixed|eff:yes|nc:{}|nw:0|space:no|version:{SACREBLEU_VERSION}",
        chrf::CHAR_ORDER
    )
}

/// BLEU and chrF of a corpus, with their signatures.
#[derive(Clone, Debug, Serialize)]
pub struct TranslationScores {
    /// Sentence pairs scored.
    pub lines: usize,
    pub bleu: Bleu,
    pub bleu_signature: String,
    pub chrf: Chrf,
    pub chrf_signature: String,
}

impl TranslationScores {
    /// The two lines sacreBLEU prints for these scores, e.g.
    /// `BLEU|nrefs:1|...|version:2.6.0 = 60.04 95.8/71.0/60.0/53.5 (BP = 0.878 ...)` and
    /// `chrF2|nrefs:1|...|version:2.6.0 = 78.35`.
    pub fn lines(&self) -> [String; 2] {
        [
            format!(
                "BLEU|{} = {:.2} {}",
                self.bleu_signature,
                self.bleu.score,
                self.bleu.details()
            ),
            format!(
                "chrF{}|{} = {:.2}",
                chrf::BETA,
                self.chrf_signature,
                self.chrf.score
            ),
        ]
    }
}

/// Scores `hyps` against `refs`, line by line (one reference per hypothesis). Different
/// lengths are an input error; so is an empty corpus.
pub fn score_corpus<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[R],
) -> Result<TranslationScores> {
    if hyps.len() != refs.len() {
        return Err(Error::input(format!(
            "{} hypotheses but {} references: BLEU and chrF need one reference line per \
             hypothesis line",
            hyps.len(),
            refs.len()
        )));
    }
    if hyps.is_empty() {
        return Err(Error::input(
            "no lines to score: give at least one hypothesis and its reference",
        ));
    }
    let (mut bleu, mut chrf) = (BleuStats::default(), ChrfStats::default());
    for (h, r) in hyps.iter().zip(refs) {
        bleu.add(h.as_ref(), r.as_ref());
        chrf.add(h.as_ref(), r.as_ref());
    }
    Ok(TranslationScores {
        lines: hyps.len(),
        bleu: bleu.score(),
        bleu_signature: bleu_signature(),
        chrf: chrf.score(),
        chrf_signature: chrf_signature(),
    })
}
