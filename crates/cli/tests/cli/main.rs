//! End-to-end tests of the `muse` binary: exit codes, messages, files written.

mod common;
mod data;
mod tokenizer;
mod gpt;
mod export;
mod chat;
mod images;
