//! Training byte-level BPE (GPT-2, Radford et al. 2019) and WordPiece (BERT, Devlin et al. 2018)
//! with Hugging Face's trainers, deterministically.
//!
//! The corpus is fed in pieces cut where pre-tokenization cannot differ from the whole text
//! (`chunk::split`), so the word counts are those of the whole corpus and Python's
//! `train_from_iterator([corpus])` learns the same BPE merges. Special tokens are added before
//! training so `<|endoftext|>` written in a corpus is not learnt as text.
//!
//! HF's BPE trainer breaks count ties by token id. For WordPiece the ids of continuation pieces
//! (`##e`) come from iterating a randomly seeded hash map, so the same corpus gives different
//! vocabularies run to run. Registering every `##c` up front, in sorted order, fixes their ids and
//! makes WordPiece training reproducible too.

use std::collections::BTreeSet;

use tokenizers::models::bpe::{BPE, BpeTrainer, BpeTrainerBuilder};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, Model, OffsetReferential, OffsetType, PreTokenizer, Tokenizer, Trainer,
};

use super::TextTokenizer;
use super::chunk;
use super::gpt2::{END_OF_TEXT, byte_level_pipeline};
use crate::error::{Error, Result};

/// BERT's special tokens, in BERT's id order.
const BERT_SPECIALS: [&str; 5] = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"];
/// WordPiece's prefix for pieces that continue a word.
const CONTINUATION: &str = "##";
/// Corpus pieces fed to the trainer (the trainer counts words in parallel across pieces).
const FEED_BYTES: usize = 16 * 1024;

/// GPT-2 style byte-level BPE with `<|endoftext|>`.
pub(super) fn byte_level_bpe(corpus: &str, vocab_size: usize) -> Result<TextTokenizer> {
    byte_level_bpe_with(corpus, vocab_size, &[END_OF_TEXT])
}

/// Byte-level BPE whose first ids are the special tokens `specials`, in order.
pub(super) fn byte_level_bpe_with(
    corpus: &str,
    vocab_size: usize,
    specials: &[&str],
) -> Result<TextTokenizer> {
    check_corpus(corpus)?;
    let min = ByteLevel::alphabet().len() + specials.len();
    if vocab_size < min {
        return Err(Error::usage(format!(
            "vocab size {vocab_size} is too small for byte-level BPE: it needs at least {min} \
             (256 byte tokens + {}); try 512 or more",
            specials.join(" ")
        )));
    }
    let specials: Vec<AddedToken> = specials
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let mut base = Tokenizer::new(BPE::default());
    byte_level_pipeline(&mut base);
    add_specials(&mut base, specials.clone())?;

    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .show_progress(false)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut model = BPE::default();
    feed_and_train(&base, &mut trainer, corpus, &mut model)?;

    let mut tokenizer = Tokenizer::new(model);
    byte_level_pipeline(&mut tokenizer);
    add_specials(&mut tokenizer, specials)?;
    Ok(TextTokenizer::from_hf(tokenizer))
}

