//! `muse data split`: the documented eng-fra split (sizes, files written, `--reverse`), and a
//! bad pair file as a clear error with its line number.

use crate::common::{fails, manual_dataset, muse, ok};

#[test]
fn eng_fra_split_sizes_files_and_reverse() {
    if manual_dataset("eng-fra").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(&muse(d, &["data", "split", "eng-fra", "--out", "en-fr"]));
    assert!(
        out.contains("136282 train / 1500 valid / 5000 test"),
        "{out}"
    );
    let json = ok(&muse(
        d,
        &[
            "data",
            "split",
            "eng-fra",
            "--reverse",
            "--out",
            "fr-en",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (v["pairs"].as_u64(), v["duplicates"].as_u64()),
        (Some(142_787), Some(5))
    );
    assert_eq!(v["reversed"], true);
    for name in ["train.tsv", "valid.tsv", "test.tsv"] {
        let fwd = std::fs::read_to_string(d.join("en-fr").join(name)).unwrap();
        let rev = std::fs::read_to_string(d.join("fr-en").join(name)).unwrap();
        assert_eq!(
            fwd.lines().count(),
            v[&name[..name.len() - 4]].as_u64().unwrap() as usize
        );
        for (f, r) in fwd.lines().zip(rev.lines()).take(50) {
            let (a, b) = f.split_once('\t').unwrap();
            assert_eq!(r, format!("{b}\t{a}"), "{name}");
        }
    }
}

#[test]
fn a_bad_pair_file_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.tsv"), "Hi.\tSalut.\nHello. Bonjour.\n").unwrap();
    fails(&muse(d, &["data", "split", "p.tsv"]), 1, "p.tsv:2: no tab");
    fails(
        &muse(d, &["data", "split", "missing.tsv"]),
        2,
        "no file or dataset named",
    );
}
