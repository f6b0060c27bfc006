//! Dropout with its own seeded random stream.
//!
//! candle's CPU random numbers cannot be seeded, and training must be reproducible from
//! `--seed` (and resumable bit for bit), so masks are drawn from a ChaCha stream that the
//! training loop derives from (seed, step).

use candle_core::{Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Inverted dropout: zeroes each element with probability `p` and scales the rest by
/// `1 / (1 - p)`. Disabled (identity) when `p == 0` or in evaluation.
pub struct Dropout {
    p: f32,
    rng: Option<ChaCha8Rng>,
}

impl Dropout {
    /// Active dropout with probability `p`, drawing masks from a stream seeded by `seed`.
    pub fn train(p: f32, seed: u64) -> Self {
        let rng = (p > 0.0).then(|| ChaCha8Rng::seed_from_u64(seed));
        Self { p, rng }
    }

    /// Identity: for evaluation and generation.
    pub fn eval() -> Self {
        Self { p: 0.0, rng: None }
    }

    /// True when this dropout changes its input.
    pub fn is_active(&self) -> bool {
        self.rng.is_some()
    }

    /// Draws the mask of the next `n` elements (row-major), consuming the stream exactly as
    /// [`Dropout::apply`] on `n` elements does; `None` when inactive (nothing drawn).
    pub fn draw_mask(&mut self, n: usize) -> Option<KeepMask> {
        let rng = self.rng.as_mut()?;
        let keep = 1.0 - self.p;
        let mut bits = vec![0u64; n.div_ceil(64)];
        for (i, word) in bits.iter_mut().enumerate() {
            for bit in 0..(n - 64 * i).min(64) {
                if rng.random::<f32>() < keep {
                    *word |= 1 << bit;
                }
            }
        }
        Some(KeepMask {
            bits,
            len: n,
            scale: 1.0 / keep,
        })
    }

    /// Applies dropout to `x` (any shape).
    pub fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        match self.draw_mask(x.elem_count()) {
            Some(mask) => x.mul(&mask.to_tensor(x)?),
            None => Ok(x.clone()),
        }
    }
}

/// Which elements one dropout call keeps, one bit per element (a float mask would take 32),
/// and the `1 / (1 - p)` the kept ones are scaled by.
#[derive(Clone, Debug, PartialEq)]
pub struct KeepMask {
    bits: Vec<u64>,
    len: usize,
    scale: f32,
}

impl KeepMask {
    /// Number of elements covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it covers no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The factor kept elements are multiplied by, `1 / (1 - p)`.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// True when element `i` (row-major) is kept.
    #[inline(always)]
    pub fn keeps(&self, i: usize) -> bool {
        self.bits[i / 64] >> (i % 64) & 1 == 1
    }

    /// The multiplier of element `i`: `scale` when kept, 0 when dropped.
    #[inline(always)]
    pub fn factor(&self, i: usize) -> f32 {
        if self.keeps(i) { self.scale } else { 0.0 }
    }

    /// The multipliers of elements `64 * w ..` (up to 64), word `w` at a time: `f(w, factors)`
    /// with `factors[j]` for element `64 * w + j`, a faster walk than [`KeepMask::factor`].
    pub fn for_each_block(&self, mut f: impl FnMut(usize, &[f32])) {
        let mut factors = [0f32; 64];
        for (w, &word) in self.bits.iter().enumerate() {
            let n = (self.len - 64 * w).min(64);
            for (j, v) in factors[..n].iter_mut().enumerate() {
                *v = if word >> j & 1 == 1 { self.scale } else { 0.0 };
            }
            f(w, &factors[..n]);
        }
    }

    /// The float mask (`scale` or 0 per element) shaped and typed like `x`, which must have
    /// [`KeepMask::len`] elements.
    pub fn to_tensor(&self, x: &Tensor) -> Result<Tensor> {
        if x.elem_count() != self.len {
            candle_core::bail!(
                "dropout mask of {} elements does not fit {:?}",
                self.len,
                x.shape()
            )
        }
        let mask: Vec<f32> = (0..self.len).map(|i| self.factor(i)).collect();
        Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())
    }
}
