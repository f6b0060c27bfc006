//! Text tokenizers: character-level (nanoGPT `data/shakespeare_char/prepare.py`), byte-level
//! BPE (GPT-2, Radford et al. 2019) and WordPiece (BERT, Devlin et al. 2018).
//!
//! Every kind is a Hugging Face `tokenizers::Tokenizer` underneath and is saved as a plain
//! `tokenizer.json`, so Python `tokenizers` / `transformers` load Muse's tokenizers and Muse loads
//! theirs. [`TextTokenizer`] adds what generation needs on top: encoding without `[CLS]`/`[SEP]`,
//! id range checks, a clear error for characters a char-level model never saw, fast encoding of
//! whole corpora, and incremental decoding ([`TokenStream`]).

mod char_level;
pub mod chat;
mod chunk;
pub mod files;
pub mod gguf;
mod gpt2;
pub mod hf_config;
pub mod jinja;
pub mod sentencepiece;
mod stream;
mod train;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use tokenizers::{ModelWrapper, Tokenizer};

use crate::error::{Error, Result};

use char_level::CharVocab;
pub use stream::TokenStream;

/// Which tokenizer family to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// One id per distinct character of the corpus (nanoGPT's `stoi`); no unknown-token.
    Char,
    /// GPT-2 style byte-level BPE: round-trips any UTF-8 text.
    Bpe,
    /// BERT style WordPiece with `[UNK] [CLS] [SEP] [PAD] [MASK]`.
    WordPiece,
}

impl TokenizerKind {
    /// The lowercase name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::Char => "char",
            TokenizerKind::Bpe => "bpe",
            TokenizerKind::WordPiece => "wordpiece",
        }
    }
}

impl fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TokenizerKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "char" => Ok(TokenizerKind::Char),
            "bpe" => Ok(TokenizerKind::Bpe),
            "wordpiece" => Ok(TokenizerKind::WordPiece),
            _ => Err(Error::usage(format!(
                "unknown tokenizer kind '{s}': use one of char, bpe, wordpiece"
            ))),
        }
    }
}

/// Tokens whose id [`TextTokenizer::eos_id`] reports, in order of preference.
const EOS_TOKENS: [&str; 3] = ["<|endoftext|>", "</s>", "[SEP]"];

/// A text tokenizer: a Hugging Face `tokenizers::Tokenizer` plus what generation needs.
#[derive(Clone, Debug)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// `Some` for char-level tokenizers: direct char -> id map that also names unknown chars.
    chars: Option<CharVocab>,
    /// True when splitting text before a `\n` provably gives the same ids (see `chunk`).
    chunkable: bool,
    /// End-of-sequence ids the model's files name (GGUF metadata, `tokenizer_config.json`);
    /// empty: found by token text ([`EOS_TOKENS`]).
    eos_ids: Vec<u32>,
}

impl TextTokenizer {
    /// Trains a tokenizer of `kind` on `corpus`. `vocab_size` counts special tokens; the char
    /// kind ignores it (its vocabulary is the corpus's distinct characters).
    pub fn train(kind: TokenizerKind, corpus: &str, vocab_size: usize) -> Result<Self> {
        match kind {
            TokenizerKind::Char => Self::char_level(corpus),
            TokenizerKind::Bpe => train::byte_level_bpe(corpus, vocab_size),
            TokenizerKind::WordPiece => train::wordpiece(corpus, vocab_size),
        }
    }

    /// Byte-level BPE (as [`TokenizerKind::Bpe`]) whose first ids are `specials`, in order:
    /// `["<pad>", "<s>", "</s>"]` gives a translation model padding 0, BOS 1 and EOS 2.
    pub fn bpe_with_specials(corpus: &str, vocab_size: usize, specials: &[&str]) -> Result<Self> {
        train::byte_level_bpe_with(corpus, vocab_size, specials)
    }

    /// nanoGPT's character tokenizer: ids are the sorted distinct characters of `corpus`.
    pub fn char_level(corpus: &str) -> Result<Self> {
        char_level::build(corpus).map(Self::from_hf)
    }

