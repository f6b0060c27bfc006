//! From a `--data` value to tokenizer and token splits: the text preparation that training,
//! evaluation and benchmarks of language models share.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::{self, windows::split_text};
use crate::error::{Error, Result};
use crate::run_dir::DatasetRecord;
use crate::tokenizer::{TextTokenizer, TokenizerKind};

/// How the corpus becomes tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextDataConfig {
    /// `char` (the corpus's characters), `bpe` (byte-level BPE trained on the training split),
    /// `gpt2` (GPT-2's BPE), or a path to a `tokenizer.json`.
    pub tokenizer: String,
    /// Vocabulary size when `tokenizer = "bpe"`.
    pub bpe_vocab_size: usize,
    /// Fraction of the text (by characters, from the end) held out for validation.
    pub val_fraction: f64,
}

/// A corpus turned into token ids, split for training and validation.
pub struct TextSplits {
    pub tokenizer: TextTokenizer,
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    pub dataset: DatasetRecord,
    /// Characters and UTF-8 bytes of the validation text (for bits per character / byte).
    pub val_chars: usize,
    pub val_bytes: usize,
}

/// Reads the corpus named by `data`, builds or reuses a tokenizer, and splits the tokens.
///
/// `tokenizer` is the run's existing tokenizer when resuming or evaluating; otherwise one is
/// made as `cfg.tokenizer` says.
pub fn prepare_text(
    data: &str,
    cfg: &TextDataConfig,
    tokenizer: Option<TextTokenizer>,
) -> Result<TextSplits> {
    let source = data::resolve_text_corpus(data)?;
    let text = data::read_text(&source.path)?;
    let (train_text, val_text) = split_text(&text, cfg.val_fraction);
    if val_text.trim().is_empty() || train_text.trim().is_empty() {
        return Err(Error::input(format!(
            "{} is too short to split into training and validation text",
            source.path.display()
        )));
    }
    let tokenizer = match tokenizer {
        Some(t) => t,
        None => make_tokenizer(cfg, &text, train_text)?,
    };
    let train = tokenizer.encode(train_text)?;
    let val = tokenizer.encode(val_text)?;
    let dataset = DatasetRecord {
        name: source.name.clone(),
        // Absolute, so `--resume` and `muse eval` find it from any working directory.
        path: std::fs::canonicalize(&source.path)
            .unwrap_or(source.path.clone())
            .display()
            .to_string(),
        sha256: data::sha256_file(&source.path)?,
    };
    Ok(TextSplits {
        tokenizer,
        train,
        val,
        dataset,
        val_chars: val_text.chars().count(),
        val_bytes: val_text.len(),
    })
}

/// The tokenizer the config asks for. The character vocabulary comes from the whole text, as
/// nanoGPT's `prepare.py` builds it; a trained BPE sees only the training split.
fn make_tokenizer(cfg: &TextDataConfig, text: &str, train_text: &str) -> Result<TextTokenizer> {
    match cfg.tokenizer.as_str() {
        "char" => TextTokenizer::char_level(text),
        "bpe" => TextTokenizer::train(TokenizerKind::Bpe, train_text, cfg.bpe_vocab_size),
        "gpt2" => {
            let dir = data::dataset_dir("gpt2-bpe")?;
            TextTokenizer::gpt2(&dir.join("encoder.json"), &dir.join("vocab.bpe"))
        }
        path if Path::new(path).exists() => crate::tokenizer::files::load_file(Path::new(path)),
        other => Err(Error::usage(format!(
            "data.tokenizer '{other}' is neither char, bpe, gpt2 nor an existing tokenizer file \
             or folder"
        ))),
    }
}
