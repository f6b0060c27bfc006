//! The training settings SFT and DPO share: the loop defaults and the checks of the keys both
//! have.

use crate::error::{Error, Result};
use crate::nn::lora::LoraConfig;
use crate::train::config::{ScheduleKind, TrainConfig};

/// The fine-tuning loop defaults: 300 steps of 8 examples, AdamW (0.9, 0.95), constant
/// learning rate after 20 warm-up steps, no weight decay, clip 1.0. Full fine-tuning uses
/// lr 1e-4, LoRA 1e-3 (adapters start at zero and need larger steps).
pub fn finetune_train_config(lora: bool) -> TrainConfig {
    TrainConfig {
        max_iters: 300,
        batch_size: 8,
        grad_accum: 1,
        lr: if lora { 1e-3 } else { 1e-4 },
        min_lr: if lora { 1e-4 } else { 1e-5 },
        warmup_iters: 20,
        lr_decay_iters: 300,
        schedule: ScheduleKind::Cosine,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.0,
        grad_clip: 1.0,
        eval_interval: 50,
        eval_iters: 50,
        log_interval: 10,
        sample_interval: 0,
        seed: 1337,
    }
}

/// Checks shared by the SFT and DPO configs.
pub fn check_common(val_fraction: f64, dropout: f32, lora: Option<&LoraConfig>) -> Result<()> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(Error::usage("data: val_fraction must be in (0, 1)"));
    }
    if !(0.0..1.0).contains(&dropout) {
        return Err(Error::usage("model_dropout must be in [0, 1)"));
    }
    if let Some(l) = lora {
        l.validate().map_err(Error::usage)?;
    }
    Ok(())
}
