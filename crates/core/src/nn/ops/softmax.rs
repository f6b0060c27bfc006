//! Softmax over the last dimension, forward and backward as one pass over each row, optionally
//! of `scale * x + bias` (the attention weights of scaled dot-product attention with an additive
//! mask).
//!
//! candle's differentiable softmax is five tensor ops (max, subtract, exp, sum, divide), each
//! allocating its output, and its backward walks all five (each node's gradient zeroed, then
//! summed into); the scaling and the mask before it are two more of each. The attention layers
//! that cannot use the fused attention kernels (an additive mask, dropout on the weights,
//! cross-attention) spend a good part of their time there.

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
    softmax_last_dim_scaled(x, 1.0, None)
}

/// `softmax(scale * x + bias)` along the last dimension, as one op: the attention weights of
/// scores `x`. The bias is a constant (a mask: 0 where attending, a large negative number or
/// `-inf` where not); no gradient reaches it.
///
/// # Shapes
/// `x`: (..., N); `bias`: broadcastable to `x`, with a last dimension of N -> the shape of `x`.
pub fn softmax_last_dim_scaled(x: &Tensor, scale: f64, bias: Option<&Tensor>) -> Result<Tensor> {
    let bias_fits = bias
        .is_none_or(|b| b.dims().last() == x.dims().last() && b.broadcast_as(x.shape()).is_ok());
    if !fast_path(&[x]) || x.dims().is_empty() || !bias_fits {
        return reference::softmax_last_dim_scaled(x, scale, bias);
    }
    let bias = match bias {
        Some(b) => Some(RowBias::new(&b.detach().contiguous()?, x.dims())?),
        None => None,
    };
    x.contiguous()?.apply_op1(SoftmaxOp {
        scale: scale as f32,
        bias,
    })
}

/// A contiguous bias and, for each row of the scores, where its row starts (broadcast rows
/// repeat).
struct RowBias {
    bias: Tensor,
    starts: Vec<usize>,
}

impl RowBias {
    fn new(bias: &Tensor, x_dims: &[usize]) -> Result<Self> {
        let n = *x_dims.last().unwrap_or(&1);
        let lead = &x_dims[..x_dims.len() - 1];
        // The bias's own dims, padded with 1s on the left to the rank of `x`, and the stride
        // of each of the leading ones: 0 where it broadcasts.
        let mut dims = vec![1; x_dims.len() - bias.rank()];
        dims.extend_from_slice(bias.dims());
        let mut strides = vec![0; lead.len()];
        let mut step = n;
        for d in (0..lead.len()).rev() {
            strides[d] = if dims[d] == 1 { 0 } else { step };
            step *= dims[d];
        }
        let rows: usize = lead.iter().product();
        let starts = (0..rows)
            .map(|mut r| {
                let mut start = 0;
                for d in (0..lead.len()).rev() {
                    start += (r % lead[d]) * strides[d];
                    r /= lead[d];
                }
                start
            })
            .collect();
        Ok(Self {
            bias: bias.clone(),
            starts,
        })
    }
}

struct SoftmaxOp {
    scale: f32,
    bias: Option<RowBias>,
}

const NAME: &str = "muse-softmax";

/// One row: `z = scale * x + bias`, `y = exp(z - max z) / sum`.
#[inline(always)]
fn forward_kernel<F: Fma>(x: &[f32], bias: Option<&[f32]>, scale: f32, y: &mut [MaybeUninit<f32>]) {
    match bias {
        Some(b) => y.iter_mut().zip(x).zip(b).for_each(|((y, &x), &b)| {
            y.write(F::fma(scale, x, b));
        }),
        None => y.iter_mut().zip(x).for_each(|(y, &x)| {
            y.write(scale * x);
        }),
    }
    // SAFETY: every element of `y` was written just above.
    let y = unsafe { &mut *(y as *mut [MaybeUninit<f32>] as *mut [f32]) };
    let m = max(y);
    for y in y.iter_mut() {
        // `exp` clamps its input at -87.3 (e^-87.3 ~ 1e-38, the smallest normal f32), so
        // anything further below the maximum, masked entries (-inf, -1e9) among them, is set
        // to the 0 it rounds to.
        let d = *y - m;
        *y = if d < -87.3 { 0.0 } else { exp::<F>(d) };
    }
    let inv = 1.0 / sum_map(y, |v| v);
    y.iter_mut().for_each(|v| *v *= inv);
}
simd_dispatch!(fn forward_row(x: &[f32], bias: Option<&[f32]>, scale: f32, y: &mut [MaybeUninit<f32>]) = forward_kernel);

/// One row: `dx = scale * y * (dy - sum(dy * y))`.
#[inline(always)]
fn backward_kernel<F: Fma>(y: &[f32], dy: &[f32], scale: f32, dx: &mut [MaybeUninit<f32>]) {
    let s = sum_map2(dy, y, |d, y| d * y);
    for ((dx, &y), &d) in dx.iter_mut().zip(y).zip(dy) {
        dx.write(scale * y * (d - s));
    }
}
simd_dispatch!(fn backward_row(y: &[f32], dy: &[f32], scale: f32, dx: &mut [MaybeUninit<f32>]) = backward_kernel);

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
        let y = match &self.bias {
            Some(rb) => {
                let br = CpuRead::new(&rb.bias, NAME)?;
                let b = br.slice();
                by_rows(x, n, |i, x, y| {
                    forward_row(x, Some(&b[rb.starts[i]..][..n]), self.scale, y)
                })
            }
            None => by_rows(x, n, |_, x, y| forward_row(x, None, self.scale, y)),
        };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// Needs only the output: `dx = scale * y * (dy - sum(dy * y))` per row.
    fn bwd(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let (yr, dyr) = (CpuRead::new(y, NAME)?, CpuRead::new(&dy, NAME)?);
        let (ys, dys) = (yr.slice(), dyr.slice());
        let n = x.dim(D::Minus1)?;
        let dx = by_rows(ys, n, |i, y, dx| {
            backward_row(y, &dys[i * n..(i + 1) * n], self.scale, dx)
        });
        Ok(Some(tensor(dx, x.shape())?))
    }
}
