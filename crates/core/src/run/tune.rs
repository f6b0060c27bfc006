//! `muse finetune` and `muse align`: supervised fine-tuning and DPO of a language model into a
//! new run, resolved like every other run ([`super::resolve`]) and summed up in words.

use std::path::{Path, PathBuf};

use super::resolve::{ConfigRequest, FlagSet, StartMode, resolve_config};
use super::train::{TrainOutcome, TrainSummary};
use crate::data::instructions::InstructionFormat;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::lora::LoraConfig;
use crate::train::dpo::{AlignConfig, align};
use crate::train::finetune::{FinetuneConfig, finetune};
use crate::train::tuning::TuneJob;

/// Which tuning method, with its own inputs.
#[derive(Clone, Debug)]
pub enum Method {
    /// Supervised fine-tuning on instructions (`muse finetune`).
    Sft {
        /// JSONL file, folder of them, or `instructions`.
        data: String,
        format: InstructionFormat,
    },
    /// Direct Preference Optimization on preference pairs (`muse align`).
    Dpo {
        /// JSONL of pairs, HH-RLHF dialogues, or `hh-rlhf` [required for a new run].
        data: Option<String>,
        beta: f64,
        /// Prompt + reply as raw text, no chat template.
        raw: bool,
    },
}

/// Everything `muse finetune` / `muse align` can be told.
#[derive(Clone, Debug)]
pub struct TuneRequest {
    /// The model to start from: a Muse run, a Hugging Face folder or a llama2.c `.bin`.
    pub base: PathBuf,
    pub method: Method,
    /// `--lora SPEC` (empty: the defaults).
    pub lora: Option<String>,
    /// `--template`.
    pub template: Option<String>,
    /// `--config FILE` and `--set`s.
    pub config: ConfigRequest,
    pub seed: Option<u64>,
    pub max_steps: Option<u64>,
    pub out: Option<PathBuf>,
    pub mode: StartMode,
    pub print_config: bool,
    /// A tokenizer replacing the base's.
    pub tokenizer: Option<PathBuf>,
    pub device: Device,
}

