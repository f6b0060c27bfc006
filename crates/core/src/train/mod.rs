//! Training: the pieces every family's loop shares (optimizer, schedules, clipping,
//! checkpoints, metrics, plots, progress, Ctrl-C) and the loops themselves.

pub mod cadence;
pub mod card;
pub mod checkpoint;
pub mod classifier;
pub mod config;
pub mod diffusion;
pub mod dpo;
pub mod finetune;
pub mod gan;
pub mod gpt;
pub mod image_run;
pub mod images;
pub mod interrupt;
pub mod metrics;
pub mod optimizer;
pub mod plot;
pub mod progress;
pub mod schedule;
pub mod seeds;
pub mod seq2seq;
pub mod tuning;
pub mod vae;

pub use config::{ScheduleKind, TrainConfig};
pub use optimizer::AdamW;
pub use schedule::LrSchedule;
