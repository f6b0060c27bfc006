//! RMSNorm over the last dimension (Zhang & Sennrich 2019, "Root Mean Square Layer
//! Normalization"; the Llama norm), fused forward and backward.
//!
//! Like [`super::layer_norm()`], the backward recomputes each row's scale from `x` instead of
//! saving it between the passes.

use candle_core::{CpuStorage, CustomOp2, D, Layout, Result, Shape, Tensor, bail};

use super::cpu::{CpuRead, f32_slice, new_filled, rows_per_task, run_tasks, tensor};
use super::math::{sum_map, sum_map3};
use super::{fast_path, reference};

/// RMSNorm over the last dimension: `x / sqrt(mean(x^2) + eps) * weight`.
///
/// # Shapes
/// `x`: (..., C), `weight`: (C) -> (..., C).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let c = x.dim(D::Minus1)?;
    if weight.dims1()? != c {
        bail!("rms_norm: x {:?} needs a weight of shape ({c})", x.shape())
    }
    if !fast_path(&[x, weight]) || c == 0 {
        return reference::rms_norm(x, weight, eps);
    }
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNormOp { eps: eps as f32 })
}

struct RmsNormOp {
    eps: f32,
}

const NAME: &str = "muse-rms-norm";

/// 1 / sqrt(mean(x^2) + eps) of one row.
#[inline]
fn rstd(x: &[f32], eps: f32) -> f32 {
    1.0 / (sum_map(x, |v| v * v) / x.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_slice(s1, l1, NAME)?, f32_slice(s2, l2, NAME)?);
        let c = w.len();
        let chunk = rows_per_task(x.len() / c, 6 * c) * c;
        // SAFETY: the tasks' chunks cover `y`, and every row of a chunk is written in full.
        let y = unsafe {
            new_filled(x.len(), |y| {
                let tasks: Vec<_> = x.chunks(chunk).zip(y.chunks_mut(chunk)).collect();
                run_tasks(tasks, |(xs, ys)| {
                    for (xr, yr) in xs.chunks_exact(c).zip(ys.chunks_exact_mut(c)) {
                        let r = rstd(xr, self.eps);
                        for ((y, &x), &w) in yr.iter_mut().zip(xr).zip(w) {
                            y.write(x * r * w);
                        }
                    }
                });
            })
        };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wt: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (xr, wr, dyr) = (
            CpuRead::new(x, NAME)?,
            CpuRead::new(wt, NAME)?,
            CpuRead::new(&dy, NAME)?,
        );
        let (xs, w, dys) = (xr.slice(), wr.slice(), dyr.slice());
        let c = w.len();
        let chunk = rows_per_task(xs.len() / c, 12 * c) * c;
        let n_tasks = xs.len().div_ceil(chunk).max(1);
        let mut partial = vec![0f32; n_tasks * c]; // dw per task
        let inv_c = 1.0 / c as f32;
        // SAFETY: the tasks' chunks cover `dx`, and every row of a chunk is written in full.
        let dx = unsafe {
            new_filled(xs.len(), |dx| {
                let tasks: Vec<_> = xs
                    .chunks(chunk)
                    .zip(dys.chunks(chunk))
                    .zip(dx.chunks_mut(chunk))
                    .zip(partial.chunks_mut(c))
                    .collect();
                run_tasks(tasks, |(((xs, dys), dxs), dw)| {
                    let rows = xs.chunks_exact(c).zip(dys.chunks_exact(c));
                    for ((xr, dyr), dxr) in rows.zip(dxs.chunks_exact_mut(c)) {
                        let r = rstd(xr, self.eps);
                        // mean(g * xhat) with g = dy * w, xhat = x * r
                        let m = sum_map3(dyr, w, xr, |d, w, x| d * w * x) * r * inv_c;
                        let cols = dxr.iter_mut().zip(dw.iter_mut()).zip(dyr).zip(xr).zip(w);
                        for ((((dx, dw), &d), &x), &w) in cols {
                            let xhat = x * r;
                            dx.write(r * (d * w - xhat * m));
                            *dw += d * xhat;
                        }
                    }
                });
            })
        };
        let (first, rest) = partial.split_at_mut(c);
        for p in rest.chunks_exact(c) {
            first.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        let dw = first.to_vec();
        Ok((
            x.track_op().then(|| tensor(dx, x.shape())).transpose()?,
            wt.track_op().then(|| tensor(dw, c)).transpose()?,
        ))
    }
}
