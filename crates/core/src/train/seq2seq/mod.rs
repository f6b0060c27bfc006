//! The training loop of the encoder-decoder transformer (Vaswani et al. 2017), top to bottom
//! like the GPT's: learning rate for this step (the paper's inverse square-root schedule),
//! evaluate on the validation pairs and checkpoint every N steps, micro-batches of length-sorted
//! pairs with label-smoothed cross-entropy, clip, AdamW step, one log line.

mod config;
mod data;
mod report;
mod step;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use candle_nn::{VarBuilder, VarMap};

pub use config::{PRESETS, ParallelDataConfig, Seq2SeqRunConfig};
pub use data::{PairData, SPECIALS, model_config_for, prepare_pairs, specials_of};
pub use step::{StepOutcome, train_step};

use crate::data::parallel::batch::{batches_per_epoch, epoch_batches};
use crate::error::{Error, Result};
use crate::models::seq2seq::{DTYPE, Seq2Seq, save_config, seq2seq_init};
use crate::nn::init_varmap;
use crate::run_dir::{OnExisting, RunDir};
use crate::tokenizer::TextTokenizer;
use crate::train::cadence::{Cadence, EvalLog, StepLog, TrainingLoop, finish, run_steps};
use crate::train::checkpoint::{self, TrainClock, TrainState};
use crate::train::gpt::detached;
use crate::train::metrics::MetricsLog;
use crate::train::optimizer::AdamW;
use crate::train::progress::Progress;
use crate::train::schedule::LrSchedule;

/// What to train and where.
pub struct Seq2SeqTrainJob {
    pub out: PathBuf,
    /// Preset name (recorded in training.json).
    pub preset: String,
    /// The resolved configuration.
    pub config: Seq2SeqRunConfig,
    pub on_existing: OnExisting,
    pub device: Device,
}

/// The outcome of a finished run.
pub struct Seq2SeqTrainReport {
    pub run_dir: PathBuf,
    pub steps: u64,
    /// Label-smoothed loss of the last step.
    pub train_loss: f64,
    /// Validation cross-entropy (nats per target token, no smoothing).
    pub val_loss: f64,
    pub train_seconds: f64,
    /// Greedy translations of a few validation sentences.
    pub sample: String,
}

/// Trains a translation model as `job` says. Returns [`Error::Interrupted`] after saving a
/// checkpoint when Ctrl-C was pressed.
pub fn train_seq2seq(job: Seq2SeqTrainJob) -> Result<Seq2SeqTrainReport> {
    let cfg = job.config.clone();
    cfg.validate()?;
    RunDir::check(&job.out, job.on_existing)?;
    let resuming = job.on_existing == OnExisting::Resume;

    // Data and tokenizer first (a resumed run reuses its tokenizer), so bad input leaves no
    // half-made run folder behind.
    let tokenizer = resuming
        .then(|| TextTokenizer::from_file(&RunDir::new(&job.out).tokenizer()))
        .transpose()?;
    let data = prepare_pairs(&cfg.data, &cfg.model, tokenizer)?;
    let run = RunDir::prepare(&job.out, job.on_existing)?;
    let model_cfg = model_config_for(&cfg.model, &data)?;
    let t = &cfg.train;

    let mut varmap = VarMap::new();
    let model = Seq2Seq::new(
        &model_cfg,
        VarBuilder::from_varmap(&varmap, DTYPE, &job.device),
    )?;
    init_varmap(&varmap, t.seed, seq2seq_init(&model_cfg))?;
    let mut opt = AdamW::new(&varmap, t)?;
    let state = if resuming {
        let state = checkpoint::load(&run, &mut varmap, &mut [("", &mut opt)])?;
        check_same_data(&run, &data)?;
        run.record_resumed_config(&job.config)?;
        state
    } else {
        save_config(run.root(), &model_cfg)?;
        data.tokenizer.save(&run.tokenizer())?;
        run.write_training("seq2seq", &job.preset, &job.config, t.seed, &data.dataset)?;
        TrainState::default()
    };
    let frozen = Seq2Seq::new(&model_cfg, detached(&varmap, &job.device)?)?;

    let metrics = MetricsLog::open(
        &run.metrics(),
        resuming.then_some((state.step, state.metrics_bytes)),
    )?;
    let start_step = state.step;
    tracing::info!(
        "training {} parameters on {} train / {} valid pairs, {} steps from step {start_step}",
        crate::models::seq2seq::parameter_count(&model_cfg),
        data.train.len(),
        data.valid.len(),
        t.max_iters
    );
    let progress = Progress::new("train", start_step, t.max_iters as u64);
    let cadence = Cadence {
        eval_every: t.eval_interval as u64,
        sample_every: t.sample_interval as u64,
        log_every: t.log_interval as u64,
        eval_first: true,
        sample_first: false,
    };
    let lengths: Vec<usize> = data.train.iter().map(|p| p.len()).collect();
    let mut l = Seq2SeqLoop {
        clock: TrainClock::start(&state),
        run: &run,
        model: &model,
        frozen: &frozen,
        varmap: &varmap,
        opt,
        state,
        metrics,
        data: &data,
        lengths,
        plan: None,
        cfg: &cfg,
        schedule: LrSchedule::from_config(t),
        last_loss: f64::NAN,
        device: &job.device,
    };
    let end = t.max_iters as u64;
    run_steps(&mut l, &cadence, start_step, end, &progress)?;
    let val_loss = finish(&mut l, start_step, end, &progress)?;
    let sample = report::translate_samples(&frozen, &data)?;
    report::write_sample(&run, &sample, end)?;
    let train_loss = l.last_loss;
    let state = l.state;
    report::write_model_card(&run, &job, &model_cfg, &data, &state, val_loss)?;
    Ok(Seq2SeqTrainReport {
        run_dir: run.root().to_path_buf(),
        steps: state.step,
        train_loss,
        val_loss,
        train_seconds: state.train_seconds,
        sample,
    })
}

