//! Integration tests of muse-core: one binary, one module per area.
//!
//! Tests read datasets through `MUSE_DATA_DIR` (CI sets it to `../shared/data`).

mod common;
mod data;
mod gpt_golden;
mod sampling;
mod gpt;
mod tokenizer;
mod ops;
mod conv_ops;
mod gan;
mod images;
mod image_metrics;
mod classifier;
mod vae;
mod hf_parity;
mod llama;
mod export;
mod decode;
