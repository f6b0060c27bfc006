//! `muse train seq2seq`, `muse translate` and `muse eval` on a translation run, end to end on a
//! tiny TSV corpus: files written, translations printed and written, resume equal to an
//! uninterrupted run, `muse bench seq2seq`, and clear errors (--beam 0, a run of another
//! family, a missing file).

use std::path::Path;

use crate::common::{fails, muse, ok};

/// A toy corpus of 120 pairs: "a3 b5" -> "B5 A3".
fn write_corpus(dir: &Path) -> String {
    let mut tsv = String::new();
    for i in 0..120 {
        let (x, y) = (i % 10, (i * 7) % 12);
        tsv.push_str(&format!("a{x} b{y}\tB{y} A{x}\n"));
    }
    let path = dir.join("pairs.tsv");
    std::fs::write(&path, tsv).unwrap();
    path.display().to_string()
}

fn train(dir: &Path, data: &str, out: &str, steps: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        "seq2seq",
        "--preset",
        "tiny",
        "--data",
        data,
        "--out",
        out,
        "--max-steps",
        steps,
        "--set",
        "eval_interval=10",
        "--set",
        "sample_interval=0",
    ];
    args.extend_from_slice(extra);
    ok(&muse(dir, &args))
}

#[test]
fn trains_translates_evaluates_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = write_corpus(dir);
    let out = train(dir, &data, "run", "20", &[]);
    assert!(out.contains("->"), "greedy samples are printed: {out}");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "training.json",
        "metrics.jsonl",
        "loss.svg",
        "MODEL_CARD.md",
    ] {
        assert!(dir.join("run").join(f).is_file(), "{f} missing");
    }
    let training = std::fs::read_to_string(dir.join("run/training.json")).unwrap();
    assert!(training.contains("\"family\": \"seq2seq\""), "{training}");

    // One sentence, greedy and beam; a file with an empty line, written with -o.
    let greedy = ok(&muse(dir, &["translate", "run", "a3 b5"]));
    assert_eq!(greedy.lines().count(), 1, "{greedy}");
    ok(&muse(dir, &["translate", "run", "a3 b5", "--beam", "3"]));
    std::fs::write(dir.join("in.txt"), "a1 b2\n\na4 b4\n").unwrap();
    ok(&muse(
        dir,
        &[
            "translate",
            "run",
            "--file",
            "in.txt",
            "-o",
            "out.txt",
            "--beam",
            "2",
        ],
    ));
    let written = std::fs::read_to_string(dir.join("out.txt")).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 3, "{written}");
    assert_eq!(lines[1], "", "an empty line stays empty");

    // The cross-attention map: a PNG, or an SVG with the tokens; not with --file.
    ok(&muse(
        dir,
        &["translate", "run", "a3 b5", "--attention", "att.png"],
    ));
    let png = std::fs::read(dir.join("att.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG is written");
    ok(&muse(
        dir,
        &[
            "translate",
            "run",
            "a3 b5",
            "--attention",
            "att.svg",
            "--beam",
            "2",
        ],
    ));
    let svg = std::fs::read_to_string(dir.join("att.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("&lt;/s&gt;"), "{svg}");
    fails(&muse(dir, &["sample", "run"]), 2, "muse translate");

    // muse eval: greedy and beam BLEU / chrF lines as `muse eval --hyp --ref` prints them.
    let eval = ok(&muse(dir, &["eval", "run", "--limit", "2", "--beam", "2"]));
    assert!(eval.contains(": 2 sentences"), "{eval}");
    assert_eq!(
        eval.matches("BLEU|nrefs:1|case:mixed|eff:no|tok:13a")
            .count(),
        2,
        "{eval}"
    );
    assert_eq!(eval.matches("chrF2|nrefs:1").count(), 2, "{eval}");
    assert!(eval.contains("sentences/s"), "{eval}");

    // Stop at 12 and resume to 20: the same weights as the uninterrupted run.
    train(dir, &data, "split", "12", &[]);
    train(dir, &data, "split", "20", &["--resume"]);
    assert_eq!(
        weights(&dir.join("run/model.safetensors")),
        weights(&dir.join("split/model.safetensors")),
        "resumed weights differ from the uninterrupted run"
    );
}

/// A safetensors file as (header, tensor bytes); the header's metadata is a map whose key
/// order may change from write to write, so it is compared parsed.
fn weights(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

#[test]
fn bench_times_training_steps_with_a_given_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = write_corpus(dir);
    train(dir, &data, "run", "2", &[]);
    let dataset = format!("data.dataset={data}");
    let stdout = ok(&muse(
        dir,
        &[
            "bench",
            "seq2seq",
            "--preset",
            "tiny",
            "--set",
            &dataset,
            "--tokenizer",
            "run/tokenizer.json",
            "--steps",
            "3",
            "--warmup",
            "1",
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["timed_steps"], 3, "{report}");
    assert!(report["ms_per_step_median"].as_f64().unwrap() > 0.0);
    assert!(report["timed_tgt_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn bad_translate_requests_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A run folder of another family (only training.json is read to tell the family).
    std::fs::create_dir(dir.join("gpt")).unwrap();
    std::fs::write(
        dir.join("gpt/training.json"),
        r#"{"family": "gpt", "preset": "char-baby", "config": {}, "seed": 1,
            "dataset": {"name": "x", "path": "x", "sha256": ""}, "muse_version": "0"}"#,
    )
    .unwrap();
    fails(
        &muse(dir, &["translate", "gpt", "hello"]),
        2,
        "not a translation model",
    );
    fails(
        &muse(dir, &["translate", "gpt", "hello", "--beam", "0"]),
        2,
        "--beam must be at least 1",
    );
    fails(
        &muse(dir, &["sample", "gpt", "--beam", "0"]),
        2,
        "--beam must be at least 1",
    );
    fails(
        &muse(dir, &["translate", "gpt", "--file", "missing.txt"]),
        1,
        "cannot read --file missing.txt",
    );
    fails(&muse(dir, &["translate", "nowhere", "hello"]), 1, "nowhere");
    fails(
        &muse(dir, &["train", "seq2seq", "--preset", "huge", "--out", "r"]),
        2,
        "unknown seq2seq preset",
    );
}
