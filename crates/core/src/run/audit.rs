//! `muse audit`: how much of what a run generates it copied from its training data. Text
//! models: the share of generated spans found verbatim in the training text, next to the same
//! share for the held-out validation text. Image models: see [`super::audit_images`]. The
//! figures go into the run's `MODEL_CARD.md` as its "Memorisation audit" section.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::family::detect;
use super::sample::{TextRequest, text_session};
use crate::data::windows::split_text;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::memorisation::{SpanStats, cached_index, span_stats};
use crate::run_dir::RunDir;
use crate::sample::{Sampler, generate};
use crate::train::card::set_section;
use crate::train::progress::Progress;

/// The card section the audit writes (replaced on every rerun).
pub const CARD_SECTION: &str = "Memorisation audit";

/// What `muse audit RUN` was asked.
#[derive(Clone, Debug)]
pub struct AuditRequest {
    pub model: PathBuf,
    /// Texts or images to generate [default: 20 texts, 1000 images].
    pub samples: Option<usize>,
    /// Text: span length in characters.
    pub span: usize,
    /// Text: tokens per generated text [default: 500].
    pub max_tokens: Option<usize>,
    /// Text: sampling temperature [default: 0.8, as `muse sample`].
    pub temperature: Option<f32>,
    /// Text: the training text to search instead of the one `training.json` names.
    pub data: Option<String>,
    /// Images: a classifier run whose features give a second distance.
    pub classifier: Option<PathBuf>,
    /// Diffusion: DDIM steps [default: 50].
    pub steps: Option<usize>,
    pub seed: u64,
    /// Write the figures into `MODEL_CARD.md`.
    pub write_card: bool,
    pub device: Device,
}

/// The audit's figures: lines for people, JSON for scripts, and the card section.
pub struct AuditReport {
    pub lines: Vec<String>,
    pub json: Value,
    /// The Markdown body written under "## Memorisation audit".
    pub card: String,
    /// The card that was updated, if any.
    pub card_path: Option<PathBuf>,
}

/// Runs the audit the run's family calls for and records it in the model card.
pub fn audit(req: &AuditRequest) -> Result<AuditReport> {
    if req.samples == Some(0) {
        return Err(Error::usage("--samples must be at least 1"));
    }
    if req.span == 0 {
        return Err(Error::usage("--span must be at least 1 character"));
    }
    let family = detect(&req.model)?;
    let mut report = if family.is_text() {
        text_audit(req)?
    } else if family.is_image_generator() {
        super::audit_images::image_audit(req, family)?
    } else {
        return Err(Error::usage(format!(
            "{} holds {}, which generates nothing, so there is nothing to audit: `muse audit` \
             judges text models (GPT runs) and image generators (VAE, GAN, diffusion runs)",
            req.model.display(),
            family.describe()
        )));
    };
    let run = RunDir::new(&req.model);
    if req.write_card && run.training().is_file() {
        set_section(&run.model_card(), CARD_SECTION, &report.card)?;
        report.card_path = Some(run.model_card());
    }
    Ok(report)
}

/// The training and validation text of a run, as it split them, and the dataset's name.
struct TrainingText {
    name: String,
    train: String,
    val: String,
}

fn training_text(req: &AuditRequest) -> Result<TrainingText> {
    let run = RunDir::new(&req.model);
    let record = run
        .training()
        .is_file()
        .then(|| run.read_training())
        .transpose()?;
    let val_fraction = record
        .as_ref()
        .and_then(|r| r.config.pointer("/data/val_fraction"))
        .and_then(Value::as_f64);
    let (path, name) = match (&req.data, &record) {
        (Some(d), _) => {
            let src = crate::data::resolve_text_corpus(d)?;
            (src.path, src.name)
        }
        (None, None) => {
            return Err(Error::usage(format!(
                "{} has no training.json, so its training text is unknown: pass --data FILE (the \
                 text it was trained on, a file or a dataset name)",
                req.model.display()
            )));
        }
        (None, Some(r)) => {
            if val_fraction.is_none() {
                return Err(Error::usage(format!(
                    "{} records no pretraining text split (a fine-tuned or aligned run): pass \
                     --data FILE with the text to search",
                    run.training().display()
                )));
            }
            (located(&r.dataset, &req.model)?, r.dataset.name.clone())
        }
    };
    let text = crate::data::read_text(&path)?;
    let (train, val) = split_text(&text, val_fraction.unwrap_or(0.1));
    Ok(TrainingText {
        name,
        train: train.to_string(),
        val: val.to_string(),
    })
}

