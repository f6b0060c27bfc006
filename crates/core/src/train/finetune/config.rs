//! Configuration of fine-tuning runs (supervised and preference), with their presets.

use serde::{Deserialize, Serialize};

use crate::data::instructions::InstructionFormat;
use crate::error::{Error, Result};
use crate::nn::lora::LoraConfig;
use crate::train::config::{ScheduleKind, TrainConfig};

/// Everything `muse finetune` can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    pub train: TrainConfig,
    pub data: SftDataConfig,
    /// LoRA adapters instead of full fine-tuning (`--lora`).
    pub lora: Option<LoraConfig>,
    /// Dropout inside the model while training (0 turns it off).
    pub model_dropout: f32,
}

/// How instruction data becomes examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftDataConfig {
    /// `alpaca` or `chat`.
    pub format: InstructionFormat,
    /// Chat template: `base` (the base model's, plain if none), `plain`, `chatml` or a path.
    pub template: String,
    /// Fraction of the examples held out for evaluation.
    pub val_fraction: f64,
    /// Longest example in tokens (0: the model's context + 1); longer ones are cut.
    pub max_len: usize,
}

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

impl FinetuneConfig {
    /// The preset for supervised fine-tuning, full or with `lora`.
    pub fn preset(format: InstructionFormat, lora: Option<LoraConfig>) -> Self {
        Self {
            train: finetune_train_config(lora.is_some()),
            data: SftDataConfig {
                format,
                template: "base".into(),
                val_fraction: 0.05,
                max_len: 0,
            },
            lora,
            model_dropout: 0.0,
        }
    }

    /// `sft` or `sft-lora`.
    pub fn preset_name(&self) -> &'static str {
        if self.lora.is_some() {
            "sft-lora"
        } else {
            "sft"
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.train
            .validate()
            .map_err(|e| Error::usage(format!("train: {e}")))?;
        check_common(
            self.data.val_fraction,
            self.model_dropout,
            self.lora.as_ref(),
        )
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
