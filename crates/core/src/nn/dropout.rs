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

    /// Applies dropout to `x` (any shape).
    pub fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        let Some(rng) = self.rng.as_mut() else {
            return Ok(x.clone());
        };
        let keep = 1.0 - self.p;
        let scale = 1.0 / keep;
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if rng.random::<f32>() < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x.mul(&mask)
    }
}