/// BERT style (cased) WordPiece: BertNormalizer without lowercasing, BertPreTokenizer,
/// `[CLS] $A [SEP]` template, WordPiece decoder.
pub(super) fn wordpiece(corpus: &str, vocab_size: usize) -> Result<TextTokenizer> {
    check_corpus(corpus)?;
    let specials: Vec<AddedToken> = BERT_SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let mut base = Tokenizer::new(WordPiece::default());
    bert_pipeline(&mut base)?;
    add_specials(&mut base, specials.clone())?;

    // The alphabet HF's trainer will add: every character, and `##c` for each character seen
    // after the start of a word.
    let mut initial = BTreeSet::new();
    let mut continuing = BTreeSet::new();
    for piece in chunk::split(corpus, FEED_BYTES) {
        for word in pre_tokenize(&base, piece).map_err(train_error)? {
            let mut chars = word.chars();
            initial.extend(chars.next());
            continuing.extend(chars);
        }
    }
    let alphabet: BTreeSet<char> = initial.union(&continuing).copied().collect();
    let min = specials.len() + alphabet.len() + continuing.len();
    if vocab_size < min {
        return Err(Error::usage(format!(
            "vocab size {vocab_size} is too small for WordPiece on this corpus: it needs at least \
             {min} ({} special tokens + {} characters + {} '##' continuations) before any merge",
            specials.len(),
            alphabet.len(),
            continuing.len()
        )));
    }

    // Fixed ids for the `##c` pieces (see module docs); they are ordinary vocabulary entries.
    let mut seeded = specials.clone();
    seeded.extend(
        continuing
            .iter()
            .map(|c| AddedToken::from(format!("{CONTINUATION}{c}"), true)),
    );
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .show_progress(false)
        .special_tokens(seeded)
        .continuing_subword_prefix(CONTINUATION.to_owned())
        .build();
    let mut bpe = BPE::default();
    feed_and_train(&base, &mut trainer, corpus, &mut bpe)?;

    let mut tokenizer = Tokenizer::new(WordPiece::from_bpe(&bpe));
    bert_pipeline(&mut tokenizer)?;
    add_specials(&mut tokenizer, specials)?;
    let (cls, sep) = (
        special_id(&tokenizer, "[CLS]")?,
        special_id(&tokenizer, "[SEP]")?,
    );
    let template = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .and_then(|b| b.try_pair("[CLS] $A [SEP] $B:1 [SEP]:1"))
        .map_err(|e| Error::input(format!("cannot build the BERT template: {e}")))?
        .special_tokens(vec![("[CLS]", cls), ("[SEP]", sep)])
        .build()
        .map_err(|e| Error::input(format!("cannot build the BERT template: {e}")))?;
    tokenizer.with_post_processor(Some(template));
    Ok(TextTokenizer::from_hf(tokenizer))
}

fn check_corpus(corpus: &str) -> Result<()> {
    if corpus.trim().is_empty() {
        return Err(Error::input(
            "the training corpus is empty (or only whitespace): give a text file with content",
        ));
    }
    Ok(())
}

fn bert_pipeline(tokenizer: &mut Tokenizer) -> Result<()> {
    // Cased BERT: clean control characters, space out CJK ideographs, keep case and accents.
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, false)))
        .map_err(train_error)?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
    Ok(())
}

fn add_specials(tokenizer: &mut Tokenizer, specials: Vec<AddedToken>) -> Result<()> {
    tokenizer
        .add_special_tokens(specials)
        .map_err(train_error)?;
    Ok(())
}

fn special_id(tokenizer: &Tokenizer, token: &str) -> Result<u32> {
    tokenizer
        .token_to_id(token)
        .ok_or_else(|| Error::input(format!("trained vocabulary lacks {token}")))
}

/// Normalizes and pre-tokenizes `text` as `tokenizer` would, dropping special tokens.
fn pre_tokenize(tokenizer: &Tokenizer, text: &str) -> tokenizers::Result<Vec<String>> {
    let mut pre = tokenizer
        .get_added_vocabulary()
        .extract_and_normalize(tokenizer.get_normalizer(), text);
    if let Some(p) = tokenizer.get_pre_tokenizer() {
        p.pre_tokenize(&mut pre)?;
    }
    Ok(pre
        .get_splits(OffsetReferential::Original, OffsetType::None)
        .into_iter()
        .filter(|(_, _, tokens)| tokens.is_none())
        .map(|(s, _, _)| s.to_owned())
        .collect())
}

/// Feeds `corpus` (pre-tokenized by `base`) to `trainer` and trains `model`.
fn feed_and_train(
    base: &Tokenizer,
    trainer: &mut BpeTrainer,
    corpus: &str,
    model: &mut BPE,
) -> Result<()> {
    let pieces = chunk::split(corpus, FEED_BYTES);
    trainer
        .feed(pieces.into_iter(), |piece| pre_tokenize(base, piece))
        .map_err(train_error)?;
    trainer.train(model).map_err(train_error)?;
    tracing::debug!(vocab = model.get_vocab_size(), "tokenizer trained");
    Ok(())
}

fn train_error(e: tokenizers::Error) -> Error {
    Error::input(format!("tokenizer training failed: {e}"))
}
