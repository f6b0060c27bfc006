//! Evaluation: how good a trained model is (loss, perplexity, bits per character) and how
//! fast Muse runs it (`muse bench`).

pub mod bench;
pub mod image;
pub mod text;

pub use text::{TextEval, eval_text};
