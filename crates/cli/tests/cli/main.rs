//! End-to-end tests of the `muse` binary: exit codes, messages, files written.

mod chat;
mod common;
mod data;
mod diffusion;
mod export;
mod finetune;
mod gan;
mod gpt;
mod images;
mod tokenizer;
