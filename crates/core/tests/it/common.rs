//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The folder of dataset `name`, found as the CLI finds it: `$MUSE_DATA_DIR/NAME/`, then the
/// user cache, then a download into the cache.
pub fn dataset(name: &str) -> PathBuf {
    muse_core::data::dataset_dir(name)
        .unwrap_or_else(|e| panic!("test data '{name}' is not available: {e}"))
}

/// A dataset with files no public URL serves (llama2c's checkpoint, eng-fra): its folder, or
/// `None` with a note when `$MUSE_DATA_DIR` is not set and it is not in the cache, so the
/// tests that read it run in CI and wherever a shared folder is, and are skipped elsewhere.
pub fn manual_dataset(name: &str) -> Option<PathBuf> {
    if shared_data_dir().is_some() {
        return Some(dataset(name));
    }
    let found = muse_core::data::locate(name).expect("a registered name");
    if found.dir().is_none() {
        eprintln!("skipped: '{name}' has no public download and MUSE_DATA_DIR is not set");
    }
    found.dir().map(PathBuf::from)
}

/// `$MUSE_DATA_DIR` when set: the shared folder whose contents the registry tests check.
/// `None` on a machine that only has the cache (those tests then have nothing to check).
pub fn shared_data_dir() -> Option<PathBuf> {
    std::env::var_os("MUSE_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// A committed fixture under `crates/core/tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The largest |x| of `t`.
pub fn largest_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Largest |a - b| over the largest |b|.
pub fn scaled_err(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    largest_abs(&(a - b).unwrap()) / largest_abs(b)
}

/// Every tensor of a run's `model.safetensors`, flattened, by name: for comparing two runs.
pub fn run_weights(dir: &std::path::Path) -> std::collections::HashMap<String, Vec<f32>> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}
