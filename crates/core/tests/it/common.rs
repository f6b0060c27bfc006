//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The shared data folder: `$MUSE_DATA_DIR`, else `../shared/data` next to the checkout.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MUSE_DATA_DIR") {
        return PathBuf::from(dir);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    assert!(
        root.is_dir(),
        "test data not found: set MUSE_DATA_DIR to the shared data folder ({} is missing)",
        root.display()
    );
    root
}

/// A committed fixture under `crates/core/tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
