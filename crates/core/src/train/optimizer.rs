//! AdamW with decay groups, gradient accumulation and global-norm clipping.
//!
//! candle's `AdamW` applies one weight decay to every tensor and has no clipping; nanoGPT and
//! the PyTorch reference decay only matrices and embeddings. Each step here runs the fused
//! in-place update from [`crate::nn::ops::adamw_update`].

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;

use super::config::TrainConfig;
use crate::error::{Error, Result};
use crate::nn::ops::{AdamWHyper, adamw_update};

/// One trainable tensor with its moments.
struct Param {
    name: String,
    var: Var,
    m: Var,
    v: Var,
    weight_decay: f64,
}

/// Gradients aligned with the optimizer's parameters, summed over micro-batches.
pub struct Grads(Vec<Option<Tensor>>);

/// AdamW over the variables of a `VarMap`.
pub struct AdamW {
    params: Vec<Param>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: u64,
}

impl AdamW {
    /// Optimises every variable of `varmap` (sorted by name). Tensors of two or more
    /// dimensions get `cfg.weight_decay`; vectors (biases, norm gains) get none.
    pub fn new(varmap: &VarMap, cfg: &TrainConfig) -> Result<Self> {
        let vars: Vec<(String, Var)> = {
            let data = varmap.data().lock().expect("varmap lock is never poisoned");
            let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        Self::with_vars(vars, cfg.weight_decay, cfg)
    }

    /// Optimises the given named variables (a subset of a model, say), decaying matrices by
    /// `weight_decay`.
    pub fn with_vars(
        vars: Vec<(String, Var)>,
        weight_decay: f64,
        cfg: &TrainConfig,
    ) -> Result<Self> {
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = || Var::zeros(var.shape(), DType::F32, var.device());
                let wd = if var.rank() >= 2 { weight_decay } else { 0.0 };
                Ok(Param {
                    m: zeros()?,
                    v: zeros()?,
                    name,
                    var,
                    weight_decay: wd,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            params,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            step: 0,
        })
    }

    /// Steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Picks this optimizer's gradients out of a backward pass.
    pub fn grads(&self, store: &GradStore) -> Grads {
        Grads(
            self.params
                .iter()
                .map(|p| store.get(p.var.as_tensor()).cloned())
                .collect(),
        )
    }

    /// Adds the gradients of another micro-batch.
    pub fn accumulate(&self, into: &mut Grads, store: &GradStore) -> Result<()> {
        for (slot, p) in into.0.iter_mut().zip(&self.params) {
            if let Some(g) = store.get(p.var.as_tensor()) {
                *slot = Some(match slot.take() {
                    Some(acc) => (acc + g)?,
                    None => g.clone(),
                });
            }
        }
        Ok(())
    }

    /// The gradients of the mean loss over `t.grad_accum` micro-batches: each
    /// `micro_loss(micro)` is scaled by `1 / grad_accum` before its backward pass and the
    /// gradients are summed, then clipped at `t.grad_clip` (0: off). Returns the gradients, the
    /// sum of the unscaled micro-batch losses and the norm before clipping (NaN when off); the
    /// caller applies them with [`AdamW::step`].
    pub fn accumulate_grads(
        &self,
        t: &TrainConfig,
        mut micro_loss: impl FnMut(u64) -> Result<Tensor>,
    ) -> Result<(Grads, f64, f64)> {
        let mut grads = Grads(vec![None; self.params.len()]);
        let mut loss_sum = 0.0;
        for micro in 0..t.grad_accum as u64 {
            let loss = micro_loss(micro)?;
            let scaled = if t.grad_accum > 1 {
                (&loss / t.grad_accum as f64)?
            } else {
                loss.clone()
            };
            self.accumulate(&mut grads, &scaled.backward()?)?;
            loss_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
        let grad_norm = if t.grad_clip > 0.0 {
            grads.clip(t.grad_clip)?
        } else {
            f64::NAN
        };
        Ok((grads, loss_sum, grad_norm))
    }

    /// One AdamW step at learning rate `lr`. Parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        self.step += 1;
        for (p, g) in self.params.iter().zip(&grads.0) {
            let Some(g) = g else { continue };
            let hyper = AdamWHyper {
                lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: p.weight_decay,
                step: self.step,
            };
            adamw_update(&p.var, g, &p.m, &p.v, &hyper)?;
        }
        Ok(())
    }

    /// Adds the moments (`{prefix}m.NAME`, `{prefix}v.NAME`) and the step (`{prefix}step`) to
    /// `out`, for a checkpoint. The prefix tells several optimizers of one run apart.
    pub fn state_tensors(&self, prefix: &str, out: &mut HashMap<String, Tensor>) -> Result<()> {
        for p in &self.params {
            out.insert(format!("{prefix}m.{}", p.name), p.m.as_tensor().clone());
            out.insert(format!("{prefix}v.{}", p.name), p.v.as_tensor().clone());
        }
        let step = Tensor::new(&[self.step as f64], &candle_core::Device::Cpu)?;
        out.insert(format!("{prefix}step"), step);
        Ok(())
    }

    /// Restores the moments and step saved by [`AdamW::state_tensors`] from `saved` (the
    /// tensors of the file `path`, named in errors).
    pub fn load_state(
        &mut self,
        saved: &HashMap<String, Tensor>,
        prefix: &str,
        path: &Path,
    ) -> Result<()> {
        let get = |key: &str| {
            saved.get(key).ok_or_else(|| {
                Error::input(format!(
                    "{} has no '{key}': it belongs to another model",
                    path.display()
                ))
            })
        };
        for p in &self.params {
            p.m.set(&get(&format!("{prefix}m.{}", p.name))?.to_device(p.var.device())?)?;
            p.v.set(&get(&format!("{prefix}v.{}", p.name))?.to_device(p.var.device())?)?;
        }
        let step = get(&format!("{prefix}step"))?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        self.step = step[0] as u64;
        Ok(())
    }
}

impl Grads {
    /// The global L2 norm of all gradients.
    pub fn norm(&self) -> Result<f64> {
        let mut sum = 0.0f64;
        for g in self.0.iter().flatten() {
            sum += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        Ok(sum.sqrt())
    }

    /// Scales the gradients so their global norm is at most `max_norm` (PyTorch's
    /// `clip_grad_norm_`: coefficient `max_norm / (norm + 1e-6)`, capped at 1). Returns the
    /// norm before clipping.
    pub fn clip(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.norm()?;
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for g in self.0.iter_mut().flatten() {
                *g = (&*g * coef)?;
            }
        }
        Ok(norm)
    }

    /// Multiplies every gradient by `factor` (averaging accumulated micro-batches).
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for g in self.0.iter_mut().flatten() {
            *g = (&*g * factor)?;
        }
        Ok(())
    }
}
