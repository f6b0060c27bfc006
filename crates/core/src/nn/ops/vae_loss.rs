//! The VAE loss terms as fused CPU ops: the binary cross-entropy of logits against targets
//! summed over everything, and the Gaussian KL divergence to N(0, I) summed over everything
//! (Kingma & Welling 2013, appendix B).
//!
//! Composed from candle ops each term is six to eight element-wise passes, each allocating
//! a tensor, plus as many again in the backward; fused, each is one pass forward and one
//! backward:
//!
//! ```text
//! bce = sum(max(l, 0) - l x + log(1 + exp(-|l|)))      d/dl = sigmoid(l) - x
//! kl  = -0.5 sum(1 + lv - mu² - exp(lv))               d/dmu = mu, d/dlv = (exp(lv) - 1) / 2
//! ```
//!
//! The targets get no gradient. Sums are accumulated in f64.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};

use super::cpu::{CpuRead, f32_slice, rows_per_task, run_tasks, tensor};
use super::fast_path;

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
    logits.contiguous()?.apply_op2(&target.contiguous()?, BceOp)
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

/// Work per task, in elements, so small tensors stay on one thread.
const CHUNK_COST: usize = 16;

fn parallel_sum(n: usize, f: impl Fn(std::ops::Range<usize>) -> f64 + Sync) -> f64 {
    let per = rows_per_task(n, CHUNK_COST);
    let ranges: Vec<_> = (0..n.div_ceil(per.max(1)))
        .map(|i| i * per..((i + 1) * per).min(n))
        .collect();
    let total = std::sync::Mutex::new(0f64);
    run_tasks(ranges, |r| {
        let s = f(r);
        *total.lock().unwrap_or_else(|e| e.into_inner()) += s;
    });
    total.into_inner().unwrap_or_else(|e| e.into_inner())
}

struct BceOp;

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
        let sum = parallel_sum(l.len(), |r| {
            let mut s = 0f64;
            for (&l, &x) in l[r.clone()].iter().zip(&x[r]) {
                s += (l.max(0.0) - l * x + (-l.abs()).exp().ln_1p()) as f64;
            }
            s
        });
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
        let (lr, xr) = (CpuRead::new(logits, BCE)?, CpuRead::new(target, BCE)?);
        let (l, x) = (lr.slice(), xr.slice());
        let mut d = vec![0f32; l.len()];
        let per = rows_per_task(l.len(), CHUNK_COST).max(1);
        let tasks: Vec<_> = d
            .chunks_mut(per)
            .zip(l.chunks(per).zip(x.chunks(per)))
            .collect();
        run_tasks(tasks, |(d, (l, x))| {
            for ((d, &l), &x) in d.iter_mut().zip(l).zip(x) {
                *d = g * (1.0 / (1.0 + (-l).exp()) - x);
            }
        });
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
    let rows = rows_per_task(n * k, CHUNK_COST * p);
    let tasks: Vec<_> = out.chunks_mut(rows).enumerate().collect();
    run_tasks(tasks, |(t, out)| {
        for (j, o) in out.iter_mut().enumerate() {
            let row = t * rows + j;
            let lrow = &l[row * p..(row + 1) * p];
            let xrow = &x[(row / k) * p..(row / k + 1) * p];
            let mut s = 0f32;
            for (&l, &x) in lrow.iter().zip(xrow) {
                s += l.max(0.0) - l * x + (-l.abs()).exp().ln_1p();
            }
            *o = s;
        }
    });
    tensor(out, (n, k))
}
