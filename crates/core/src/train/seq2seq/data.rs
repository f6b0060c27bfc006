//! The data of a translation run: the pair corpus and its fixed split, the joint byte-level
//! BPE trained on both sides of the training part, and the tokenized pairs.

use crate::data::parallel::batch::{Specials, TokenPair};
use crate::data::parallel::{Pair, load_parallel};
use crate::error::{Error, Result};
use crate::models::seq2seq::Seq2SeqConfig;
use crate::run_dir::DatasetRecord;
use crate::tokenizer::TextTokenizer;

use super::config::ParallelDataConfig;

/// The special tokens of the joint vocabulary, in id order: padding, BOS, EOS.
pub const SPECIALS: [&str; 3] = ["<pad>", "<s>", "</s>"];

/// Tokenized pairs and what they came from.
pub struct PairData {
    pub tokenizer: TextTokenizer,
    pub specials: Specials,
    /// Training pairs that fit the model's positions.
    pub train: Vec<TokenPair>,
    /// Validation pairs (all of them; longer ones are cut to fit).
    pub valid: Vec<TokenPair>,
    /// The validation sentences as text, for the samples.
    pub valid_text: Vec<Pair>,
    pub dataset: DatasetRecord,
    /// Training pairs left out as longer than the model's positions.
    pub dropped: usize,
}

/// Reads and splits the corpus, trains the tokenizer (unless `tokenizer` is given, as on
/// resume) and tokenizes the training and validation pairs for a model of `model`'s length.
pub fn prepare_pairs(
    data: &ParallelDataConfig,
    model: &Seq2SeqConfig,
    tokenizer: Option<TextTokenizer>,
) -> Result<PairData> {
    let parallel = load_parallel(&data.dataset, data.reverse, data.split_seed)?;
    let splits = &parallel.splits;
    if splits.train.is_empty() {
        return Err(Error::input(format!(
            "{} has too few pairs to train on after the validation and test parts are held out",
            data.dataset
        )));
    }
    let tokenizer = match tokenizer {
        Some(t) => t,
        None => {
            let mut corpus = String::new();
            for p in &splits.train {
                for side in [&p.source, &p.target] {
                    corpus.push_str(side);
                    corpus.push('\n');
                }
            }
            tracing::info!(
                "training a joint BPE of {} tokens on {} sentence pairs",
                data.vocab_size,
                splits.train.len()
            );
            TextTokenizer::bpe_with_specials(&corpus, data.vocab_size, &SPECIALS)?
        }
    };
    let specials = specials_of(&tokenizer)?;
    let encode = |p: &Pair| -> Result<TokenPair> {
        Ok(TokenPair {
            source: tokenizer.encode(&p.source)?,
            target: tokenizer.encode(&p.target)?,
        })
    };
    let max = model.max_position_embeddings;
    let mut train = Vec::with_capacity(splits.train.len());
    let mut dropped = 0;
    for p in &splits.train {
        let t = encode(p)?;
        if t.len() <= max {
            train.push(t);
        } else {
            dropped += 1;
        }
    }
    if train.is_empty() {
        return Err(Error::usage(format!(
            "every training pair is longer than max_position_embeddings ({max} tokens): raise it"
        )));
    }
    let valid = splits
        .valid
        .iter()
        .map(|p| {
            let mut t = encode(p)?;
            t.source.truncate(max - 1);
            t.target.truncate(max - 1);
            Ok(t)
        })
        .collect::<Result<Vec<_>>>()?;
    if dropped > 0 {
        tracing::info!("{dropped} training pairs longer than {max} tokens are left out");
    }
    Ok(PairData {
        tokenizer,
        specials,
        train,
        valid,
        valid_text: splits.valid.clone(),
        dataset: parallel.file.record.clone(),
        dropped,
    })
}

/// The padding, BOS and EOS ids of a joint tokenizer.
pub fn specials_of(tokenizer: &TextTokenizer) -> Result<Specials> {
    let id = |t: &str| {
        tokenizer.token_to_id(t).ok_or_else(|| {
            Error::input(format!(
                "the tokenizer has no {t} token: a translation run needs {}",
                SPECIALS.join(" ")
            ))
        })
    };
    Ok(Specials {
        pad: id(SPECIALS[0])?,
        bos: id(SPECIALS[1])?,
        eos: id(SPECIALS[2])?,
    })
}

/// The model's configuration with the vocabulary and special ids the prepared data brings,
/// checked.
pub fn model_config_for(model: &Seq2SeqConfig, data: &PairData) -> Result<Seq2SeqConfig> {
    let cfg = Seq2SeqConfig {
        vocab_size: data.tokenizer.vocab_size(),
        pad_token_id: data.specials.pad,
        bos_token_id: data.specials.bos,
        eos_token_id: data.specials.eos,
        ..model.clone()
    };
    cfg.validate()
        .map_err(|e| Error::usage(format!("model: {e}")))?;
    Ok(cfg)
}
