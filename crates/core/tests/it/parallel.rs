//! Parallel text: reading TSV and JSONL pair files (each bad line a clear error with its
//! number), `--reverse`, and the fixed split (deterministic, disjoint sentences) on small
//! corpora and on the real eng-fra file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use muse_core::data::parallel::{
    Pair, PairFormat, SPLIT_SEED, SplitSizes, load_parallel, read_pairs, sentence_key, split_pairs,
    split_pairs_with,
};

use crate::common::manual_dataset;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn err(dir: &Path, name: &str, text: &str) -> String {
    let path = write(dir, name, text);
    read_pairs(path.to_str().unwrap(), false)
        .unwrap_err()
        .to_string()
}

fn pair(s: &str, t: &str) -> Pair {
    Pair {
        source: s.into(),
        target: t.into(),
    }
}

/// `n` pairs with a few shared sentences, so groups of several pairs exist.
fn toy_corpus(n: usize) -> Vec<Pair> {
    (0..n)
        .map(|i| pair(&format!("source {}", i / 3), &format!("cible {i}")))
        .collect()
}

#[test]
fn tsv_and_jsonl_files_read_the_same_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = write(
        dir.path(),
        "p.tsv",
        "\u{feff}Hello.\tBonjour.\r\n\n  Go!\tVa !\tCC-BY 2.0 (France) attribution\n",
    );
    let jsonl = write(
        dir.path(),
        "p.jsonl",
        "{\"source\": \"Hello.\", \"target\": \"Bonjour.\"}\n\n{\"source\": \"Go!\", \
         \"target\": \"Va !\", \"id\": 7}\n",
    );
    let a = read_pairs(tsv.to_str().unwrap(), false).unwrap();
    let b = read_pairs(jsonl.to_str().unwrap(), false).unwrap();
    assert_eq!((a.format, b.format), (PairFormat::Tsv, PairFormat::Jsonl));
    let want = vec![pair("Hello.", "Bonjour."), pair("Go!", "Va !")];
    assert_eq!(a.pairs, want);
    assert_eq!(b.pairs, want);
    assert_eq!(a.record.sha256.len(), 64);
    let r = read_pairs(tsv.to_str().unwrap(), true).unwrap();
    assert!(r.reversed);
    assert_eq!(r.pairs[1], pair("Va !", "Go!"));
}

