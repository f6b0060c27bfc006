//! nanoGPT's character tokenizer (`data/shakespeare_char/prepare.py`):
//! `chars = sorted(set(text)); stoi = {ch: i for i, ch in enumerate(chars)}`.
//!
//! Stored for Hugging Face as a BPE model whose vocabulary is the characters, with no merges, no
//! normalizer, no pre-tokenizer and a `Fuse` decoder (concatenate tokens, no spaces). Python
//! `tokenizers` then encodes any text of those characters one id per character, newlines and
//! spaces included. HF's BPE drops characters it does not know; Muse refuses them instead
//! ([`CharVocab::encode`]) because a silently shortened prompt is a wrong prompt.

use std::collections::HashMap;
use std::fmt::Write as _;

use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::{DecoderWrapper, ModelWrapper, Tokenizer};

use crate::error::{Error, Result};

/// How many distinct unknown characters an error message lists before "and N more".
const MAX_LISTED: usize = 10;

/// Builds the HF tokenizer for nanoGPT's character vocabulary of `corpus`.
pub(super) fn build(corpus: &str) -> Result<Tokenizer> {
    if corpus.is_empty() {
        return Err(Error::input(
            "cannot build a character vocabulary from an empty corpus",
        ));
    }
    let mut chars: Vec<char> = corpus.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    let vocab: Vocab = chars
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .map_err(|e| Error::input(format!("cannot build character vocabulary: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_decoder(Some(Fuse::new()));
    Ok(tokenizer)
}

/// The char -> id map of a character-level tokenizer.
#[derive(Clone, Debug)]
pub(super) struct CharVocab {
    ids: HashMap<char, u32>,
    /// Ids of ASCII characters, `u32::MAX` where absent: the common case without hashing.
    ascii: [u32; 128],
    /// id -> char, for decoding without building one `String` per token.
    by_id: Vec<Option<char>>,
}

impl CharVocab {
    /// Recognises a tokenizer with [`build`]'s shape (also when loaded from JSON).
    pub(super) fn detect(tokenizer: &Tokenizer) -> Option<Self> {
        let ModelWrapper::BPE(bpe) = tokenizer.get_model() else {
            return None;
        };
        let plain_bpe = bpe.dropout.is_none()
            && !bpe.byte_fallback
            && bpe.continuing_subword_prefix.is_none()
            && bpe.end_of_word_suffix.is_none();
        let plain_pipeline = tokenizer.get_normalizer().is_none()
            && tokenizer.get_pre_tokenizer().is_none()
            && matches!(tokenizer.get_decoder(), Some(DecoderWrapper::Fuse(_)))
            && tokenizer.get_added_tokens_decoder().is_empty();
        if !plain_bpe || !plain_pipeline {
            return None;
        }
        let mut ids = HashMap::new();
        for (token, id) in bpe.get_vocab() {
            let mut it = token.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => ids.insert(c, id),
                _ => return None,
            };
        }
        let mut ascii = [u32::MAX; 128];
        let mut by_id = vec![None; ids.values().max().map_or(0, |&m| m as usize + 1)];
        for (&c, &id) in &ids {
            if c.is_ascii() {
                ascii[c as usize] = id;
            }
            by_id[id as usize] = Some(c);
        }
        Some(Self { ids, ascii, by_id })
    }

    fn id(&self, c: char) -> Option<u32> {
        if c.is_ascii() {
            Some(self.ascii[c as usize]).filter(|&id| id != u32::MAX)
        } else {
            self.ids.get(&c).copied()
        }
    }

    /// One id per character; an [`Error::Input`] listing every unknown character otherwise.
    pub(super) fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len());
        // Unknown characters in order of first appearance, with counts.
        let mut unknown: Vec<(char, usize)> = Vec::new();
        let mut seen: HashMap<char, usize> = HashMap::new();
        for c in text.chars() {
            match self.id(c) {
                Some(id) => out.push(id),
                None => {
                    let slot = *seen.entry(c).or_insert_with(|| {
                        unknown.push((c, 0));
                        unknown.len() - 1
                    });
                    unknown[slot].1 += 1;
                }
            }
        }
        if unknown.is_empty() {
            Ok(out)
        } else {
            Err(Error::input(self.unknown_message(&unknown)))
        }
    }

    /// Concatenates the characters of `ids`; `None` if an id has no character.
    pub(super) fn decode(&self, ids: &[u32]) -> Option<String> {
        ids.iter()
            .map(|&id| self.by_id.get(id as usize).copied().flatten())
            .collect()
    }

    fn unknown_message(&self, unknown: &[(char, usize)]) -> String {
        let mut msg = String::from("text contains characters not in this model's vocabulary: ");
        for (i, (c, n)) in unknown.iter().take(MAX_LISTED).enumerate() {
            if i > 0 {
                msg.push_str(", ");
            }
            let _ = write!(msg, "'{}' (U+{:04X})", c.escape_debug(), *c as u32);
            if *n > 1 {
                let _ = write!(msg, " x{n}");
            }
        }
        if unknown.len() > MAX_LISTED {
            let _ = write!(msg, " and {} more", unknown.len() - MAX_LISTED);
        }
        let _ = write!(
            msg,
            ". The model was trained on a character vocabulary of {} symbols: \
             remove or replace these characters.",
            self.ids.len()
        );
        msg
    }
}
