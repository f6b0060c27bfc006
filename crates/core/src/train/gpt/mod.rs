//! The GPT training loop, top to bottom like nanoGPT's `train.py`: learning rate for this step,
//! evaluate and checkpoint every N steps, micro-steps with accumulation, clip, step, one log
//! line.

mod config;
mod memory;
mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

pub use crate::data::text_splits::{TextSplits, prepare_text};
pub use config::{GptRunConfig, PRESETS, SampleConfig, TextDataConfig};
pub use memory::training_bytes;

use crate::data::windows::{random_windows, step_rng};
use crate::error::{Error, Result};
use crate::models::gpt::{DTYPE, Gpt, GptConfig, gpt2_init, save_config};
use crate::nn::{Dropout, init_varmap};
use crate::run_dir::{OnExisting, RunDir};
use crate::tokenizer::TextTokenizer;
use crate::train::cadence::{Cadence, EvalLog, StepLog, TrainingLoop, finish, run_steps};
use crate::train::checkpoint::{self, TrainClock, TrainState};
use crate::train::config::TrainConfig;
use crate::train::metrics::MetricsLog;
use crate::train::optimizer::AdamW;
use crate::train::progress::Progress;
use crate::train::schedule::LrSchedule;
use crate::train::seeds::{GPT_DROPOUT_STREAM, dropout_seed};

/// What to train and where.
pub struct GptTrainJob {
    /// The run directory to create or resume.
    pub out: PathBuf,
    /// Preset name (recorded in training.json).
    pub preset: String,
    /// The resolved configuration (on resume: the stored one with the new `--set`s applied).
    pub config: GptRunConfig,
    /// `--data`: a registry name or a text file.
    pub data: String,
    /// New run, resume, or overwrite.
    pub on_existing: OnExisting,
    pub device: Device,
}

/// The outcome of a finished run.
pub struct TrainReport {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub train_seconds: f64,
    pub sample: Option<String>,
}

/// Trains a GPT as `job` says. Returns [`Error::Interrupted`] after saving a checkpoint when
/// Ctrl-C was pressed. Samples (`config.sample`; none when `sample.tokens` is 0) go to
/// `samples/`.
pub fn train_gpt(job: GptTrainJob) -> Result<TrainReport> {
    train_gpt_from(job, None)
}

/// [`train_gpt`], starting a new run from the weights and tokenizer of `init` (a Muse GPT run
/// or a Hugging Face GPT-2 folder) instead of random weights: continued pretraining. The
/// caller puts `init`'s architecture in `job.config.model` (see
/// [`crate::models::pretrained::ModelConfig::read`]).
pub fn train_gpt_from(job: GptTrainJob, init: Option<&Path>) -> Result<TrainReport> {
    let cfg = job.config.clone();
    cfg.validate()?;
    RunDir::check(&job.out, job.on_existing)?;
    let resuming = job.on_existing == OnExisting::Resume;

    // Data and tokenizer first (a resumed run reuses its tokenizer), so bad input leaves no
    // half-made run folder behind.
    let tokenizer = resuming
        .then(|| TextTokenizer::from_file(&RunDir::new(&job.out).tokenizer()))
        .transpose()?;
    let init = init.filter(|_| !resuming);
    let tokenizer = match init {
        Some(dir) => Some(init_tokenizer(dir)?),
        None => tokenizer,
    };
    let splits = prepare_text(&job.data, &cfg.data, tokenizer)?;
    let run = RunDir::prepare(&job.out, job.on_existing)?;
    let mut model_cfg = cfg.model.clone();
    model_cfg.vocab_size = model_cfg.vocab_size.max(splits.tokenizer.vocab_size());
    model_cfg
        .validate()
        .map_err(|e| Error::usage(format!("model: {e}")))?;
    let t = &cfg.train;

    // Model and optimizer, fresh or from the checkpoint.
    let mut varmap = VarMap::new();
    let model = Gpt::new(
        &model_cfg,
        VarBuilder::from_varmap(&varmap, DTYPE, &job.device),
    )?;
    init_varmap(&varmap, t.seed, gpt2_init(&model_cfg))?;
    if let Some(dir) = init {
        load_init_weights(&varmap, dir, &job.device)?;
    }
    let mut opt = AdamW::new(&varmap, t)?;
    let state = if resuming {
        let state = checkpoint::load(&run, &mut varmap, &mut [("", &mut opt)])?;
        check_same_data(&run, &splits)?;
        run.record_resumed_config(&job.config)?;
        state
    } else {
        write_run_files(&run, &job, &model_cfg, &splits)?;
        TrainState::default()
    };
    // Evaluation and sampling see the same storage without recording a graph.
    let frozen = Gpt::new(&model_cfg, detached(&varmap, &job.device)?)?;

    let schedule = LrSchedule::from_config(t);
    let metrics = MetricsLog::open(
        &run.metrics(),
        resuming.then_some((state.step, state.metrics_bytes)),
    )?;
    let tokens_per_step = (t.batch_size * t.grad_accum * model_cfg.n_positions) as u64;
    let start_step = state.step;
    tracing::info!(
        "training {} parameters on {} train / {} val tokens, {} steps from step {start_step}",
        crate::models::gpt::parameter_count(&model_cfg),
        splits.train.len(),
        splits.val.len(),
        t.max_iters
    );
    let progress = Progress::new("train", start_step, t.max_iters as u64);
    let cadence = Cadence {
        eval_every: t.eval_interval as u64,
        sample_every: if cfg.sample.tokens > 0 {
            t.sample_interval as u64
        } else {
            0
        },
        log_every: t.log_interval as u64,
        eval_first: true,
        sample_first: false,
    };
    let mut l = GptLoop {
        clock: TrainClock::start(&state),
        run: &run,
        model: &model,
        frozen: &frozen,
        varmap: &varmap,
        opt,
        state,
        metrics,
        splits: &splits,
        cfg: &cfg,
        schedule,
        tokens_per_step,
        device: &job.device,
    };
    let end = t.max_iters as u64;
    run_steps(&mut l, &cadence, start_step, end, &progress)?;
    let (train_loss, val_loss) = finish(&mut l, start_step, end, &progress)?;
    let state = l.state;
    let text = if cfg.sample.tokens > 0 {
        let text = write_text_sample(&frozen, &splits.tokenizer, &cfg.sample, t.seed ^ end)?;
        report::write_sample(&run, text.clone(), end)?;
        Some(text)
    } else {
        None
    };
    report::write_model_card(
        &run, &job, &model_cfg, &splits, &state, train_loss, val_loss,
    )?;
    Ok(TrainReport {
        run_dir: run.root().to_path_buf(),
        steps: state.step,
        train_loss,
        val_loss,
        train_seconds: state.train_seconds,
        sample: text,
    })
}

