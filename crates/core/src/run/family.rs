//! The model families Muse knows, and the one place that tells which family a path holds.

use std::fmt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::run_dir::RunDir;

/// A family of generative (or judging) model: what a run folder or model file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Muse's GPT, or a Hugging Face `gpt2` folder.
    Gpt,
    /// A Hugging Face `llama` folder (Llama, SmolLM, TinyLlama, ...).
    Llama,
    /// A llama2.c checkpoint file (legacy v0 format).
    Llama2c,
    /// A GGUF file (llama.cpp's format) holding a `llama` or `gpt2` model.
    Gguf,
    /// The reference image classifier that judges generated images.
    Classifier,
    /// A variational autoencoder.
    Vae,
    /// A DCGAN / conditional GAN / WGAN-GP generator.
    Gan,
    /// A DDPM diffusion model (U-Net noise predictor; class-conditional presets).
    Diffusion,
    /// An encoder-decoder transformer that translates (`muse translate`).
    Seq2seq,
}

/// Every family `muse train` can start, with its presets and the preset it uses by default.
pub const TRAINABLE: &[(Family, &[&str], &str)] = &[
    (Family::Gpt, crate::train::gpt::PRESETS, "char-baby"),
    (
        Family::Classifier,
        crate::train::classifier::PRESETS,
        "mnist",
    ),
    (Family::Vae, crate::train::vae::PRESETS, "mnist-mlp"),
    (Family::Gan, crate::train::gan::PRESETS, "dcgan-mnist"),
    (
        Family::Diffusion,
        crate::train::diffusion::PRESETS,
        "ddpm-mnist",
    ),
    (
        Family::Seq2seq,
        crate::train::seq2seq::PRESETS,
        "tatoeba-en-fr",
    ),
];

impl Family {
    /// The name `training.json` records (`gpt`, `vae`, ...); Hugging Face folders use their
    /// `model_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Gpt => "gpt",
            Family::Llama => "llama",
            Family::Llama2c => "llama2c",
            Family::Gguf => "gguf",
            Family::Classifier => "classifier",
            Family::Vae => "vae",
            Family::Gan => "gan",
            Family::Diffusion => "diffusion",
            Family::Seq2seq => "seq2seq",
        }
    }

    /// Reads a recorded family name or Hugging Face `model_type`; `None` for names Muse does
    /// not know.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "gpt" | "gpt2" => Family::Gpt,
            "llama" => Family::Llama,
            "llama2c" => Family::Llama2c,
            "gguf" => Family::Gguf,
            "classifier" => Family::Classifier,
            "vae" => Family::Vae,
            "gan" => Family::Gan,
            "diffusion" => Family::Diffusion,
            "seq2seq" => Family::Seq2seq,
            _ => return None,
        })
    }

    /// A language model that `sample --prompt`, `chat`, `finetune` and `align` take.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            Family::Gpt | Family::Llama | Family::Llama2c | Family::Gguf
        )
    }

    /// An image generator that `sample` draws PNG grids from.
    pub fn is_image_generator(self) -> bool {
        matches!(self, Family::Vae | Family::Gan | Family::Diffusion)
    }

    /// What a user would call it, for messages ("holds a VAE").
    pub fn describe(self) -> &'static str {
        match self {
            Family::Gpt => "a GPT language model",
            Family::Llama => "a Llama language model",
            Family::Llama2c => "a llama2.c language model",
            Family::Gguf => "a GGUF language model",
            Family::Classifier => "an image classifier",
            Family::Vae => "a VAE (image model)",
            Family::Gan => "a GAN (image model)",
            Family::Diffusion => "a diffusion model (image model)",
            Family::Seq2seq => "an encoder-decoder translation model",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tells which family `path` holds: a run folder (its `training.json`), a Hugging Face folder
/// (`config.json`'s `model_type`) or a llama2.c checkpoint file. Errors say what the path is
/// when it is not a model.
pub fn detect(path: &Path) -> Result<Family> {
    if path.is_file() {
        return detect_file(path);
    }
    let name = RunDir::open(path)?.family()?;
    Family::from_name(&name).ok_or_else(|| {
        Error::input(format!(
            "{} holds a '{name}' model (model_type '{name}' is not supported): Muse loads its \
             own runs and Hugging Face gpt2 or llama folders",
            path.display()
        ))
    })
}

/// A file is a model as a GGUF file (its magic) or a llama2.c checkpoint (a header of seven
/// small positive integers). Anything else (text, an image, a safetensors file) is named for
/// what it is.
fn detect_file(path: &Path) -> Result<Family> {
    use std::io::Read;
    if crate::models::gguf::is_gguf(path) {
        return Ok(Family::Gguf);
    }
    let mut head = [0u8; 28];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(Error::io(path))?;
    let fields: Vec<i32> = head[..n]
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: unshared
    // classifier), seq_len.
    let plausible = fields.len() == 7
        && fields
            .iter()
            .enumerate()
            .all(|(i, &v)| (1..=1 << 20).contains(&if i == 5 { v.abs() } else { v }));
    if plausible {
        return Ok(Family::Llama2c);
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let hint = match ext.as_str() {
        "safetensors" => "a safetensors file: pass the folder that holds it with its config.json",
        "json" => "a JSON file: pass the model folder that holds it",
        "gguf" => "named .gguf but not a GGUF file (no GGUF header): damaged or mis-named",
        "png" | "jpg" | "jpeg" => "an image, not a model",
        _ => {
            "not a model file (the single-file models Muse reads are GGUF files and llama2.c \
             checkpoints)"
        }
    };
    Err(Error::input(format!(
        "{}: {hint}; give a run folder (`muse train --out`), a Hugging Face model folder, a GGUF \
         file or a llama2.c .bin checkpoint",
        path.display()
    )))
}
