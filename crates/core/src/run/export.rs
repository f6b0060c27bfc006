//! `muse export`: a language model written for other tools (Hugging Face `transformers`,
//! llama.cpp).

use std::path::Path;

use crate::error::{Error, Result};
pub use crate::export::{GgufExport, GgufQuant, HfExport};

/// Writes the language model at `src` as a Hugging Face folder at `out`; other families are
/// refused with what the folder holds.
pub fn export_hf(
    src: &Path,
    tokenizer: Option<&Path>,
    out: &Path,
    overwrite: bool,
    merge_lora: bool,
) -> Result<HfExport> {
    if src.exists() {
        require_text_model(src, "`muse export --format hf` writes language models")?;
    }
    crate::export::export_hf_with(src, tokenizer, out, overwrite, merge_lora)
}

/// Writes the language model at `src` (run, folder, llama2.c file or GGUF file) as the GGUF
/// file `out`; other families are refused with what the source holds.
pub fn export_gguf(
    src: &Path,
    tokenizer: Option<&Path>,
    out: &Path,
    quant: GgufQuant,
    overwrite: bool,
    merge_lora: bool,
) -> Result<GgufExport> {
    if src.exists() {
        require_text_model(src, "`muse export --format gguf` writes language models")?;
    }
    crate::export::export_gguf(src, tokenizer, out, quant, overwrite, merge_lora)
}

/// An error naming what `path` holds when it is not a language model.
pub fn require_text_model(path: &Path, what: &str) -> Result<()> {
    let family = super::family::detect(path)?;
    if family.is_text() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{} holds {}: {what} (GPT runs, Hugging Face gpt2 or llama folders, llama2.c files)",
        path.display(),
        family.describe()
    )))
}
