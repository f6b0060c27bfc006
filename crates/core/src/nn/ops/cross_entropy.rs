//! Cross-entropy of logits against class targets: fused log-softmax + NLL forward and
//! `(softmax - onehot) / n` backward, with PyTorch's `ignore_index`.
//!
//! The forward keeps one log-sum-exp per row for the backward, so the backward is a single
//! `exp` pass that writes the gradient directly (the probabilities are never stored).

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, bail};

use super::cpu::{CpuRead, f32_slice, rows_per_task, run_tasks, tensor};
use super::math::{Fma, exp, max, simd_dispatch, sum_map};
use super::{fast_path, reference};

/// Targets equal to this are skipped (PyTorch's `ignore_index`, here `u32::MAX`).
pub const IGNORE_INDEX: u32 = u32::MAX;

/// Mean cross-entropy over the rows whose target is not [`IGNORE_INDEX`] (0 when there are
/// none).
///
/// # Shapes
/// `logits`: (N, V), `targets`: (N) u32 -> scalar ().
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    if targets.dims1()? != n || targets.dtype() != DType::U32 {
        bail!(
            "cross_entropy: logits ({n}, {v}) need u32 targets of shape ({n}), got {:?} {:?}",
            targets.dtype(),
            targets.shape()
        )
    }
    if !fast_path(&[logits]) || !targets.device().is_cpu() || v == 0 {
        return reference::cross_entropy(logits, targets);
    }
    let op = CrossEntropyOp {
        lse: Mutex::new(None),
    };
    logits.contiguous()?.apply_op2(&targets.contiguous()?, op)
}

struct CrossEntropyOp {
    /// Per-row log-sum-exp from the forward (0 for ignored rows).
    lse: Mutex<Option<Vec<f32>>>,
}

const NAME: &str = "muse-cross-entropy";

/// Log-sum-exp of one row.
#[inline(always)]
fn lse_kernel<F: Fma>(row: &[f32]) -> f32 {
    let m = max(row);
    m + sum_map(row, |x| exp::<F>(x - m)).ln()
}
simd_dispatch!(fn lse_simd(row: &[f32]) -> f32 = lse_kernel);

/// `d = scale * (exp(row - lse) - onehot(t))`.
#[inline(always)]
fn grad_kernel<F: Fma>(row: &[f32], lse: f32, t: usize, scale: f32, d: &mut [f32]) {
    for (d, &x) in d.iter_mut().zip(row) {
        *d = scale * exp::<F>(x - lse);
    }
    d[t] -= scale;
}
simd_dispatch!(fn grad_simd(row: &[f32], lse: f32, t: usize, scale: f32, d: &mut [f32]) = grad_kernel);

impl CustomOp2 for CrossEntropyOp {
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
        let logits = f32_slice(s1, l1, NAME)?;
        let targets = match l2.contiguous_offsets() {
            Some((a, b)) => &s2.as_slice::<u32>()?[a..b],
            None => bail!("{NAME}: expected contiguous targets"),
        };
        let (n, v) = (l1.dims()[0], l1.dims()[1]);
        if let Some(&t) = targets
            .iter()
            .find(|&&t| t != IGNORE_INDEX && t as usize >= v)
        {
            bail!("cross_entropy: target {t} is out of range for {v} classes")
        }
        let mut lse = vec![0f32; n];
        let rows = rows_per_task(n, 12 * v);
        let tasks: Vec<_> = logits
            .chunks(rows * v)
            .zip(targets.chunks(rows))
            .zip(lse.chunks_mut(rows))
            .collect();
        // (sum of losses, rows counted) per task
        let sums = Mutex::new((0f64, 0usize));
        run_tasks(tasks, |((logits, targets), lse)| {
            let (mut sum, mut count) = (0f64, 0usize);
            for ((row, &t), lse) in logits.chunks_exact(v).zip(targets).zip(lse) {
                if t != IGNORE_INDEX {
                    *lse = lse_simd(row);
                    sum += (*lse - row[t as usize]) as f64;
                    count += 1;
                }
            }
            let mut s = sums.lock().unwrap_or_else(|e| e.into_inner());
            s.0 += sum;
            s.1 += count;
        });
        let (sum, count) = sums.into_inner().unwrap_or_else(|e| e.into_inner());
        *self.lse.lock().unwrap_or_else(|e| e.into_inner()) = Some(lse);
        let loss = if count == 0 {
            0.0
        } else {
            (sum / count as f64) as f32
        };
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.to_scalar::<f32>()?;
        let (n, v) = logits.dims2()?;
        let tv = targets.to_vec1::<u32>()?;
        let saved = self.lse.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let lr = CpuRead::new(logits, NAME)?;
        let logits = lr.slice();
        let lse = match saved {
            Some(l) => l,
            None => logits.chunks_exact(v).map(lse_simd).collect(),
        };
        let count = tv.iter().filter(|&&t| t != IGNORE_INDEX).count();
        let scale = if count == 0 { 0.0 } else { g / count as f32 };
        let mut d = vec![0f32; n * v];
        let rows = rows_per_task(n, 6 * v);
        let tasks: Vec<_> = logits
            .chunks(rows * v)
            .zip(d.chunks_mut(rows * v))
            .zip(tv.chunks(rows).zip(lse.chunks(rows)))
            .collect();
        run_tasks(tasks, |((logits, d), (tv, lse))| {
            for (((row, d), &t), &lse) in logits
                .chunks_exact(v)
                .zip(d.chunks_exact_mut(v))
                .zip(tv)
                .zip(lse)
            {
                if t != IGNORE_INDEX {
                    grad_simd(row, lse, t as usize, scale, d);
                }
            }
        });
        Ok((Some(tensor(d, (n, v))?), None))
    }
}
