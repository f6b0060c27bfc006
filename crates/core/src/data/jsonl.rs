//! JSON Lines files (plain or `.gz`): one JSON value per line, errors naming the line.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// A buffered reader over the file's text, gunzipped when the name ends in `.gz`; a file
/// that cannot be opened is an [`Error::Input`] asking for an existing `what` file.
pub(crate) fn open_lines(path: &Path, what: &str) -> Result<BufReader<Box<dyn Read>>> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::input(format!(
            "cannot open {}: {e}; pass an existing {what} file",
            path.display()
        ))
    })?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(BufReader::new(reader))
}

/// One parsed line: its 1-based number and value.
#[derive(Clone, Debug)]
pub struct Line {
    pub number: usize,
    pub value: Value,
}

/// Reads every non-blank line of `path` as JSON (gzip when the name ends in `.gz`). A line that
/// is not JSON is an [`Error::Input`] naming the file and line; a file without any line is one
/// too.
pub fn read_jsonl(path: &Path) -> Result<Vec<Line>> {
    let mut lines = Vec::new();
    for (i, line) in open_lines(path, "JSONL")?.lines().enumerate() {
        let number = i + 1;
        let line = line.map_err(|e| {
            Error::input(format!(
                "{}:{number}: cannot read the line ({e}); the file must be UTF-8 JSON Lines \
                 (gzip when it ends in .gz)",
                path.display()
            ))
        })?;
        let text = line.trim().trim_start_matches('\u{feff}');
        if text.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            // serde counts lines within the one line it was given: keep only the column.
            let what = e.to_string();
            let what = what.split(" at line ").next().unwrap_or(&what);
            Error::input(format!(
                "{}:{number}: not valid JSON at column {} ({what}); fix or remove that line: \
                 every line must hold one JSON object",
                path.display(),
                e.column()
            ))
        })?;
        lines.push(Line { number, value });
    }
    if lines.is_empty() {
        return Err(Error::input(format!(
            "{} is empty: it needs one JSON object per line",
            path.display()
        )));
    }
    Ok(lines)
}

/// The string field `key` of a line's object: `Ok(None)` when absent or null, an error naming
/// the line when it is not a string or the line is not an object.
pub fn str_field<'a>(path: &Path, line: &'a Line, key: &str) -> Result<Option<&'a str>> {
    let obj = line.value.as_object().ok_or_else(|| {
        Error::input(format!(
            "{}:{}: expected a JSON object, found {}",
            path.display(),
            line.number,
            kind(&line.value)
        ))
    })?;
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::input(format!(
            "{}:{}: '{key}' must be a string, found {}",
            path.display(),
            line.number,
            kind(other)
        ))),
    }
}

/// "a number", "an array", ... for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
