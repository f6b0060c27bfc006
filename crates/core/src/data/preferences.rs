//! Preference pairs for alignment (DPO): JSONL lines of `{"prompt", "chosen", "rejected"}`,
//! or HH-RLHF's `{"chosen", "rejected"}` dialogues, whose shared beginning is the prompt.

use std::path::Path;

use super::instructions::{record, resolve_files};
use super::jsonl::{read_jsonl, str_field};
use super::registry::DatasetKind;
use crate::error::{Error, Result};
use crate::run_dir::DatasetRecord;

/// One preference: for `prompt`, `chosen` is the better reply and `rejected` the worse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreferencePair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    /// True when the line gave a `prompt` (a user message to render through the chat
    /// template); false for dialogues split at their shared prefix (used as raw text).
    pub has_prompt: bool,
    /// Where it came from, for messages: `file:line`.
    pub origin: String,
}

/// Pairs read from a preference file.
#[derive(Clone, Debug)]
pub struct PreferenceSet {
    pub pairs: Vec<PreferencePair>,
    /// Lines whose replies were identical (or empty) after the shared prompt.
    pub skipped: usize,
    pub source: DatasetRecord,
}

/// The dialogue marker HH-RLHF puts before each assistant turn.
const ASSISTANT_TURN: &str = "\n\nAssistant:";

/// Splits two dialogues into (prompt, chosen reply, rejected reply): the prompt is their
/// longest common prefix, cut back to just after the last `\n\nAssistant:` in it (HH-RLHF), or
/// else to its last whitespace, so neither reply starts mid-word.
pub fn split_shared_prefix<'a>(chosen: &'a str, rejected: &'a str) -> (&'a str, &'a str, &'a str) {
    let mut common = chosen
        .char_indices()
        .zip(rejected.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    let shared = &chosen[..common];
    if let Some(i) = shared.rfind(ASSISTANT_TURN) {
        common = i + ASSISTANT_TURN.len();
    } else {
        common = shared.rfind(char::is_whitespace).unwrap_or(0);
    }
    (&chosen[..common], &chosen[common..], &rejected[common..])
}

/// Reads `--dpo`: a JSONL file (or `.jsonl.gz`), a folder of them, or the registered `hh-rlhf`
/// dataset. Every line needs `chosen` and `rejected`; `prompt` is optional.
pub fn read_preferences(data: &str) -> Result<PreferenceSet> {
    let files = resolve_files(data, DatasetKind::Preferences)?;
    let mut pairs = Vec::new();
    let mut skipped = 0;
    for file in &files {
        let (p, s) = read_file(file)?;
        pairs.extend(p);
        skipped += s;
    }
    if pairs.is_empty() {
        return Err(Error::input(format!(
            "{data} holds no usable preference pairs ({skipped} lines had identical or empty \
             replies)"
        )));
    }
    Ok(PreferenceSet {
        pairs,
        skipped,
        source: record(data, &files)?,
    })
}

/// Reads one preference file: (pairs, lines skipped).
pub fn read_file(path: &Path) -> Result<(Vec<PreferencePair>, usize)> {
    let mut pairs = Vec::new();
    let mut skipped = 0;
    for line in read_jsonl(path)? {
        let at = format!("{}:{}", path.display(), line.number);
        let need = |key: &str| -> Result<&str> {
            str_field(path, &line, key)?.ok_or_else(|| {
                Error::input(format!(
                    "{at}: no '{key}' field; a preference line needs 'chosen' and 'rejected' \
                     (and optionally 'prompt'), as in {{\"prompt\": \"...\", \"chosen\": \
                     \"...\", \"rejected\": \"...\"}}"
                ))
            })
        };
        let chosen = need("chosen")?;
        let rejected = need("rejected")?;
        let pair = match str_field(path, &line, "prompt")? {
            Some(prompt) => PreferencePair {
                prompt: prompt.to_string(),
                chosen: chosen.trim().to_string(),
                rejected: rejected.trim().to_string(),
                has_prompt: true,
                origin: at,
            },
            None => {
                let (prompt, c, r) = split_shared_prefix(chosen, rejected);
                PreferencePair {
                    prompt: prompt.to_string(),
                    chosen: c.to_string(),
                    rejected: r.to_string(),
                    has_prompt: false,
                    origin: at,
                }
            }
        };
        if pair.chosen.trim().is_empty()
            || pair.rejected.trim().is_empty()
            || pair.chosen == pair.rejected
        {
            skipped += 1;
            continue;
        }
        pairs.push(pair);
    }
    Ok((pairs, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hh_dialogues_split_after_the_last_shared_assistant_turn() {
        let c = "\n\nHuman: Hi\n\nAssistant: Hello there.";
        let r = "\n\nHuman: Hi\n\nAssistant: Hey.";
        let (p, a, b) = split_shared_prefix(c, r);
        assert_eq!(p, "\n\nHuman: Hi\n\nAssistant:");
        assert_eq!(a, " Hello there.");
        assert_eq!(b, " Hey.");
    }

    #[test]
    fn plain_texts_split_at_a_word_boundary() {
        let (p, a, b) = split_shared_prefix("The cat sat", "The car sat");
        assert_eq!((p, a, b), ("The", " cat sat", " car sat"));
    }
}
