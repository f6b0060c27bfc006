//! Every `muse ...` command shown in README.md and docs/*.md parses with today's flags, so a
//! renamed or removed flag turns the tests red instead of a reader's terminal.

use std::path::PathBuf;

use clap::Parser;

use crate::Cli;
use crate::doc_commands::examples_in;

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

fn every_example() -> Vec<Example> {
    let root = repo_root();
    let mut all = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("readable document");
        let name = doc
            .strip_prefix(&root)
            .unwrap_or(&doc)
            .display()
            .to_string();
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
                broken.push(format!(
                    "{}: muse {}\n    {first}",
                    ex.place,
                    ex.words.join(" ")
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "documented commands that no longer parse:\n{}",
        broken.join("\n")
    );
}
