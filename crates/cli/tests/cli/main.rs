//! End-to-end tests of the `muse` binary: exit codes, messages, files written.

mod audit;
mod chat;
mod common;
mod crash_safety;
mod data;
mod diffusion;
mod embed;
mod export;
mod finetune;
mod gan;
mod gguf;
mod gpt;
mod images;
mod inspect;
mod pairs;
mod readme;
mod run_api;
mod seq2seq;
mod serve;
mod text_to_image;
mod tokenizer;
mod translation_eval;
mod watermark;
