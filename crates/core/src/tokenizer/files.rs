//! Finding a model's tokenizer on disk, in whichever form it came: `tokenizer.json`, GPT-2's
//! `vocab.json` + `merges.txt`, a SentencePiece `tokenizer.model` or llama2.c `tokenizer.bin`.

use std::path::Path;

use super::TextTokenizer;
use crate::error::Result;

/// A tokenizer file of any supported kind, by extension: `.json` (Hugging Face
/// `tokenizer.json`), `.model` (SentencePiece) or anything else (llama2.c `tokenizer.bin`).
pub fn load_file(path: &Path) -> Result<TextTokenizer> {
    if path.is_dir() {
        return match find_in_dir(path)? {
            Some(t) => Ok(t),
            None => {
                let model = path.join("tokenizer.model");
                if model.is_file() {
                    return super::sentencepiece::load(&model);
                }
                Err(crate::error::Error::input(format!(
                    "{} holds no tokenizer: a tokenizer folder has tokenizer.json, vocab.json + \
                     merges.txt, encoder.json + vocab.bpe, or tokenizer.model",
                    path.display()
                )))
            }
        };
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => TextTokenizer::from_file(path),
        _ => super::sentencepiece::load(path),
    }
}

/// The tokenizer stored in a model folder: `tokenizer.json`, else `vocab.json` + `merges.txt`
/// or `encoder.json` + `vocab.bpe` (GPT-2's files), else `None`.
pub fn find_in_dir(dir: &Path) -> Result<Option<TextTokenizer>> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        return TextTokenizer::from_file(&json).map(Some);
    }
    // GPT-2's files under Hugging Face's names, then OpenAI's original ones.
    for (vocab, merges) in [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")] {
        let (vocab, merges) = (dir.join(vocab), dir.join(merges));
        if vocab.is_file() && merges.is_file() {
            return TextTokenizer::gpt2(&vocab, &merges).map(Some);
        }
    }
    Ok(None)
}
