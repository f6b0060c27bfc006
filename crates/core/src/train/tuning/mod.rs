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

use crate::models::pretrained::TextLm;
use crate::run_dir::OnExisting;

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

/// The beginning-of-sequence id a model's prompts start with.
pub fn bos_of(model: &TextLm) -> Option<u32> {
    match model.config() {
        crate::models::pretrained::ModelConfig::Llama(c) => c.bos_token_id,
        _ => None,
    }
}