/// The GPT's part of the shared cadence.
struct GptLoop<'a> {
    run: &'a RunDir,
    model: &'a Gpt,
    /// The same weights without autograd tracking, for evaluation and samples.
    frozen: &'a Gpt,
    varmap: &'a VarMap,
    opt: AdamW,
    state: TrainState,
    metrics: MetricsLog,
    clock: TrainClock,
    splits: &'a TextSplits,
    cfg: &'a GptRunConfig,
    schedule: LrSchedule,
    tokens_per_step: u64,
    device: &'a Device,
}

impl TrainingLoop for GptLoop<'_> {
    /// (train loss, validation loss).
    type Eval = (f64, f64);

    fn state(&mut self) -> &mut TrainState {
        &mut self.state
    }

    fn metrics(&mut self) -> &mut MetricsLog {
        &mut self.metrics
    }

    fn save(&mut self) -> Result<()> {
        self.clock.stamp(&mut self.state);
        checkpoint::save(
            self.run,
            &checkpoint::varmap_tensors(self.varmap),
            &[("", &self.opt)],
            &self.state,
        )
    }

    /// One optimizer step over `grad_accum` micro-batches.
    fn step(&mut self, step: u64) -> Result<StepLog> {
        let (t0, t) = (Instant::now(), &self.cfg.train);
        let lr = self.schedule.at(step as usize);
        let (loss, grad_norm) = train_step(
            self.model,
            &mut self.opt,
            &self.splits.train,
            t,
            step,
            lr,
            self.device,
        )?;
        checkpoint::check_finite(step, "loss", loss)?;
        if t.grad_clip > 0.0 {
            checkpoint::check_finite(step, "gradient norm", grad_norm)?;
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let tok_s = self.tokens_per_step as f64 / (ms / 1e3);
        let val = self
            .state
            .last_val_loss
            .map_or("-".to_string(), |v| format!("{v:.4}"));
        Ok(StepLog {
            examples: self.tokens_per_step,
            status: format!("loss {loss:.4}"),
            line: format!(
                "step {step} | loss {loss:.4} | val {val} | lr {lr:.1e} | {ms:.0} ms | {} tok/s",
                report::si(tok_s)
            ),
            metrics: serde_json::json!({
                "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "ms": ms, "tok_per_s": tok_s,
            }),
        })
    }

    fn evaluate(&mut self, step: u64) -> Result<(f64, f64)> {
        let n_positions = self.frozen.config().n_positions;
        report::estimate(
            self.frozen,
            self.splits,
            &self.cfg.train,
            n_positions,
            step,
            self.device,
        )
    }

    fn eval_log(&mut self, step: u64, &(train_loss, val_loss): &(f64, f64)) -> Option<EvalLog> {
        Some(EvalLog {
            line: format!("step {step} | train {train_loss:.4} | val {val_loss:.4}"),
            metrics: serde_json::json!({
                "step": step, "train_loss": train_loss, "val_loss": val_loss,
            }),
            val_loss: Some(val_loss),
        })
    }

    fn sample(&mut self, step: u64) -> Result<()> {
        let (t, s) = (&self.cfg.train, &self.cfg.sample);
        let text = write_text_sample(self.frozen, &self.splits.tokenizer, s, t.seed ^ step)?;
        report::write_sample(self.run, text, step)
    }

    fn plot(&self) -> Result<()> {
        report::plot_losses(self.run)
    }
}

