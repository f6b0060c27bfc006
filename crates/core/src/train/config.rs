//! Training hyper-parameters shared by every family's loop.

use serde::{Deserialize, Serialize};

/// Learning-rate schedule after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Cosine decay from `lr` to `min_lr` at `lr_decay_iters` (nanoGPT).
    Cosine,
    /// Linear decay from `lr` to `min_lr` at `lr_decay_iters`.
    Linear,
    /// `lr` throughout (after warm-up).
    Constant,
    /// Linear warm-up to `lr` at `warmup_iters`, then `lr * sqrt(warmup_iters / step)`: the
    /// schedule of "Attention Is All You Need" (section 5.3), with `lr` as its peak.
    #[serde(rename = "inverse_sqrt")]
    InverseSqrt,
}

/// The loop's knobs: steps, batch, optimizer, schedule, evaluation and logging cadence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps to run.
    pub max_iters: usize,
    /// Sequences (or images) per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before each optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Learning rate at the end of the decay.
    pub min_lr: f64,
    /// Linear warm-up steps.
    pub warmup_iters: usize,
    /// Step at which the decay reaches `min_lr` (usually `max_iters`).
    pub lr_decay_iters: usize,
    /// Decay shape after warm-up.
    pub schedule: ScheduleKind,
    /// AdamW beta1.
    pub beta1: f64,
    /// AdamW beta2.
    pub beta2: f64,
    /// AdamW epsilon.
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices and embeddings only.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (0: no clipping).
    pub grad_clip: f64,
    /// Evaluate (and checkpoint) every this many steps.
    pub eval_interval: usize,
    /// Batches per validation estimate.
    pub eval_iters: usize,
    /// Print a log line every this many steps.
    pub log_interval: usize,
    /// Write a sample to `samples/` every this many steps (0: only at the end).
    pub sample_interval: usize,
    /// Seed of weights, data order, dropout and sampling.
    pub seed: u64,
}

impl TrainConfig {
    /// nanoGPT's baby-GPT loop: 2000 steps of 12, AdamW (0.9, 0.99), lr 1e-3 -> 1e-4 cosine
    /// after 100 warm-up steps, weight decay 0.1, clip 1.0.
    pub fn char_baby() -> Self {
        Self {
            max_iters: 2000,
            batch_size: 12,
            grad_accum: 1,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_iters: 100,
            lr_decay_iters: 2000,
            schedule: ScheduleKind::Cosine,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: 1.0,
            eval_interval: 250,
            eval_iters: 200,
            log_interval: 10,
            sample_interval: 500,
            seed: 1337,
        }
    }

    /// Checks the values once, with a message that names the key to change.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.max_iters > 0, "max_iters must be positive"),
            (self.batch_size > 0, "batch_size must be positive"),
            (self.grad_accum > 0, "grad_accum must be positive"),
            (
                self.lr > 0.0 && self.lr.is_finite(),
                "lr must be a positive number",
            ),
            (
                self.min_lr >= 0.0 && self.min_lr <= self.lr,
                "min_lr must be in [0, lr]",
            ),
            ((0.0..1.0).contains(&self.beta1), "beta1 must be in [0, 1)"),
            ((0.0..1.0).contains(&self.beta2), "beta2 must be in [0, 1)"),
            (self.eps > 0.0, "eps must be positive"),
            (self.weight_decay >= 0.0, "weight_decay must be >= 0"),
            (
                self.grad_clip >= 0.0,
                "grad_clip must be >= 0 (0 turns clipping off)",
            ),
            (self.eval_interval > 0, "eval_interval must be positive"),
            (self.eval_iters > 0, "eval_iters must be positive"),
            (self.log_interval > 0, "log_interval must be positive"),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg.to_string()),
            None => Ok(()),
        }
    }
}