/// Fine-tunes or aligns as `req` says.
pub fn tune(req: TuneRequest) -> Result<TrainOutcome> {
    if req.base.exists() {
        super::export::require_text_model(
            &req.base,
            "fine-tuning and alignment take language models",
        )?;
    }
    let lora = match req.lora.as_deref() {
        None => None,
        Some(s) => Some(LoraConfig::parse(s).map_err(Error::usage)?),
    };
    let kind = match req.method {
        Method::Sft { .. } => "sft",
        Method::Dpo { .. } => "dpo",
    };
    let method = if lora.is_some() {
        format!("{kind}-lora")
    } else {
        kind.to_string()
    };
    let out = req
        .out
        .clone()
        .unwrap_or_else(|| default_out(&req.base, &method));
    let mut creq = req.config.clone();
    if let Some(t) = &req.template {
        creq.flags
            .push(FlagSet::new("--template", "data.template", t));
    }
    if let Some(seed) = req.seed {
        creq.flags.push(FlagSet::new("--seed", "train.seed", seed));
    }
    if let Some(n) = req.max_steps {
        creq.sets.insert(0, format!("train.max_iters={n}"));
    }
    match &req.method {
        Method::Sft { data, format } => {
            let format = *format;
            let preset = |_: &str| {
                let mut p = FinetuneConfig::preset(format, lora.clone());
                p.data.format = format;
                Ok(p)
            };
            let r = resolve_config("", &out, req.mode, &creq, &method, &[], preset)?;
            if req.print_config {
                return Ok(TrainOutcome::Config(to_toml(&r.config)?));
            }
            r.config.validate()?;
            let data = match &r.record {
                Some(rec) => rec.dataset.name.clone(),
                None => data.clone(),
            };
            let job = job(&req, data, r.config, out, r.on_existing);
            announce(&req.base, &job, "data", &method, &r.notes);
            let rep = finetune(job, true)?;
            let dir = rep.run_dir.display().to_string();
            Ok(TrainOutcome::Trained(TrainSummary {
                done: format!(
                    "done: {} steps in {:.0} s | held-out loss per response token {:.4} -> \
                     {:.4} | trained {} of {} parameters ({:.2}%) | {} train / {} held-out \
                     examples | run in {dir}",
                    rep.steps,
                    rep.train_seconds,
                    rep.val_loss_start,
                    rep.val_loss,
                    rep.trainable,
                    rep.params,
                    100.0 * rep.trainable as f64 / rep.params.max(1) as f64,
                    rep.train_examples,
                    rep.val_examples,
                ),
                output: replies_text(&rep.samples),
                next: format!("muse chat {dir}   |   muse sample {dir} --prompt \"...\""),
                run_dir: rep.run_dir,
            }))
        }
        Method::Dpo { data, beta, raw } => {
            if *raw {
                creq.flags.push(FlagSet::new("--raw", "data.raw", true));
            }
            let beta = *beta;
            let preset = |_: &str| Ok(AlignConfig::preset(beta, lora.clone()));
            let r = resolve_config("", &out, req.mode, &creq, &method, &[], preset)?;
            if req.print_config {
                return Ok(TrainOutcome::Config(to_toml(&r.config)?));
            }
            r.config.validate()?;
            let data = match (data, &r.record) {
                (Some(d), _) => d.clone(),
                (None, Some(rec)) => rec.dataset.name.clone(),
                (None, None) => {
                    return Err(Error::usage(
                        "--dpo is required: pass a JSONL file of prompt/chosen/rejected pairs, \
                         HH-RLHF dialogues, or hh-rlhf",
                    ));
                }
            };
            let job = job(&req, data, r.config, out, r.on_existing);
            announce(&req.base, &job, "preferences", &method, &r.notes);
            let rep = align(job, true)?;
            let dir = rep.run_dir.display().to_string();
            Ok(TrainOutcome::Trained(TrainSummary {
                done: format!(
                    "done: {} steps in {:.0} s | held-out preference accuracy {:.3} -> {:.3} | \
                     reward margin {:+.4} -> {:+.4} | DPO loss {:.4} -> {:.4} | trained {} of \
                     {} parameters ({:.2}%) | {} train / {} held-out pairs | run in {dir}",
                    rep.steps,
                    rep.train_seconds,
                    rep.start.accuracy,
                    rep.end.accuracy,
                    rep.start.margin,
                    rep.end.margin,
                    rep.start.loss,
                    rep.end.loss,
                    rep.trainable,
                    rep.params,
                    100.0 * rep.trainable as f64 / rep.params.max(1) as f64,
                    rep.train_pairs,
                    rep.val_pairs,
                ),
                output: replies_text(&rep.samples),
                next: format!("muse chat {dir}"),
                run_dir: rep.run_dir,
            }))
        }
    }
}

fn job<C>(
    req: &TuneRequest,
    data: String,
    config: C,
    out: PathBuf,
    on_existing: crate::run_dir::OnExisting,
) -> TuneJob<C> {
    TuneJob {
        base: req.base.clone(),
        tokenizer: req.tokenizer.clone(),
        data,
        config,
        out,
        on_existing,
        device: req.device.clone(),
    }
}

fn announce<C: serde::Serialize>(
    base: &Path,
    job: &TuneJob<C>,
    label: &str,
    method: &str,
    notes: &[String],
) {
    for note in notes {
        tracing::info!("{note}");
    }
    tracing::info!(
        "run: {}  base: {}  {label}: {}  method: {method}",
        job.out.display(),
        base.display(),
        job.data
    );
    tracing::debug!(
        "resolved configuration:\n{}",
        toml::to_string(&job.config).unwrap_or_default()
    );
}

/// `runs/<name of the model folder or file>-<method>`.
fn default_out(base: &Path, method: &str) -> PathBuf {
    let name = base
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .unwrap_or_else(|| "model".into());
    PathBuf::from("runs").join(format!("{name}-{method}"))
}

fn to_toml<C: serde::Serialize>(c: &C) -> Result<String> {
    toml::to_string(c).map_err(|e| Error::usage(format!("cannot print the config: {e}")))
}

/// Replies to held-out prompts, labelled AI-generated, as lines for stdout.
fn replies_text(samples: &[(String, String)]) -> Vec<String> {
    if samples.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!(
        "--- replies to held-out prompts ({}) ---",
        crate::AI_GENERATED_NOTICE
    )];
    for (prompt, reply) in samples {
        let sep = if prompt.ends_with(' ') { "" } else { " " };
        out.push(format!("{prompt}{sep}{reply}"));
        out.push("---".into());
    }
    out
}
