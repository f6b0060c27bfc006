//! The VAE loss terms as fused CPU ops: the binary cross-entropy of logits against targets
//! summed over everything, and the Gaussian KL divergence to N(0, I) summed over everything
//! (Kingma & Welling 2013, appendix B).
//!
//! Composed from candle ops each term is six to eight element-wise passes, each allocating
//! a tensor, plus as many again in the backward. Fused, the BCE is one vectorised pass (the
//! polynomial `exp` of `math` and a series for `ln(1 + e)`) that also writes the
//! gradient, which the backward only scales; the KL is one pass each way:
//!
//! ```text
//! bce = sum(max(l, 0) - l x + log(1 + exp(-|l|)))      d/dl = sigmoid(l) - x
//! kl  = -0.5 sum(1 + lv - mu² - exp(lv))               d/dmu = mu, d/dlv = (exp(lv) - 1) / 2
//! ```
//!
//! The targets get no gradient. Sums are accumulated in f64.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};

use std::sync::Mutex;

use super::cpu::{CpuRead, f32_slice, rows_per_task, run_tasks, tensor};
use super::fast_path;
use super::math::{Fma, LANES, exp, simd_dispatch, sum_map2};

/// `(sum of BCE(sigmoid(logits), target), sum of KL(N(mu, exp(logvar)) || N(0, I)))`.
///
/// # Shapes
/// `logits`, `target`: (N, P); `mu`, `logvar`: (N, L) -> two scalars ().
pub fn bce_kl_sums(
    logits: &Tensor,
    target: &Tensor,
    mu: &Tensor,
    logvar: &Tensor,
) -> Result<(Tensor, Tensor)> {
    Ok((
        bce_with_logits_sum(logits, target)?,
        gaussian_kl_sum(mu, logvar)?,
    ))
}

/// Sum over all elements of `max(l, 0) - l x + log(1 + exp(-|l|))`.
///
/// # Shapes
/// `logits`, `target`: same shape -> ().
pub fn bce_with_logits_sum(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    if logits.shape() != target.shape() {
        bail!(
            "bce_with_logits_sum: logits {:?} and targets {:?} differ",
            logits.shape(),
            target.shape()
        )
    }
    if !fast_path(&[logits, target]) {
        return reference_bce_with_logits_sum(logits, target);
    }
    let op = BceOp {
        grad: Mutex::new(None),
    };
    logits.contiguous()?.apply_op2(&target.contiguous()?, op)
}

/// Sum over all elements of `-0.5 (1 + lv - mu² - exp(lv))`.
///
/// # Shapes
/// `mu`, `logvar`: same shape -> ().
pub fn gaussian_kl_sum(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    if mu.shape() != logvar.shape() {
        bail!(
            "gaussian_kl_sum: mu {:?} and logvar {:?} differ",
            mu.shape(),
            logvar.shape()
        )
    }
    if !fast_path(&[mu, logvar]) {
        return reference_gaussian_kl_sum(mu, logvar);
    }
    mu.contiguous()?.apply_op2(&logvar.contiguous()?, KlOp)
}

/// [`bce_with_logits_sum`] composed from candle ops (CUDA, other dtypes, tests).
pub fn reference_bce_with_logits_sum(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((logits.relu()? - (logits * target)?)? + softplus_neg_abs)?.sum_all()
}

/// [`gaussian_kl_sum`] composed from candle ops.
pub fn reference_gaussian_kl_sum(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let inner = (((logvar + 1.0)? - mu.sqr()?)? - logvar.exp()?)?;
    inner.sum_all()? * -0.5
}

/// `ln(1 + e)` for `e` in [0, 1]: `2 atanh(s)` with `s = e / (2 + e)` in [0, 1/3], odd series
/// to s^13 (relative error < 1e-7), so it vectorises where libm's `log1pf` does not.
#[inline(always)]
fn ln1p_unit<F: Fma>(e: f32) -> f32 {
    let s = e / (2.0 + e);
    let s2 = s * s;
    let mut p = 1.0 / 13.0;
    p = F::fma(p, s2, 1.0 / 11.0);
    p = F::fma(p, s2, 1.0 / 9.0);
    p = F::fma(p, s2, 1.0 / 7.0);
    p = F::fma(p, s2, 1.0 / 5.0);
    p = F::fma(p, s2, 1.0 / 3.0);
    p = F::fma(p, s2, 1.0);
    2.0 * s * p
}

/// One chunk of the forward: the BCE sum and `d = sigmoid(l) - x` (the gradient for an upstream
/// gradient of 1), from one `exp` per element.
#[inline(always)]
fn bce_kernel<F: Fma>(l: &[f32], x: &[f32], d: &mut [f32]) -> f64 {
    let mut acc = [0f32; LANES];
    let n = l.len().min(x.len()).min(d.len());
    let full = n - n % LANES;
    let elem = |l: f32, x: f32, d: &mut f32| -> f32 {
        let e = exp::<F>(-l.abs()); // in (0, 1]
        let r = 1.0 / (1.0 + e);
        // sigmoid(l) = 1 / (1 + e) for l >= 0, e / (1 + e) for l < 0.
        let sig = if l >= 0.0 { r } else { e * r };
        *d = sig - x;
        l.max(0.0) - l * x + ln1p_unit::<F>(e)
    };
    for ((lc, xc), dc) in l[..full]
        .chunks_exact(LANES)
        .zip(x[..full].chunks_exact(LANES))
        .zip(d[..full].chunks_exact_mut(LANES))
    {
        for k in 0..LANES {
            acc[k] += elem(lc[k], xc[k], &mut dc[k]);
        }
    }
    let mut sum = 0f64;
    for i in full..n {
        sum += elem(l[i], x[i], &mut d[i]) as f64;
    }
    sum + acc.iter().map(|&a| a as f64).sum::<f64>()
}
simd_dispatch!(fn bce_simd(l: &[f32], x: &[f32], d: &mut [f32]) -> f64 = bce_kernel);

