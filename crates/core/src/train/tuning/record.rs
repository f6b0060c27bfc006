//! What fine-tuning and alignment runs record about themselves (`training.json`, with the base
//! model's path beside the config) and read back to resume, shared by `finetune` and `dpo`.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::policy::Base;
use crate::error::{Error, Result};
use crate::run_dir::{DatasetRecord, RunDir};

/// Writes `training.json`: family, preset, the resolved config with `"base"` (the starting
/// model's path) added, seed and data.
pub fn write_record<C: Serialize>(
    run: &RunDir,
    config: &C,
    preset: &str,
    seed: u64,
    base: &Base,
    dataset: &DatasetRecord,
) -> Result<()> {
    let mut config = serde_json::to_value(config).map_err(|e| Error::usage(e.to_string()))?;
    if let Some(o) = config.as_object_mut() {
        o.insert(
            "base".into(),
            serde_json::json!(base.path.display().to_string()),
        );
    }
    run.write_training(base.family(), preset, &config, seed, dataset)
}

/// What [`write_record`] stored, for `--resume`.
pub struct StoredRun<C> {
    pub config: C,
    /// The starting model's path.
    pub base: String,
    /// The data's registry name or path.
    pub data: String,
}

/// Reads back the config, base and data of a run that `command` (`muse finetune`, `muse
/// align`) wrote; any other run is a usage error naming that command.
pub fn read_record<C: DeserializeOwned>(run: &Path, command: &str) -> Result<StoredRun<C>> {
    let record = RunDir::open(run)?.read_training()?;
    let mut config = record.config;
    let base = config
        .as_object_mut()
        .and_then(|o| o.remove("base"))
        .and_then(|b| b.as_str().map(str::to_string))
        .unwrap_or_default();
    let config = serde_json::from_value(config).map_err(|_| {
        Error::usage(format!(
            "{} was not written by `{command}`: resume it with the command that made it",
            run.display()
        ))
    })?;
    Ok(StoredRun {
        config,
        base,
        data: record.dataset.name,
    })
}
