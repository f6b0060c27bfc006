//! The fixed train / valid / test split of a pair corpus.
//!
//! 1. Exact duplicate pairs (same source and target after trimming) are kept once, at their
//!    first line: a repeated pair would otherwise be trained on twice, or sit in both training
//!    and test.
//! 2. Pairs are grouped by shared sentences: two pairs with the same source sentence, or the
//!    same target sentence (compared after collapsing whitespace), are in one group, and so on
//!    transitively. Tatoeba gives one English sentence several French translations and the
//!    reverse; on `eng-fra` the largest group has 42 pairs.
//! 3. The groups are shuffled with a seeded ChaCha8 generator and dealt out whole: to test
//!    until it holds at least `test` pairs, then to valid, the rest to training. Each split
//!    keeps file order.
//!
//! So no test or valid source sentence appears as a training source (nor any target as a
//! training target), and the split is the same for both directions: `--reverse` swaps the sides
//! of the same pairs.

use std::collections::{HashMap, HashSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::read::Pair;
use crate::error::{Error, Result};

/// The seed of the documented split.
pub const SPLIT_SEED: u64 = 13;

/// Pairs held out: the test and validation sets are at least this large (whole groups, so a
/// few pairs more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitSizes {
    pub valid: usize,
    pub test: usize,
}

impl SplitSizes {
    /// 5% of the pairs for test (at most 5,000) and 2% for validation (at most 1,500), at least
    /// one pair each. On eng-fra: 5,000 and 1,500.
    pub fn for_corpus(pairs: usize) -> SplitSizes {
        SplitSizes {
            valid: (pairs / 50).clamp(1, 1_500),
            test: (pairs / 20).clamp(1, 5_000),
        }
    }
}

/// A corpus dealt into three disjoint parts.
#[derive(Clone, Debug)]
pub struct PairSplits {
    pub train: Vec<Pair>,
    pub valid: Vec<Pair>,
    pub test: Vec<Pair>,
    /// Exact duplicate pairs left out (step 1).
    pub duplicates: usize,
    /// Groups of pairs linked by a shared sentence (step 2).
    pub groups: usize,
    pub seed: u64,
}

/// Splits `pairs` with [`SplitSizes::for_corpus`] of the deduplicated count.
pub fn split_pairs(pairs: &[Pair], seed: u64) -> Result<PairSplits> {
    let unique = dedup(pairs).len();
    split_pairs_with(pairs, seed, SplitSizes::for_corpus(unique))
}

/// Splits `pairs` as the module header describes.
pub fn split_pairs_with(pairs: &[Pair], seed: u64, sizes: SplitSizes) -> Result<PairSplits> {
    let unique = dedup(pairs);
    let groups = group_by_shared_sentence(&unique);
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (mut test, mut valid, mut train) = (Vec::new(), Vec::new(), Vec::new());
    for g in order {
        let part = if test.len() < sizes.test {
            &mut test
        } else if valid.len() < sizes.valid {
            &mut valid
        } else {
            &mut train
        };
        part.extend(groups[g].iter().copied());
    }
    if train.is_empty() || valid.is_empty() || test.is_empty() {
        return Err(Error::input(format!(
            "{} pairs ({} distinct, in {} groups of shared sentences) are too few to split into \
             training, validation ({}) and test ({}) pairs: give a larger corpus",
            pairs.len(),
            unique.len(),
            groups.len(),
            sizes.valid,
            sizes.test
        )));
    }
    let take = |mut ids: Vec<usize>| -> Vec<Pair> {
        ids.sort_unstable();
        ids.into_iter().map(|i| unique[i].clone()).collect()
    };
    Ok(PairSplits {
        duplicates: pairs.len() - unique.len(),
        groups: groups.len(),
        train: take(train),
        valid: take(valid),
        test: take(test),
        seed,
    })
}

/// The pairs without exact repeats, first occurrence kept.
fn dedup(pairs: &[Pair]) -> Vec<&Pair> {
    let mut seen = HashSet::new();
    pairs.iter().filter(|p| seen.insert(*p)).collect()
}

/// A sentence compared with others: whitespace runs collapsed to one space.
pub fn sentence_key(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Pair indices grouped by shared source or target sentences (union-find), groups in order of
/// their first pair.
fn group_by_shared_sentence(pairs: &[&Pair]) -> Vec<Vec<usize>> {
    let mut ids: HashMap<(bool, String), usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    let mut id_of = |side: bool, text: &str, parent: &mut Vec<usize>| -> usize {
        *ids.entry((side, sentence_key(text))).or_insert_with(|| {
            parent.push(parent.len());
            parent.len() - 1
        })
    };
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut source_ids = Vec::with_capacity(pairs.len());
    for p in pairs {
        let s = id_of(false, &p.source, &mut parent);
        let t = id_of(true, &p.target, &mut parent);
        let (rs, rt) = (find(&mut parent, s), find(&mut parent, t));
        if rs != rt {
            parent[rs] = rt;
        }
        source_ids.push(s);
    }
    let mut group_of_root: HashMap<usize, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, s) in source_ids.into_iter().enumerate() {
        let root = find(&mut parent, s);
        let g = *group_of_root.entry(root).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}