/// One optimizer step: `grad_accum` micro-batches of random windows from `ids` (a pure
/// function of seed and step), accumulated gradients, clipping, AdamW. Returns the mean loss
/// and the gradient norm before clipping (NaN when clipping is off).
pub fn train_step(
    model: &Gpt,
    opt: &mut AdamW,
    ids: &[u32],
    t: &TrainConfig,
    step: u64,
    lr: f64,
    device: &Device,
) -> Result<(f64, f64)> {
    let cfg = model.config();
    let (grads, loss_sum, grad_norm) = opt.accumulate_grads(t, |micro| {
        let mut rng = step_rng(t.seed, step, micro);
        let batch = random_windows(ids, cfg.n_positions, t.batch_size, &mut rng, device)?;
        let mut dropout = Dropout::train(
            cfg.dropout,
            dropout_seed(t.seed, step, micro, GPT_DROPOUT_STREAM),
        );
        Ok(model.loss(&batch.inputs, &batch.targets, &mut dropout)?)
    })?;
    opt.step(&grads, lr)?;
    Ok((loss_sum / t.grad_accum as f64, grad_norm))
}

/// A VarBuilder over detached views of the variables: same storage, no autograd tracking.
pub fn detached(varmap: &VarMap, device: &Device) -> Result<VarBuilder<'static>> {
    let tensors: std::collections::HashMap<String, Tensor> = checkpoint::varmap_tensors(varmap)
        .into_iter()
        .map(|(k, v)| (k, v.detach()))
        .collect();
    Ok(VarBuilder::from_tensors(tensors, DTYPE, device))
}

/// config.json, tokenizer.json and training.json of a new run.
fn write_run_files(
    run: &RunDir,
    job: &GptTrainJob,
    model_cfg: &GptConfig,
    splits: &TextSplits,
) -> Result<()> {
    save_config(run.root(), model_cfg)?;
    splits.tokenizer.save(&run.tokenizer())?;
    run.write_training(
        "gpt",
        &job.preset,
        &job.config,
        job.config.train.seed,
        &splits.dataset,
    )
}

/// The tokenizer of an `--init` folder.
fn init_tokenizer(dir: &Path) -> Result<TextTokenizer> {
    crate::tokenizer::files::find_in_dir(dir)?.ok_or_else(|| {
        Error::input(format!(
            "--init {} has no tokenizer.json (nor vocab.json + merges.txt)",
            dir.display()
        ))
    })
}

/// Overwrites the freshly initialised variables with the weights of an `--init` folder.
fn load_init_weights(varmap: &VarMap, dir: &Path, device: &Device) -> Result<()> {
    let fail = |e: candle_core::Error| {
        Error::input(format!(
            "--init {}: {}. Keep the architecture of the folder (no --set of model sizes)",
            dir.display(),
            crate::models::pretrained::without_backtrace(e)
        ))
    };
    let (_, tensors) = crate::models::pretrained::load_tensors(dir, device).map_err(fail)?;
    crate::models::pretrained::set_vars(varmap, &tensors).map_err(fail)
}

/// A resumed run must see the corpus it started with.
fn check_same_data(run: &RunDir, splits: &TextSplits) -> Result<()> {
    let record = run.read_training()?;
    if record.dataset.sha256 != splits.dataset.sha256 {
        return Err(Error::input(format!(
            "the corpus changed since this run started ({} had sha256 {}, {} has {}); resume \
             with the original data or start a new run",
            record.dataset.path, record.dataset.sha256, splits.dataset.path, splits.dataset.sha256
        )));
    }
    Ok(())
}

/// The prompt and `cfg.tokens` sampled tokens after it, as the run's samples show them.
fn write_text_sample(
    model: &Gpt,
    tokenizer: &TextTokenizer,
    cfg: &SampleConfig,
    seed: u64,
) -> Result<String> {
    let params = crate::sample::SamplingParams {
        temperature: cfg.temperature,
        top_k: cfg.top_k,
        ..Default::default()
    };
    crate::sample::complete(model, tokenizer, &cfg.prompt, cfg.tokens, params, seed)
}
