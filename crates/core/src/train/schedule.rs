//! Learning-rate schedules: linear warm-up, then cosine, linear or constant decay.
//!
//! candle ships none; this one follows nanoGPT's `get_lr` exactly, so a run here and the
//! PyTorch reference see the same learning rate at every step.

use super::config::{ScheduleKind, TrainConfig};

/// The learning rate as a function of the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_iters: usize,
    pub decay_iters: usize,
    pub kind: ScheduleKind,
}

impl LrSchedule {
    pub fn from_config(cfg: &TrainConfig) -> Self {
        Self {
            lr: cfg.lr,
            min_lr: cfg.min_lr,
            warmup_iters: cfg.warmup_iters,
            decay_iters: cfg.lr_decay_iters,
            kind: cfg.schedule,
        }
    }

    /// The learning rate for step `it` (0-based).
    pub fn at(&self, it: usize) -> f64 {
        if self.kind == ScheduleKind::InverseSqrt {
            let (s, w) = ((it + 1) as f64, self.warmup_iters.max(1) as f64);
            return self.lr * (s / w).min((w / s).sqrt());
        }
        if it < self.warmup_iters {
            return self.lr * (it + 1) as f64 / (self.warmup_iters + 1) as f64;
        }
        if self.kind == ScheduleKind::Constant {
            return self.lr;
        }
        if it > self.decay_iters || self.decay_iters <= self.warmup_iters {
            return self.min_lr;
        }
        let ratio = (it - self.warmup_iters) as f64 / (self.decay_iters - self.warmup_iters) as f64;
        let coeff = match self.kind {
            ScheduleKind::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos()),
            ScheduleKind::Linear => 1.0 - ratio,
            ScheduleKind::Constant | ScheduleKind::InverseSqrt => 1.0,
        };
        self.min_lr + coeff * (self.lr - self.min_lr)
    }
}