/// The BCE sum of one row (no gradient).
#[inline(always)]
fn bce_row_kernel<F: Fma>(l: &[f32], x: &[f32]) -> f32 {
    sum_map2(l, x, |l, x| {
        l.max(0.0) - l * x + ln1p_unit::<F>(exp::<F>(-l.abs()))
    })
}
simd_dispatch!(fn bce_row_simd(l: &[f32], x: &[f32]) -> f32 = bce_row_kernel);

/// Elements per task of the BCE kernels (each costs about 20 flops).
const BCE_COST: usize = 20;

/// Sums BCE over `l`, `x` and writes the unit-upstream gradient into `d`, split across the
/// thread pool.
pub(super) fn bce_forward(l: &[f32], x: &[f32], d: &mut [f32]) -> f64 {
    let per = rows_per_task(l.len(), BCE_COST).max(1);
    let total = std::sync::Mutex::new(0f64);
    let tasks: Vec<_> = d
        .chunks_mut(per)
        .zip(l.chunks(per).zip(x.chunks(per)))
        .collect();
    run_tasks(tasks, |(d, (l, x))| {
        let s = bce_simd(l, x, d);
        *total.lock().unwrap_or_else(|e| e.into_inner()) += s;
    });
    total.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Keeps `sigmoid(l) - x` from the forward, so the backward is one scaling pass.
struct BceOp {
    grad: Mutex<Option<Vec<f32>>>,
}

const BCE: &str = "muse-bce-with-logits-sum";

impl CustomOp2 for BceOp {
    fn name(&self) -> &'static str {
        BCE
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (l, x) = (f32_slice(s1, l1, BCE)?, f32_slice(s2, l2, BCE)?);
        let mut d = vec![0f32; l.len()];
        let sum = bce_forward(l, x, &mut d);
        *self.grad.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
        Ok((CpuStorage::F32(vec![sum as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        target: &Tensor,
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let saved = self.grad.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut d = match saved {
            Some(d) => d,
            None => {
                let (lr, xr) = (CpuRead::new(logits, BCE)?, CpuRead::new(target, BCE)?);
                let mut d = vec![0f32; lr.slice().len()];
                bce_forward(lr.slice(), xr.slice(), &mut d);
                d
            }
        };
        if g != 1.0 {
            d.iter_mut().for_each(|v| *v *= g);
        }
        Ok((Some(tensor(d, logits.shape().clone())?), None))
    }
}

struct KlOp;

const KL: &str = "muse-gaussian-kl-sum";

impl CustomOp2 for KlOp {
    fn name(&self) -> &'static str {
        KL
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (mu, lv) = (f32_slice(s1, l1, KL)?, f32_slice(s2, l2, KL)?);
        let mut s = 0f64;
        for (&m, &v) in mu.iter().zip(lv) {
            s += (1.0 + v - m * m - v.exp()) as f64;
        }
        Ok((CpuStorage::F32(vec![(-0.5 * s) as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        mu: &Tensor,
        logvar: &Tensor,
        _out: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let (mr, vr) = (CpuRead::new(mu, KL)?, CpuRead::new(logvar, KL)?);
        let dmu: Vec<f32> = mr.slice().iter().map(|&m| g * m).collect();
        let dlv: Vec<f32> = vr
            .slice()
            .iter()
            .map(|&v| 0.5 * g * (v.exp() - 1.0))
            .collect();
        Ok((
            Some(tensor(dmu, mu.shape().clone())?),
            Some(tensor(dlv, logvar.shape().clone())?),
        ))
    }
}

/// Per-row BCE sums for `k` decodings of each target, without autograd (evaluation: IWAE
/// weights, anomaly scores): `out[i, j] = sum_p bce(logits[i, j, p], target[i, p])`.
///
/// # Shapes
/// `logits`: (N, k, P), `target`: (N, P) -> (N, k).
pub fn bce_with_logits_rows(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (n, k, p) = logits.dims3()?;
    if target.dims2()? != (n, p) {
        bail!(
            "bce_with_logits_rows: logits {:?} need targets ({n}, {p}), got {:?}",
            logits.shape(),
            target.shape()
        )
    }
    if !fast_path(&[logits, target]) {
        let t = target.unsqueeze(1)?.broadcast_as((n, k, p))?;
        let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
        return ((logits.relu()? - (logits * t)?)? + softplus_neg_abs)?.sum(2);
    }
    let (logits, target) = (logits.contiguous()?, target.contiguous()?);
    let (lr, tr) = (CpuRead::new(&logits, BCE)?, CpuRead::new(&target, BCE)?);
    let (l, x) = (lr.slice(), tr.slice());
    let mut out = vec![0f32; n * k];
    let rows = rows_per_task(n * k, BCE_COST * p);
    let tasks: Vec<_> = out.chunks_mut(rows).enumerate().collect();
    run_tasks(tasks, |(t, out)| {
        for (j, o) in out.iter_mut().enumerate() {
            let row = t * rows + j;
            let xrow = &x[(row / k) * p..(row / k + 1) * p];
            *o = bce_row_simd(&l[row * p..(row + 1) * p], xrow);
        }
    });
    tensor(out, (n, k))
}
