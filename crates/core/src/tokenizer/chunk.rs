//! Encoding large texts in parallel pieces that give exactly the ids of one whole encode.
//!
//! HF encodes a 1 MB string in one thread (about 0.5 s for GPT-2 on Tiny Shakespeare). Cutting
//! the text is safe only where no token or pre-token can cross the cut and where the pipeline
//! treats a piece's start and end like the middle of the text. The cut used here is just before
//! a `\n` that is followed by a non-whitespace character:
//!
//! - GPT-2's split regex (`... | \s+(?!\S) | \s+`) always ends a pre-token there: no letter,
//!   digit or punctuation pattern contains `\n`, and a whitespace run `W\n` followed by
//!   non-space splits as `W`, `\n` whether or not the text continues after the cut.
//! - BERT's and the whitespace pre-tokenizers split at every whitespace character.
//! - Unicode normalization never composes across `\n` (a starter that composes with nothing).
//!
//! [`is_chunkable`] accepts only pipelines built from such parts; anything else (a prefix space,
//! Metaspace, a custom split regex, strip normalizers, added tokens that strip whitespace) is
//! encoded whole.

use rayon::prelude::*;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{NormalizerWrapper, Tokenizer};

use crate::error::Result;

/// Target piece size. Texts shorter than two pieces are encoded whole.
const PIECE_BYTES: usize = 32 * 1024;

/// True when cutting before `\n` + non-whitespace cannot change the ids (module docs).
pub(super) fn is_chunkable(tokenizer: &Tokenizer) -> bool {
    let normalizer_ok = tokenizer.get_normalizer().is_none_or(normalizer_is_local);
    let pre_tokenizer_ok = tokenizer
        .get_pre_tokenizer()
        .is_some_and(pre_tokenizer_splits_at_newline);
    let added_ok = tokenizer
        .get_added_tokens_decoder()
        .values()
        .all(|t| !t.lstrip && !t.rstrip && !t.single_word && !t.content.contains('\n'));
    normalizer_ok && pre_tokenizer_ok && added_ok
}

/// Normalizers that act on each character (or composition run) independently.
fn normalizer_is_local(n: &NormalizerWrapper) -> bool {
    match n {
        NormalizerWrapper::BertNormalizer(_)
        | NormalizerWrapper::NFC(_)
        | NormalizerWrapper::NFD(_)
        | NormalizerWrapper::NFKC(_)
        | NormalizerWrapper::NFKD(_)
        | NormalizerWrapper::Lowercase(_)
        | NormalizerWrapper::StripAccents(_) => true,
        NormalizerWrapper::Sequence(seq) => seq.as_ref().iter().all(normalizer_is_local),
        _ => false,
    }
}

/// Pre-tokenizers that always end a pre-token before `\n` + non-whitespace.
fn pre_tokenizer_splits_at_newline(p: &PreTokenizerWrapper) -> bool {
    match p {
        PreTokenizerWrapper::ByteLevel(b) => b.use_regex && !b.add_prefix_space,
        PreTokenizerWrapper::BertPreTokenizer(_)
        | PreTokenizerWrapper::Whitespace(_)
        | PreTokenizerWrapper::WhitespaceSplit(_) => true,
        _ => false,
    }
}

/// Byte offsets where [`split`] may cut: before `\n` when the next character is surely not
/// whitespace under any definition (ASCII graphic or alphanumeric).
fn is_cut(text: &str, newline: usize) -> bool {
    text[newline + 1..]
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_graphic() || c.is_alphanumeric())
}

/// Cuts `text` into pieces of at least `min_bytes` (the last may be shorter) at safe points.
pub(super) fn split(text: &str, min_bytes: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::with_capacity(text.len() / min_bytes.max(1) + 1);
    let mut start = 0;
    let mut pos = min_bytes.max(1);
    while pos < text.len() {
        // `\n` is ASCII, so any byte position holding it is a char boundary.
        match bytes[pos..].iter().position(|&b| b == b'\n') {
            None => break,
            Some(off) => {
                let nl = pos + off;
                if nl > start && is_cut(text, nl) {
                    pieces.push(&text[start..nl]);
                    start = nl;
                    pos = nl + min_bytes.max(1);
                } else {
                    pos = nl + 1;
                }
            }
        }
    }
    if start < text.len() || pieces.is_empty() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Encodes `text` with `encode`, in parallel pieces when it is long.
pub(super) fn encode_chunked<F>(text: &str, encode: F) -> Result<Vec<u32>>
where
    F: Fn(&str) -> Result<Vec<u32>> + Sync,
{
    if text.len() < 2 * PIECE_BYTES {
        return encode(text);
    }
    let parts = split(text, PIECE_BYTES)
        .par_iter()
        .map(|piece| encode(piece))
        .collect::<Result<Vec<_>>>()?;
    Ok(parts.concat())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn pieces_cover_the_text_and_cut_before_newline() {
        let text = "ab\ncd\n\n ef\nGh\n  \n\u{e9}t\u{e9}\n";
        for min in [1, 2, 3, 5, 100] {
            let pieces = split(text, min);
            assert_eq!(pieces.concat(), text, "min {min}");
            for p in &pieces[1..] {
                assert!(p.starts_with('\n'), "{p:?}");
                assert!(!p[1..].starts_with(char::is_whitespace), "{p:?}");
            }
        }
        assert_eq!(split("", 4), vec![""]);
        assert_eq!(split("no newline at all", 2), vec!["no newline at all"]);
    }
}
