//! `muse tokenizer`: train -> encode -> decode round trips, GPT-2 ids, and clear errors (right
//! exit code, a message naming the problem, never a panic) for bad input.

use std::path::Path;

use crate::common::{dataset, muse, text};

/// Runs `muse ARGS` in `dir`; returns (exit code, stdout, stderr) and checks for panics.
fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = muse(dir, args);
    let (stdout, stderr) = text(&out);
    assert!(!stderr.contains("panicked"), "muse panicked: {stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Writes the first `n` bytes of Tiny Shakespeare to `dir/corpus.txt`.
fn corpus(dir: &Path, n: usize) -> String {
    let text = std::fs::read(dataset("tinyshakespeare").join("input.txt")).expect("corpus");
    std::fs::write(dir.join("corpus.txt"), &text[..n]).unwrap();
    "corpus.txt".into()
}

#[test]
fn train_bpe_then_encode_decode_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 32 * 1024);
    let args = [
        "tokenizer",
        "train",
        "--kind",
        "bpe",
        "--vocab-size",
        "400",
        &corpus,
    ];
    let (code, stdout, stderr) = run(dir.path(), &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("400 ids"), "{stdout}");
    assert!(dir.path().join("tokenizer.json").is_file());

    let sample = "Speak, speak! Naïve café 東京 🙂\n  done";
    let (code, ids, stderr) = run(
        dir.path(),
        &["tokenizer", "encode", "-t", "tokenizer.json", sample],
    );
    assert_eq!(code, 0, "{stderr}");
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert!(ids.iter().all(|id| id.parse::<u32>().is_ok()), "{ids:?}");
    let mut args = vec!["tokenizer", "decode", "--tokenizer", "tokenizer.json"];
    args.extend(&ids);
    let (code, decoded, stderr) = run(dir.path(), &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(decoded, sample);

    // --file gives the same ids as the text argument; decode accepts "1, 2, 3" too.
    std::fs::write(dir.path().join("sample.txt"), sample).unwrap();
    let (code, from_file, _) = run(
        dir.path(),
        &[
            "tokenizer",
            "encode",
            "-t",
            "tokenizer.json",
            "--file",
            "sample.txt",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(from_file.split_whitespace().collect::<Vec<_>>(), ids);
    let (_, decoded, _) = run(
        dir.path(),
        &[
            "tokenizer",
            "decode",
            "-t",
            "tokenizer.json",
            &ids.join(", "),
        ],
    );
    assert_eq!(decoded, sample);

    let (code, info, _) = run(dir.path(), &["tokenizer", "info", "-t", "tokenizer.json"]);
    assert_eq!(code, 0);
    assert!(
        info.contains("kind: bpe") && info.contains("vocab size: 400"),
        "{info}"
    );
}

#[test]
fn wordpiece_and_char_train() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 16 * 1024);
    let args = [
        "tokenizer",
        "train",
        "--kind",
        "wordpiece",
        "--vocab-size",
        "300",
        &corpus,
        "-o",
        "wp.json",
    ];
    assert_eq!(run(dir.path(), &args).0, 0);
    let (code, ids, _) = run(
        dir.path(),
        &["tokenizer", "encode", "-t", "wp.json", "hear me speak"],
    );
    assert_eq!(code, 0);
    assert!(!ids.trim().is_empty());

    let args = [
        "tokenizer",
        "train",
        "--kind",
        "char",
        &corpus,
        "-o",
        "char.json",
    ];
    let (code, stdout, _) = run(dir.path(), &args);
    assert_eq!(code, 0);
    assert!(stdout.contains("58 ids"), "{stdout}");
    let (code, ids, _) = run(
        dir.path(),
        &["tokenizer", "encode", "-t", "char.json", "\n "],
    );
    assert_eq!((code, ids.trim()), (0, "0 1"));
    // Characters outside the vocabulary are named, not dropped.
    let (code, _, stderr) = run(
        dir.path(),
        &["tokenizer", "encode", "-t", "char.json", "café"],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("'é' (U+00E9)") && stderr.contains("58 symbols"),
        "{stderr}"
    );
}

#[test]
fn gpt2_from_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (code, ids, stderr) = run(
        dir.path(),
        &[
            "tokenizer",
            "encode",
            "--tokenizer",
            "gpt2",
            "Hello world<|endoftext|>",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids.trim(), "15496 995 50256");
    let (code, text, _) = run(
        dir.path(),
        &["tokenizer", "decode", "-t", "gpt2", "15496", "995"],
    );
    assert_eq!((code, text.as_str()), (0, "Hello world"));
}

#[test]
fn bad_training_input_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, err) = run(d, &["tokenizer", "train", "missing.txt"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read corpus missing.txt"), "{err}");

    std::fs::write(d.join("latin1.txt"), b"abc\ncaf\xe9\n").unwrap();
    let (code, _, err) = run(d, &["tokenizer", "train", "latin1.txt"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not UTF-8") && err.contains("byte offset 7"),
        "{err}"
    );

    std::fs::write(d.join("empty.txt"), "").unwrap();
    let (code, _, err) = run(d, &["tokenizer", "train", "empty.txt"]);
    assert_eq!(code, 1);
    assert!(err.contains("empty"), "{err}");

    let corpus = corpus(d, 4096);
    let (code, _, err) = run(d, &["tokenizer", "train", "--vocab-size", "100", &corpus]);
    assert_eq!(code, 2);
    assert!(err.contains("at least 257"), "{err}");

    let (code, _, _) = run(
        d,
        &["tokenizer", "train", "--kind", "sentencepiece", &corpus],
    );
    assert_eq!(code, 2);

    let (code, _, err) = run(
        d,
        &["tokenizer", "train", &corpus, "-o", "no/such/dir/t.json"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn existing_output_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = corpus(d, 4096);
    std::fs::write(d.join("tokenizer.json"), "keep me").unwrap();
    let (code, _, err) = run(d, &["tokenizer", "train", &corpus]);
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(d.join("tokenizer.json")).unwrap(),
        "keep me"
    );
    let (code, _, err) = run(
        d,
        &[
            "tokenizer",
            "train",
            &corpus,
            "--force",
            "--vocab-size",
            "300",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read_to_string(d.join("tokenizer.json"))
            .unwrap()
            .contains("<|endoftext|>")
    );
}

#[test]
fn bad_tokenizer_or_ids_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, err) = run(d, &["tokenizer", "encode", "-t", "nope.json", "hi"]);
    assert_eq!(code, 1);
    assert!(err.contains("nope.json"), "{err}");

    std::fs::write(d.join("bad.json"), "{ not json").unwrap();
    let (code, _, err) = run(d, &["tokenizer", "info", "-t", "bad.json"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.json") && err.contains("not a valid"),
        "{err}"
    );

    let (code, _, err) = run(d, &["tokenizer", "decode", "-t", "gpt2", "15496", "abc"]);
    assert_eq!(code, 2);
    assert!(err.contains("'abc' is not a token id"), "{err}");

    let (code, _, err) = run(d, &["tokenizer", "decode", "-t", "gpt2", "99999"]);
    assert_eq!(code, 1);
    assert!(err.contains("99999"), "{err}");
}
