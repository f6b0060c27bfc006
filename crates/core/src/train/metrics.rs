//! `metrics.jsonl`: one JSON object per log line, appended as training goes.
//!
//! On resume the lines past the checkpoint's step are dropped first, so the file always tells
//! the history of the weights on disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// An append-only metrics log.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens (creating) the log and keeps only the records with `step <= keep_through`.
    pub fn open(path: &Path, keep_through: Option<u64>) -> Result<Self> {
        let kept: Vec<Value> = match keep_through {
            Some(last) => read_metrics(path)?
                .into_iter()
                .filter(|r| {
                    r.get("step")
                        .and_then(Value::as_u64)
                        .is_some_and(|s| s <= last)
                })
                .collect(),
            None => Vec::new(),
        };
        let mut text = String::new();
        for r in &kept {
            text.push_str(&r.to_string());
            text.push('\n');
        }
        crate::io::write_atomic(path, text.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(Error::io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record.
    pub fn log(&mut self, record: &Value) -> Result<()> {
        writeln!(self.file, "{record}").map_err(Error::io(&self.path))
    }

    /// Flushes to disk (at checkpoints).
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(Error::io(&self.path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every record of a metrics file (missing file: none). Torn last lines are skipped.
pub fn read_metrics(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path)(e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The `(step, value)` points of `key` among the records that have it.
pub fn series(records: &[Value], key: &str) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(key)?.as_f64()?)))
        .collect()
}
