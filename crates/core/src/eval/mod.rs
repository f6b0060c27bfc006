//! Evaluation: how good a trained model is (loss, perplexity, bits per character, ELBO, FID
//! and class coverage of generated images, BLEU and chrF of translations).

pub mod diffusion;
pub mod gan;
pub mod image;
pub mod memorisation;
pub mod text;
pub mod translation;
pub mod vae;

pub use text::{TextEval, eval_text};
