//! BLEU and chrF against the `sacrebleu` package: the fixture made by
//! scripts/fixtures/translation_metrics.py holds, per case, sacrebleu's 13a tokens of every
//! line, BLEU with its statistics and chrF with its summed counts.
//!
//! Counts and lengths must be equal exactly; scores to 1e-9, since both sides do the same
//! floating-point operations in the same order (glibc's `exp` and `log` on both sides), so any
//! difference larger than rounding noise would be a different definition, not a precision issue.

use muse_core::eval::translation::{
    BleuStats, ChrfStats, SACREBLEU_VERSION, bleu_signature, chrf_signature, score_corpus,
    tok13a::py_rstrip, tokenize_13a,
};
use serde_json::Value;

use crate::common::fixture;

fn fixture_json() -> Value {
    let text = std::fs::read_to_string(fixture("translation_metrics.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-9,
        "{what}: muse {got} vs sacrebleu {want}"
    );
}

fn cases() -> Vec<Value> {
    let v = fixture_json();
    let cases = v["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 9, "the fixture lost cases");
    cases
}

#[test]
fn tokenizer_13a_matches_sacrebleu_on_every_fixture_line() {
    let mut lines = 0;
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        for side in ["hyp", "ref"] {
            let raw = strings(&case[format!("{side}s")]);
            let want = strings(&case[format!("{side}_tokens")]);
            for (line, want) in raw.iter().zip(&want) {
                assert_eq!(&tokenize_13a(py_rstrip(line)), want, "{name}: {line:?}");
                lines += 1;
            }
        }
    }
    assert!(lines > 400, "only {lines} lines checked");
}

#[test]
fn bleu_matches_sacrebleu_with_its_statistics() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let (hyps, refs) = (strings(&case["hyps"]), strings(&case["refs"]));
        let want = &case["bleu"];
        let mut stats = BleuStats::default();
        for (h, r) in hyps.iter().zip(&refs) {
            stats.add(h, r);
        }
        let got = stats.score();
        assert_eq!(
            got.counts.to_vec(),
            u64s(&want["counts"]),
            "{name}: matches"
        );
        assert_eq!(got.totals.to_vec(), u64s(&want["totals"]), "{name}: totals");
        assert_eq!(got.sys_len, want["sys_len"].as_u64().unwrap(), "{name}");
        assert_eq!(got.ref_len, want["ref_len"].as_u64().unwrap(), "{name}");
        close(got.bp, want["bp"].as_f64().unwrap(), &format!("{name}: BP"));
        for (p, w) in got
            .precisions
            .iter()
            .zip(want["precisions"].as_array().unwrap())
        {
            close(*p, w.as_f64().unwrap(), &format!("{name}: precision"));
        }
        close(got.score, want["score"].as_f64().unwrap(), name);
        let printed = format!("BLEU = {:.2} {}", got.score, got.details());
        assert_eq!(printed, want["printed"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn chrf_matches_sacrebleu_with_its_counts() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let (hyps, refs) = (strings(&case["hyps"]), strings(&case["refs"]));
        let want = &case["chrf"];
        let mut stats = ChrfStats::default();
        for (h, r) in hyps.iter().zip(&refs) {
            stats.add(h, r);
        }
        let got = stats.score();
        let flat: Vec<u64> = got.stats.iter().flatten().copied().collect();
        assert_eq!(
            flat,
            u64s(&want["stats"]),
            "{name}: (hyp, ref, match) per order"
        );
        close(got.score, want["score"].as_f64().unwrap(), name);
        let printed = format!("chrF2 = {:.2}", got.score);
        assert_eq!(printed, want["printed"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn named_edge_cases_score_as_sacrebleu_does() {
    let by_name = |n: &str| cases().into_iter().find(|c| c["name"] == n).unwrap();
    let score = |c: &Value| score_corpus(&strings(&c["hyps"]), &strings(&c["refs"])).unwrap();
    // Empty hypotheses: nothing matches, BLEU and chrF are 0 (not NaN).
    let empty = score(&by_name("empty_hypotheses"));
    assert_eq!((empty.bleu.score, empty.chrf.score), (0.0, 0.0));
    assert_eq!(empty.bleu.bp, 0.0);
    // A corpus of one sentence is scored like any corpus.
    let one = by_name("one_sentence");
    assert_eq!(score(&one).lines, 1);
    close(
        score(&one).bleu.score,
        one["bleu"]["score"].as_f64().unwrap(),
        "one",
    );
    // No 4-grams at all: BLEU is 0 although unigrams match, chrF is not.
    let short = score(&by_name("too_short_for_4grams"));
    assert_eq!(short.bleu.score, 0.0);
    assert!(short.bleu.counts[0] > 0 && short.chrf.score > 90.0);
    // A copy scores 100 on both.
    let copy = score(&by_name("exact_copy"));
    close(copy.bleu.score, 100.0, "copy BLEU");
    close(copy.chrf.score, 100.0, "copy chrF");
}

#[test]
fn signatures_are_sacrebleus() {
    let v = fixture_json();
    assert_eq!(v["sacrebleu_version"], SACREBLEU_VERSION);
    assert_eq!(v["bleu_signature"], bleu_signature().as_str());
    assert_eq!(v["chrf_signature"], chrf_signature().as_str());
}

#[test]
fn mismatched_or_empty_corpora_are_errors() {
    let e = score_corpus(&["a", "b"], &["a"]).unwrap_err().to_string();
    assert!(e.contains("2 hypotheses but 1 references"), "{e}");
    let none: [&str; 0] = [];
    let e = score_corpus(&none, &none).unwrap_err().to_string();
    assert!(e.contains("no lines"), "{e}");
}
