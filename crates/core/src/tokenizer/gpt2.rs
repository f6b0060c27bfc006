//! GPT-2's byte-level BPE (Radford et al. 2019, "Language Models are Unsupervised Multitask
//! Learners", section 2.2), loaded from OpenAI's release files.
//!
//! `encoder.json` is Hugging Face's `vocab.json` and `vocab.bpe` is its `merges.txt`. The
//! pipeline is the one in HF's `gpt2/tokenizer.json`: ByteLevel pre-tokenizer (GPT-2's split
//! regex, no prefix space), BPE, ByteLevel decoder, and `<|endoftext|>` (id 50256) as a special
//! token. Muse's trained BPE tokenizers use the same pipeline ([`byte_level_pipeline`]).

use std::path::Path;

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// GPT-2's end-of-text token, also the special token of Muse's byte-level BPE.
pub(super) const END_OF_TEXT: &str = "<|endoftext|>";

/// Puts the GPT-2 pre-tokenizer, post-processor and decoder around a byte-level BPE model.
pub(super) fn byte_level_pipeline(tokenizer: &mut Tokenizer) {
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    // Like HF's gpt2: the post-processor only adjusts offsets, it adds no tokens.
    tokenizer.with_post_processor(Some(ByteLevel::default().trim_offsets(false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
}

/// Builds GPT-2's tokenizer from its two release files.
pub(super) fn load(encoder_json: &Path, vocab_bpe: &Path) -> Result<Tokenizer> {
    let mut paths = Vec::with_capacity(2);
    for path in [encoder_json, vocab_bpe] {
        if !path.is_file() {
            return Err(Error::input(format!(
                "GPT-2 tokenizer file {} not found: it ships in the shared data as \
                 gpt2-bpe/encoder.json and gpt2-bpe/vocab.bpe (set MUSE_DATA_DIR)",
                path.display()
            )));
        }
        let text = path
            .to_str()
            .ok_or_else(|| Error::input(format!("path {} is not valid UTF-8", path.display())))?;
        paths.push(text.to_owned());
    }
    let bpe = tokenizers::models::bpe::BPE::from_file(&paths[0], &paths[1])
        .build()
        .map_err(|e| {
            Error::input(format!(
                "cannot load GPT-2 BPE from {} and {}: {e}",
                encoder_json.display(),
                vocab_bpe.display()
            ))
        })?;
    let mut tokenizer = Tokenizer::new(bpe);
    byte_level_pipeline(&mut tokenizer);
    // encoder.json already holds it (id 50256): this marks it special, it adds no id.
    tokenizer
        .add_special_tokens([AddedToken::from(END_OF_TEXT, true)])
        .map_err(|e| Error::input(format!("cannot add {END_OF_TEXT}: {e}")))?;
    Ok(tokenizer)
}
