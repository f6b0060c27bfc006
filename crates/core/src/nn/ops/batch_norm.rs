//! Batch normalisation over (N, H, W) per channel in training mode (Ioffe & Szegedy 2015,
//! "Batch Normalization"), fused with the activation that follows it, forward and backward.
//!
//! candle_nn's `BatchNorm` transposes to (C, N*H*W), makes it contiguous, composes about ten
//! tensor ops and hands back a transposed view, and the activation after it adds three more.
//! Here the forward is two passes over each channel (statistics, then normalise-scale-shift-
//! activate) and the backward two more, parallel over channels. The batch statistics come back
//! to the caller for the running averages.

use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::activation::Activation;
use super::cpu::{CpuRead, SendPtr, f32_slice, run_tasks, tensor, threads};
use super::fast_path;
use super::math::{sum_map, sum_map2};

/// Batch statistics of one training-mode forward: per-channel mean and biased variance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    /// Elements per channel (N * H * W), for the unbiased variance of running averages.
    pub count: usize,
}

/// `act((x - mean) / sqrt(var + eps) * weight + bias)` with the mean and biased variance of
/// each channel over the batch and both spatial dimensions (`nn.BatchNorm2d` in training mode,
/// then `act`). Returns the output and the batch statistics.
///
/// # Shapes
/// `x`: (N, C, H, W) (or (N, C)), `weight`, `bias`: (C) -> (N, C, H, W).
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    act: Activation,
) -> Result<(Tensor, BatchStats)> {
    let dims = x.dims();
    if dims.len() < 2 || weight.dims1()? != dims[1] || bias.dims1()? != dims[1] {
        bail!(
            "batch_norm: x {:?} needs (N, C, ...) with weight and bias of shape (C)",
            x.shape()
        )
    }
    let (n, c) = (dims[0], dims[1]);
    let plane = dims[2..].iter().product::<usize>();
    if n * plane < 2 {
        bail!(
            "batch_norm: training needs more than one value per channel, got {:?}",
            x.shape()
        )
    }
    if !fast_path(&[x, weight, bias]) {
        return reference_batch_norm_train(x, weight, bias, eps, act);
    }
    let stats = Arc::new(Mutex::new(None));
    let op = BatchNormOp {
        n,
        c,
        plane,
        eps: eps as f32,
        act,
        stats: stats.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    let (mean, rstd) = stats
        .lock()
        .map_err(|_| candle_core::Error::Msg("batch_norm: poisoned statistics".into()))?
        .clone()
        .expect("set by the forward");
    let var = rstd_to_var(&rstd, eps as f32);
    Ok((
        y,
        BatchStats {
            mean,
            var,
            count: n * plane,
        },
    ))
}

/// The same maths composed from candle ops (CUDA, other dtypes, and the tests' baseline).
pub fn reference_batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    act: Activation,
) -> Result<(Tensor, BatchStats)> {
    let dims = x.dims().to_vec();
    let c = dims[1];
    let mut bshape = vec![1usize; dims.len()];
    bshape[1] = c;
    let reduce: Vec<usize> = (0..dims.len()).filter(|&d| d != 1).collect();
    let count = x.elem_count() / c;
    let mean = x
        .sum_keepdim(reduce.clone())?
        .affine(1.0 / count as f64, 0.0)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc
        .sqr()?
        .sum_keepdim(reduce)?
        .affine(1.0 / count as f64, 0.0)?;
    let y = xc
        .broadcast_div(&(&var + eps)?.sqrt()?)?
        .broadcast_mul(&weight.reshape(bshape.as_slice())?)?
        .broadcast_add(&bias.reshape(bshape.as_slice())?)?;
    let stats = BatchStats {
        mean: mean
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?,
        var: var
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?,
        count,
    };
    Ok((act.reference(&y)?, stats))
}

fn rstd_to_var(rstd: &[f32], eps: f32) -> Vec<f32> {
    rstd.iter()
        .map(|r| (1.0 / (r * r) - eps).max(0.0))
        .collect()
}

struct BatchNormOp {
    n: usize,
    c: usize,
    plane: usize,
    eps: f32,
    act: Activation,
    /// (mean, 1 / sqrt(var + eps)) per channel, written by the forward, read by the backward.
    stats: ChannelStats,
}

/// Per-channel (mean, 1 / sqrt(var + eps)), shared between an op's forward and backward.
type ChannelStats = Arc<Mutex<Option<(Vec<f32>, Vec<f32>)>>>;

const NAME: &str = "muse-batch-norm";

impl BatchNormOp {
    /// Calls `f(channel)` for every channel, a few channels per task, in parallel.
    fn per_channel<F: Fn(usize) + Sync + Send>(&self, f: F) {
        let per = self.c.div_ceil(threads() * 2).max(1);
        let tasks: Vec<_> = (0..self.c)
            .step_by(per)
            .map(|a| a..(a + per).min(self.c))
            .collect();
        run_tasks(tasks, |range| range.for_each(&f));
    }

    fn offset(&self, n: usize, c: usize) -> usize {
        (n * self.c + c) * self.plane
    }

