//! GroupNorm (Wu & He 2018), optionally followed by SiLU, fused forward and backward: the
//! norm of every residual block of the diffusion U-Net, where the composed candle ops (a mean,
//! a variance, four broadcasts, and their strided reductions in the backward) took more time
//! than the convolutions around them.
//!
//! One task per run of (sample, group) rows, each row `C/G * H * W` contiguous values in NCHW.
//! The forward is one pass for the statistics and one for the output; the backward recomputes
//! the statistics (and the pre-activation) from `x` instead of saving them.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::cpu::{CpuRead, f32_slice, new_filled, rows_per_task, run_tasks, tensor};
use super::fast_path;
use super::math::{Fma, LANES, exp, simd_dispatch, sum_map};

/// `act(group_norm(x) * weight + bias)` with `act` SiLU when `silu`, else the identity;
/// biased variance, as PyTorch.
///
/// # Shapes
/// `x`: (N, C, ...), `weight`, `bias`: (C) -> (N, C, ...).
pub fn group_norm_act(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    groups: usize,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 2 || groups == 0 || !dims[1].is_multiple_of(groups) {
        bail!(
            "group_norm: x {:?} does not split into {groups} groups",
            x.shape()
        )
    }
    let c = dims[1];
    if weight.dims1()? != c || bias.dims1()? != c {
        bail!(
            "group_norm: x {:?} needs weight and bias of shape ({c})",
            x.shape()
        )
    }
    if !fast_path(&[x, weight, bias]) || x.elem_count() == 0 {
        let y = reference_group_norm(x, weight, bias, groups, eps)?;
        return if silu { y.silu() } else { Ok(y) };
    }
    let spatial = x.elem_count() / (dims[0] * c);
    let op = GroupNormOp {
        groups,
        channels: c,
        spatial,
        eps: eps as f32,
        silu,
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

/// The same maths composed from candle ops (every device, and the tests' reference).
///
/// # Shapes
/// `x`: (N, C, ...), `weight`, `bias`: (C) -> (N, C, ...).
pub fn reference_group_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    groups: usize,
    eps: f64,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (n, c) = (dims[0], dims[1]);
    let xg = x.reshape((n, groups, ()))?; // (N, G, C/G * spatial)
    let mean = xg.mean_keepdim(candle_core::D::Minus1)?; // (N, G, 1)
    let xc = xg.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(candle_core::D::Minus1)?; // (N, G, 1)
    let xn = xc
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .reshape(dims.as_slice())?; // (N, C, ...)
    let mut affine = vec![1usize; dims.len()];
    affine[1] = c;
    xn.broadcast_mul(&weight.reshape(affine.as_slice())?)?
        .broadcast_add(&bias.reshape(affine.as_slice())?)
}

struct GroupNormOp {
    groups: usize,
    channels: usize,
    /// H * W (the product of the dimensions after C).
    spatial: usize,
    eps: f32,
    silu: bool,
}

const NAME: &str = "muse-group-norm";

/// One channel's affine map `z = x * a + c` (the normalisation and the weight and bias in
/// one), and the statistics that the backward needs alongside.
#[derive(Clone, Copy)]
struct Affine {
    a: f32,
    c: f32,
    mean: f32,
    rstd: f32,
}

#[inline(always)]
fn sigmoid<F: Fma>(z: f32) -> f32 {
    1.0 / (1.0 + exp::<F>(-z))
}

/// `y = act(x * a + c)` over one channel of one sample.
#[inline(always)]
fn affine_act<F: Fma>(x: &[f32], a: f32, c: f32, silu: bool, y: &mut [MaybeUninit<f32>]) {
    if silu {
        for (y, &x) in y.iter_mut().zip(x) {
            let z = F::fma(x, a, c);
            y.write(z * sigmoid::<F>(z));
        }
    } else {
        for (y, &x) in y.iter_mut().zip(x) {
            y.write(F::fma(x, a, c));
        }
    }
}

simd_dispatch!(fn affine_act_simd(x: &[f32], a: f32, c: f32, silu: bool, y: &mut [MaybeUninit<f32>]) = affine_act);

/// Over one channel of one sample: `dz = dy * act'(z)` (the gradient before the activation,
/// `z` recomputed from `x`), returning the channel's sums of `dz * xhat` and of `dz` (its
/// weight and bias gradients), accumulated in [`LANES`] lanes so that the loop vectorises.
#[inline(always)]
fn pre_activation_grad<F: Fma>(
    x: &[f32],
    dy: &[f32],
    f: Affine,
    silu: bool,
    dz: &mut [f32],
) -> (f32, f32) {
    let grad = |x: f32, gy: f32| -> f32 {
        if silu {
            let z = F::fma(x, f.a, f.c);
            let sg = sigmoid::<F>(z);
            gy * sg * F::fma(z, 1.0 - sg, 1.0)
        } else {
            gy
        }
    };
    let n = x.len().min(dy.len()).min(dz.len());
    let full = n - n % LANES;
    let (mut sw, mut sb) = ([0f32; LANES], [0f32; LANES]);
    let lanes = x[..full]
        .chunks_exact(LANES)
        .zip(dy[..full].chunks_exact(LANES));
    for ((xs, gs), ds) in lanes.zip(dz[..full].chunks_exact_mut(LANES)) {
        for l in 0..LANES {
            let g = grad(xs[l], gs[l]);
            ds[l] = g;
            sw[l] = F::fma(g, (xs[l] - f.mean) * f.rstd, sw[l]);
            sb[l] += g;
        }
    }
    let (mut tw, mut tb) = (0f32, 0f32);
    for i in full..n {
        let g = grad(x[i], dy[i]);
        dz[i] = g;
        tw += g * (x[i] - f.mean) * f.rstd;
        tb += g;
    }
    (tw + sw.iter().sum::<f32>(), tb + sb.iter().sum::<f32>())
}

simd_dispatch!(fn pre_activation_grad_simd(x: &[f32], dy: &[f32], f: Affine, silu: bool, dz: &mut [f32]) -> (f32, f32) = pre_activation_grad);

impl GroupNormOp {
    /// Values per (sample, group) row.
    fn row_len(&self) -> usize {
        self.channels / self.groups * self.spatial
    }

    /// Mean and 1/sqrt(var + eps) of one row.
    #[inline]
    fn stats(&self, x: &[f32]) -> (f32, f32) {
        let n = x.len() as f32;
        let mean = sum_map(x, |v| v) / n;
        let var = sum_map(x, |v| (v - mean) * (v - mean)) / n;
        (mean, 1.0 / (var + self.eps).sqrt())
    }

    fn forward(&self, x: &[f32], w: &[f32], b: &[f32], l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (len, cpg, s) = (self.row_len(), self.channels / self.groups, self.spatial);
        let rows = x.len() / len.max(1);
        let per = rows_per_task(rows, 4 * len);
        let chunk = per * len;
        // SAFETY: the tasks' chunks cover `y`, and every row of a chunk is written in full.
        let y = unsafe {
            new_filled(x.len(), |y| {
                let tasks: Vec<_> = x
                    .chunks(chunk)
                    .zip(y.chunks_mut(chunk))
                    .enumerate()
                    .collect();
                run_tasks(tasks, |(ti, (xs, ys))| {
                    for (ri, (xr, yr)) in xs
                        .chunks_exact(len)
                        .zip(ys.chunks_exact_mut(len))
                        .enumerate()
                    {
                        let g = (ti * per + ri) % self.groups;
                        let (mean, rstd) = self.stats(xr);
                        for j in 0..cpg {
                            let ch = g * cpg + j;
                            let (a, c) = (rstd * w[ch], b[ch] - mean * rstd * w[ch]);
                            let (xc, yc) = (&xr[j * s..(j + 1) * s], &mut yr[j * s..(j + 1) * s]);
                            affine_act_simd(xc, a, c, self.silu, yc);
                        }
                    }
                });
            })
        };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// Returns (dx, dw, db).
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let dy = dy.contiguous()?;
        let (xr, wr, br, dyr) = (
            CpuRead::new(x, NAME)?,
            CpuRead::new(w, NAME)?,
            CpuRead::new(b, NAME)?,
            CpuRead::new(&dy, NAME)?,
        );
        let (xs, w, b, dys) = (xr.slice(), wr.slice(), br.slice(), dyr.slice());
        let (len, cpg, s, c) = (
            self.row_len(),
            self.channels / self.groups,
            self.spatial,
            self.channels,
        );
        let rows = xs.len() / len.max(1);
        let per = rows_per_task(rows, 12 * len);
        let chunk = per * len;
        let n_tasks = xs.len().div_ceil(chunk.max(1)).max(1);
        // Per task: dw then db partial sums, reduced after the parallel part.
        let mut partial = vec![0f32; n_tasks * 2 * c];
        // SAFETY: the tasks' chunks cover `dx`, and every row of a chunk is written in full.
        let dx = unsafe {
            new_filled(xs.len(), |dx| {
                let tasks: Vec<_> = xs
                    .chunks(chunk)
                    .zip(dys.chunks(chunk))
                    .zip(dx.chunks_mut(chunk))
                    .zip(partial.chunks_mut(2 * c))
                    .enumerate()
                    .collect();
                run_tasks(tasks, |(ti, (((xs, dys), dxs), part))| {
                    let (dw, db) = part.split_at_mut(c);
                    // dz (the gradient before the activation), reused per row.
                    let mut dz = vec![0f32; len];
                    let rows = xs.chunks_exact(len).zip(dys.chunks_exact(len));
                    for (ri, ((xr, dyr), dxr)) in rows.zip(dxs.chunks_exact_mut(len)).enumerate() {
                        let g = (ti * per + ri) % self.groups;
                        let (mean, rstd) = self.stats(xr);
                        // Sums over the row of dxhat = dz * w and of dxhat * xhat.
                        let (mut s1, mut s2) = (0f32, 0f32);
                        for j in 0..cpg {
                            let ch = g * cpg + j;
                            let (a, cc) = (rstd * w[ch], b[ch] - mean * rstd * w[ch]);
                            let range = j * s..(j + 1) * s;
                            let affine = Affine {
                                a,
                                c: cc,
                                mean,
                                rstd,
                            };
                            let (sw, sb) = pre_activation_grad_simd(
                                &xr[range.clone()],
                                &dyr[range.clone()],
                                affine,
                                self.silu,
                                &mut dz[range],
                            );
                            dw[ch] += sw;
                            db[ch] += sb;
                            s1 += sb * w[ch];
                            s2 += sw * w[ch];
                        }
                        let inv = 1.0 / len as f32;
                        let (m1, m2) = (s1 * inv, s2 * inv);
                        for j in 0..cpg {
                            let wc = w[g * cpg + j];
                            let range = j * s..(j + 1) * s;
                            for ((dx, &d), &x) in dxr[range.clone()]
                                .iter_mut()
                                .zip(&dz[range.clone()])
                                .zip(&xr[range])
                            {
                                let xhat = (x - mean) * rstd;
                                dx.write(rstd * (d * wc - m1 - xhat * m2));
                            }
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

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            f32_slice(s1, l1, NAME)?,
            f32_slice(s2, l2, NAME)?,
            f32_slice(s3, l3, NAME)?,
        );
        self.forward(x, w, b, l1)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.backward(x, w, b, dy)?;
        Ok((
            x.track_op().then_some(dx),
            w.track_op().then_some(dw),
            b.track_op().then_some(db),
        ))
    }
}
