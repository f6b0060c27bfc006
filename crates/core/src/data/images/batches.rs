//! The order images are visited in: a seeded permutation per epoch, cut into mini-batches.

use rand::seq::SliceRandom;

use crate::data::windows::step_rng;
use crate::error::{Error, Result};

/// A permutation of `0..n` that is a pure function of (seed, epoch).
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut step_rng(seed, epoch, PERMUTATION_STREAM));
    order
}

/// Random stream of the epoch permutations, apart from every per-step stream.
const PERMUTATION_STREAM: u64 = 0x5045_524d; // "PERM"
/// Mini-batches of a dataset of `n` items in a fresh seeded order each epoch (PyTorch's
/// `DataLoader(shuffle=True)`): the batch of global step `s` depends only on (seed, s), so a
/// resumed run sees the same batches. The last, smaller batch of an epoch is kept unless
/// [`EpochBatches::drop_last`] is set.
#[derive(Clone, Debug)]
pub struct EpochBatches {
    n: usize,
    batch_size: usize,
    seed: u64,
    drop_last: bool,
    cached: Option<(u64, Vec<usize>)>,
}

impl EpochBatches {
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Result<Self> {
        if n == 0 || batch_size == 0 {
            return Err(Error::usage(format!(
                "cannot make batches of {batch_size} from {n} images"
            )));
        }
        Ok(Self {
            n,
            batch_size,
            seed,
            drop_last: false,
            cached: None,
        })
    }

    /// Drops the last incomplete batch of each epoch (needs `n >= batch_size`).
    pub fn drop_last(mut self, yes: bool) -> Result<Self> {
        if yes && self.n < self.batch_size {
            return Err(Error::usage(format!(
                "batch size {} is larger than the {} images",
                self.batch_size, self.n
            )));
        }
        self.drop_last = yes;
        Ok(self)
    }

    /// Optimizer steps per pass over the data.
    pub fn steps_per_epoch(&self) -> u64 {
        if self.drop_last {
            (self.n / self.batch_size) as u64
        } else {
            self.n.div_ceil(self.batch_size) as u64
        }
    }

    /// The epoch that global step `step` belongs to.
    pub fn epoch_of(&self, step: u64) -> u64 {
        step / self.steps_per_epoch()
    }

    /// The item indices of the batch at global step `step`.
    pub fn indices(&mut self, step: u64) -> Vec<usize> {
        let spe = self.steps_per_epoch();
        let (epoch, pos) = (step / spe, (step % spe) as usize);
        if self.cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.cached = Some((epoch, epoch_permutation(self.n, self.seed, epoch)));
        }
        let order = &self.cached.as_ref().expect("just cached").1;
        let start = pos * self.batch_size;
        order[start..(start + self.batch_size).min(self.n)].to_vec()
    }
}

/// Consecutive index chunks `0..n` of at most `batch` (for evaluation passes).
pub fn chunks(n: usize, batch: usize) -> impl Iterator<Item = Vec<usize>> {
    let batch = batch.max(1);
    (0..n.div_ceil(batch)).map(move |i| (i * batch..((i + 1) * batch).min(n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_cover_every_item_once_and_reproduce() {
        let mut b = EpochBatches::new(10, 4, 7).unwrap();
        assert_eq!(b.steps_per_epoch(), 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|s| b.indices(s)).collect();
        assert_eq!(b.indices(2).len(), 2);
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let mut again = EpochBatches::new(10, 4, 7).unwrap();
        assert_eq!(again.indices(4), b.indices(4));
        assert_ne!(b.indices(0), b.indices(3), "each epoch has its own order");
        let mut d = EpochBatches::new(10, 4, 7)
            .unwrap()
            .drop_last(true)
            .unwrap();
        assert_eq!(d.steps_per_epoch(), 2);
        assert_eq!(d.indices(2), b.indices(3));
    }
}
