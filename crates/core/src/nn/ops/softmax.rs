//! Softmax over the last dimension, forward and backward as one pass over each row.
//!
//! candle's differentiable softmax is five tensor ops (max, subtract, exp, sum, divide), each
//! allocating its output, and its backward walks all five (each node's gradient zeroed, then
//! summed into). The attention layers that cannot use the fused attention kernels (an additive
//! mask, dropout on the weights, cross-attention) spend a good part of their time there.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, D, Layout, Result, Shape, Tensor};

use super::cpu::{CpuRead, f32_slice, map_chunks, rows_per_task, tensor};
use super::math::{Fma, exp, max, simd_dispatch, sum_map, sum_map2};
use super::{fast_path, reference};

/// `softmax(x)` along the last dimension. A row whose entries are all `-inf` comes out as NaN,
/// as the composed ops give.
///
/// # Shapes
/// `x`: (..., N) -> same shape.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !fast_path(&[x]) || x.dims().is_empty() {
        return reference::softmax_last_dim(x);
    }
    x.contiguous()?.apply_op1(SoftmaxOp)
}

struct SoftmaxOp;

const NAME: &str = "muse-softmax";

/// One row: `y = exp(x - max x) / sum`.
#[inline(always)]
fn forward_kernel<F: Fma>(x: &[f32], y: &mut [MaybeUninit<f32>]) {
    let m = max(x);
    for (y, &x) in y.iter_mut().zip(x) {
        // `exp` clamps its input at -87.3 (e^-87.3 ~ 1e-38, the smallest normal f32), so
        // anything further below the maximum, masked entries (-inf, -1e9) among them, is set
        // to the 0 it rounds to.
        let d = x - m;
        y.write(if d < -87.3 { 0.0 } else { exp::<F>(d) });
    }
    // SAFETY: every element of `y` was written just above.
    let y = unsafe { &mut *(y as *mut [MaybeUninit<f32>] as *mut [f32]) };
    let inv = 1.0 / sum_map(y, |v| v);
    y.iter_mut().for_each(|v| *v *= inv);
}
simd_dispatch!(fn forward_row(x: &[f32], y: &mut [MaybeUninit<f32>]) = forward_kernel);

/// One row: `dx = y * (dy - sum(dy * y))`.
#[inline(always)]
fn backward_kernel<F: Fma>(y: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
    let s = sum_map2(dy, y, |d, y| d * y);
    for ((dx, &y), &d) in dx.iter_mut().zip(y).zip(dy) {
        dx.write(y * (d - s));
    }
}
simd_dispatch!(fn backward_row(y: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>]) = backward_kernel);

/// `row(i, src_row, out_row)` for every row of length `n` of `src` and of an output the same
/// size, rows split across threads.
fn by_rows(
    src: &[f32],
    n: usize,
    row: impl Fn(usize, &[f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let n = n.max(1);
    let rows_per = rows_per_task(src.len() / n, 20 * n);
    // SAFETY: every row of a chunk is handed to `row`, which writes all of it.
    unsafe {
        map_chunks(src, rows_per * n, |c, src, out| {
            for (r, (s, o)) in src.chunks(n).zip(out.chunks_mut(n)).enumerate() {
                row(c * rows_per + r, s, o)
            }
        })
    }
}

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, NAME)?;
        let n = l.shape().dims().last().copied().unwrap_or(1);
        let y = by_rows(x, n, |_, x, y| forward_row(x, y));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// Needs only the output: `dx = y * (dy - sum(dy * y))` per row.
    fn bwd(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let (yr, dyr) = (CpuRead::new(y, NAME)?, CpuRead::new(&dy, NAME)?);
        let (ys, dys) = (yr.slice(), dyr.slice());
        let n = x.dim(D::Minus1)?;
        let dx = by_rows(ys, n, |i, y, dx| {
            backward_row(y, &dys[i * n..(i + 1) * n], dx)
        });
        Ok(Some(tensor(dx, x.shape())?))
    }
}
