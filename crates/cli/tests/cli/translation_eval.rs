//! `muse eval --hyp FILE --ref FILE`: the realistic fixture pair (sacrebleu's figures in
//! crates/core/tests/fixtures/translation_metrics.json) end to end, in text and JSON, and the
//! clear errors: line counts that differ, a missing file, a folder, a run given as well.

use std::path::PathBuf;

use crate::common::{fails, muse, ok};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures")
}

/// sacrebleu's BLEU and chrF of the realistic case (the files in fixtures/translation/).
fn sacrebleu_figures() -> (f64, f64, String) {
    let text = std::fs::read_to_string(fixtures().join("translation_metrics.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let case = &v["cases"][0];
    assert_eq!(case["name"], "realistic_eng_fra_200");
    (
        case["bleu"]["score"].as_f64().unwrap(),
        case["chrf"]["score"].as_f64().unwrap(),
        v["bleu_signature"].as_str().unwrap().to_string(),
    )
}

fn pair_files() -> (String, String) {
    let dir = fixtures().join("translation");
    let path = |f: &str| dir.join(f).display().to_string();
    (path("hyp.txt"), path("ref.txt"))
}

#[test]
fn scores_two_files_as_sacrebleu_does() {
    let (bleu, chrf, signature) = sacrebleu_figures();
    let (hyp, reference) = pair_files();
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&muse(
        dir.path(),
        &["eval", "--hyp", &hyp, "--ref", &reference],
    ));
    assert!(out.contains("200 lines of"), "{out}");
    assert!(
        out.contains(&format!("BLEU|{signature} = {bleu:.2} ")),
        "{out}"
    );
    assert!(out.contains(&format!("= {chrf:.2}")), "{out}");
    assert!(out.contains("chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"));

    let json = ok(&muse(
        dir.path(),
        &["eval", "--hyp", &hyp, "--ref", &reference, "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["lines"], 200);
    assert!(
        (v["bleu"]["score"].as_f64().unwrap() - bleu).abs() < 1e-9,
        "{v}"
    );
    assert!(
        (v["chrf"]["score"].as_f64().unwrap() - chrf).abs() < 1e-9,
        "{v}"
    );
    assert_eq!(v["bleu_signature"], signature.as_str());
}

#[test]
fn bad_file_pairs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("three.txt"), "a b c\nd e f\ng h\n").unwrap();
    std::fs::write(d.join("two.txt"), "a b c\nd e f\n").unwrap();
    std::fs::write(d.join("empty.txt"), "").unwrap();
    fails(
        &muse(d, &["eval", "--hyp", "three.txt", "--ref", "two.txt"]),
        1,
        "three.txt has 3 lines but two.txt has 2",
    );
    fails(
        &muse(d, &["eval", "--hyp", "absent.txt", "--ref", "two.txt"]),
        1,
        "cannot read --hyp absent.txt",
    );
    fails(
        &muse(d, &["eval", "--hyp", "two.txt", "--ref", "."]),
        2,
        "--ref . is a folder",
    );
    fails(
        &muse(d, &["eval", "--hyp", "empty.txt", "--ref", "two.txt"]),
        1,
        "empty.txt is empty",
    );
    // --hyp needs --ref, and a run is not scored at the same time.
    fails(&muse(d, &["eval", "--hyp", "two.txt"]), 2, "--ref");
    fails(
        &muse(
            d,
            &["eval", "runs/x", "--hyp", "two.txt", "--ref", "two.txt"],
        ),
        2,
        "cannot be used with",
    );
}
