//! LayerNorm over the last dimension (Ba, Kiros & Hinton 2016, "Layer Normalization"), fused
//! forward and backward.
//!
//! The forward is one pass per row (mean, variance, scale-shift) and the backward recomputes
//! the row statistics from `x` rather than saving them: the row is in L1 by then, and nothing
//! has to live between the two passes.

use candle_core::{CpuStorage, D, Layout, Result, Shape, Tensor, bail};

use super::biased::{BiasedOp, apply_biased};
use super::cpu::{CpuRead, new_filled, rows_per_task, run_tasks, tensor};
use super::math::{sum_map, sum_map2, sum_map3};
use super::{fast_path, reference};

/// LayerNorm over the last dimension: `(x - mean) / sqrt(var + eps) * weight + bias`, with the
/// biased variance (as PyTorch).
///
/// # Shapes
/// `x`: (..., C), `weight`: (C), `bias`: (C) -> (..., C).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let c = x.dim(D::Minus1)?;
    if weight.dims1()? != c || bias.map(|b| b.dims1()).transpose()?.is_some_and(|n| n != c) {
        bail!(
            "layer_norm: x {:?} needs weight and bias of shape ({c})",
            x.shape()
        )
    }
    if !fast_path(&[x, weight]) || bias.is_some_and(|b| !fast_path(&[b])) || c == 0 {
        return reference::layer_norm(x, weight, bias, eps);
    }
    apply_biased(x, weight, bias, LayerNormOp { eps: eps as f32 })
}

struct LayerNormOp {
    eps: f32,
}

impl LayerNormOp {
    fn forward(
        &self,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let c = w.len();
        let chunk = rows_per_task(x.len() / c.max(1), 8 * c) * c;
        // SAFETY: the tasks' chunks cover `y`, and every row of a chunk is written in full.
        let y = unsafe {
            new_filled(x.len(), |y| {
                let tasks: Vec<_> = x.chunks(chunk).zip(y.chunks_mut(chunk)).collect();
                run_tasks(tasks, |(xs, ys)| {
                    for (xr, yr) in xs.chunks_exact(c).zip(ys.chunks_exact_mut(c)) {
                        let (mean, rstd) = stats(xr, self.eps);
                        let rows = yr.iter_mut().zip(xr).zip(w);
                        match b {
                            Some(b) => rows.zip(b).for_each(|(((y, &x), &w), &b)| {
                                y.write((x - mean) * rstd * w + b);
                            }),
                            None => rows.for_each(|((y, &x), &w)| {
                                y.write((x - mean) * rstd * w);
                            }),
                        }
                    }
                });
            })
        };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// Returns (dx, dw, db).
    fn backward(&self, x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let dy = dy.contiguous()?;
        let (xr, wr, dyr) = (
            CpuRead::new(x, NAME)?,
            CpuRead::new(w, NAME)?,
            CpuRead::new(&dy, NAME)?,
        );
        let (xs, w, dys) = (xr.slice(), wr.slice(), dyr.slice());
        let c = w.len();
        let chunk = rows_per_task(xs.len() / c.max(1), 16 * c) * c;
        let n_tasks = xs.len().div_ceil(chunk.max(1)).max(1);
        // Per task: dw then db partial sums, reduced after the parallel part.
        let mut partial = vec![0f32; n_tasks * 2 * c];
        let inv_c = 1.0 / c as f32;
        // SAFETY: the tasks' chunks cover `dx`, and every row of a chunk is written in full.
        let dx = unsafe {
            new_filled(xs.len(), |dx| {
                let tasks: Vec<_> = xs
                    .chunks(chunk)
                    .zip(dys.chunks(chunk))
                    .zip(dx.chunks_mut(chunk))
                    .zip(partial.chunks_mut(2 * c))
                    .collect();
                run_tasks(tasks, |(((xs, dys), dxs), part)| {
                    let (dw, db) = part.split_at_mut(c);
                    let rows = xs.chunks_exact(c).zip(dys.chunks_exact(c));
                    for ((xr, dyr), dxr) in rows.zip(dxs.chunks_exact_mut(c)) {
                        let (mean, rstd) = stats(xr, self.eps);
                        let mg = sum_map2(dyr, w, |d, w| d * w) * inv_c;
                        let mgx = sum_map3(dyr, w, xr, |d, w, x| d * w * (x - mean)) * rstd * inv_c;
                        let sums = dw.iter_mut().zip(db.iter_mut());
                        for (((dw, db), &d), &x) in sums.zip(dyr).zip(xr) {
                            *dw += d * (x - mean) * rstd;
                            *db += d;
                        }
                        for (((dx, &d), &x), &w) in dxr.iter_mut().zip(dyr).zip(xr).zip(w) {
                            let xhat = (x - mean) * rstd;
                            dx.write(rstd * (d * w - mg - xhat * mgx));
                        }
                    }
                });
            })
        };
        let (first, rest) = partial.split_at_mut(2 * c);
        for p in rest.chunks_exact(2 * c) {
            first.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        let (dw, db) = (first[..c].to_vec(), first[c..].to_vec());
        Ok((tensor(dx, x.shape())?, tensor(dw, c)?, tensor(db, c)?))
    }
}

/// Mean and 1/sqrt(biased variance + eps) of one row (two passes: the row is in L1, and it
/// avoids the cancellation of `E[x^2] - E[x]^2`).
#[inline]
fn stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = sum_map(x, |v| v) / n;
    let var = sum_map(x, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

const NAME: &str = "muse-layer-norm";

impl BiasedOp for LayerNormOp {
    const NAME: &'static str = NAME;

    fn cpu_forward(
        &self,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(x, w, b, l)
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
        want: [bool; 3],
    ) -> Result<[Option<Tensor>; 3]> {
        let (dx, dw, db) = self.backward(x, w, dy)?;
        Ok([
            want[0].then_some(dx),
            want[1].then_some(dw),
            want[2].then_some(db),
        ])
    }
}
