//! Incremental decoding for generation: text appears as soon as it is complete.
//!
//! Decoding ids one at a time and concatenating is wrong for byte-level BPE: GPT-2 spells an
//! emoji or a CJK character as several byte tokens, and each alone decodes to U+FFFD. It is also
//! wrong for decoders that look at neighbours (WordPiece joins `##` pieces). HF's
//! `DecodeStream` keeps a short window of ids and emits only the new suffix of its decoding,
//! holding text back while it ends in an incomplete character. [`TokenStream`] wraps it and
//! checks ids first, so a bad id is an error rather than a silently skipped token.

use tokenizers::{
    DecodeStream, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper,
};

use super::TextTokenizer;
use crate::error::{Error, Result};

type HfStream<'a> = DecodeStream<
    'a,
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Turns generated ids into text, one id at a time (from [`TextTokenizer::stream`]).
///
/// ```no_run
/// # fn demo(tok: &muse_core::tokenizer::TextTokenizer, ids: &[u32]) -> muse_core::Result<()> {
/// let mut stream = tok.stream();
/// for &id in ids {
///     if let Some(text) = stream.step(id)? {
///         print!("{text}");
///     }
/// }
/// # Ok(()) }
/// ```
pub struct TokenStream<'a> {
    tokenizer: &'a TextTokenizer,
    inner: HfStream<'a>,
}

impl<'a> TokenStream<'a> {
    pub(super) fn new(tokenizer: &'a TextTokenizer) -> Self {
        // Special tokens are kept, as in `TextTokenizer::decode`.
        let inner = tokenizer.inner().decode_stream(false);
        Self { tokenizer, inner }
    }

    /// Adds one id. Returns the text it completes, or `None` while the id only starts a
    /// character (for example the first byte token of an emoji).
    pub fn step(&mut self, id: u32) -> Result<Option<String>> {
        self.tokenizer.check_ids(&[id])?;
        match self.inner.step(id) {
            Ok(text) => Ok(text),
            // Byte-fallback decoders (Llama) turn a whole run of byte tokens into U+FFFD when
            // it is not valid UTF-8, so HF's stream can lose its own prefix; start afresh.
            Err(_) => {
                self.inner = self.tokenizer.inner().decode_stream(false);
                self.inner
                    .step(id)
                    .map_err(|e| Error::input(format!("cannot decode token id {id}: {e}")))
            }
        }
    }

    /// Adds one id and returns the completed text, empty while a character is incomplete.
    pub fn push(&mut self, id: u32) -> Result<String> {
        Ok(self.step(id)?.unwrap_or_default())
    }
}
