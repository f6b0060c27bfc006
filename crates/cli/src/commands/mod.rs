//! One file per subcommand: an `Args` struct (clap) and a `run` function.

pub mod align;
pub mod audit;
pub mod bench;
pub mod chat;
pub mod common;
pub mod data;
pub mod detect;
pub mod embed;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod inspect;
pub mod sample;
pub mod score;
pub mod serve;
pub mod tokenizer;
pub mod train;
pub mod translate;
pub mod tuning;
