//! Examples left out of a fine-tuning or preference set, counted by reason with the first
//! example of each, so "857 dropped" says why and which.

use std::fmt;

/// Why an example was left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// Characters the model's (character-level) vocabulary cannot spell.
    Unspellable,
    /// No reply token left after cutting the example to the maximum length.
    NoReplyWithinLength,
}

impl DropReason {
    fn describe(self, max_len: usize) -> String {
        match self {
            DropReason::Unspellable => "with characters outside the vocabulary".to_string(),
            DropReason::NoReplyWithinLength => {
                format!("with no reply left within {max_len} tokens")
            }
        }
    }
}

/// One reason: how many examples, and the first of them (its row and a detail).
#[derive(Clone, Debug)]
struct Count {
    reason: DropReason,
    n: usize,
    first_row: usize,
    detail: String,
}

/// The dropped examples of one set.
#[derive(Clone, Debug, Default)]
pub struct Dropped {
    counts: Vec<Count>,
    max_len: usize,
}

impl Dropped {
    /// Counts for a set cut to `max_len` tokens.
    pub fn new(max_len: usize) -> Self {
        Self {
            counts: Vec::new(),
            max_len,
        }
    }

    /// Notes that row `row` (0-based in the file's examples) was dropped for `reason`;
    /// `detail` says what in it, for the first of each reason.
    pub fn add(&mut self, reason: DropReason, row: usize, detail: impl FnOnce() -> String) {
        match self.counts.iter_mut().find(|c| c.reason == reason) {
            Some(c) => {
                c.n += 1;
                if row < c.first_row {
                    c.first_row = row;
                    c.detail = detail();
                }
            }
            None => {
                self.counts.push(Count {
                    reason,
                    n: 1,
                    first_row: row,
                    detail: detail(),
                });
                self.counts.sort_by_key(|c| c.reason);
            }
        }
    }

    /// Examples dropped for any reason.
    pub fn total(&self) -> usize {
        self.counts.iter().map(|c| c.n).sum()
    }
}

/// "857 dropped: 800 with characters outside the vocabulary (first: example 12, '3' ...), 57
/// with no reply left within 65 tokens (first: example 3)"; "0 dropped" when none.
impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} dropped", self.total())?;
        for (i, c) in self.counts.iter().enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            let detail = if c.detail.is_empty() {
                String::new()
            } else {
                format!(", {}", c.detail)
            };
            write!(
                f,
                "{sep}{} {} (first: example {}{detail})",
                c.n,
                c.reason.describe(self.max_len),
                c.first_row + 1
            )?;
        }
        Ok(())
    }
}

/// The first sentence of a tokenizer error: "text contains characters not in this model's
/// vocabulary: 'é' (U+00E9)".
pub fn first_sentence(message: &str) -> String {
    message
        .split(". ")
        .next()
        .unwrap_or(message)
        .trim_end_matches('.')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_with_their_first_example() {
        let mut d = Dropped::new(65);
        assert_eq!(d.to_string(), "0 dropped");
        d.add(DropReason::NoReplyWithinLength, 7, String::new);
        d.add(DropReason::Unspellable, 4, || "'é' (U+00E9)".into());
        d.add(DropReason::Unspellable, 2, || "'ß' (U+00DF)".into());
        assert_eq!(d.total(), 3);
        assert_eq!(
            d.to_string(),
            "3 dropped: 2 with characters outside the vocabulary (first: example 3, 'ß' \
             (U+00DF)), 1 with no reply left within 65 tokens (first: example 8)"
        );
        assert_eq!(
            first_sentence("text contains 'é'. The model was trained on 65 symbols."),
            "text contains 'é'"
        );
    }
}
