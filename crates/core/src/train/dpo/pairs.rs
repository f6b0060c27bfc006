//! Preference pairs as token ids: each prompt with its chosen and its rejected reply, through
//! the chat template or as raw text, and the held-out split.

use crate::data::instructions::{TokenizedExample, tokenize_conversation, tokenize_spans};
use crate::data::preferences::{PreferencePair, PreferenceSet};
use crate::error::{Error, Result};
use crate::tokenizer::chat::{ChatMessage, ChatTemplate, Role};
use crate::train::tuning::{Base, DropReason, Dropped, first_sentence, split_indices, truncate};

/// A pair as token ids.
#[derive(Clone, Debug)]
pub struct PairTokens {
    pub chosen: TokenizedExample,
    pub rejected: TokenizedExample,
}

/// Pairs ready for training.
pub struct DpoData {
    pub train: Vec<PairTokens>,
    pub val: Vec<PairTokens>,
    /// Held-out prompts as the model sees them, for samples.
    pub val_prompts: Vec<String>,
    /// Pairs left out, by reason.
    pub dropped: Dropped,
}

/// How a pair's prompt is read: through the chat template (the conversation so far, to which
/// each reply is added as the assistant's turn) or, for prompt-less or `raw` pairs, as plain
/// text; and the prompt as the model sees it, for held-out samples.
fn pair_spans(
    pair: &PreferencePair,
    template: &ChatTemplate,
    raw: bool,
) -> (Option<Vec<ChatMessage>>, String) {
    if pair.has_prompt && !raw {
        let convo = vec![ChatMessage::new(Role::User, pair.prompt.clone())];
        let prompt = template.render(&convo, true);
        (Some(convo), prompt)
    } else {
        (None, pair.prompt.clone())
    }
}

/// Tokenizes pairs (through the chat template when they have a prompt, unless `raw`) and
/// splits off the held-out part.
pub fn prepare_pairs(
    set: &PreferenceSet,
    base: &Base,
    template: &ChatTemplate,
    raw: bool,
    max_len: usize,
    val_fraction: f64,
) -> Result<DpoData> {
    let n = set.pairs.len();
    if n < 2 {
        return Err(Error::input(format!(
            "{} holds {n} preference pair(s); alignment needs at least 2 (one is held out)",
            set.source.path
        )));
    }
    let (train_idx, val_idx) = split_indices(n, val_fraction);
    let mut dropped = Dropped::new(max_len);
    let tok = &base.tokenizer;
    let mut encode = |i: usize| -> Result<Option<(PairTokens, String)>> {
        let pair = &set.pairs[i];
        let (convo, prompt) = pair_spans(pair, template, raw);
        let one = |reply: &str| -> Result<TokenizedExample> {
            match &convo {
                Some(c) => {
                    let mut c = c.clone();
                    c.push(ChatMessage::new(Role::Assistant, reply));
                    tokenize_conversation(tok, template, &c, base.bos, base.eos)
                }
                None => {
                    tokenize_spans(tok, &[(&pair.prompt, false), (reply, true)], base.bos, None)
                }
            }
        };
        let (c, r) = match (one(&pair.chosen), one(&pair.rejected)) {
            (Ok(c), Ok(r)) => (c, r),
            (Err(Error::Input(msg)), _) | (_, Err(Error::Input(msg))) if tok.is_char_level() => {
                dropped.add(DropReason::Unspellable, i, || first_sentence(&msg));
                return Ok(None);
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        match (truncate(&c, max_len), truncate(&r, max_len)) {
            (Some(chosen), Some(rejected)) => Ok(Some((PairTokens { chosen, rejected }, prompt))),
            _ => {
                dropped.add(DropReason::NoReplyWithinLength, i, || {
                    format!("{} and {} tokens", c.ids.len(), r.ids.len())
                });
                Ok(None)
            }
        }
    };
    let mut train = Vec::new();
    for &i in &train_idx {
        train.extend(encode(i)?.map(|(p, _)| p));
    }
    let mut val = Vec::new();
    let mut val_prompts = Vec::new();
    for &i in &val_idx {
        if let Some((p, prompt)) = encode(i)? {
            val.push(p);
            val_prompts.push(prompt);
        }
    }
    if train.is_empty() || val.is_empty() {
        return Err(Error::input(format!(
            "no preference pairs left to {} after tokenizing ({dropped})",
            if train.is_empty() {
                "train on"
            } else {
                "hold out"
            }
        )));
    }
    Ok(DpoData {
        train,
        val,
        val_prompts,
        dropped,
    })
}