#[test]
fn each_bad_line_is_an_error_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = err(d, "a.tsv", "Hi.\tSalut.\nno tab here\n");
    assert!(e.contains("a.tsv:2: no tab"), "{e}");
    let e = err(d, "b.tsv", "Hi.\tSalut.\nHello.\tBonjour.\n\t  Vide\n");
    assert!(e.contains("b.tsv:3: the source side is empty"), "{e}");
    let e = err(d, "c.tsv", "Hi.\t \n");
    assert!(e.contains("c.tsv:1: the target side is empty"), "{e}");
    let e = err(
        d,
        "d.jsonl",
        "{\"source\": \"a\", \"target\": \"b\"}\n{\"source\": \"a\",\n",
    );
    assert!(e.contains("d.jsonl:2: not valid JSON"), "{e}");
    let e = err(d, "e.jsonl", "{\"source\": \"a\", \"cible\": \"b\"}\n");
    assert!(e.contains("e.jsonl:1: no 'target' field"), "{e}");
    let e = err(d, "f.jsonl", "{\"source\": \"a\", \"target\": 3}\n");
    assert!(e.contains("f.jsonl:1: 'target' must be a string"), "{e}");
    let e = err(d, "g.jsonl", "[\"a\", \"b\"]\n");
    assert!(e.contains("g.jsonl:1: expected a JSON object"), "{e}");
    let e = err(d, "h.jsonl", "{\"source\": \"\", \"target\": \"b\"}\n");
    assert!(e.contains("h.jsonl:1: the source side is empty"), "{e}");
    let e = err(d, "empty.tsv", "\n\n");
    assert!(e.contains("holds no sentence pairs"), "{e}");
    let e = read_pairs(d.join("absent.tsv").to_str().unwrap(), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no file or dataset named"), "{e}");
    let e = read_pairs(d.to_str().unwrap(), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a folder"), "{e}");
    let e = read_pairs("tinyshakespeare", false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not sentence pairs"), "{e}");
}

/// Sources and targets of one split, as compared by the splitter.
fn sentences(pairs: &[Pair]) -> (HashSet<String>, HashSet<String>) {
    (
        pairs.iter().map(|p| sentence_key(&p.source)).collect(),
        pairs.iter().map(|p| sentence_key(&p.target)).collect(),
    )
}

fn assert_disjoint(a: &[Pair], b: &[Pair], what: &str) {
    let ((sa, ta), (sb, tb)) = (sentences(a), sentences(b));
    assert_eq!(sa.intersection(&sb).count(), 0, "{what}: shared sources");
    assert_eq!(ta.intersection(&tb).count(), 0, "{what}: shared targets");
}

#[test]
fn the_split_is_deterministic_disjoint_and_drops_duplicate_pairs() {
    let mut pairs = toy_corpus(300);
    // A repeated pair, and a target shared by two sources (links their groups).
    pairs.push(pairs[10].clone());
    pairs.push(pair("source 1", "cible 299"));
    let sizes = SplitSizes {
        valid: 20,
        test: 30,
    };
    let a = split_pairs_with(&pairs, 5, sizes).unwrap();
    let b = split_pairs_with(&pairs, 5, sizes).unwrap();
    assert_eq!((&a.train, &a.valid, &a.test), (&b.train, &b.valid, &b.test));
    assert_eq!(a.duplicates, 1);
    assert_eq!(a.train.len() + a.valid.len() + a.test.len(), 301);
    // Whole groups (of 3 pairs, one of 7): at least the target size, at most a group more.
    assert!((30..37).contains(&a.test.len()), "{}", a.test.len());
    assert!((20..27).contains(&a.valid.len()), "{}", a.valid.len());
    assert_disjoint(&a.train, &a.test, "train/test");
    assert_disjoint(&a.train, &a.valid, "train/valid");
    assert_disjoint(&a.valid, &a.test, "valid/test");
    let c = split_pairs_with(&pairs, 6, sizes).unwrap();
    assert_ne!(a.test, c.test, "another seed deals other groups");
    // Too small to split.
    let e = split_pairs(&toy_corpus(2), 1).unwrap_err().to_string();
    assert!(e.contains("too few to split"), "{e}");
}

#[test]
fn reverse_swaps_the_sides_of_the_same_split() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = toy_corpus(120)
        .iter()
        .map(|p| format!("{}\t{}\n", p.source, p.target))
        .collect();
    let path = write(dir.path(), "toy.tsv", &text);
    let fwd = load_parallel(path.to_str().unwrap(), false, 3).unwrap();
    let rev = load_parallel(path.to_str().unwrap(), true, 3).unwrap();
    let swap = |v: &[Pair]| -> Vec<Pair> { v.iter().map(|p| pair(&p.target, &p.source)).collect() };
    assert_eq!(swap(&fwd.splits.test), rev.splits.test);
    assert_eq!(swap(&fwd.splits.valid), rev.splits.valid);
    assert_eq!(swap(&fwd.splits.train), rev.splits.train);
}

#[test]
fn eng_fra_split_sizes_and_disjoint_sources() {
    let Some(_) = manual_dataset("eng-fra") else {
        return;
    };
    let data = load_parallel("eng-fra", false, SPLIT_SEED).unwrap();
    let s = &data.splits;
    assert_eq!(data.file.pairs.len(), 142_787);
    assert_eq!(data.file.pairs[0], pair("Go.", "Va !"));
    eprintln!(
        "eng-fra split (seed {}): train {} valid {} test {}; {} duplicate pairs dropped, {} groups",
        s.seed,
        s.train.len(),
        s.valid.len(),
        s.test.len(),
        s.duplicates,
        s.groups
    );
    // The documented split (docs/translation.md): a change of generator or grouping shows here.
    assert_eq!(s.duplicates, 5);
    assert_eq!(
        (s.train.len(), s.valid.len(), s.test.len()),
        (136_282, 1_500, 5_000)
    );
    assert_eq!(s.test[0].source, "Be cool.");
    // `muse data list` shows the split; docs/translation.md documents it.
    let shown = format!(
        "{} train / {} valid / {} test",
        s.train.len(),
        s.valid.len(),
        s.test.len()
    );
    let spec = muse_core::data::spec("eng-fra").unwrap();
    assert!(spec.description.contains(&shown), "{}", spec.description);
    assert_disjoint(&s.train, &s.test, "train/test");
    assert_disjoint(&s.train, &s.valid, "train/valid");
}
