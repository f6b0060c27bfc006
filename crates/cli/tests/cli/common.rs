//! Running the built `muse` binary, and finding the datasets the tests read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The folder of dataset `name` as `muse data path NAME --fetch` prints it: found the way the
/// CLI finds data (`$MUSE_DATA_DIR`, then the user cache), downloaded when missing.
pub fn dataset(name: &str) -> PathBuf {
    static FOUND: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = found.get(name) {
        return dir.clone();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_muse"))
        .args(["data", "path", name, "--fetch"])
        .output()
        .expect("the muse binary runs");
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "test data '{name}' is not available: {stderr}"
    );
    let dir = PathBuf::from(stdout.trim());
    found.insert(name.to_string(), dir.clone());
    dir
}

/// A dataset with files no public URL serves (llama2c's checkpoint): its folder, or `None` with
/// a note when `$MUSE_DATA_DIR` is not set and it is not in the cache (the test part that reads
/// it is skipped there; CI sets `MUSE_DATA_DIR`).
pub fn manual_dataset(name: &str) -> Option<PathBuf> {
    if std::env::var_os("MUSE_DATA_DIR").is_some_and(|d| !d.is_empty()) {
        return Some(dataset(name));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_muse"))
        .args(["data", "path", name])
        .output()
        .expect("the muse binary runs");
    if !out.status.success() {
        eprintln!("skipped: '{name}' has no public download and MUSE_DATA_DIR is not set");
        return None;
    }
    Some(PathBuf::from(text(&out).0.trim()))
}

/// Runs `muse ARGS` in `cwd` with one thread; data is found as a user's run finds it.
pub fn muse(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_muse"))
        .args(args)
        .current_dir(cwd)
        .env("MUSE_THREADS", "1")
        .env("NO_COLOR", "1")
        .output()
        .expect("the muse binary runs")
}

/// Stdout and stderr as text, for assertion messages.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts success; returns stdout.
pub fn ok(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

/// Asserts a clean failure: the exit code, `needle` in stderr, no panic.
pub fn fails(out: &Output, code: i32, needle: &str) {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains(needle), "expected '{needle}' in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
