//! Configuration of fine-tuning runs (supervised and preference), with their presets.

use serde::{Deserialize, Serialize};

use crate::data::instructions::InstructionFormat;
use crate::error::{Error, Result};
use crate::nn::lora::LoraConfig;
use crate::train::config::TrainConfig;
use crate::train::tuning::{check_common, finetune_train_config};

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
    /// Longest example in tokens (0: the model's context + 1, at most
    /// 1025); longer ones are cut.
    pub max_len: usize,
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
