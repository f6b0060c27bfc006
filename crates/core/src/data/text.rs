//! Text corpora: resolving `--data` and reading a file as checked UTF-8.

use std::path::{Path, PathBuf};

use super::locate::{SearchDir, dataset_dir_in, search_dirs};
use super::registry::{DatasetKind, registry, spec};
use crate::error::{Error, Result};

/// A resolved text corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSource {
    /// The UTF-8 text file to read.
    pub path: PathBuf,
    /// The dataset name, or the file stem for a plain file (recorded in `training.json`).
    pub name: String,
}

/// Resolves a `--data` value: an existing file path, or the name of a registered text dataset
/// (its corpus file, located on disk or downloaded).
pub fn resolve_text_corpus(data: &str) -> Result<TextSource> {
    resolve_text_corpus_in(data, &search_dirs())
}

/// [`resolve_text_corpus`] with explicit search roots for registry names.
pub fn resolve_text_corpus_in(data: &str, dirs: &[SearchDir]) -> Result<TextSource> {
    if data.trim().is_empty() {
        return Err(Error::usage(
            "--data is empty: pass a dataset name (see `muse data list`) or a path to a UTF-8 \
             text file",
        ));
    }
    // A path wins over a registry name, so a local file called `tinystories` is honoured.
    let path = Path::new(data);
    if path.is_file() {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| data.to_string());
        return Ok(TextSource {
            path: path.to_path_buf(),
            name,
        });
    }
    if let Some(spec) = spec(data) {
        if spec.kind != DatasetKind::Text {
            return Err(Error::usage(format!(
                "dataset '{data}' holds {}, not plain text; text datasets: {}",
                spec.kind,
                text_names()
            )));
        }
        let dir = dataset_dir_in(spec, dirs)?;
        return Ok(TextSource {
            path: dir.join(spec.main_file().path),
            name: spec.name.to_string(),
        });
    }
    if path.is_dir() {
        return Err(Error::usage(format!(
            "{data} is a folder; pass a UTF-8 text file or a text dataset ({})",
            text_names()
        )));
    }
    Err(Error::usage(format!(
        "no dataset or file named {data}; run `muse data list`, or pass a path to a UTF-8 text file"
    )))
}

fn text_names() -> String {
    let names: Vec<&str> = registry()
        .iter()
        .filter(|s| s.kind == DatasetKind::Text)
        .map(|s| s.name)
        .collect();
    names.join(", ")
}

/// Reads `path` as UTF-8 text (a leading byte-order mark is dropped).
///
/// Invalid UTF-8 is an [`Error::Input`] naming the file, the byte offset and line of the first
/// bad byte, and how to convert the file; an empty or whitespace-only file is an error too.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    let mut text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let line = bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
            let shown = path.display();
            return Err(Error::input(format!(
                "{shown} is not UTF-8 text: invalid byte 0x{:02x} at byte offset {offset} \
                 (line {line}). Convert it first, e.g. `iconv -f latin1 -t utf-8 {shown} > \
                 converted.txt`, and pass the converted file",
                bytes[offset]
            )));
        }
    };
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    if text.trim().is_empty() {
        let what = if text.is_empty() {
            "is empty"
        } else {
            "holds only whitespace"
        };
        return Err(Error::input(format!(
            "{} {what}: a text corpus needs some text",
            path.display()
        )));
    }
    Ok(text)
}
