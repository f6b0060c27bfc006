//! The Muse commands written in Markdown: every `muse ...` (or `cargo run --release -- ...`)
//! line of a fenced code block, split into words as the shell would. Shared by the test that
//! parses every documented command and the one that runs the README's walkthrough.

use std::path::Path;

/// The `muse` (or `cargo run --release --`) lines inside fenced code blocks of `doc`, with
/// `\` continuations joined and `# comments` dropped.
pub fn examples_in(doc: &Path, text: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut in_code = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        // A `$ ` prompt marks a command among its output.
        let line = line.trim();
        let line = line.strip_prefix("$ ").unwrap_or(line);
        let (start, joined) = match pending.take() {
            Some((start, head)) => (start, format!("{head} {line}")),
            None => (i + 1, line.to_string()),
        };
        if let Some(head) = joined.strip_suffix('\\') {
            pending = Some((start, head.to_string()));
            continue;
        }
        if !looks_like_muse(&joined) {
            continue;
        }
        let words = shell_words(&joined)
            .unwrap_or_else(|e| panic!("{}:{start}: {e}: {joined}", doc.display()));
        if let Some(args) = muse_args(&words) {
            found.push((start, args));
        }
    }
    found
}

/// Whether a code line runs Muse (possibly after `VAR=value` assignments), before splitting
/// it: code blocks also show output, which need not be valid shell.
fn looks_like_muse(line: &str) -> bool {
    let command = line
        .split_whitespace()
        .find(|w| !is_assignment(w))
        .unwrap_or_default();
    command == "muse" || (command == "cargo" && line.contains(" run"))
}

/// The words after the program name when the line runs Muse, else `None`. Leading `VAR=value`
/// assignments are skipped.
pub fn muse_args(words: &[String]) -> Option<Vec<String>> {
    let words: Vec<&String> = words.iter().skip_while(|w| is_assignment(w)).collect();
    match words.as_slice() {
        [first, rest @ ..] if first.as_str() == "muse" => {
            Some(rest.iter().map(|w| w.to_string()).collect())
        }
        [cargo, run, rest @ ..] if cargo.as_str() == "cargo" && run.as_str() == "run" => {
            let after = rest.iter().position(|w| w.as_str() == "--")?;
            // `cargo run -p muse-core --example ...` runs an example program, not Muse.
            let cargo_flags = &rest[..after];
            if cargo_flags.iter().any(|w| w.as_str() == "--example") {
                return None;
            }
            Some(rest[after + 1..].iter().map(|w| w.to_string()).collect())
        }
        _ => None,
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
    })
}

/// Splits a shell line into words: single and double quotes, backslash escapes outside single
/// quotes, and a `#` that starts a word begins a comment; an unquoted `>`, `<`, `|`, `;` or `&`
/// that starts a word ends the command.
pub fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '#' if word.is_none() => break,
            // A redirection or pipe ends the command: the rest is the shell's.
            '>' | '<' | '|' | ';' | '&' if word.is_none() => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("unclosed double quote".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unclosed double quote".into()),
                    }
                }
            }
            '\\' => {
                if let Some(c) = chars.next() {
                    word.get_or_insert_with(String::new).push(c);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_follow_the_shell() {
        let w =
            shell_words(r#"muse sample run --stop "\n\n" --prompt 'ROMEO:' a\ b  # note"#).unwrap();
        assert_eq!(
            w,
            [
                "muse", "sample", "run", "--stop", r"\n\n", "--prompt", "ROMEO:", "a b"
            ]
        );
        assert!(shell_words("muse \"open").is_err());
        assert_eq!(
            shell_words("muse sample run --n 2 > out.txt | head").unwrap(),
            ["muse", "sample", "run", "--n", "2"]
        );
        assert_eq!(
            muse_args(&shell_words("MUSE_THREADS=2 cargo run --release -- train gpt").unwrap()),
            Some(vec!["train".to_string(), "gpt".to_string()])
        );
        assert_eq!(muse_args(&shell_words("python x.py").unwrap()), None);
        let example = "cargo run --release -p muse-core --example dpo -- pairs run";
        assert_eq!(muse_args(&shell_words(example).unwrap()), None);
    }
}
