//! Every `muse ...` command shown in README.md and docs/*.md parses with today's flags, so a
//! renamed or removed flag turns the tests red instead of a reader's terminal.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::Cli;

/// A documented command: where it is written and its words after `muse`.
struct Example {
    place: String,
    words: Vec<String>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md and every docs/*.md, in a stable order.
fn documents() -> Vec<PathBuf> {
    let root = repo_root();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("readable docs entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

/// The `muse` (or `cargo run --release --`) lines inside fenced code blocks of `doc`, with
/// `\` continuations joined and `# comments` dropped.
pub(crate) fn examples_in(doc: &Path, text: &str) -> Vec<(usize, Vec<String>)> {
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
        let (start, joined) = match pending.take() {
            Some((start, head)) => (start, format!("{head} {}", line.trim())),
            None => (i + 1, line.trim().to_string()),
        };
        if let Some(head) = joined.strip_suffix('\\') {
            pending = Some((start, head.to_string()));
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

/// The words after the program name when the line runs Muse, else `None`. Leading `VAR=value`
/// assignments are skipped.
fn muse_args(words: &[String]) -> Option<Vec<String>> {
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
/// quotes, and a `#` that starts a word begins a comment.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
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

fn every_example() -> Vec<Example> {
    let root = repo_root();
    let mut all = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("readable document");
        let name = doc.strip_prefix(&root).unwrap_or(&doc).display().to_string();
        for (line, words) in examples_in(&doc, &text) {
            all.push(Example {
                place: format!("{name}:{line}"),
                words,
            });
        }
    }
    all
}

#[test]
fn every_documented_command_parses() {
    let examples = every_example();
    assert!(
        examples.len() >= 60,
        "only {} documented commands found: is the extraction broken?",
        examples.len()
    );
    let mut broken = Vec::new();
    for ex in &examples {
        let argv = std::iter::once("muse".to_string()).chain(ex.words.iter().cloned());
        if let Err(e) = Cli::try_parse_from(argv) {
            use clap::error::ErrorKind;
            if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                broken.push(format!("{}: muse {}\n    {first}", ex.place, ex.words.join(" ")));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "documented commands that no longer parse:\n{}",
        broken.join("\n")
    );
}

#[test]
fn shell_words_follow_the_shell() {
    let w = shell_words(r#"muse sample run --stop "\n\n" --prompt 'ROMEO:' a\ b  # note"#).unwrap();
    assert_eq!(
        w,
        ["muse", "sample", "run", "--stop", r"\n\n", "--prompt", "ROMEO:", "a b"]
    );
    assert!(shell_words("muse \"open").is_err());
    assert_eq!(
        muse_args(&shell_words("MUSE_THREADS=2 cargo run --release -- train gpt").unwrap()),
        Some(vec!["train".to_string(), "gpt".to_string()])
    );
    assert_eq!(muse_args(&shell_words("python x.py").unwrap()), None);
    let example = "cargo run --release -p muse-core --example dpo -- pairs run";
    assert_eq!(muse_args(&shell_words(example).unwrap()), None);
}