    /// GPT-2's tokenizer from OpenAI's `encoder.json` (HF `vocab.json`) and `vocab.bpe`
    /// (HF `merges.txt`), with `<|endoftext|>` as a special token.
    pub fn gpt2(encoder_json: &Path, vocab_bpe: &Path) -> Result<Self> {
        gpt2::load(encoder_json, vocab_bpe).map(Self::from_hf)
    }

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::input(format!("cannot read tokenizer {}: {e}", path.display())))?;
        let inner = Tokenizer::from_str(&text).map_err(|e| {
            Error::input(format!(
                "{} is not a valid Hugging Face tokenizer.json: {e}",
                path.display()
            ))
        })?;
        Ok(Self::from_hf(inner))
    }

    /// Wraps a Hugging Face tokenizer. Truncation and padding are switched off: Muse encodes
    /// whole texts and batches ids itself.
    pub fn from_hf(mut inner: Tokenizer) -> Self {
        // Neither call can fail when switching the feature off.
        let _ = inner.with_truncation(None);
        inner.with_padding(None);
        let chars = CharVocab::detect(&inner);
        let chunkable = chars.is_none() && chunk::is_chunkable(&inner);
        Self {
            inner,
            chars,
            chunkable,
            eos_ids: Vec::new(),
        }
    }

    /// Writes the tokenizer as pretty `tokenizer.json`, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut json = self
            .inner
            .to_string(true)
            .map_err(|e| Error::input(format!("cannot serialise tokenizer: {e}")))?;
        json.push('\n');
        crate::io::write_atomic(path, json.as_bytes())
    }

    /// Text to ids, with no special tokens added around it (no `[CLS]`/`[SEP]`). Special tokens
    /// written in the text (`<|endoftext|>`) become their ids. Char-level tokenizers reject
    /// characters outside their vocabulary with [`Error::Input`].
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if let Some(chars) = &self.chars {
            return chars.encode(text);
        }
        let encode_one = |s: &str| -> Result<Vec<u32>> {
            let encoding = self
                .inner
                .encode_fast(s, false)
                .map_err(|e| Error::input(format!("cannot tokenize text: {e}")))?;
            Ok(encoding.get_ids().to_vec())
        };
        if self.chunkable {
            chunk::encode_chunked(text, encode_one)
        } else {
            encode_one(text)
        }
    }

    /// Ids to text. Special tokens are kept, so `decode(encode(t)) == t` for byte-level BPE
    /// and char-level tokenizers. Ids outside the vocabulary are an [`Error::Input`].
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        if let Some(text) = self.chars.as_ref().and_then(|c| c.decode(ids)) {
            return Ok(text);
        }
        self.check_ids(ids)?;
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::input(format!("cannot decode ids: {e}")))
    }

    /// Number of ids, added and special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The end-of-text id: the first one the model's files name, else `<|endoftext|>`, `</s>`
    /// or `[SEP]`, the first one present.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_ids
            .first()
            .copied()
            .or_else(|| EOS_TOKENS.iter().find_map(|t| self.inner.token_to_id(t)))
    }

    /// True for every id that ends generation: those the model's files name (end of sequence,
    /// end of turn) and the end-of-text token.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
            || EOS_TOKENS.iter().find_map(|t| self.inner.token_to_id(t)) == Some(id)
    }

    /// Sets the end-of-sequence ids the model's files name (first: the main one).
    pub fn set_eos_ids(&mut self, ids: Vec<u32>) {
        let mut ids = ids;
        ids.dedup();
        self.eos_ids = ids;
    }

    /// The id of `token` (a special token's text, such as `<|im_end|>`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of token `id`, as stored in the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// True for nanoGPT-style character tokenizers (built by [`TextTokenizer::char_level`]).
    pub fn is_char_level(&self) -> bool {
        self.chars.is_some()
    }

    /// The family this tokenizer belongs to, when it is one Muse trains.
    pub fn kind(&self) -> Option<TokenizerKind> {
        if self.is_char_level() {
            return Some(TokenizerKind::Char);
        }
        match self.inner.get_model() {
            ModelWrapper::BPE(_) => Some(TokenizerKind::Bpe),
            ModelWrapper::WordPiece(_) => Some(TokenizerKind::WordPiece),
            _ => None,
        }
    }

    /// Incremental decoder for generation: feed ids one at a time, get text as soon as it is
    /// complete (multi-byte characters split across tokens are held back until whole).
    pub fn stream(&self) -> TokenStream<'_> {
        TokenStream::new(self)
    }

    /// The id that the tokenizer's post-processor puts in front of every text (a BOS), if any:
    /// what transformers' `tokenizer(text)` adds before the text's own ids.
    pub fn post_processor_prefix(&self) -> Option<u32> {
        self.inner.get_post_processor()?;
        let probe = "a";
        let with = self.inner.encode_fast(probe, true).ok()?;
        let without = self.inner.encode_fast(probe, false).ok()?;
        let (with, without) = (with.get_ids(), without.get_ids());
        (with.len() > without.len() && with[1..].starts_with(without)).then(|| with[0])
    }

    /// The wrapped Hugging Face tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Fails with [`Error::Input`] naming the first id that has no token.
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            None => Ok(()),
            Some(id) => Err(Error::input(format!(
                "token id {id} is not in this tokenizer's vocabulary of {} ids (0..{})",
                self.vocab_size(),
                self.vocab_size().saturating_sub(1)
            ))),
        }
    }
}
