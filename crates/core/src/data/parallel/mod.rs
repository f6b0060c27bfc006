//! Parallel text for translation: sentence pairs read from `eng-fra` or a user's TSV / JSONL
//! file, optionally reversed, and dealt into a fixed train / valid / test split.

pub mod batch;
mod read;
mod split;

pub use read::{
    Pair, PairFile, PairFormat, read_pair_jsonl, read_pairs, read_tsv, resolve_pair_file,
};
pub use split::{PairSplits, SPLIT_SEED, SplitSizes, sentence_key, split_pairs, split_pairs_with};

use crate::error::Result;

/// A pair corpus and its split.
#[derive(Clone, Debug)]
pub struct ParallelData {
    pub file: PairFile,
    pub splits: PairSplits,
}

/// Reads `data` (`eng-fra` or a TSV / JSONL path), swaps the sides when `reverse`, and splits
/// it with `seed` ([`SPLIT_SEED`] for the documented split).
pub fn load_parallel(data: &str, reverse: bool, seed: u64) -> Result<ParallelData> {
    let file = read_pairs(data, reverse)?;
    let splits = split_pairs(&file.pairs, seed)?;
    Ok(ParallelData { file, splits })
}
