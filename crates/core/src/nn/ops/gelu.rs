//! GELU (Hendrycks & Gimpel 2016, "Gaussian Error Linear Units"), exact (erf) or with the tanh
//! approximation GPT-2 was trained with, fused forward and backward.
//!
//! candle's own GELU calls libm per element and its backward is a chain of ~10 tensor ops; here
//! each direction is one vectorised pass using the polynomials of [`super::math`].

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::cpu::{CpuRead, f32_slice, map_chunks, rows_per_task, tensor};
use super::math::{Fma, erf_and_gauss, simd_dispatch, tanh};
use super::{fast_path, reference};

/// Which GELU formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeluKind {
    /// `0.5 x (1 + erf(x / sqrt 2))`, as `torch.nn.functional.gelu` (nanoGPT).
    Erf,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, Hugging Face `gelu_new` (GPT-2).
    Tanh,
}

/// GELU, elementwise.
///
/// # Shapes
/// `x`: any -> same shape.
pub fn gelu(x: &Tensor, kind: GeluKind) -> Result<Tensor> {
    if !fast_path(&[x]) {
        return reference::gelu(x, kind);
    }
    x.contiguous()?.apply_op1(GeluOp { kind })
}

struct GeluOp {
    kind: GeluKind,
}

const NAME: &str = "muse-gelu";
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const COEF: f32 = 0.044_715;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `y = gelu(x)` or, when `dy` is given, `y = dy * gelu'(x)`; writes every element of `y`.
#[inline(always)]
fn kernel<F: Fma>(kind: GeluKind, x: &[f32], dy: Option<&[f32]>, y: &mut [MaybeUninit<f32>]) {
    match (kind, dy) {
        (GeluKind::Erf, None) => {
            for (y, &x) in y.iter_mut().zip(x) {
                let (e, _) = erf_and_gauss::<F>(x * FRAC_1_SQRT_2);
                y.write(0.5 * x * (1.0 + e));
            }
        }
        (GeluKind::Erf, Some(dy)) => {
            for ((y, &x), &d) in y.iter_mut().zip(x).zip(dy) {
                // d/dx = Phi(x) + x phi(x), and erf_and_gauss returns e^{-x^2/2} with erf.
                let (e, g) = erf_and_gauss::<F>(x * FRAC_1_SQRT_2);
                y.write(d * (0.5 * (1.0 + e) + x * g * FRAC_1_SQRT_2PI));
            }
        }
        (GeluKind::Tanh, None) => {
            for (y, &x) in y.iter_mut().zip(x) {
                let t = tanh::<F>(SQRT_2_OVER_PI * F::fma(COEF * x, x * x, x));
                y.write(0.5 * x * (1.0 + t));
            }
        }
        (GeluKind::Tanh, Some(dy)) => {
            for ((y, &x), &d) in y.iter_mut().zip(x).zip(dy) {
                let t = tanh::<F>(SQRT_2_OVER_PI * F::fma(COEF * x, x * x, x));
                let du = SQRT_2_OVER_PI * F::fma(3.0 * COEF * x, x, 1.0);
                y.write(d * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du));
            }
        }
    }
}

simd_dispatch!(fn kernel_simd(kind: GeluKind, x: &[f32], dy: Option<&[f32]>, y: &mut [MaybeUninit<f32>]) = kernel);

/// The fused kernel over `x` (and `dy`), split across threads.
fn run(kind: GeluKind, x: &[f32], dy: Option<&[f32]>) -> Vec<f32> {
    let chunk = rows_per_task(x.len(), 40);
    // SAFETY: the kernel writes every element of its chunk.
    unsafe {
        map_chunks(x, chunk, |i, x, y| {
            let dy = dy.map(|d| &d[i * chunk..i * chunk + x.len()]);
            kernel_simd(kind, x, dy, y)
        })
    }
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = run(self.kind, f32_slice(s, l, NAME)?, None);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let (xr, dyr) = (CpuRead::new(x, NAME)?, CpuRead::new(&dy, NAME)?);
        let dx = run(self.kind, xr.slice(), Some(dyr.slice()));
        Ok(Some(tensor(dx, x.shape())?))
    }
}