/// The translation model's part of the shared cadence.
struct Seq2SeqLoop<'a> {
    run: &'a RunDir,
    model: &'a Seq2Seq,
    frozen: &'a Seq2Seq,
    varmap: &'a VarMap,
    opt: AdamW,
    state: TrainState,
    metrics: MetricsLog,
    clock: TrainClock,
    data: &'a PairData,
    /// Length of each training pair, for the batching.
    lengths: Vec<usize>,
    /// The batches of the current epoch: (epoch, batches).
    plan: Option<(u64, Vec<Vec<usize>>)>,
    cfg: &'a Seq2SeqRunConfig,
    schedule: LrSchedule,
    last_loss: f64,
    device: &'a Device,
}

impl Seq2SeqLoop<'_> {
    /// The pair indices of batch number `b` since the start of training.
    fn batch(&mut self, b: u64) -> Vec<usize> {
        let t = &self.cfg.train;
        let per_epoch = batches_per_epoch(self.lengths.len(), t.batch_size) as u64;
        let (epoch, i) = (b / per_epoch, (b % per_epoch) as usize);
        if self.plan.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let batches = epoch_batches(&self.lengths, t.batch_size, t.seed, epoch);
            self.plan = Some((epoch, batches));
        }
        self.plan
            .as_ref()
            .map(|(_, p)| p[i].clone())
            .unwrap_or_default()
    }
}

impl TrainingLoop for Seq2SeqLoop<'_> {
    /// Validation cross-entropy.
    type Eval = f64;

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

    /// One optimizer step over `grad_accum` batches.
    fn step(&mut self, step: u64) -> Result<StepLog> {
        let t0 = Instant::now();
        let accum = self.cfg.train.grad_accum as u64;
        let batches: Vec<Vec<usize>> = (0..accum)
            .map(|micro| self.batch(step * accum + micro))
            .collect();
        let lr = self.schedule.at(step as usize);
        let StepOutcome {
            loss,
            grad_norm,
            target_tokens: tokens,
        } = train_step(
            self.model,
            &mut self.opt,
            self.data,
            &batches,
            self.cfg,
            (step, lr),
            self.device,
        )?;
        let t = &self.cfg.train;
        self.last_loss = loss;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let tok_s = tokens as f64 / (ms / 1e3);
        let val = self
            .state
            .last_val_loss
            .map_or("-".to_string(), |v| format!("{v:.4}"));
        Ok(StepLog {
            examples: (t.batch_size * t.grad_accum) as u64,
            status: format!("loss {loss:.4}"),
            line: format!(
                "step {step} | loss {loss:.4} | val {val} | lr {lr:.1e} | {ms:.0} ms | {} tgt tok/s",
                report::si(tok_s)
            ),
            metrics: serde_json::json!({
                "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "ms": ms,
                "tgt_tok_per_s": tok_s,
            }),
        })
    }

    fn evaluate(&mut self, _step: u64) -> Result<f64> {
        report::valid_loss(self.frozen, self.data, &self.cfg.train, self.device)
    }

    fn eval_log(&mut self, step: u64, &val_loss: &f64) -> Option<EvalLog> {
        Some(EvalLog {
            line: format!(
                "step {step} | val {val_loss:.4} | val ppl {:.2}",
                val_loss.exp()
            ),
            metrics: serde_json::json!({ "step": step, "val_loss": val_loss }),
            val_loss: Some(val_loss),
        })
    }

    fn sample(&mut self, step: u64) -> Result<()> {
        let text = report::translate_samples(self.frozen, self.data)?;
        report::write_sample(self.run, &text, step)
    }

    fn plot(&self) -> Result<()> {
        report::plot_losses(self.run)
    }
}

/// A resumed run must see the corpus it started with.
fn check_same_data(run: &RunDir, data: &PairData) -> Result<()> {
    let record = run.read_training()?;
    if record.dataset.sha256 != data.dataset.sha256 {
        return Err(Error::input(format!(
            "the corpus changed since this run started ({} had sha256 {}, {} has {}); resume \
             with the original data or start a new run",
            record.dataset.path, record.dataset.sha256, data.dataset.path, data.dataset.sha256
        )));
    }
    Ok(())
}
