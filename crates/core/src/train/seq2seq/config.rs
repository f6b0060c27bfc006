//! The full configuration of a translation run (`muse train seq2seq`), and its presets.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::seq2seq::Seq2SeqConfig;
use crate::train::config::{ScheduleKind, TrainConfig};

/// Everything `muse train seq2seq` can be told: model, loop, data and loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seq2SeqRunConfig {
    pub model: Seq2SeqConfig,
    pub train: TrainConfig,
    pub data: ParallelDataConfig,
    /// Label smoothing of the cross-entropy (Szegedy et al. 2016; the paper uses 0.1).
    pub label_smoothing: f64,
}

/// The sentence pairs and the joint tokenizer trained on them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelDataConfig {
    /// `eng-fra` or a TSV / JSONL pair file.
    pub dataset: String,
    /// Translate the second column into the first (French to English for eng-fra).
    pub reverse: bool,
    /// Size of the joint byte-level BPE vocabulary, `<pad> <s> </s>` included.
    pub vocab_size: usize,
    /// Seed of the train / valid / test split (13: the documented split).
    pub split_seed: u64,
}

/// The preset names `--preset` accepts.
pub const PRESETS: &[&str] = &["tatoeba-en-fr", "tiny"];

impl Seq2SeqRunConfig {
    /// A named preset.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tatoeba-en-fr" => Ok(Self::tatoeba_en_fr()),
            "tiny" => Ok(Self::tiny()),
            _ => Err(Error::usage(format!(
                "unknown seq2seq preset '{name}'; choose one of: {}",
                PRESETS.join(", ")
            ))),
        }
    }

    /// English to French on Tatoeba (eng-fra): the 3 + 3 layer, 256-wide model, a joint BPE of
    /// 8000 tokens, batches of 64 pairs, Adam (0.9, 0.98, 1e-9) with the paper's inverse
    /// square-root schedule peaking at 7e-4 after 1000 steps, label smoothing 0.1, 12000 steps.
    pub fn tatoeba_en_fr() -> Self {
        Self {
            model: Seq2SeqConfig::tatoeba_en_fr(),
            train: TrainConfig {
                max_iters: 12_000,
                batch_size: 64,
                grad_accum: 1,
                lr: 7e-4,
                min_lr: 0.0,
                warmup_iters: 1000,
                lr_decay_iters: 12_000,
                schedule: ScheduleKind::InverseSqrt,
                beta1: 0.9,
                beta2: 0.98,
                eps: 1e-9,
                weight_decay: 0.0,
                grad_clip: 1.0,
                eval_interval: 500,
                eval_iters: 24,
                log_interval: 50,
                sample_interval: 1000,
                seed: 1337,
            },
            data: ParallelDataConfig {
                dataset: "eng-fra".into(),
                reverse: false,
                vocab_size: 8000,
                split_seed: crate::data::parallel::SPLIT_SEED,
            },
            label_smoothing: 0.1,
        }
    }

    /// A model small enough for tests and smoke runs (1 + 1 layers, width 32, 300 tokens).
    pub fn tiny() -> Self {
        let mut cfg = Self::tatoeba_en_fr();
        let m = &mut cfg.model;
        (m.d_model, m.attention_heads, m.ffn_dim) = (32, 2, 64);
        (m.encoder_layers, m.decoder_layers, m.dropout) = (1, 1, 0.0);
        cfg.data.vocab_size = 300;
        let t = &mut cfg.train;
        (t.max_iters, t.lr_decay_iters, t.warmup_iters) = (200, 200, 20);
        (t.batch_size, t.lr) = (16, 3e-3);
        (
            t.eval_interval,
            t.eval_iters,
            t.log_interval,
            t.sample_interval,
        ) = (50, 4, 10, 100);
        cfg
    }

    /// Checks every section (the vocabulary is checked once the tokenizer is trained).
    pub fn validate(&self) -> Result<()> {
        let mut model = self.model.clone();
        model.vocab_size = self.data.vocab_size;
        model
            .validate()
            .map_err(|e| Error::usage(format!("model: {e}")))?;
        self.train
            .validate()
            .map_err(|e| Error::usage(format!("train: {e}")))?;
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(Error::usage("label_smoothing must be in [0, 1)"));
        }
        if self.data.vocab_size < 259 {
            return Err(Error::usage(
                "data: vocab_size must be at least 259 (256 bytes + <pad> <s> </s>)",
            ));
        }
        Ok(())
    }
}
