//! `muse detect`: is a text watermarked with this key? Needs the key and the tokenizer of the
//! model that wrote it, never the weights: the text is re-tokenized, every token after the
//! first is checked against its green list, and the count is tested against chance.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
pub use crate::sample::watermark::MIN_SCORED_TOKENS;
use crate::sample::watermark::{Detection, Retokenized, Scheme, Watermark, retokenize};
use crate::tokenizer::TextTokenizer;

/// What `muse detect` was asked.
#[derive(Clone, Debug)]
pub struct DetectRequest {
    pub text: String,
    pub key: String,
    /// A tokenizer.json, a model folder or run, a GGUF file, or `gpt2`.
    pub tokenizer: PathBuf,
    pub gamma: f64,
    pub scheme: Scheme,
    /// z above which the text counts as watermarked.
    pub threshold: f64,
    /// Score repeated (context, token) tuples every time instead of once.
    pub count_repeats: bool,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Watermarked,
    NotWatermarked,
    CannotJudge(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct DetectReport {
    pub tokens: usize,
    #[serde(flatten)]
    pub detection: Detection,
    pub threshold: f64,
    #[serde(flatten)]
    pub verdict: Verdict,
}

pub fn detect_watermark(req: &DetectRequest) -> Result<DetectReport> {
    if req.text.trim().is_empty() {
        return Err(Error::usage(
            "the text is empty: give a file (or - for standard input) with the text to check",
        ));
    }
    if !req.threshold.is_finite() {
        return Err(Error::usage("--threshold must be a number"));
    }
    let w = Watermark {
        key: req.key.clone(),
        gamma: req.gamma,
        delta: 0.0,
        scheme: req.scheme,
    };
    w.validate()?;
    // The label line `muse sample` prints above a text is Muse's, not the model's.
    let label = format!("[{}]\n", crate::AI_GENERATED_NOTICE);
    let text = req.text.strip_prefix(&label).unwrap_or(&req.text);
    let tokenizer = open_tokenizer(&req.tokenizer)?;
    let ids = match retokenize(&tokenizer, text) {
        Retokenized::Ids(ids) => ids,
        Retokenized::Foreign { tokens, why } => {
            return Ok(cannot_judge(req, tokens, not_this_tokenizer(&why)));
        }
    };
    let detection = w.detect(&ids, !req.count_repeats);
    let verdict = if detection.scored_tokens < MIN_SCORED_TOKENS {
        Verdict::CannotJudge(format!(
            "only {} tokens could be scored; at least {MIN_SCORED_TOKENS} are needed",
            detection.scored_tokens
        ))
    } else if detection.z > req.threshold {
        Verdict::Watermarked
    } else {
        Verdict::NotWatermarked
    };
    Ok(DetectReport {
        tokens: ids.len(),
        detection,
        threshold: req.threshold,
        verdict,
    })
}

fn not_this_tokenizer(why: &str) -> String {
    format!(
        "this tokenizer cannot have written the text ({why}): detect with the tokenizer of the \
         model that generated it"
    )
}

fn cannot_judge(req: &DetectRequest, tokens: usize, reason: String) -> DetectReport {
    DetectReport {
        tokens,
        detection: Detection::new(0, 0, req.gamma),
        threshold: req.threshold,
        verdict: Verdict::CannotJudge(reason),
    }
}

/// The tokenizer of a model: a tokenizer file, a model folder or run, a GGUF file's
/// vocabulary, or `gpt2` (GPT-2's BPE from the data folder).
pub fn open_tokenizer(path: &Path) -> Result<TextTokenizer> {
    if path == Path::new("gpt2") && !path.exists() {
        let dir = crate::data::dataset_dir("gpt2-bpe")?;
        return crate::tokenizer::files::load_file(&dir);
    }
    if !path.exists() {
        return Err(Error::input(format!(
            "{} does not exist: pass the tokenizer.json, model folder or GGUF file of the model \
             that wrote the text",
            path.display()
        )));
    }
    if path.extension().is_some_and(|e| e == "gguf") {
        let file = crate::models::gguf::GgufFile::open(path).map_err(Error::model_load)?;
        let (tok, _) = crate::tokenizer::gguf::from_gguf(&file.content)
            .map_err(|e| Error::input(format!("{} {e}", path.display())))?;
        return Ok(tok);
    }
    crate::tokenizer::files::load_file(path)
}
