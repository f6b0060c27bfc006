//! `muse eval --hyp FILE --ref FILE`: BLEU and chrF of any translation against its reference,
//! one sentence a line, as sacreBLEU's command line scores two files.

use std::path::Path;

use super::eval::EvalReport;
use crate::error::{Error, Result};
use crate::eval::translation::{SACREBLEU_VERSION, score_corpus, tok13a::py_rstrip};

/// Scores the hypotheses in `hyp` against the references in `reference`, line by line.
///
/// Lines are split at `\n` only and lose trailing whitespace (a `\r` included), as sacreBLEU
/// reads them; a final newline does not make an extra empty line. Files of different line
/// counts, empty files, folders and unreadable files are errors that say so.
pub fn eval_files(hyp: &Path, reference: &Path) -> Result<EvalReport> {
    let hyps = read_lines(hyp, "--hyp")?;
    let refs = read_lines(reference, "--ref")?;
    if hyps.len() != refs.len() {
        return Err(Error::input(format!(
            "{} has {} lines but {} has {}: BLEU and chrF need one reference line per \
             hypothesis line (an empty line for an empty translation)",
            hyp.display(),
            hyps.len(),
            reference.display(),
            refs.len()
        )));
    }
    let s = score_corpus(&hyps, &refs)?;
    let [bleu_line, chrf_line] = s.lines();
    let lines = vec![
        format!(
            "{} lines of {} against {}",
            s.lines,
            hyp.display(),
            reference.display()
        ),
        bleu_line,
        chrf_line,
    ];
    let mut json = serde_json::to_value(&s).unwrap_or_default();
    if let Some(obj) = json.as_object_mut() {
        obj.insert("hyp".into(), hyp.display().to_string().into());
        obj.insert("ref".into(), reference.display().to_string().into());
        obj.insert("sacrebleu_version".into(), SACREBLEU_VERSION.into());
    }
    Ok(EvalReport { lines, json })
}

/// The lines of a UTF-8 file, each without trailing whitespace.
fn read_lines(path: &Path, flag: &str) -> Result<Vec<String>> {
    if path.is_dir() {
        return Err(Error::usage(format!(
            "{flag} {} is a folder: pass a text file with one sentence a line",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        Error::input(format!(
            "cannot read {flag} {}: {e}; pass an existing text file with one sentence a line",
            path.display()
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::input(format!(
            "{flag} {} is not UTF-8 (invalid byte at offset {}): convert it to UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    if text.is_empty() {
        return Err(Error::input(format!(
            "{flag} {} is empty: it needs one sentence a line",
            path.display()
        )));
    }
    Ok(body.split('\n').map(|l| py_rstrip(l).to_string()).collect())
}
