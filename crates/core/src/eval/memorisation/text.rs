//! Verbatim copying in generated text: the share of its `span`-character spans that occur in
//! the training text, the longest copied span, and examples (Carlini et al., "Quantifying
//! Memorization Across Neural Language Models", 2022, count copies of 50-token spans; here the
//! unit is characters, so char-level and BPE models are measured alike).

use serde::Serialize;

use super::suffix::SuffixArray;

/// Spans of a set of texts found verbatim in an indexed training text.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SpanStats {
    /// Span length in characters.
    pub span_chars: usize,
    /// Texts measured and their characters in all.
    pub texts: usize,
    pub chars: usize,
    /// Spans of `span_chars` characters checked (one starting at every character).
    pub spans: usize,
    /// Of those, the ones found in the training text.
    pub copied: usize,
    /// `copied / spans` (0 when there are no spans).
    pub share: f64,
    /// The longest stretch of a text found in the training text.
    pub longest: CopiedSpan,
    /// Up to [`EXAMPLES`] of the longest copied stretches (at least `span_chars` long), longest
    /// first, none overlapping another.
    pub examples: Vec<CopiedSpan>,
}

/// A stretch of generated text that occurs in the training text.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CopiedSpan {
    /// Length in characters.
    pub chars: usize,
    pub text: String,
    /// Which text (0-based) and the character where the stretch starts in it.
    pub text_index: usize,
    pub at_char: usize,
    /// A byte offset of the same stretch in the training text.
    pub train_offset: Option<usize>,
}

/// Examples kept.
pub const EXAMPLES: usize = 3;

/// Measures `texts` against the training text indexed by `index`. Spans do not cross from
/// one text into the next.
pub fn span_stats(index: &SuffixArray, texts: &[&str], span_chars: usize) -> SpanStats {
    let mut s = SpanStats {
        span_chars,
        texts: texts.len(),
        ..Default::default()
    };
    let mut stretches = Vec::new();
    for (t, text) in texts.iter().enumerate() {
        let bytes = text.as_bytes();
        // Byte offset of every character, and of the end.
        let starts: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([bytes.len()])
            .collect();
        let n_chars = starts.len() - 1;
        s.chars += n_chars;
        let stats = index.matching_statistics(bytes);
        // The stretch that the last recorded example covers, to keep examples apart.
        let mut covered_to = 0;
        for c in 0..n_chars {
            let at = starts[c];
            let (len, offset) = stats[at];
            // The match in whole characters.
            let whole = starts[c..].partition_point(|&b| b <= at + len) - 1;
            if c + span_chars <= n_chars {
                s.spans += 1;
                if whole >= span_chars {
                    s.copied += 1;
                }
            }
            let span = || CopiedSpan {
                chars: whole,
                text: text[at..starts[c + whole]].to_string(),
                text_index: t,
                at_char: c,
                train_offset: offset,
            };
            if whole > s.longest.chars {
                s.longest = span();
            }
            if whole >= span_chars && c >= covered_to {
                stretches.push(span());
                covered_to = c + whole;
            }
        }
    }
    s.share = if s.spans == 0 {
        0.0
    } else {
        s.copied as f64 / s.spans as f64
    };
    stretches.sort_by_key(|s| std::cmp::Reverse(s.chars));
    stretches.truncate(EXAMPLES);
    s.examples = stretches;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAIN: &str = "ROMEO: But soft, what light through yonder window breaks? It is the \
                         east, and Juliet is the sun. Arise, fair sun, and kill the envious moon.";

    #[test]
    fn a_planted_span_is_found_with_its_length() {
        let index = SuffixArray::new(TRAIN.as_bytes());
        let copied = "what light through yonder window breaks? It is the east";
        let text = format!("zq{copied}qz and nothing else zzz");
        let s = span_stats(&index, &[&text], 20);
        assert_eq!(s.longest.chars, copied.chars().count());
        assert_eq!(s.longest.text, copied);
        assert_eq!(s.longest.at_char, 2);
        let at = s.longest.train_offset.unwrap();
        assert_eq!(&TRAIN[at..at + copied.len()], copied);
        // Spans of 20 characters starting inside the copied stretch, with 20 to go.
        assert_eq!(s.copied, copied.chars().count() - 20 + 1);
        assert_eq!(s.spans, text.chars().count() - 20 + 1);
        assert_eq!(s.examples.len(), 1);
        assert_eq!(s.examples[0].text, copied);
    }

    #[test]
    fn an_invented_span_is_not() {
        let index = SuffixArray::new(TRAIN.as_bytes());
        let text = "what light through yonder door breaks? It is the west, and Romeo";
        let s = span_stats(&index, &[text], 30);
        assert_eq!(s.copied, 0);
        assert!(s.examples.is_empty());
        assert_eq!(s.longest.text, "what light through yonder ");
        assert_eq!(s.share, 0.0);
    }

    #[test]
    fn multibyte_characters_count_as_one() {
        let train = "café crème brûlée, encore une fois";
        let index = SuffixArray::new(train.as_bytes());
        let s = span_stats(&index, &["xx crème brûlée, yy"], 5);
        assert_eq!(s.longest.text, " crème brûlée, ");
        assert_eq!(s.longest.chars, 15);
        assert_eq!(s.spans, 19 - 5 + 1);
        assert_eq!(s.copied, 15 - 5 + 1);
    }

    #[test]
    fn spans_stop_at_the_end_of_each_text() {
        let index = SuffixArray::new(b"abcdefghij");
        let s = span_stats(&index, &["abcde", "fghij", "abc"], 5);
        assert_eq!((s.texts, s.chars, s.spans, s.copied), (3, 13, 2, 2));
        assert_eq!(s.examples.len(), 2);
    }
}
