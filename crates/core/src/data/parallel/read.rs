//! Reading sentence pairs: the registered `eng-fra` Tatoeba file, or a user's corpus as TSV
//! (`source TAB target` per line, plain or `.gz`) or JSON Lines (`{"source": ..., "target":
//! ...}` per line, `.jsonl` or `.jsonl.gz`). Every malformed line is an error naming the file
//! and line.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::data::jsonl::{open_lines, read_jsonl, str_field};
use crate::data::registry::{DatasetKind, spec};
use crate::data::{dataset_dir, sha256_file};
use crate::error::{Error, Result};
use crate::run_dir::DatasetRecord;

/// One aligned sentence pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pair {
    pub source: String,
    pub target: String,
}

/// How a pair file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairFormat {
    /// `source TAB target`; columns after the second (Tatoeba's attribution) are ignored.
    Tsv,
    /// One `{"source": ..., "target": ...}` object per line.
    Jsonl,
}

impl PairFormat {
    /// JSONL for `.jsonl` and `.jsonl.gz` names, TSV for anything else.
    pub fn of_path(path: &Path) -> PairFormat {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") {
            PairFormat::Jsonl
        } else {
            PairFormat::Tsv
        }
    }
}

/// Pairs read from one file, in file order.
#[derive(Clone, Debug)]
pub struct PairFile {
    pub pairs: Vec<Pair>,
    pub format: PairFormat,
    /// Name (the dataset name or the path given), resolved path and sha256 of the file.
    pub record: DatasetRecord,
    /// True when `--reverse` swapped the sides (the source is the file's second column or
    /// `target` field).
    pub reversed: bool,
}

/// The file `data` names: a path to a pair file, or a registered pairs dataset (`eng-fra`).
pub fn resolve_pair_file(data: &str) -> Result<PathBuf> {
    if data.trim().is_empty() {
        return Err(Error::usage(
            "--data is empty: pass eng-fra or a TSV / JSONL file of sentence pairs",
        ));
    }
    let path = Path::new(data);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.is_dir() {
        return Err(Error::usage(format!(
            "{data} is a folder: pass one TSV (source TAB target) or JSONL ({{\"source\": ..., \
             \"target\": ...}}) file"
        )));
    }
    let Some(s) = spec(data) else {
        return Err(Error::usage(format!(
            "no file or dataset named {data}: pass eng-fra or a TSV / JSONL file of sentence \
             pairs (see `muse data list` for registered datasets)"
        )));
    };
    if s.kind != DatasetKind::Pairs {
        return Err(Error::usage(format!(
            "dataset '{data}' holds {}, not sentence pairs (try eng-fra)",
            s.kind
        )));
    }
    Ok(dataset_dir(data)?.join(s.main_file().path))
}

/// Reads the pairs of `data` (see [`resolve_pair_file`]); `reverse` swaps source and target.
pub fn read_pairs(data: &str, reverse: bool) -> Result<PairFile> {
    let path = resolve_pair_file(data)?;
    let format = PairFormat::of_path(&path);
    let mut pairs = match format {
        PairFormat::Tsv => read_tsv(&path)?,
        PairFormat::Jsonl => read_pair_jsonl(&path)?,
    };
    if pairs.is_empty() {
        return Err(Error::input(format!(
            "{} holds no sentence pairs: it needs one `source TAB target` line (or JSONL \
             object) per pair",
            path.display()
        )));
    }
    if reverse {
        for p in &mut pairs {
            std::mem::swap(&mut p.source, &mut p.target);
        }
    }
    let record = DatasetRecord {
        name: data.to_string(),
        path: std::fs::canonicalize(&path)
            .unwrap_or(path.clone())
            .display()
            .to_string(),
        sha256: sha256_file(&path)?,
    };
    Ok(PairFile {
        pairs,
        format,
        record,
        reversed: reverse,
    })
}

/// A pair from two sides, both trimmed; an empty side is an error naming `at` (`file:line`).
fn pair(at: &str, source: &str, target: &str) -> Result<Pair> {
    let (source, target) = (source.trim(), target.trim());
    for (side, text) in [("source", source), ("target", target)] {
        if text.is_empty() {
            return Err(Error::input(format!(
                "{at}: the {side} side is empty; every pair needs text on both sides (fix or \
                 remove that line)"
            )));
        }
    }
    Ok(Pair {
        source: source.to_string(),
        target: target.to_string(),
    })
}

/// Reads `source TAB target` lines (gzip when the name ends in `.gz`); blank lines are
/// skipped, extra columns ignored.
pub fn read_tsv(path: &Path) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for (i, line) in open_lines(path, "TSV or JSONL")?.lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        let line = line.map_err(|e| {
            Error::input(format!(
                "{at}: cannot read the line ({e}); the file must be UTF-8 text (gzip when it \
                 ends in .gz)"
            ))
        })?;
        let line = line.trim_end_matches(['\r', '\n']);
        let line = if i == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        if line.trim().is_empty() {
            continue;
        }
        let mut cols = line.split('\t');
        let (Some(source), Some(target)) = (cols.next(), cols.next()) else {
            return Err(Error::input(format!(
                "{at}: no tab in this line; a TSV pair file needs `source TAB target` on every \
                 line (for JSON objects, name the file .jsonl)"
            )));
        };
        pairs.push(pair(&at, source, target)?);
    }
    Ok(pairs)
}

/// Reads `{"source": ..., "target": ...}` lines.
pub fn read_pair_jsonl(path: &Path) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for line in read_jsonl(path)? {
        let at = format!("{}:{}", path.display(), line.number);
        let field = |key: &str| -> Result<&str> {
            str_field(path, &line, key)?.ok_or_else(|| {
                Error::input(format!(
                    "{at}: no '{key}' field; every line needs {{\"source\": \"...\", \
                     \"target\": \"...\"}}"
                ))
            })
        };
        pairs.push(pair(&at, field("source")?, field("target")?)?);
    }
    Ok(pairs)
}
