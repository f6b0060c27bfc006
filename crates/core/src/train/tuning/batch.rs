//! Batches of variable-length examples: right padding, loss masks, seeded epoch order.
//!
//! Each row holds one example, padded at the end. Attention is causal, so a real position
//! never sees the padding after it, and rows never see each other: no example attends to
//! another. Targets are `IGNORE_INDEX` wherever the model should not learn (prompt tokens,
//! padding), which `ops::cross_entropy` skips.

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;

use crate::data::instructions::TokenizedExample;
use crate::data::windows::step_rng;
use crate::error::Result;
use crate::nn::ops::IGNORE_INDEX;

/// Inputs and next-token targets of a padded batch.
pub struct PaddedBatch {
    /// (B, T) u32
    pub inputs: Tensor,
    /// (B, T) u32; `IGNORE_INDEX` at positions without a loss.
    pub targets: Tensor,
    /// Positions with a loss.
    pub n_targets: usize,
    /// Real (non-padding) input positions.
    pub n_tokens: usize,
}

/// Next-token inputs and targets of one example: `inputs = ids[..n-1]`,
/// `targets[i] = ids[i+1]` where that id is trainable, else `IGNORE_INDEX`.
pub fn example_io(ex: &TokenizedExample) -> (Vec<u32>, Vec<u32>) {
    let n = ex.ids.len();
    if n < 2 {
        return (Vec::new(), Vec::new());
    }
    let inputs = ex.ids[..n - 1].to_vec();
    let targets = (1..n)
        .map(|i| {
            if ex.trainable[i] {
                ex.ids[i]
            } else {
                IGNORE_INDEX
            }
        })
        .collect();
    (inputs, targets)
}

/// Pads the examples to the longest one (at the end, with `pad`) into one batch.
pub fn pad_batch(examples: &[&TokenizedExample], pad: u32, device: &Device) -> Result<PaddedBatch> {
    let io: Vec<(Vec<u32>, Vec<u32>)> = examples.iter().map(|e| example_io(e)).collect();
    let t = io.iter().map(|(i, _)| i.len()).max().unwrap_or(0).max(1);
    let b = io.len();
    let mut inputs = Vec::with_capacity(b * t);
    let mut targets = Vec::with_capacity(b * t);
    let (mut n_targets, mut n_tokens) = (0, 0);
    for (i, tg) in &io {
        n_tokens += i.len();
        n_targets += tg.iter().filter(|&&x| x != IGNORE_INDEX).count();
        inputs.extend_from_slice(i);
        inputs.extend(std::iter::repeat_n(pad, t - i.len()));
        targets.extend_from_slice(tg);
        targets.extend(std::iter::repeat_n(IGNORE_INDEX, t - tg.len()));
    }
    Ok(PaddedBatch {
        inputs: Tensor::from_vec(inputs, (b, t), device)?,
        targets: Tensor::from_vec(targets, (b, t), device)?,
        n_targets,
        n_tokens,
    })
}

/// Cuts an example to `max_len` ids: the prompt keeps its end and the reply its beginning,
/// with the reply given at least half of the room. `None` when nothing trainable remains.
pub fn truncate(ex: &TokenizedExample, max_len: usize) -> Option<TokenizedExample> {
    if ex.ids.len() <= max_len {
        return (ex.n_trainable() > 0).then(|| ex.clone());
    }
    let first = ex.trainable.iter().position(|&t| t)?;
    let reply_len = ex.ids.len() - first;
    let prompt_keep = first.min(max_len - reply_len.min(max_len / 2));
    let start = first - prompt_keep;
    let end = (start + max_len).min(ex.ids.len());
    let out = TokenizedExample {
        ids: ex.ids[start..end].to_vec(),
        trainable: ex.trainable[start..end].to_vec(),
    };
    // The first id has no prediction: at least one trainable id must follow it.
    (out.trainable[1..].iter().any(|&t| t)).then_some(out)
}

/// A seeded order over `n` items, epoch after epoch: position `p` of the stream is item
/// `perm_e[p % n]` of epoch `e = p / n`, each epoch's permutation a pure function of
/// (seed, epoch). Batches are therefore a pure function of the step, so resume is exact.
pub struct EpochOrder {
    n: usize,
    seed: u64,
    epoch: u64,
    perm: Vec<usize>,
}

/// The random stream of epoch permutations, apart from every other stream of a run.
const ORDER_STREAM: u64 = 7 << 40;

impl EpochOrder {
    pub fn new(n: usize, seed: u64) -> Self {
        let mut o = Self {
            n,
            seed,
            epoch: u64::MAX,
            perm: Vec::new(),
        };
        o.set_epoch(0);
        o
    }

    fn set_epoch(&mut self, epoch: u64) {
        if self.epoch != epoch {
            self.perm = (0..self.n).collect();
            self.perm
                .shuffle(&mut step_rng(self.seed, epoch, ORDER_STREAM));
            self.epoch = epoch;
        }
    }

    /// The item at stream position `pos`.
    pub fn at(&mut self, pos: u64) -> usize {
        let n = self.n as u64;
        self.set_epoch(pos / n);
        self.perm[(pos % n) as usize]
    }

    /// The `batch` items of micro-batch `micro` of optimizer step `step`.
    pub fn batch(&mut self, step: u64, micro: u64, grad_accum: u64, batch: usize) -> Vec<usize> {
        let start = (step * grad_accum + micro) * batch as u64;
        (0..batch as u64).map(|k| self.at(start + k)).collect()
    }

    /// Epochs completed at stream position `pos`.
    pub fn epoch_of(&self, pos: u64) -> f64 {
        pos as f64 / self.n as f64
    }
}

/// Splits `n` items into (train, held-out) index lists, a fixed shuffle independent of the
/// training seed so runs with different seeds are evaluated on the same examples.
pub fn split_indices(n: usize, val_fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut step_rng(0x5EED_5B17, 0, 0));
    let n_val = ((n as f64 * val_fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let val = idx[..n_val].to_vec();
    let train = idx[n_val..].to_vec();
    (train, val)
}
