//! What `muse align` can be told: the DPO settings and how preference pairs become sequences.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::lora::LoraConfig;
use crate::train::config::TrainConfig;
use crate::train::tuning::{check_common, finetune_train_config};

/// Everything `muse align` can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignConfig {
    pub train: TrainConfig,
    /// DPO's beta: how far the policy may move from the reference (smaller: further).
    pub beta: f64,
    pub data: PrefDataConfig,
    /// LoRA adapters on the policy instead of full fine-tuning.
    pub lora: Option<LoraConfig>,
    /// Dropout inside the model while training (0: off, the usual choice for DPO).
    pub model_dropout: f32,
}

/// How preference pairs become sequences.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefDataConfig {
    /// Chat template for pairs with a `prompt`: `base`, `plain`, `chatml` or a path.
    pub template: String,
    /// Use `prompt` + reply as raw text, without the chat template.
    pub raw: bool,
    /// Fraction of the pairs held out for evaluation.
    pub val_fraction: f64,
    /// Longest sequence in tokens (0: the model's context + 1, at most
    /// 1025); longer ones are cut.
    pub max_len: usize,
}

impl AlignConfig {
    /// DPO defaults: beta 0.1, 200 steps of 8 pairs, lr 5e-5 (LoRA 5e-4), 10% held out.
    pub fn preset(beta: f64, lora: Option<LoraConfig>) -> Self {
        let mut train = finetune_train_config(lora.is_some());
        train.max_iters = 200;
        train.lr_decay_iters = 200;
        train.warmup_iters = 10;
        (train.lr, train.min_lr) = if lora.is_some() {
            (5e-4, 5e-5)
        } else {
            (5e-5, 5e-6)
        };
        train.eval_interval = 25;
        Self {
            train,
            beta,
            data: PrefDataConfig {
                template: "base".into(),
                raw: false,
                val_fraction: 0.1,
                max_len: 0,
            },
            lora,
            model_dropout: 0.0,
        }
    }

    /// `dpo` or `dpo-lora`.
    pub fn preset_name(&self) -> &'static str {
        if self.lora.is_some() {
            "dpo-lora"
        } else {
            "dpo"
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.train
            .validate()
            .map_err(|e| Error::usage(format!("train: {e}")))?;
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err(Error::usage("--beta must be a positive number"));
        }
        check_common(
            self.data.val_fraction,
            self.model_dropout,
            self.lora.as_ref(),
        )
    }
}
