//! What supervised fine-tuning (`train::finetune`) and preference alignment (`train::dpo`)
//! share: the base model and the trained policy (full or LoRA), examples cut to length and
//! batched, the held-out split, dropped-example counts, the run record, held-out response
//! loss, samples and the model card.

mod batch;
mod config;
mod dropped;
pub mod policy;
pub mod record;
pub mod report;
mod step;

use std::path::PathBuf;

use candle_core::Device;

pub use batch::{EpochOrder, PaddedBatch, example_io, pad_batch, split_indices, truncate};
pub use config::{check_common, finetune_train_config};
pub use dropped::{DropReason, Dropped, first_sentence};
pub use policy::{Base, Policy, resolve_template, write_model_files};

use crate::error::{Error, Result};
use crate::run_dir::{DatasetRecord, OnExisting, RunDir};
use crate::tokenizer::chat::ChatTemplate;
use crate::train::checkpoint::TrainState;
use crate::train::optimizer::AdamW;

/// What to tune (`muse finetune` or `muse align`), on what, and where.
pub struct TuneJob<C> {
    /// The pretrained model: a Muse run, a Hugging Face folder, or a llama2.c `.bin`.
    pub base: PathBuf,
    /// A tokenizer replacing the base's (needed for a llama2.c `.bin`).
    pub tokenizer: Option<PathBuf>,
    /// The data: for SFT a JSONL file, a folder of them, or `instructions`; for DPO the same
    /// for preference pairs, or `hh-rlhf`.
    pub data: String,
    pub config: C,
    pub out: PathBuf,
    pub on_existing: OnExisting,
    pub device: Device,
}

/// Positions an example may fill when `max_len` is 0. Attention memory grows with the square
/// of a batch's length, and a model's whole context can be long: with SmolLM2's 8,192, the
/// batches of `muse finetune` on `instructions` ran as long as its longest example (6,557
/// characters) and the run's peak resident set was 22 GB, more than most laptops have.
pub const DEFAULT_MAX_POSITIONS: usize = 1024;

/// The longest example in tokens: the config's `max_len` (0: the model's context + 1, at most
/// [`DEFAULT_MAX_POSITIONS`] + 1), at most the context + 1 (inputs and targets are one token
/// apart).
pub fn example_length(max_len: usize, base: &Base) -> Result<usize> {
    let ctx = crate::models::pretrained::ModelConfig::context_len(&base.cfg);
    let len = match max_len {
        0 => ctx.min(DEFAULT_MAX_POSITIONS) + 1,
        m => m.min(ctx + 1),
    };
    if len < 2 {
        return Err(Error::usage("data: max_len must be at least 2"));
    }
    Ok(len)
}

/// What a tuning run starts from: a resumed run's checkpoint (into `policy` and `opt`, after
/// `check_resumed` and with the resumed config recorded), or a new run's model files and
/// record (`training.json`) with a fresh state.
#[allow(clippy::too_many_arguments)]
pub fn open_state<C: serde::Serialize>(
    run: &RunDir,
    resuming: bool,
    policy: &mut Policy,
    opt: &mut AdamW,
    (base, template): (&Base, &ChatTemplate),
    (config, preset, seed): (&C, &str, u64),
    data: &DatasetRecord,
    check_resumed: impl FnOnce() -> Result<()>,
) -> Result<TrainState> {
    if resuming {
        let state = policy.load_checkpoint(run, opt)?;
        check_resumed()?;
        run.record_resumed_config(config)?;
        return Ok(state);
    }
    write_model_files(run, base, template, policy)?;
    record::write_record(run, config, preset, seed, base, data)?;
    Ok(TrainState::default())
}
