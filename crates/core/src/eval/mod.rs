//! Evaluation: how good a trained model is (loss, perplexity, bits per character) and how
//! fast Muse runs it (`muse bench`).

pub mod bench;
pub mod bench_diffusion;
pub mod bench_gan;
pub mod bench_vae;
pub mod gan;
pub mod image;
pub mod text;
pub mod vae;

pub use text::{TextEval, eval_text};
