//! The README's "Using it" walkthrough, run command by command in a scratch folder, so a
//! documented command that stops working turns the tests red. Each command runs as written
//! except for the edits in [`shorten`] (fewer steps, fewer images: the point is that the
//! commands work together, not the figures) and the placeholder paths in [`placeholders`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{dataset, text};

#[path = "../../src/doc_commands.rs"]
#[allow(dead_code)]
mod doc_commands;

/// The README's "## Using it" section.
fn walkthrough() -> Vec<(usize, Vec<String>)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find("## Using it")
        .expect("README has a 'Using it' section");
    let offset = readme[..start].lines().count();
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    doc_commands::examples_in(&path, &section[..end])
        .into_iter()
        .map(|(line, words)| (line + offset, words))
        .collect()
}

/// The README's example paths, pointed at committed fixtures; `false` for a line no shared
/// file can stand in for.
fn placeholders(words: &mut [String]) -> bool {
    let hf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/hf/gpt2");
    for w in words.iter_mut() {
        let to = match w.as_str() {
            "path/to/hf-folder" | "path/to/gpt2-folder" => hf.clone(),
            "model.gguf" => {
                dataset("smollm2-135m-instruct").join("SmolLM2-135M-Instruct.Q4_1.gguf")
            }
            // The shared llama2.c checkpoint (260K) has a 512-token vocabulary whose tokenizer
            // is not in the shared data, so no pair of files fits this line; loading llama2.c
            // files is tested in `export.rs` and the core tests.
            "stories.bin" => return false,
            _ => continue,
        };
        *w = to.display().to_string();
    }
    true
}

/// Fewer steps and images than the README asks for.
fn shorten(words: &mut Vec<String>) {
    let has = |words: &[String], flag: &str| words.iter().any(|w| w == flag);
    match words.first().map(String::as_str) {
        Some("train" | "finetune" | "align") => {
            for w in words.iter_mut() {
                if let Some(key) = w.strip_prefix("max_iters=") {
                    assert!(key.parse::<u64>().is_ok(), "{w}");
                    *w = "max_iters=4".into();
                }
            }
            if !has(words, "--max-steps") && !words.iter().any(|w| w == "max_iters=4") {
                words.extend(["--max-steps".into(), "2".into()]);
            }
        }
        Some("bench") if words.get(1).is_some_and(|w| w == "generate") => {
            let short = ["--prompt-tokens", "16", "--gen-tokens", "4", "--reps", "1"];
            words.extend(short.map(String::from));
        }
        Some("bench") if words.get(1).is_some_and(|w| w == "serve") => {
            let short = ["--clients", "3", "--requests", "1", "--max-tokens", "4"];
            words.extend(short.map(String::from));
        }
        Some("bench") if words.get(1).is_some_and(|w| w == "http") => {
            // Two client counts instead of the README's four (clap would append a second
            // --clients), half a second each.
            if let Some(i) = words.iter().position(|w| w == "--clients") {
                words.drain(i..(i + 2).min(words.len()));
            }
            let short = ["--clients", "1,2", "--seconds", "0.5", "--max-tokens", "4"];
            words.extend(short.map(String::from));
        }
        Some("bench") => {
            words.extend(["--steps", "2", "--warmup", "1"].map(String::from));
            if words.get(1).is_some_and(|w| w == "diffusion") {
                let sampling = [
                    "--ddim-steps",
                    "2",
                    "--sample-batch",
                    "2",
                    "--sample-reps",
                    "1",
                ];
                words.extend(sampling.map(String::from));
            }
        }
        Some("sample") => {
            for (i, w) in words.clone().iter().enumerate() {
                if w == "--steps" {
                    words[i + 1] = "4".into();
                }
                if w == "--n" {
                    words[i + 1] = "4".into();
                }
            }
            if has(words, "--sampler") && !has(words, "--n") {
                words.extend(["--n".into(), "4".into()]);
            }
        }
        // The importance-weighted bound takes minutes over the whole test set.
        Some("eval") if words.get(1).is_some_and(|w| w.contains("vae")) => {
            words.extend(["--iwae-k".into(), "0".into()]);
        }
        _ => {}
    }
}

/// What the walkthrough's commands read that the README assumes the reader has.
fn write_inputs(dir: &Path) {
    let corpus = std::fs::read_to_string(dataset("tinyshakespeare").join("input.txt")).unwrap();
    std::fs::write(dir.join("corpus.txt"), &corpus[..20_000]).unwrap();
    let lords = ["York", "Kent", "Bedford", "Exeter", "Warwick", "Gloucester"];
    let prefs: String = lords
        .iter()
        .chain(&lords)
        .map(|lord| {
            let row = serde_json::json!({
                "prompt": format!("Speak, lord {lord}."),
                "chosen": "I will speak.",
                "rejected": "No.",
            });
            format!("{row}\n")
        })
        .collect();
    std::fs::write(dir.join("prefs.jsonl"), prefs).unwrap();
}

#[test]
fn the_readme_walkthrough_runs() {
    let commands = walkthrough();
    assert!(commands.len() >= 20, "{} commands found", commands.len());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_inputs(dir);
    let mut ran = 0;
    for (line, mut words) in commands {
        if !placeholders(&mut words) {
            continue;
        }
        shorten(&mut words);
        // The chat is given one message and then leaves.
        let stdin = if words[0] == "chat" {
            "Hello.\n/exit\n"
        } else {
            ""
        };
        // The server runs until stopped: it must start, listen, answer and stop cleanly.
        if words[0] == "serve" {
            let server = crate::serve::start(dir, &words);
            let health = server.http("GET", "/health", "", "");
            assert!(
                health.starts_with("HTTP/1.1 200"),
                "README.md:{line}: {health}"
            );
            let status = server.terminate();
            assert!(
                status.success(),
                "README.md:{line}: muse serve exited {status}"
            );
            ran += 1;
            continue;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_muse"))
            .args(&words)
            .current_dir(dir)
            .env("MUSE_THREADS", "2")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "README.md:{line}: muse {} failed ({}):\n{stdout}\n{stderr}",
            words.join(" "),
            out.status
        );
        ran += 1;
    }
    eprintln!("ran {ran} README commands");
}
