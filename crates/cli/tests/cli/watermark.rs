//! The text watermark through the binary: a tiny character-level model writes with a key,
//! `muse detect` finds the key in that text and not in unwatermarked text, and bad inputs
//! (empty text, a folder, text the tokenizer cannot have written, too short) are clear.

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
