//! The `13a` tokeniser of BLEU: the word splitting of WMT's `mteval-v13a.pl`, which sacreBLEU
//! uses by default, so that BLEU scores of detokenised text are comparable across papers.
//!
//! The rules, applied in order to the line padded with a space on each side:
//!
//! 1. drop `<skipped>` and hyphenated line breaks (`-` + newline), turn newlines into spaces,
//!    and (only when the line holds a `&`) unescape `&quot;`, `&amp;`, `&lt;`, `&gt;`, in that
//!    order;
//! 2. put spaces around every ASCII symbol except `'`, `,`, `-` and `.`;
//! 3. split a period or comma from a preceding non-digit, then from a following non-digit
//!    (so `1,000.50` stays whole and `end.` becomes `end .`);
//! 4. split a dash that follows a digit (`10-20` becomes `10 - 20`);
//! 5. collapse whitespace (as Python's `str.split()` sees it) into single spaces.
//!
//! Steps 3 and 4 scan left to right and never reuse a character that a previous match used,
//! like a regular-expression substitution does; `,,` after a letter therefore splits only once
//! in the first pass.

/// Whitespace as Python's `str.isspace()` defines it (what sacreBLEU splits words on): Rust's
/// Unicode whitespace plus the ASCII separators U+001C to U+001F.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The words of `line` split on Python whitespace (`str.split()` without arguments).
pub fn py_words(line: &str) -> impl Iterator<Item = &str> {
    line.split(is_py_space).filter(|w| !w.is_empty())
}

/// `line` without trailing Python whitespace (`str.rstrip()`).
pub fn py_rstrip(line: &str) -> &str {
    line.trim_end_matches(is_py_space)
}

/// The ASCII symbols that rule 2 surrounds with spaces: `{|}~`, `[\]^_` and the backquote,
/// space to `&`, `(` to `+`, `:` to `@`, and `/`.
fn is_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..=  '+' | ':'..='@' | '/')
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn is_period_or_comma(c: char) -> bool {
    c == '.' || c == ','
}

/// Tokenises one line as `13a` does and returns the tokens joined by single spaces.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let padded: Vec<char> = format!(" {line} ").chars().collect();

    // Rule 2: symbols.
    let mut chars = Vec::with_capacity(padded.len() * 2);
    for c in padded {
        if is_symbol(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    // Rule 3a: a period or comma after a non-digit: `x.` -> `x . `.
    let chars = rewrite_pairs(
        &chars,
        |a, b| !is_digit(a) && is_period_or_comma(b),
        |a, b| [a, ' ', b, ' '],
    );
    // Rule 3b: a period or comma before a non-digit: `.x` -> ` . x`.
    let chars = rewrite_pairs(
        &chars,
        |a, b| is_period_or_comma(a) && !is_digit(b),
        |a, b| [' ', a, ' ', b],
    );
    // Rule 4: a dash after a digit: `1-` -> `1 - `.
    let chars = rewrite_pairs(
        &chars,
        |a, b| is_digit(a) && b == '-',
        |a, b| [a, ' ', b, ' '],
    );

    let text: String = chars.into_iter().collect();
    py_words(&text).collect::<Vec<_>>().join(" ")
}

/// One left-to-right pass of a two-character substitution: where `hit(a, b)` holds, the pair
/// becomes `with(a, b)` and the scan resumes after it (matches never overlap).
fn rewrite_pairs(
    chars: &[char],
    hit: impl Fn(char, char) -> bool,
    with: impl Fn(char, char) -> [char; 4],
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 4);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && hit(chars[i], chars[i + 1]) {
            out.extend(with(chars[i], chars[i + 1]));
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_separators_and_words_lose_their_periods() {
        assert_eq!(
            tokenize_13a("It costs 1,000.50 now."),
            "It costs 1,000.50 now ."
        );
        assert_eq!(tokenize_13a("pages 10-20"), "pages 10 - 20");
        assert_eq!(tokenize_13a("well-known (yes)"), "well-known ( yes )");
        assert_eq!(tokenize_13a("a &amp;lt; b"), "a < b");
    }

    #[test]
    fn python_whitespace_includes_the_ascii_separators() {
        assert_eq!(
            py_words("a\u{1c}b\u{202f}c\u{200b}d").collect::<Vec<_>>(),
            ["a", "b", "c\u{200b}d"]
        );
        assert_eq!(py_rstrip("x \u{a0}\t"), "x");
    }
}
