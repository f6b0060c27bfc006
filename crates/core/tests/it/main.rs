//! Integration tests of muse-core: one binary, one module per area.
//!
//! Tests read datasets through `MUSE_DATA_DIR` (CI sets it to `../shared/data`).

mod batched_decode;
mod bert;
mod checkpoint;
mod classifier;
mod common;
mod conv_ops;
mod data;
mod decode;
mod diffusion;
mod dpo;
mod export;
mod finetune;
mod gan;
mod gguf;
mod gguf_export;
mod gpt;
mod gpt_golden;
mod hf_parity;
mod image_metrics;
mod images;
mod latent_diffusion;
mod llama;
mod lora;
mod lora_op;
mod ops;
mod parallel;
mod sampling;
mod seq2seq;
mod text_to_image;
mod tokenizer;
mod translation_metrics;
mod vae;
