//! `muse data`: listing, locating, verifying and (not) downloading datasets.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{dataset, muse, text};

/// `$MUSE_DATA_DIR` when set (CI), else `None`: the tests' datasets then sit in the user cache.
fn shared_data_dir() -> Option<std::ffi::OsString> {
    std::env::var_os("MUSE_DATA_DIR").filter(|d| !d.is_empty())
}

/// How `muse data list` labels where the tests' datasets are.
fn origin_label() -> &'static str {
    if shared_data_dir().is_some() {
        "MUSE_DATA_DIR"
    } else {
        "cache"
    }
}

/// Runs `muse ARGS` with explicit data and cache dirs (never the user's cache).
fn muse_with(cwd: &Path, data: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_muse"))
        .args(args)
        .current_dir(cwd)
        .env("MUSE_DATA_DIR", data)
        .env("MUSE_CACHE_DIR", cache)
        .env("MUSE_THREADS", "1")
        .env("NO_COLOR", "1")
        .output()
        .expect("the muse binary runs")
}

#[test]
fn list_shows_the_shared_datasets_as_present() {
    let names = [
        "tinyshakespeare",
        "mnist",
        "fashion-mnist",
        "all-minilm-l6-v2",
    ];
    for name in names {
        dataset(name);
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = muse(tmp.path(), &["data", "list"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for name in names {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"));
        assert!(row.contains(origin_label()), "{row}");
    }
    assert!(
        stdout.contains("CC BY-SA 3.0") && stdout.contains("SIZE MB"),
        "{stdout}"
    );
    let rows = stdout.lines().skip(1).take_while(|l| !l.is_empty());
    assert!(rows.clone().count() >= 10, "{stdout}");
    if shared_data_dir().is_some() {
        assert!(rows.clone().all(|l| !l.contains("missing")), "{stdout}");
    }
}

#[test]
fn list_json_reports_presence_and_files() {
    dataset("mnist");
    let tmp = tempfile::tempdir().unwrap();
    let out = muse(tmp.path(), &["data", "list", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let items: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    let items = items.as_array().expect("an array");
    let mnist = items
        .iter()
        .find(|d| d["name"] == "mnist")
        .expect("mnist listed");
    assert_eq!(mnist["present"], true);
    let origin = if shared_data_dir().is_some() {
        "data_dir"
    } else {
        "cache"
    };
    assert_eq!(mnist["origin"], origin);
    assert_eq!(mnist["kind"], "images");
    assert_eq!(mnist["files"].as_array().unwrap().len(), 4);
    assert_eq!(mnist["size"], 9_912_422 + 28_881 + 1_648_877 + 4_542);
    let eng_fra = items
        .iter()
        .find(|d| d["name"] == "eng-fra")
        .expect("eng-fra listed");
    assert_eq!(eng_fra["downloadable"], false);
}

#[test]
fn list_marks_missing_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = muse_with(tmp.path(), tmp.path(), tmp.path(), &["data", "list"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("mnist").contains("missing"), "{stdout}");
    assert!(row("eng-fra").contains("missing (manual)"), "{stdout}");
}

#[test]
fn fetch_unknown_name_is_a_usage_error_listing_known_names() {
    let tmp = tempfile::tempdir().unwrap();
    let out = muse(tmp.path(), &["data", "fetch", "nosuch"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no dataset named 'nosuch'"), "{stderr}");
    assert!(
        stderr.contains("tinyshakespeare") && stderr.contains("fashion-mnist"),
        "{stderr}"
    );
}

#[test]
fn fetch_of_a_present_dataset_reports_it_and_downloads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = muse_with(
        tmp.path(),
        dataset("mnist").parent().unwrap(),
        &cache,
        &["data", "fetch", "mnist", "tinyshakespeare"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("mnist: already present in"), "{stdout}");
    assert!(
        stdout.contains("tinyshakespeare: already present in"),
        "{stdout}"
    );
    assert!(!stderr.contains("downloading"), "{stderr}");
    assert!(!cache.exists(), "nothing written to the cache");
}

#[test]
fn fetch_of_a_manual_dataset_explains_where_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = muse_with(
        tmp.path(),
        tmp.path(),
        &cache,
        &["data", "fetch", "eng-fra"],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot be downloaded automatically"),
        "{stderr}"
    );
    assert!(stderr.contains("fra-eng.zip"), "{stderr}");
    assert!(
        stderr.contains(&cache.join("datasets/eng-fra").display().to_string()),
        "{stderr}"
    );
}

#[test]
fn path_prints_the_folder_or_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let out = muse(tmp.path(), &["data", "path", "tinyshakespeare"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.trim(),
        dataset("tinyshakespeare").display().to_string()
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = muse_with(
        tmp.path(),
        &empty,
        &tmp.path().join("cache"),
        &["data", "path", "mnist"],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("no dataset 'mnist' in {}", empty.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("run `muse data fetch mnist` or set MUSE_DATA_DIR"),
        "{stderr}"
    );
}

#[test]
fn verify_recomputes_sha256_and_flags_bad_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let out = muse(
        tmp.path(),
        &["data", "verify", "tinyshakespeare", "gpt2-bpe"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("input.txt") && stdout.contains("vocab.bpe"),
        "{stdout}"
    );
    assert_eq!(stdout.matches(" ok").count(), 3, "{stdout}");

    // Same size, other bytes: only the sha256 can tell.
    let bad = tmp.path().join("data/tinystories");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("tinystories_sample.txt"), vec![b'x'; 3794]).unwrap();
    let out = muse_with(
        tmp.path(),
        &tmp.path().join("data"),
        &tmp.path().join("cache"),
        &["data", "verify", "tinystories"],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("WRONG SHA256"), "{stdout}");
    assert!(stderr.contains("did not verify"), "{stderr}");
}
