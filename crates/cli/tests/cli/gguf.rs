//! GGUF files through the CLI: `muse sample`, `muse chat` and `muse eval` on the tiny Q8_0
//! Llama of the core fixtures, and the exit code and message for files Muse cannot load.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::{muse, text};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures/gguf")
        .join(name)
}

#[test]
fn sample_and_show_probs_from_a_gguf_file() {
    let tmp = tempfile::tempdir().unwrap();
    let m = fixture("tiny_llama_q8_0.gguf");
    let out = muse(
        tmp.path(),
        &[
            "sample",
            m.to_str().unwrap(),
            "--prompt",
            "ROMEO:",
            "--max-tokens",
            "4",
            "--temperature",
            "0",
            "--show-probs",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("likeliest candidates"), "{stdout}");
}

#[test]
fn chat_uses_the_template_in_the_file() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_muse"))
        .arg("chat")
        .arg(fixture("tiny_llama_q4_1.gguf"))
        .args(["--max-tokens", "6"])
        .env("MUSE_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Hello\n/exit\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("Jinja template"), "{stderr}");
    assert_eq!(stdout.matches("ai> ").count(), 1, "{stdout}");
}

#[test]
fn eval_a_gguf_file_needs_data_and_reports_perplexity() {
    let tmp = tempfile::tempdir().unwrap();
    let m = fixture("tiny_llama_f32.gguf");
    let out = muse(tmp.path(), &["eval", m.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--data"), "{stderr}");
    let data = tmp.path().join("t.txt");
    std::fs::write(
        &data,
        "ROMEO:\nWhat light through yonder window breaks?\n".repeat(8),
    )
    .unwrap();
    let out = muse(
        tmp.path(),
        &[
            "eval",
            m.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("perplexity"), "{stdout}");
}

#[test]
fn a_file_that_is_not_gguf_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("model.gguf");
    std::fs::write(&p, "not a model at all, just text\n").unwrap();
    let out = muse(
        tmp.path(),
        &["sample", p.to_str().unwrap(), "--prompt", "hi"],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("not a GGUF file"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_folder_of_a_gguf_file_names_the_file_to_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("models");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(fixture("tiny_llama_f32.gguf"), model.join("tiny.gguf")).unwrap();
    for args in [
        vec!["sample", "models", "--prompt", "hi"],
        vec!["finetune", "models", "--data", "instructions", "--lora"],
    ] {
        let out = muse(tmp.path(), &args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("pass the file") && stderr.contains("tiny.gguf"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn export_of_a_gguf_file_says_what_is_not_supported_yet() {
    let tmp = tempfile::tempdir().unwrap();
    let m = fixture("tiny_llama_f32.gguf");
    let out_dir = tmp.path().join("hf");
    let out = muse(
        tmp.path(),
        &[
            "export",
            m.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("is a GGUF file"), "{stderr}");
    assert!(!stderr.contains("llama2.c"), "{stderr}");
}
