//! The full configuration of a GPT run, and its named presets.

use serde::{Deserialize, Serialize};

pub use crate::data::text_splits::TextDataConfig;

use crate::error::{Error, Result};
use crate::models::gpt::GptConfig;
use crate::train::config::TrainConfig;

/// Everything `muse train gpt` can be told: model, loop, data and the samples it writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GptRunConfig {
    pub model: GptConfig,
    pub train: TrainConfig,
    pub data: TextDataConfig,
    pub sample: SampleConfig,
}

/// The text samples written while training and printed at the end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Prompt the samples start from.
    pub prompt: String,
    /// Tokens per sample.
    pub tokens: usize,
    /// Softmax temperature.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
}

/// The preset names `--preset` accepts.
pub const PRESETS: &[&str] = &["char-baby", "char-shakespeare", "gpt2-small"];

impl GptRunConfig {
    /// A named preset.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "char-baby" => Ok(Self::char_baby()),
            "char-shakespeare" => Ok(Self::char_shakespeare()),
            "gpt2-small" => Ok(Self::gpt2_small()),
            _ => Err(Error::usage(format!(
                "unknown gpt preset '{name}'; choose one of: {}",
                PRESETS.join(", ")
            ))),
        }
    }

    /// nanoGPT's baby GPT on characters (CPU, a few minutes).
    pub fn char_baby() -> Self {
        Self {
            model: GptConfig::char_baby(),
            train: TrainConfig::char_baby(),
            data: TextDataConfig {
                tokenizer: "char".into(),
                bpe_vocab_size: 2048,
                val_fraction: 0.1,
            },
            sample: SampleConfig {
                prompt: "\n".into(),
                tokens: 500,
                temperature: 0.8,
                top_k: 200,
            },
        }
    }

    /// nanoGPT's `train_shakespeare_char` GPU config (6/6/384, block 256, batch 64,
    /// dropout 0.2, 5000 steps).
    pub fn char_shakespeare() -> Self {
        let mut cfg = Self::char_baby();
        cfg.model = GptConfig::char_shakespeare();
        cfg.train.max_iters = 5000;
        cfg.train.lr_decay_iters = 5000;
        cfg.train.batch_size = 64;
        cfg
    }

    /// GPT-2 small (124M) with GPT-2's tokenizer and nanoGPT's `train_gpt2` optimizer settings
    /// (batch 12 x 40 accumulation steps of 1024 tokens, lr 6e-4 -> 6e-5, beta2 0.95).
    pub fn gpt2_small() -> Self {
        let mut cfg = Self::char_baby();
        cfg.model = GptConfig::gpt2_small();
        cfg.data.tokenizer = "gpt2".into();
        let t = &mut cfg.train;
        (t.max_iters, t.lr_decay_iters, t.warmup_iters) = (600_000, 600_000, 2000);
        (t.batch_size, t.grad_accum) = (12, 40);
        (t.lr, t.min_lr, t.beta2) = (6e-4, 6e-5, 0.95);
        (t.eval_interval, t.eval_iters, t.sample_interval) = (1000, 100, 1000);
        cfg.sample.prompt = "The".into();
        cfg.sample.tokens = 100;
        cfg
    }

    /// Checks every section (the model's vocabulary is checked once the tokenizer is known).
    pub fn validate(&self) -> Result<()> {
        let mut model = self.model.clone();
        model.vocab_size = model.vocab_size.max(1);
        model
            .validate()
            .map_err(|e| Error::usage(format!("model: {e}")))?;
        self.train
            .validate()
            .map_err(|e| Error::usage(format!("train: {e}")))?;
        if !(0.0..1.0).contains(&self.data.val_fraction) || self.data.val_fraction == 0.0 {
            return Err(Error::usage("data: val_fraction must be in (0, 1)"));
        }
        Ok(())
    }
}
