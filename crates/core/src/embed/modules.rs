//! What a sentence-transformers folder asks for: `modules.json` (the pipeline),
//! `1_Pooling/config.json` (how token states become one vector), `sentence_bert_config.json`
//! (longest input, lower-casing).
//!
//! Muse runs the pipelines that all-MiniLM-L6-v2 and most sentence encoders use: a BERT
//! `Transformer`, `Pooling` by mean or `[CLS]`, an optional `Normalize`. Anything else is
//! refused with a message that names it, never silently skipped.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// How the token states of one text become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the states of the real (non-padding) tokens.
    Mean,
    /// The state of the first token (`[CLS]`).
    Cls,
}

impl Pooling {
    /// The sentence-transformers name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }
}

/// The resolved pipeline of a sentence-encoder folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    /// The folder holding the BERT `config.json`, weights and `tokenizer.json`.
    pub transformer_dir: PathBuf,
    pub pooling: Pooling,
    /// L2-normalise the pooled vector.
    pub normalize: bool,
    /// Longest input in tokens, `[CLS]` and `[SEP]` included; `None` means the model's
    /// position count.
    pub max_seq_length: Option<usize>,
    /// Lower-case texts before tokenizing (`sentence_bert_config.json` `do_lower_case`).
    pub do_lower_case: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

const TRANSFORMER: &str = "sentence_transformers.models.Transformer";
const POOLING: &str = "sentence_transformers.models.Pooling";
const NORMALIZE: &str = "sentence_transformers.models.Normalize";

/// Reads the pipeline of `dir`. A folder without `modules.json` is a plain Hugging Face BERT
/// folder: mean pooling without normalisation, as sentence-transformers does for one.
pub fn read_pipeline(dir: &Path) -> Result<Pipeline> {
    let modules_path = dir.join("modules.json");
    if !modules_path.is_file() {
        let (max_seq_length, do_lower_case) = read_sbert_config(dir)?;
        return Ok(Pipeline {
            transformer_dir: dir.to_path_buf(),
            pooling: Pooling::Mean,
            normalize: false,
            max_seq_length,
            do_lower_case,
        });
    }
    let modules: Vec<Module> = serde_json::from_value(read_json(&modules_path)?).map_err(|e| {
        Error::input(format!(
            "{} is not a sentence-transformers module list: {e}",
            modules_path.display()
        ))
    })?;
    let mut transformer_dir = None;
    let mut pooling = None;
    let mut normalize = false;
    for (i, m) in modules.iter().enumerate() {
        let expected = match i {
            0 => TRANSFORMER,
            1 => POOLING,
            _ => NORMALIZE,
        };
        if i > 2 || m.kind != expected {
            let short = m.kind.rsplit('.').next().unwrap_or(&m.kind);
            return Err(Error::input(format!(
                "{}: module {i} is {short} ({}); Muse runs Transformer, Pooling and an optional \
                 Normalize, in that order, and nothing else",
                modules_path.display(),
                if m.path.is_empty() { "." } else { &m.path }
            )));
        }
        let sub = dir.join(&m.path);
        match i {
            0 => transformer_dir = Some(sub),
            1 => pooling = Some(read_pooling(&sub)?),
            _ => normalize = true,
        }
    }
    let (Some(transformer_dir), Some(pooling)) = (transformer_dir, pooling) else {
        return Err(Error::input(format!(
            "{} lists no Transformer and Pooling modules: not a sentence encoder Muse can run",
            modules_path.display()
        )));
    };
    let (max_seq_length, do_lower_case) = read_sbert_config(&transformer_dir)?;
    Ok(Pipeline {
        transformer_dir,
        pooling,
        normalize,
        max_seq_length,
        do_lower_case,
    })
}

/// Reads `DIR/config.json` of a Pooling module.
fn read_pooling(dir: &Path) -> Result<Pooling> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(Error::input(format!(
            "{} is missing: modules.json names a Pooling module there",
            path.display()
        )));
    }
    let v = read_json(&path)?;
    let on = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let modes = [
        ("pooling_mode_cls_token", Some(Pooling::Cls)),
        ("pooling_mode_mean_tokens", Some(Pooling::Mean)),
        ("pooling_mode_max_tokens", None),
        ("pooling_mode_mean_sqrt_len_tokens", None),
        ("pooling_mode_weightedmean_tokens", None),
        ("pooling_mode_lasttoken", None),
    ];
    let chosen: Vec<_> = modes.iter().filter(|(k, _)| on(k)).collect();
    match chosen.as_slice() {
        [(_, Some(p))] => Ok(*p),
        [(k, None)] => Err(Error::input(format!(
            "{} asks for {k}, which Muse does not support: it pools by mean \
             (pooling_mode_mean_tokens) or [CLS] (pooling_mode_cls_token)",
            path.display()
        ))),
        [] => Err(Error::input(format!(
            "{} turns on no pooling mode: expected pooling_mode_mean_tokens or \
             pooling_mode_cls_token",
            path.display()
        ))),
        many => Err(Error::input(format!(
            "{} turns on {} pooling modes at once ({}), which Muse does not support: it pools \
             by exactly one of mean or [CLS]",
            path.display(),
            many.len(),
            many.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// `max_seq_length` and `do_lower_case` from `sentence_bert_config.json`, when present.
fn read_sbert_config(dir: &Path) -> Result<(Option<usize>, bool)> {
    let path = dir.join("sentence_bert_config.json");
    if !path.is_file() {
        return Ok((None, false));
    }
    let v = read_json(&path)?;
    let max = match v.get("max_seq_length") {
        None | Some(Value::Null) => None,
        Some(x) => match x.as_u64() {
            Some(n) if n >= 2 => Some(n as usize),
            _ => {
                return Err(Error::input(format!(
                    "{}: max_seq_length must be an integer of at least 2, not {x}",
                    path.display()
                )));
            }
        },
    };
    let lower = v
        .get("do_lower_case")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((max, lower))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("{} is not valid JSON: {e}", path.display())))
}
