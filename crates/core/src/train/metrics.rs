//! `metrics.jsonl`: one JSON object per log line, appended as training goes.
//!
//! On resume the lines written after the checkpoint are dropped first (the checkpoint records
//! the log's length), so the file always tells the history of the weights on disk.

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
    /// Opens (creating) the log. A new run starts it empty; a resumed one keeps what the log
    /// held at its checkpoint: the first `bytes` bytes, or for checkpoints that did not record
    /// them, the records with `step <= keep_through`.
    pub fn open(path: &Path, resume: Option<(u64, Option<u64>)>) -> Result<Self> {
        if let Some((_, Some(bytes))) = resume {
            let mut text = std::fs::read(path).unwrap_or_default();
            text.truncate(bytes as usize);
            crate::io::write_atomic(path, &text)?;
            return Self::append_to(path);
        }
        let kept: Vec<Value> = match resume {
            Some((last, _)) => read_metrics(path)?
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
        Self::append_to(path)
    }

    fn append_to(path: &Path) -> Result<Self> {
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
