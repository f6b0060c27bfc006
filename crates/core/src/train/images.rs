//! What the image-model loops (classifier, VAE) share: a loop configuration counted in epochs,
//! the image-data section of a run config, and the run files every image run writes.

use serde::{Deserialize, Serialize};

use super::config::{ScheduleKind, TrainConfig};
pub use crate::data::images::ImageDataConfig;
use crate::error::{Error, Result};
use crate::run_dir::{DatasetRecord, RunDir};

/// The loop of an image model: epochs of shuffled mini-batches, Adam(W), an optional schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochConfig {
    /// Passes over the training images.
    pub epochs: usize,
    /// Stop after this many optimizer steps instead (0: `epochs` full passes).
    pub max_steps: usize,
    /// Images per optimizer step (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Learning rate at the end of the decay.
    pub min_lr: f64,
    /// Decay after warm-up: constant, cosine or linear (to `min_lr` at the last step).
    pub schedule: ScheduleKind,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Adam beta1.
    pub beta1: f64,
    /// Adam beta2.
    pub beta2: f64,
    /// Adam epsilon.
    pub eps: f64,
    /// Decoupled weight decay on matrices and kernels (0: plain Adam).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (0: no clipping).
    pub grad_clip: f64,
    /// Print a log line every this many steps.
    pub log_interval: usize,
    /// Evaluate on the test split and checkpoint every this many steps (0: every epoch).
    pub eval_interval: usize,
    /// Write a sample grid every this many steps (0: only at the end).
    pub sample_interval: usize,
    /// Seed of weights, data order, noise and dropout.
    pub seed: u64,
}

impl EpochConfig {
    /// Adam at 1e-3, batch 128, constant rate (the PyTorch examples' MNIST settings).
    pub fn adam_mnist(epochs: usize) -> Self {
        Self {
            epochs,
            max_steps: 0,
            batch_size: 128,
            lr: 1e-3,
            min_lr: 1e-3,
            schedule: ScheduleKind::Constant,
            warmup_steps: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: 0.0,
            log_interval: 100,
            eval_interval: 0,
            sample_interval: 1000,
            seed: 1,
        }
    }

    /// Optimizer steps of the whole run.
    pub fn total_steps(&self, steps_per_epoch: u64) -> u64 {
        if self.max_steps > 0 {
            self.max_steps as u64
        } else {
            self.epochs as u64 * steps_per_epoch
        }
    }

    /// Steps between evaluations.
    pub fn eval_every(&self, steps_per_epoch: u64) -> u64 {
        if self.eval_interval > 0 {
            self.eval_interval as u64
        } else {
            steps_per_epoch
        }
    }

    /// The shared [`TrainConfig`] that [`crate::train::AdamW`] and
    /// [`crate::train::LrSchedule`] read.
    pub fn optimizer_config(&self, total_steps: u64) -> TrainConfig {
        TrainConfig {
            max_iters: total_steps as usize,
            batch_size: self.batch_size,
            grad_accum: 1,
            lr: self.lr,
            min_lr: self.min_lr,
            warmup_iters: self.warmup_steps,
            lr_decay_iters: total_steps as usize,
            schedule: self.schedule,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            grad_clip: self.grad_clip,
            eval_interval: self.eval_interval.max(1),
            eval_iters: 1,
            log_interval: self.log_interval,
            sample_interval: self.sample_interval,
            seed: self.seed,
        }
    }

    /// Checks the values once, naming the key to change.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 && self.max_steps == 0 {
            return Err(Error::usage("train: epochs or max_steps must be positive"));
        }
        let mut t = self.optimizer_config(1);
        t.min_lr = t.min_lr.min(t.lr);
        t.validate()
            .map_err(|e| Error::usage(format!("train: {}", e.replace("iters", "steps"))))?;
        if self.min_lr > self.lr {
            return Err(Error::usage("train: min_lr must be in [0, lr]"));
        }
        Ok(())
    }
}

/// A resumed run must see the images it started with.
pub fn check_same_data(run: &RunDir, dataset: &DatasetRecord) -> Result<()> {
    let record = run.read_training()?;
    if record.dataset.sha256 != dataset.sha256 {
        return Err(Error::input(format!(
            "the training images changed since this run started ({} had sha256 {}, {} has {}); \
             resume with the original data or start a new run",
            record.dataset.path, record.dataset.sha256, dataset.path, dataset.sha256
        )));
    }
    Ok(())
}

/// The random stream of one step's noise (dropout, reparameterisation, corruption), apart
/// from the data order.
pub fn step_seed(seed: u64, step: u64, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step << 20) ^ (stream << 8) ^ 0x1A7E
}

/// "2.3k img/s" style throughput.
pub fn per_second(count: f64, ms: f64) -> String {
    let x = count / (ms / 1e3);
    if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}
