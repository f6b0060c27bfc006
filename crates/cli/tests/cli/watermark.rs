//! The text watermark through the binary: a tiny character-level model writes with a key,
//! `muse detect` finds the key in that text and not in unwatermarked text, and bad inputs
//! (empty text, a folder, text the tokenizer cannot have written, too short) are clear; and
//! `muse bench watermark` on the tiny GGUF Llama.

use std::path::Path;

use crate::common::{muse, text};

fn generate(dir: &Path, key: Option<&str>, out: &str) {
    let mut args = vec![
        "sample",
        "run",
        "--max-tokens",
        "300",
        "--seed",
        "5",
        "--temperature",
        "1",
    ];
    if let Some(k) = key {
        args.extend(["--watermark-key", k]);
    }
    let o = muse(dir, &args);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    std::fs::write(dir.join(out), stdout).unwrap();
}

fn detect(dir: &Path, file: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["detect", file, "--key", "k3y", "--tokenizer", "run"];
    args.extend(extra);
    let o = muse(dir, &args);
    let (stdout, stderr) = text(&o);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (o.status.code(), stdout, stderr)
}

#[test]
fn detect_finds_the_key_in_watermarked_text_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(crate::gpt::train(dir, &[]).status.success());
    generate(dir, Some("k3y"), "marked.txt");
    generate(dir, None, "plain.txt");

    let (code, out, _) = detect(dir, "marked.txt", &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("verdict     watermarked"), "{out}");
    let (_, out, _) = detect(dir, "plain.txt", &[]);
    assert!(out.contains("not watermarked"), "{out}");
    // Another key does not find it.
    let o = muse(
        dir,
        &[
            "detect",
            "marked.txt",
            "--key",
            "other",
            "--tokenizer",
            "run",
        ],
    );
    assert!(text(&o).0.contains("not watermarked"), "{}", text(&o).0);
    // JSON for scripts.
    let (_, out, _) = detect(dir, "marked.txt", &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "watermarked");
    assert!(v["z"].as_f64().unwrap() > 4.0, "{v}");

    // Text the character vocabulary cannot have written, too little text, none, a folder.
    std::fs::write(dir.join("greek.txt"), "Ωμέγα ".repeat(40)).unwrap();
    let (_, out, _) = detect(dir, "greek.txt", &[]);
    assert!(
        out.contains("cannot judge") && out.contains("tokenizer"),
        "{out}"
    );
    std::fs::write(dir.join("short.txt"), "To be").unwrap();
    let (_, out, _) = detect(dir, "short.txt", &[]);
    assert!(
        out.contains("cannot judge") && out.contains("at least"),
        "{out}"
    );
    std::fs::write(dir.join("empty.txt"), "  \n").unwrap();
    let (code, _, err) = detect(dir, "empty.txt", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("empty"), "{err}");
    let (code, _, err) = detect(dir, "run", &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("folder"), "{err}");
}

/// `muse bench watermark` on the tiny GGUF Llama: every prompt is answered with and without
/// the mark, and the report separates the two (the human texts come from the data folder).
#[test]
fn bench_watermark_separates_marked_from_plain_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures/gguf/tiny_llama_q8_0.gguf");
    let model = model.to_str().unwrap();
    std::fs::write(
        dir.join("prompts.txt"),
        "Hi\nTell a story\n\nName a colour\nWhy?\nCount\nSay yes\n",
    )
    .unwrap();
    let args = [
        "bench",
        "watermark",
        model,
        "--prompts-file",
        "prompts.txt",
        "--human",
        "3",
        "--tokens",
        "40",
        "--rows",
        "rows.jsonl",
    ];
    let o = muse(dir, &args);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "no key is a usage error: {err}");
    assert!(err.contains("--watermark-key"), "{err}");

    let o = muse(dir, &[&args[..], &["--watermark-key", "k"]].concat());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["prompts"], 6, "{v}");
    assert_eq!(v["watermarked"]["texts"], 6, "{v}");
    assert_eq!(v["plain"]["texts"], 6, "{v}");
    assert_eq!(v["human_shakespeare"]["texts"], 3, "{v}");
    assert_eq!(v["plain"]["detected"], 0.0, "{v}");
    assert_eq!(v["human_shakespeare"]["detected"], 0.0, "{v}");
    let marked_z = v["watermarked"]["median_z"].as_f64().unwrap();
    assert!(
        marked_z > v["plain"]["max_z"].as_f64().unwrap() + 1.0,
        "{v}"
    );
    // The rows: two answers and two edited copies per prompt, then the human texts.
    let rows = std::fs::read_to_string(dir.join("rows.jsonl")).unwrap();
    let kinds: Vec<String> = rows
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    assert_eq!(kinds.iter().filter(|k| k.contains("replaced")).count(), 12);
    assert_eq!(
        kinds.iter().filter(|k| k.contains("shakespeare")).count(),
        3
    );

    let o = muse(
        dir,
        &[
            "bench",
            "watermark",
            model,
            "--prompts-file",
            ".",
            "--watermark-key",
            "k",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("folder"), "{}", text(&o).1);
}
