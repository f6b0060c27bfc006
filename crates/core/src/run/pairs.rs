//! `muse data split DATA`: read a sentence-pair corpus (eng-fra or a TSV / JSONL file), deal
//! it into the fixed train / valid / test split, report the sizes, and optionally write the
//! three parts as TSV files (for a reference translation to score with `muse eval --hyp --ref`,
//! or for another toolkit).

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::data::parallel::{Pair, load_parallel};
use crate::error::{Error, Result};

/// The seed of the documented split.
pub const DEFAULT_SEED: u64 = crate::data::parallel::SPLIT_SEED;

/// What `muse data split` was asked.
#[derive(Clone, Debug)]
pub struct SplitRequest {
    /// `eng-fra`, or a TSV / JSONL file of pairs.
    pub data: String,
    /// Swap source and target (fr-en for eng-fra).
    pub reverse: bool,
    /// Seed of the split (13 is the documented one).
    pub seed: u64,
    /// Folder to write train.tsv, valid.tsv and test.tsv into.
    pub out: Option<PathBuf>,
}

/// Split sizes for people (`lines`) and scripts (`json`).
pub struct SplitReport {
    pub lines: Vec<String>,
    pub json: Value,
}

/// Reads, splits, reports and (with `out`) writes the corpus.
pub fn split_corpus(req: &SplitRequest) -> Result<SplitReport> {
    let d = load_parallel(&req.data, req.reverse, req.seed)?;
    let s = &d.splits;
    let mut lines = vec![
        format!(
            "{}: {} pairs{} ({}), {} exact duplicate pairs kept once, {} groups of pairs \
             linked by a shared sentence",
            req.data,
            d.file.pairs.len(),
            if req.reverse { ", reversed" } else { "" },
            d.file.record.path,
            s.duplicates,
            s.groups
        ),
        format!(
            "split (seed {}): {} train / {} valid / {} test; no valid or test sentence appears \
             in training",
            s.seed,
            s.train.len(),
            s.valid.len(),
            s.test.len()
        ),
    ];
    if let Some(dir) = &req.out {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        for (name, part) in [
            ("train.tsv", &s.train),
            ("valid.tsv", &s.valid),
            ("test.tsv", &s.test),
        ] {
            let path = dir.join(name);
            crate::io::write_atomic(&path, tsv(part).as_bytes())?;
            lines.push(format!("wrote {} ({} pairs)", path.display(), part.len()));
        }
    }
    Ok(SplitReport {
        json: json!({
            "data": req.data, "path": d.file.record.path, "sha256": d.file.record.sha256,
            "reversed": req.reverse, "pairs": d.file.pairs.len(), "duplicates": s.duplicates,
            "groups": s.groups, "seed": s.seed, "train": s.train.len(),
            "valid": s.valid.len(), "test": s.test.len(),
            "out": req.out.as_ref().map(|p| p.display().to_string()),
        }),
        lines,
    })
}

/// `source TAB target` lines. Tabs and newlines inside a sentence (possible in JSONL input)
/// become spaces, so every pair stays one line.
fn tsv(pairs: &[Pair]) -> String {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    pairs
        .iter()
        .map(|p| format!("{}\t{}\n", clean(&p.source), clean(&p.target)))
        .collect()
}
