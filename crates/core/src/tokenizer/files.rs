//! Finding a model's tokenizer on disk, in whichever form it came: `tokenizer.json`, GPT-2's
//! `vocab.json` + `merges.txt`, a SentencePiece `tokenizer.model` or llama2.c `tokenizer.bin`.

use std::path::Path;

use super::TextTokenizer;
use crate::error::Result;

/// A tokenizer file of any supported kind, by extension: `.json` (Hugging Face
/// `tokenizer.json`), `.model` (SentencePiece) or anything else (llama2.c `tokenizer.bin`).
pub fn load_file(path: &Path) -> Result<TextTokenizer> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => TextTokenizer::from_file(path),
        _ => super::sentencepiece::load(path),
    }
}

/// The tokenizer stored in a model folder: `tokenizer.json`, else `vocab.json` + `merges.txt`
/// (GPT-2's files), else `None`.
pub fn find_in_dir(dir: &Path) -> Result<Option<TextTokenizer>> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        return TextTokenizer::from_file(&json).map(Some);
    }
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    if vocab.is_file() && merges.is_file() {
        return TextTokenizer::gpt2(&vocab, &merges).map(Some);
    }
    Ok(None)
}
