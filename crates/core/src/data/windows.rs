//! Token streams cut into training windows: the 90/10 text split, random windows for training
//! batches (nanoGPT's `get_batch`) and consecutive windows that cover a split for evaluation.

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Splits `text` by characters: the first `1 - val_fraction` for training, the rest for
/// validation (nanoGPT's `data[:int(n * 0.9)]`).
pub fn split_text(text: &str, val_fraction: f64) -> (&str, &str) {
    let n_chars = text.chars().count();
    let n_train = (n_chars as f64 * (1.0 - val_fraction)) as usize;
    let at = text
        .char_indices()
        .nth(n_train)
        .map_or(text.len(), |(i, _)| i);
    text.split_at(at)
}

/// A batch of inputs and next-token targets.
pub struct TokenBatch {
    /// (B, T) u32
    pub inputs: Tensor,
    /// (B, T) u32, the inputs shifted by one.
    pub targets: Tensor,
}

/// A seeded generator for one (seed, step, stream) triple, so every batch is a pure function of
/// where the run is: resuming at a step reproduces the batches of an uninterrupted run.
pub fn step_rng(seed: u64, step: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng.set_word_pos(u128::from(step) << 20);
    rng
}

/// `batch` windows of `block` tokens starting at uniformly random offsets.
pub fn random_windows(
    ids: &[u32],
    block: usize,
    batch: usize,
    rng: &mut impl Rng,
    device: &Device,
) -> Result<TokenBatch> {
    check_len(ids, block)?;
    let starts: Vec<usize> = (0..batch)
        .map(|_| rng.random_range(0..ids.len() - block))
        .collect();
    windows_at(ids, block, &starts, device)
}

/// Consecutive, non-overlapping windows covering `ids` (the last partial window dropped), in
/// batches of up to `batch`: every token but the first of each window is predicted once.
pub fn sequential_windows(ids: &[u32], block: usize) -> Result<Vec<usize>> {
    check_len(ids, block)?;
    Ok((0..(ids.len() - 1) / block).map(|i| i * block).collect())
}

/// The windows starting at `starts`.
pub fn windows_at(
    ids: &[u32],
    block: usize,
    starts: &[usize],
    device: &Device,
) -> Result<TokenBatch> {
    let mut x = Vec::with_capacity(starts.len() * block);
    let mut y = Vec::with_capacity(starts.len() * block);
    for &s in starts {
        x.extend_from_slice(&ids[s..s + block]);
        y.extend_from_slice(&ids[s + 1..s + block + 1]);
    }
    let shape = (starts.len(), block);
    Ok(TokenBatch {
        inputs: Tensor::from_vec(x, shape, device)?,
        targets: Tensor::from_vec(y, shape, device)?,
    })
}

fn check_len(ids: &[u32], block: usize) -> Result<()> {
    if ids.len() <= block + 1 {
        return Err(Error::input(format!(
            "a split has {} tokens, too few for windows of {block}: use a larger corpus or a \
             smaller block (--set n_positions=...)",
            ids.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_by_characters() {
        let (a, b) = split_text("héllo wörld", 0.5);
        assert_eq!((a, b), ("héllo", " wörld"));
    }

    #[test]
    fn windows_are_shifted_by_one_and_reproducible() {
        let ids: Vec<u32> = (0..100).collect();
        let batch = random_windows(&ids, 8, 4, &mut step_rng(1, 7, 0), &Device::Cpu).unwrap();
        let again = random_windows(&ids, 8, 4, &mut step_rng(1, 7, 0), &Device::Cpu).unwrap();
        let x = batch.inputs.to_vec2::<u32>().unwrap();
        let y = batch.targets.to_vec2::<u32>().unwrap();
        assert_eq!(x, again.inputs.to_vec2::<u32>().unwrap());
        for (xr, yr) in x.iter().zip(&y) {
            assert!(xr.iter().zip(yr).all(|(a, b)| b == &(a + 1)));
        }
        let other = random_windows(&ids, 8, 4, &mut step_rng(1, 8, 0), &Device::Cpu).unwrap();
        assert_ne!(x, other.inputs.to_vec2::<u32>().unwrap());
    }

    #[test]
    fn sequential_windows_cover_the_split() {
        let ids: Vec<u32> = (0..21).collect();
        assert_eq!(sequential_windows(&ids, 5).unwrap(), vec![0, 5, 10, 15]);
        assert!(sequential_windows(&ids[..6], 5).is_err());
    }
}