/// The recorded dataset file, checked against its recorded sha256; a registry name is looked
/// up again when the recorded path is gone.
fn located(d: &crate::run_dir::DatasetRecord, model: &Path) -> Result<PathBuf> {
    let path = if Path::new(&d.path).is_file() {
        PathBuf::from(&d.path)
    } else {
        match crate::data::resolve_text_corpus(&d.name) {
            Ok(src) => src.path,
            Err(_) => {
                return Err(Error::input(format!(
                    "the training data of {} is missing: '{}' at {}; fetch it (`muse data fetch \
                     {}`) or pass --data FILE",
                    model.display(),
                    d.name,
                    d.path,
                    d.name
                )));
            }
        }
    };
    let sha = crate::data::sha256_file(&path)?;
    if sha != d.sha256 {
        return Err(Error::input(format!(
            "{} is not the text {} was trained on (sha256 {sha}, the run records {}): pass \
             --data FILE to audit against it anyway",
            path.display(),
            model.display(),
            d.sha256
        )));
    }
    Ok(path)
}

fn text_audit(req: &AuditRequest) -> Result<AuditReport> {
    let n = req.samples.unwrap_or(20);
    let data = training_text(req)?;
    let t = TextRequest {
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        ..Default::default()
    };
    let session = text_session(&req.model, &t, req.seed, &req.device)?;
    let (index, info) = cached_index(data.train.as_bytes())?;
    let progress = Progress::new("audit", 0, n as u64);
    let mut texts = Vec::with_capacity(n);
    for i in 0..n {
        let mut sampler = Sampler::new(session.params.clone(), req.seed.wrapping_add(i as u64));
        let out = generate(
            session.model.model.as_ref(),
            &session.model.tokenizer,
            &session.prompt_ids,
            &session.options,
            &mut sampler,
            &mut |_| Ok(()),
        )?;
        texts.push(out.text);
        progress.set(i as u64 + 1);
    }
    progress.finish();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let generated = span_stats(&index, &refs, req.span);
    let baseline = span_stats(&index, &[data.val.as_str()], req.span);
    let how = format!(
        "{n} texts of up to {} tokens, seed {}, temperature {}",
        session.options.max_tokens, req.seed, session.params.temperature
    );
    let mut lines = vec![
        format!(
            "training text: {} ({} bytes, suffix array {} in {:.2} s)",
            data.name,
            info.bytes,
            if info.cached {
                "read from the cache"
            } else {
                "built"
            },
            info.seconds
        ),
        format!("generated:  {how}"),
    ];
    lines.extend(span_lines("generated", &generated));
    lines.extend(span_lines("validation", &baseline));
    for (k, e) in generated.examples.iter().enumerate() {
        lines.push(format!(
            "example {}: {} chars: {:?}",
            k + 1,
            e.chars,
            e.text
        ));
    }
    let card = text_card(&data.name, &how, req.span, &generated, &baseline);
    Ok(AuditReport {
        json: json!({"kind": "text", "run": req.model.display().to_string(),
                     "dataset": data.name, "index": info, "samples": n, "seed": req.seed,
                     "max_tokens": session.options.max_tokens,
                     "temperature": session.params.temperature,
                     "generated": generated, "validation": baseline}),
        lines,
        card,
        card_path: None,
    })
}

fn span_lines(what: &str, s: &SpanStats) -> Vec<String> {
    vec![
        format!(
            "{what:<11} {}/{} spans of {} chars found in the training text ({:.2}%) over {} chars",
            s.copied,
            s.spans,
            s.span_chars,
            100.0 * s.share,
            s.chars
        ),
        format!(
            "{:<11} longest copied stretch {} chars: {:?}",
            "",
            s.longest.chars,
            clip(&s.longest.text, 120)
        ),
    ]
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn text_card(
    name: &str,
    how: &str,
    span: usize,
    generated: &SpanStats,
    baseline: &SpanStats,
) -> String {
    let row = |what: &str, s: &SpanStats| {
        format!(
            "| {what} | {} | {} | {:.2}% | {} |\n",
            s.chars,
            s.spans,
            100.0 * s.share,
            s.longest.chars
        )
    };
    let mut out = format!(
        "Spans of {span} characters of generated text found verbatim in the training text \
         (`{name}`, training split), next to the same share for the held-out validation text, \
         which the model never saw: natural text of this corpus shares that much by itself \
         (names, stage directions, common phrases). Generated: {how}.\n\n\
         | text | chars | {span}-char spans | found in training text | longest copied (chars) |\n\
         |---|---|---|---|---|\n"
    );
    out += &row("generated", generated);
    out += &row("validation (baseline)", baseline);
    if let Some(e) = generated.examples.first() {
        out += &format!(
            "\nLongest copied stretch of the samples ({} chars):\n\n```text\n{}\n```\n",
            e.chars,
            clip(&e.text, 400)
        );
    }
    out
}
