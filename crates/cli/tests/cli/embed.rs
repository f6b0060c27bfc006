//! `muse embed` end to end on all-MiniLM-L6-v2: JSON Lines output of unit-length 384-d
//! vectors, the readable summary and similarities, --file, and the errors for bad inputs.

use crate::common::{dataset, muse, text};

fn minilm() -> String {
    dataset("all-minilm-l6-v2").to_string_lossy().into_owned()
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn embed_json_gives_unit_384_vectors_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm();
    let out = muse(
        tmp.path(),
        &[
            "embed",
            "--model",
            &model,
            "--json",
            "Hello world",
            "A red sneaker.",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows = json_lines(&stdout);
    assert_eq!(rows.len(), 2);
    for (i, (row, want)) in rows
        .iter()
        .zip(["Hello world", "A red sneaker."])
        .enumerate()
    {
        assert_eq!(row["index"], i);
        assert_eq!(row["text"], want);
        let v: Vec<f32> = serde_json::from_value(row["embedding"].clone()).unwrap();
        assert_eq!(v.len(), 384);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    // --file: one sentence a line, blank lines skipped, after the texts; the default model
    // comes from MUSE_DATA_DIR.
    std::fs::write(
        tmp.path().join("s.txt"),
        "Hello world\n\n  \nA red sneaker.\r\n",
    )
    .unwrap();
    let out = muse(tmp.path(), &["embed", "--json", "first", "--file", "s.txt"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let from_file = json_lines(&stdout);
    assert_eq!(from_file.len(), 3);
    assert_eq!(from_file[0]["text"], "first");
    assert_eq!(from_file[1]["text"], "Hello world");
    assert_eq!(from_file[2]["text"], "A red sneaker.");
    for (a, b) in from_file[1..].iter().zip(&rows) {
        let a: Vec<f32> = serde_json::from_value(a["embedding"].clone()).unwrap();
        let b: Vec<f32> = serde_json::from_value(b["embedding"].clone()).unwrap();
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-6, "{diff}");
    }
}

/// `--model` also takes the registered name that `muse data list` shows, found in
/// $MUSE_DATA_DIR like a dataset, whatever the working folder: the same vector as the path.
#[test]
fn embed_model_by_registered_name() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |model: &str| {
        let out = muse(
            tmp.path(),
            &["embed", "--model", model, "--json", "A red sneaker."],
        );
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{model}: {stdout}\n{stderr}");
        json_lines(&stdout)[0]["embedding"].clone()
    };
    assert_eq!(run("all-minilm-l6-v2"), run(&minilm()));
}

#[test]
fn embed_summary_and_similarity() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm();
    let out = muse(
        tmp.path(),
        &[
            "embed",
            "--model",
            &model,
            "--similarity",
            "a red sneaker",
            "crimson running shoes",
            "a handwritten seven",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[0] 384 values: "), "{stdout}");
    assert!(stdout.contains("\"crimson running shoes\""), "{stdout}");
    let sim = |pair: &str| -> f32 {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(pair))
            .unwrap();
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert!(sim("[0] [1]") > sim("[0] [2]"), "{stdout}");
    assert!(!stderr.contains("WARN"), "{stderr}");

    // A text past max_seq_length is embedded truncated, with a warning.
    let long = "the quick brown fox jumps over the lazy dog ".repeat(40);
    let out = muse(tmp.path(), &["embed", "--model", &model, "short", &long]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("text 1 has 362 tokens: only the first 256 are embedded"),
        "{stderr}"
    );
}

#[test]
fn embed_bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm();

    let out = muse(tmp.path(), &["embed", "--model", "no-such-dir", "hi"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("no text encoder at no-such-dir"),
        "{:?}",
        text(&out)
    );

    // A GPT-2 folder is the wrong kind of model.
    let gpt2 =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/hf/gpt2");
    let out = muse(
        tmp.path(),
        &["embed", "--model", gpt2.to_str().unwrap(), "hi"],
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let err = text(&out).1;
    assert!(
        err.contains("'gpt2'") && err.contains("expected model_type 'bert'"),
        "{err}"
    );

    std::fs::write(tmp.path().join("empty.txt"), "\n \n").unwrap();
    let out = muse(
        tmp.path(),
        &["embed", "--model", &model, "--file", "empty.txt"],
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("empty.txt has no sentences"),
        "{:?}",
        text(&out)
    );

    let out = muse(
        tmp.path(),
        &["embed", "--model", &model, "--file", "missing.txt"],
    );
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(text(&out).1.contains("missing.txt"), "{:?}", text(&out));

    let out = muse(tmp.path(), &["embed", "--model", &model]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("nothing to embed"),
        "{:?}",
        text(&out)
    );

    let out = muse(tmp.path(), &["embed", "--batch-size", "0", "hi"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}
