//! In-place AdamW step (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") with
//! the exact update order of `torch.optim.AdamW` (`foreach=False`).
//!
//! Three in-place passes (first moment, second moment, parameter) instead of the ~10 tensors a
//! composed step allocates: candle's in-place ops write only their destination, so the moments
//! cannot be updated in the parameter's pass.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var, bail};

use super::cpu::{f32_slice, f32_slice_mut, rows_per_task, run_tasks};
use super::{fast_path, reference};

/// AdamW hyper-parameters for one step.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamWHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// 1-based step number, for the bias corrections.
    pub step: u64,
}

/// One AdamW step, in place on `param`, `m` and `v`:
///
/// ```text
/// p *= 1 - lr * wd
/// m = b1 * m + (1 - b1) * g            (as torch: m + (1 - b1) * (g - m))
/// v = b2 * v + (1 - b2) * g^2
/// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
/// ```
///
/// # Shapes
/// `param`, `grad`, `m`, `v`: all the same shape.
pub fn adamw_update(param: &Var, grad: &Tensor, m: &Var, v: &Var, h: &AdamWHyper) -> Result<()> {
    if h.step == 0 {
        bail!("adamw_update: steps count from 1")
    }
    for (name, t) in [("grad", grad), ("m", m.as_tensor()), ("v", v.as_tensor())] {
        if t.shape() != param.shape() {
            bail!(
                "adamw_update: {name} {:?} does not match the parameter {:?}",
                t.shape(),
                param.shape()
            )
        }
    }
    if !fast_path(&[param, grad, m, v]) {
        return reference::adamw_update(param, grad, m, v, h);
    }
    let grad = grad.contiguous()?;
    m.inplace_op2(
        &grad,
        &Moment {
            beta: h.beta1 as f32,
            square: false,
        },
    )?;
    v.inplace_op2(
        &grad,
        &Moment {
            beta: h.beta2 as f32,
            square: true,
        },
    )?;
    let t = h.step.min(i32::MAX as u64) as i32;
    let step = Step {
        decay: (1.0 - h.lr * h.weight_decay) as f32,
        step_size: (h.lr / (1.0 - h.beta1.powi(t))) as f32,
        bc2_sqrt: (1.0 - h.beta2.powi(t)).sqrt() as f32,
        eps: h.eps as f32,
    };
    param.inplace_op3(m, v, &step)
}

/// Elements per task: each pass is a memory-bound sweep, so split only tensors large enough
/// (64k elements per task) for a second thread to outweigh waking it; gpt_char's largest
/// parameter (65k) stays on one thread.
fn chunk(len: usize) -> usize {
    rows_per_task(len, 2)
}

/// Applies `f` to matching chunks of `dst` and `src`, in parallel for large tensors.
fn zip_chunks<F: Fn(&mut [f32], &[f32]) + Sync + Send>(dst: &mut [f32], src: &[f32], f: F) {
    let chunk = chunk(dst.len());
    run_tasks(
        dst.chunks_mut(chunk).zip(src.chunks(chunk)).collect(),
        |(d, s)| f(d, s),
    );
}

/// `m = m + (1 - beta) (g - m)`, or `v = beta v + (1 - beta) g^2` when `square`.
struct Moment {
    beta: f32,
    square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "muse-adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (dst, g) = (
            f32_slice_mut(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
        );
        let (beta, w) = (self.beta, 1.0 - self.beta);
        if self.square {
            zip_chunks(dst, g, |v, g| {
                v.iter_mut()
                    .zip(g)
                    .for_each(|(v, &g)| *v = *v * beta + w * g * g)
            });
        } else {
            // torch's lerp form: the same value as beta * m + (1 - beta) * g up to rounding.
            zip_chunks(dst, g, |m, g| {
                m.iter_mut().zip(g).for_each(|(m, &g)| *m += w * (g - *m))
            });
        }
        Ok(())
    }
}

/// `p = p * decay - step_size * m / (sqrt(v) / bc2_sqrt + eps)`.
struct Step {
    decay: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
}

impl InplaceOp3 for Step {
    fn name(&self) -> &'static str {
        "muse-adamw-step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let p = f32_slice_mut(s1, l1, self.name())?;
        let (m, v) = (
            f32_slice(s2, l2, self.name())?,
            f32_slice(s3, l3, self.name())?,
        );
        let chunk = chunk(p.len());
        let tasks: Vec<_> = p
            .chunks_mut(chunk)
            .zip(m.chunks(chunk))
            .zip(v.chunks(chunk))
            .collect();
        run_tasks(tasks, |((p, m), v)| {
            for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                let denom = v.sqrt() / self.bc2_sqrt + self.eps;
                *p = *p * self.decay - self.step_size * (m / denom);
            }
        });
        Ok(())
    }
}
