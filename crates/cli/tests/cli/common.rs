//! Running the built `muse` binary against the shared data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shared data folder: `$MUSE_DATA_DIR`, else `../shared/data` next to the checkout.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("MUSE_DATA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

/// Runs `muse ARGS` in `cwd` with the shared data and one thread.
pub fn muse(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_muse"))
        .args(args)
        .current_dir(cwd)
        .env("MUSE_DATA_DIR", data_dir())
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
