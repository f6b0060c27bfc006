//! File writes that survive being killed at any moment.
//!
//! Every checkpoint, config and metrics file goes through [`write_atomic`]: the bytes land in a
//! temporary file in the same folder, are fsynced, then renamed over the target, so a reader
//! sees either the old file or the new one, never a torn write.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (temp file + fsync + rename + fsync of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes).map_err(Error::io(path)))
}

/// [`write_atomic`] for a file written piece by piece: `fill` writes into the temporary file
/// (buffered, seekable), which then replaces `path` only if it succeeded.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::input(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp).map_err(Error::io(&tmp))?);
        fill(&mut w)?;
        let f = w
            .into_inner()
            .map_err(|e| Error::io(&tmp)(e.into_error()))?;
        f.sync_all().map_err(Error::io(&tmp))?;
        fs::rename(&tmp, path).map_err(Error::io(path))?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::input(format!("cannot serialise {}: {e}", path.display())))?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Reads and parses a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(Error::io(path))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::input(format!(
            "{} is not valid: {e}. Was it written by a different tool or edited by hand?",
            path.display()
        ))
    })
}