    /// (mean, 1 / sqrt(var + eps)) of channel `c`: lane-split f32 sums per plane, added up
    /// across planes in f64.
    fn channel_stats(&self, x: &[f32], c: usize) -> (f32, f32) {
        let count = (self.n * self.plane) as f64;
        let planes = || (0..self.n).map(|n| &x[self.offset(n, c)..][..self.plane]);
        let sum: f64 = planes().map(|p| sum_map(p, |v| v) as f64).sum();
        let mean = (sum / count) as f32;
        let sq: f64 = planes()
            .map(|p| {
                sum_map(p, |v| {
                    let d = v - mean;
                    d * d
                }) as f64
            })
            .sum();
        let var = (sq / count) as f32;
        (mean, 1.0 / (var + self.eps).sqrt())
    }
}

impl CustomOp3 for BatchNormOp {
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
        let x = f32_slice(s1, l1, NAME)?;
        let (w, b) = (f32_slice(s2, l2, NAME)?, f32_slice(s3, l3, NAME)?);
        let mut y = vec![0f32; x.len()];
        let mut mean = vec![0f32; self.c];
        let mut rstd = vec![0f32; self.c];
        let (yp, mp, rp) = (
            SendPtr(y.as_mut_ptr()),
            SendPtr(mean.as_mut_ptr()),
            SendPtr(rstd.as_mut_ptr()),
        );
        self.per_channel(|c| {
            let (m, r) = self.channel_stats(x, c);
            let (scale, shift) = (r * w[c], b[c] - m * r * w[c]);
            // SAFETY: each channel's planes, mean and rstd are written by one task only.
            unsafe {
                *mp.get().add(c) = m;
                *rp.get().add(c) = r;
            }
            for n in 0..self.n {
                let off = self.offset(n, c);
                let ys = unsafe {
                    std::slice::from_raw_parts_mut(
                        yp.get().add(off).cast::<MaybeUninit<f32>>(),
                        self.plane,
                    )
                };
                self.act
                    .apply_slice(&x[off..off + self.plane], scale, shift, ys);
            }
        });
        *self
            .stats
            .lock()
            .map_err(|_| candle_core::Error::Msg("batch_norm: poisoned statistics".into()))? =
            Some((mean, rstd));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (xr, wr, yr, dyr) = (
            CpuRead::new(x, NAME)?,
            CpuRead::new(w, NAME)?,
            CpuRead::new(y, NAME)?,
            CpuRead::new(&dy, NAME)?,
        );
        let (xs, ws, ys, dys) = (xr.slice(), wr.slice(), yr.slice(), dyr.slice());
        let (mean, rstd) = self
            .stats
            .lock()
            .map_err(|_| candle_core::Error::Msg("batch_norm: poisoned statistics".into()))?
            .clone()
            .expect("the forward ran");
        let count = (self.n * self.plane) as f32;
        let mut dx = vec![0f32; xs.len()];
        let mut dw = vec![0f32; self.c];
        let mut db = vec![0f32; self.c];
        let (dxp, dwp, dbp) = (
            SendPtr(dx.as_mut_ptr()),
            SendPtr(dw.as_mut_ptr()),
            SendPtr(db.as_mut_ptr()),
        );
        self.per_channel(|c| {
            let (m, r) = (mean[c], rstd[c]);
            // g = dy * act'(y), this channel's planes one after another.
            let mut g = Vec::with_capacity(self.n * self.plane);
            for n in 0..self.n {
                let off = self.offset(n, c);
                let plane = &mut g.spare_capacity_mut()[..self.plane];
                self.act
                    .grad_slice(&dys[off..][..self.plane], &ys[off..][..self.plane], plane);
                // SAFETY: `grad_slice` wrote the plane's elements.
                unsafe { g.set_len(g.len() + self.plane) };
            }
            // db = sum g; dw = sum g * xhat
            let (mut sg, mut sgx) = (0f64, 0f64);
            for (n, gn) in g.chunks_exact(self.plane).enumerate() {
                let xv = &xs[self.offset(n, c)..][..self.plane];
                sg += sum_map(gn, |g| g) as f64;
                sgx += sum_map2(gn, xv, |g, x| g * (x - m)) as f64;
            }
            let (sg, sgx) = (sg as f32, sgx as f32 * r);
            // dx = w * rstd * (g - mean(g) - xhat * mean(g * xhat))
            let k = ws[c] * r;
            let (mg, mgx) = (sg / count, sgx / count);
            for (n, gn) in g.chunks_exact(self.plane).enumerate() {
                let off = self.offset(n, c);
                // SAFETY: each channel's planes are written by one task only.
                let d = unsafe { std::slice::from_raw_parts_mut(dxp.get().add(off), self.plane) };
                let xv = &xs[off..][..self.plane];
                for ((o, &g), &x) in d.iter_mut().zip(gn).zip(xv) {
                    *o = k * (g - mg - (x - m) * r * mgx);
                }
            }
            unsafe {
                *dwp.get().add(c) = sgx;
                *dbp.get().add(c) = sg;
            }
        });
        let want = |t: &Tensor| t.track_op();
        Ok((
            if want(x) {
                Some(tensor(dx, x.shape())?)
            } else {
                None
            },
            if want(w) {
                Some(tensor(dw, self.c)?)
            } else {
                None
            },
            if want(b) {
                Some(tensor(db, self.c)?)
            } else {
                None
            },
        ))
    }
}
