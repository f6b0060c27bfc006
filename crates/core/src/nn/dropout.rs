//! Dropout with its own seeded random stream.
//!
//! candle's CPU random numbers cannot be seeded, and training must be reproducible from
//! `--seed` (and resumable bit for bit), so masks are drawn from a ChaCha stream that the
//! training loop derives from (seed, step).

use candle_core::{Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ops;

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
        // An element is kept when a uniform f32 `u` drawn as rand draws it, `(r >> 8) * 2^-24`
        // for the next u32 `r`, is below `keep`: the same as `r >> 8` being below `keep * 2^24`
        // rounded up (exact in integers), so the masks stay those of `rng.random::<f32>() <
        // keep`, drawn 64 at a time without the float conversions.
        let threshold = (keep * (1u32 << 24) as f32).ceil() as u32;
        let mut draws = [0u32; 64];
        let mut bits = vec![0u64; n.div_ceil(64)];
        for (i, word) in bits.iter_mut().enumerate() {
            let len = (n - 64 * i).min(64);
            // Consumes the stream exactly as `len` calls of `next_u32` do.
            rng.fill(&mut draws[..len]);
            *word = draws[..len]
                .iter()
                .enumerate()
                .fold(0, |w, (j, &r)| w | (((r >> 8) < threshold) as u64) << j);
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
            Some(mask) => ops::dropout(x, mask),
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

    /// The keep bits of elements `64 * w ..` (up to 64), bit `j` for element `64 * w + j`.
    #[inline(always)]
    pub fn word(&self, w: usize) -> u64 {
        self.bits[w]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The masks are those of drawing `rng.random::<f32>() < 1 - p` element by element, and
    /// consecutive draws continue the same stream: runs trained before the masks were drawn in
    /// blocks resume onto the same masks.
    #[test]
    fn masks_equal_elementwise_uniform_draws() {
        for (k, &p) in [0.1f32, 0.2, 0.3, 0.5, 0.9].iter().enumerate() {
            let seed = 40 + k as u64;
            let mut dropout = Dropout::train(p, seed);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for n in [1, 63, 64, 65, 1000, 7] {
                let mask = dropout.draw_mask(n).unwrap();
                for i in 0..n {
                    let kept = rng.random::<f32>() < 1.0 - p;
                    assert_eq!(mask.keeps(i), kept, "p {p}, n {n}, element {i}");
                }
            }
        }
    }
}
