//! Batches of tokenized sentence pairs for an encoder-decoder model: sources end in EOS,
//! decoder inputs start with BOS, targets end in EOS, every row right-padded.
//!
//! An epoch is a pure function of (seed, epoch): the pairs are shuffled, cut into pools of
//! [`POOL_BATCHES`] batches, each pool sorted by length and cut into batches (so a batch holds
//! sentences of similar length and little padding), and the batches shuffled. Step `s` takes
//! batch `s mod n` of epoch `s / n`, so a resumed run sees exactly the batches the
//! uninterrupted one would.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// Batches per sorting pool.
pub const POOL_BATCHES: usize = 50;

/// The ids of one pair, without special tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPair {
    pub source: Vec<u32>,
    pub target: Vec<u32>,
}

impl TokenPair {
    /// The longer side with its special token, for sorting and filtering.
    pub fn len(&self) -> usize {
        self.source.len().max(self.target.len()) + 1
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty() && self.target.is_empty()
    }
}

/// The special ids a batch is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Specials {
    pub pad: u32,
    pub bos: u32,
    pub eos: u32,
}

/// One padded batch.
#[derive(Clone, Debug)]
pub struct PairBatch {
    /// Sources then EOS. (B, Ts) u32.
    pub src: Tensor,
    /// BOS then the target. (B, Tt) u32.
    pub tgt_in: Tensor,
    /// The target then EOS. (B, Tt) u32.
    pub tgt_out: Tensor,
    /// Target tokens that count in the loss (EOS included, padding not).
    pub target_tokens: usize,
}

/// Right-pads and stacks the pairs `idx` of `pairs`.
pub fn make_batch(
    pairs: &[TokenPair],
    idx: &[usize],
    sp: Specials,
    device: &Device,
) -> Result<PairBatch> {
    let ts = idx
        .iter()
        .map(|&i| pairs[i].source.len() + 1)
        .max()
        .unwrap_or(1);
    let tt = idx
        .iter()
        .map(|&i| pairs[i].target.len() + 1)
        .max()
        .unwrap_or(1);
    let (mut src, mut tin, mut tout) = (Vec::new(), Vec::new(), Vec::new());
    let mut target_tokens = 0;
    for &i in idx {
        let p = &pairs[i];
        src.extend_from_slice(&p.source);
        src.push(sp.eos);
        src.extend(std::iter::repeat_n(sp.pad, ts - p.source.len() - 1));
        tin.push(sp.bos);
        tin.extend_from_slice(&p.target);
        tin.extend(std::iter::repeat_n(sp.pad, tt - p.target.len() - 1));
        tout.extend_from_slice(&p.target);
        tout.push(sp.eos);
        tout.extend(std::iter::repeat_n(sp.pad, tt - p.target.len() - 1));
        target_tokens += p.target.len() + 1;
    }
    let b = idx.len();
    Ok(PairBatch {
        src: Tensor::from_vec(src, (b, ts), device)?,
        tgt_in: Tensor::from_vec(tin, (b, tt), device)?,
        tgt_out: Tensor::from_vec(tout, (b, tt), device)?,
        target_tokens,
    })
}

/// The batches of one epoch over pairs of lengths `lengths`, as the module header describes.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::new();
    for pool in order.chunks_mut(batch_size * POOL_BATCHES) {
        pool.sort_by_key(|&i| lengths[i]);
        batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Batches per epoch (the same every epoch).
pub fn batches_per_epoch(pairs: usize, batch_size: usize) -> usize {
    let batch_size = batch_size.max(1);
    let pool = batch_size * POOL_BATCHES;
    (pairs / pool) * POOL_BATCHES + (pairs % pool).div_ceil(batch_size)
}

/// `m` batches spread evenly over the length distribution, for timing training steps on
/// representative work: batch `k` is the `batch_size` pairs starting at position
/// `(k + 0.5) / m` of the pairs stably sorted by length. `scripts/bench/seq2seq_ref.py` picks
/// the same batches, so Muse and PyTorch time the same work.
pub fn quantile_batches(lengths: &[usize], batch_size: usize, m: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let span = order.len().saturating_sub(batch_size) as f64;
    (0..m)
        .map(|k| {
            let start = ((k as f64 + 0.5) / m as f64 * span) as usize;
            order[start..(start + batch_size).min(order.len())].to_vec()
        })
        .collect()
}

/// Batches of `idx` in their given order (evaluation: sort `idx` by length first).
pub fn sequential_batches(idx: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    idx.chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_cover_every_pair_once_and_are_reproducible() {
        let lengths: Vec<usize> = (0..1003).map(|i| (i * 7919) % 37).collect();
        let a = epoch_batches(&lengths, 8, 5, 2);
        assert_eq!(a, epoch_batches(&lengths, 8, 5, 2));
        assert_ne!(a, epoch_batches(&lengths, 8, 5, 3));
        assert_eq!(a.len(), batches_per_epoch(lengths.len(), 8));
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..1003).collect::<Vec<_>>());
    }

    #[test]
    fn quantile_batches_span_the_lengths_in_order() {
        let lengths = [5, 1, 4, 1, 3, 2, 9, 8, 7, 6];
        // Sorted stably: 1 (1), 1 (3), 2 (5), 3 (4), 4 (2), 5 (0), 6 (9), 7 (8), 8 (7), 9 (6).
        let b = quantile_batches(&lengths, 2, 4);
        assert_eq!(b, [vec![3, 5], vec![4, 2], vec![0, 9], vec![8, 7]]);
        assert_eq!(
            quantile_batches(&lengths, 20, 1),
            [vec![1, 3, 5, 4, 2, 0, 9, 8, 7, 6]]
        );
    }

    #[test]
    fn batches_are_padded_with_bos_and_eos_in_place() {
        let pairs = vec![
            TokenPair {
                source: vec![5, 6],
                target: vec![7],
            },
            TokenPair {
                source: vec![8],
                target: vec![9, 10, 11],
            },
        ];
        let sp = Specials {
            pad: 0,
            bos: 1,
            eos: 2,
        };
        let b = make_batch(&pairs, &[0, 1], sp, &Device::Cpu).unwrap();
        assert_eq!(b.src.to_vec2::<u32>().unwrap(), [[5, 6, 2], [8, 2, 0]]);
        assert_eq!(
            b.tgt_in.to_vec2::<u32>().unwrap(),
            [[1, 7, 0, 0], [1, 9, 10, 11]]
        );
        assert_eq!(
            b.tgt_out.to_vec2::<u32>().unwrap(),
            [[7, 2, 0, 0], [9, 10, 11, 2]]
        );
        assert_eq!(b.target_tokens, 6);
    }
}
