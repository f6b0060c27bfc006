//! The Llama family: configuration (Hugging Face field names) and model.
//!
//! Loading from disk (HF folders, llama2.c checkpoints) lives in [`crate::models::pretrained`]
//! and [`crate::models::llama2c`].

mod config;
mod model;

pub use config::LlamaConfig;
pub use model::{Llama, llama_init, parameter_count};
