//! One file per subcommand: an `Args` struct (clap) and a `run` function.

pub mod align;
pub mod bench;
pub mod chat;
pub mod common;
pub mod data;
pub mod diffusion;
pub mod eval;
pub mod eval_image;
pub mod export;
pub mod finetune;
pub mod gan;
pub mod sample;
pub mod sample_image;
pub mod sample_text;
pub mod score;
pub mod tokenizer;
pub mod train;
pub mod train_image;
pub mod tuning;
