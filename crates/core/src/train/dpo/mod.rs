//! Preference alignment with Direct Preference Optimization (Rafailov et al. 2023): the policy
//! (every weight, or LoRA adapters) learns to raise the likelihood of chosen replies over
//! rejected ones relative to a frozen reference copy of the starting model. The loop has the
//! GPT loop's shape; it logs the loss, reward margins and preference accuracy, and evaluates
//! them on a held-out split.

mod config;
mod eval;
pub mod loss;
mod pairs;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};

pub use config::{AlignConfig, PrefDataConfig};
pub use eval::{DpoEval, HeldOutPairs, evaluate, pair_logps};
pub use loss::{DpoOutput, dpo_loss, reward_stats, sequence_logps};
pub use pairs::{DpoData, PairTokens, prepare_pairs};

use crate::data::preferences::{PreferenceSet, read_preferences};
use crate::error::Result;
use crate::models::pretrained::TextLm;
use crate::nn::Dropout;
use crate::run_dir::{OnExisting, RunDir};
use crate::tokenizer::chat::ChatTemplate;
use crate::train::cadence::{Cadence, EvalLog, StepLog, TrainingLoop, finish, run_steps};
use crate::train::checkpoint::{TrainClock, TrainState};
use crate::train::metrics::MetricsLog;
use crate::train::optimizer::AdamW;
use crate::train::progress::Progress;
use crate::train::schedule::LrSchedule;
use crate::train::seeds::DPO_DROPOUT_STREAM;
use crate::train::tuning::record::read_record;
use crate::train::tuning::{
    Base, EpochOrder, Policy, TuneJob, example_length, open_state, report, resolve_template,
};

/// What to align, with which preferences (`--dpo`), and where.
pub type AlignJob = TuneJob<AlignConfig>;

/// The outcome of a finished run.
pub struct AlignReport {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub start: DpoEval,
    pub end: DpoEval,
    pub train_pairs: usize,
    pub val_pairs: usize,
    pub params: usize,
    pub trainable: usize,
    pub train_seconds: f64,
    pub samples: Vec<(String, String)>,
}
/// Runs DPO as `job` says. Returns [`Error::Interrupted`] after saving a checkpoint when
/// Ctrl-C was pressed.
///
/// With `replies`, the loop answers a few held-out prompts every `sample_interval` steps and at
/// the end (into `samples/` and the report).
pub fn align(job: AlignJob, replies: bool) -> Result<AlignReport> {
    let cfg = job.config.clone();
    cfg.validate()?;
    RunDir::check(&job.out, job.on_existing)?;
    let resuming = job.on_existing == OnExisting::Resume;
    let t = &cfg.train;

    let set = read_preferences(&job.data)?;
    let (base, template) = open_base(&job, resuming)?;
    let max_len = example_length(cfg.data.max_len, &base)?;
    let data = prepare_pairs(
        &set,
        &base,
        &template,
        cfg.data.raw,
        max_len,
        cfg.data.val_fraction,
    )?;
    let mut policy = Policy::new(&base, cfg.lora.as_ref(), t.seed, &job.device)?;
    let reference = base.frozen(&job.device)?;
    let run = RunDir::prepare(&job.out, job.on_existing)?;
    let mut opt = AdamW::new(&policy.varmap, t)?;
    let state = open_state(
        &run,
        resuming,
        &mut policy,
        &mut opt,
        (&base, &template),
        (&job.config, job.config.preset_name(), t.seed),
        &set.source,
        || Ok(()),
    )?;
    let frozen = policy.frozen(&base, &job.device)?;
    let pad = base.eos.unwrap_or(0);
    let params = base.parameter_count();
    let trainable = policy.trainable_count();
    let tokenizer = base.tokenizer.clone();
    let bos = base.bos;
    let base_path = base.path.display().to_string();
    let family = base.family();
    tracing::info!(
        "DPO on {trainable} of {params} parameters, {} train / {} held-out pairs ({}, {} \
         skipped by the reader)",
        data.train.len(),
        data.val.len(),
        data.dropped,
        set.skipped
    );
    let held_out = HeldOutPairs::new(&reference, &data.val, t.batch_size, t.eval_iters, pad)?;
    let metrics = MetricsLog::open(
        &run.metrics(),
        resuming.then_some((state.step, state.metrics_bytes)),
    )?;
    let (start_step, end_step) = (state.step, t.max_iters as u64);
    let progress = Progress::new("align", start_step, end_step);
    let cadence = Cadence {
        eval_every: t.eval_interval as u64,
        sample_every: if replies { t.sample_interval as u64 } else { 0 },
        log_every: t.log_interval as u64,
        eval_first: true,
        sample_first: false,
    };
    let mut l = DpoLoop {
        clock: TrainClock::start(&state),
        run: &run,
        policy: &policy,
        reference: &reference,
        frozen: &frozen,
        held_out: &held_out,
        opt,
        state,
        metrics,
        cfg: &cfg,
        data: &data,
        template: &template,
        tokenizer: &tokenizer,
        bos,
        order: EpochOrder::new(data.train.len(), t.seed),
        schedule: LrSchedule::from_config(t),
        pad,
        device: &job.device,
        start_eval: None,
        replies: Vec::new(),
    };
    run_steps(&mut l, &cadence, start_step, end_step, &progress)?;
    let end = finish(&mut l, start_step, end_step, &progress)?;
    if replies {
        l.sample(end_step)?;
    }
    let start = match l.start_eval.take() {
        Some(e) => e,
        None => held_out.evaluate(&reference, cfg.beta)?,
    };
    let (state, samples) = (l.state, l.replies);
    let what = DpoCard {
        family,
        base_path: &base_path,
        params,
        trainable,
        set: &set,
        data: &data,
        start: &start,
        end: &end,
    };
    write_card(&run, &cfg, &state, &what)?;
    Ok(AlignReport {
        run_dir: run.root().to_path_buf(),
        steps: state.step,
        start,
        end,
        train_pairs: data.train.len(),
        val_pairs: data.val.len(),
        params,
        trainable,
        train_seconds: state.train_seconds,
        samples,
    })
}

/// The base model (the reference) and the chat template of an align run.
fn open_base(job: &AlignJob, resuming: bool) -> Result<(Base, ChatTemplate)> {
    // The reference is the starting model. A resumed full run must find it again: it is the
    // base named in training.json (a resumed LoRA run keeps it in its own folder).
    if resuming {
        let run_base = Base::load(&job.out, None, false, &job.device)?;
        let template = run_base.template.clone();
        let base = if job.config.lora.is_some() {
            run_base
        } else {
            let (_, stored_base) = stored_config(&job.out)?;
            Base::load(
                Path::new(&stored_base),
                job.tokenizer.as_deref(),
                true,
                &job.device,
            )?
        };
        Ok((base, template))
    } else {
        let base = Base::load(&job.base, job.tokenizer.as_deref(), true, &job.device)?;
        let template = resolve_template(&job.config.data.template, &base)?;
        Ok((base, template))
    }
}

/// DPO's part of the shared cadence: the step scores each pair under the policy and the
/// frozen reference; the evaluation is the held-out DPO loss, accuracy and margin.
struct DpoLoop<'a> {
    run: &'a RunDir,
    policy: &'a Policy,
    reference: &'a TextLm,
    /// The policy's weights without autograd tracking, for evaluation and replies.
    frozen: &'a TextLm,
    held_out: &'a HeldOutPairs<'a>,
    opt: AdamW,
    state: TrainState,
    metrics: MetricsLog,
    clock: TrainClock,
    cfg: &'a AlignConfig,
    data: &'a DpoData,
    template: &'a ChatTemplate,
    tokenizer: &'a crate::tokenizer::TextTokenizer,
    /// The base's beginning-of-sequence id, when its tokenizer adds one.
    bos: Option<u32>,
    order: EpochOrder,
    schedule: LrSchedule,
    pad: u32,
    device: &'a Device,
    /// The evaluation before the first step (a new run's), for the report.
    start_eval: Option<DpoEval>,
    /// The last replies to held-out prompts.
    replies: Vec<(String, String)>,
}

impl TrainingLoop for DpoLoop<'_> {
    type Eval = DpoEval;

    fn state(&mut self) -> &mut TrainState {
        &mut self.state
    }

    fn metrics(&mut self) -> &mut MetricsLog {
        &mut self.metrics
    }

    fn save(&mut self) -> Result<()> {
        self.clock.stamp(&mut self.state);
        self.policy.save(self.run, &self.opt, &self.state)
    }

    fn step(&mut self, step: u64) -> Result<StepLog> {
        let (t0, t, beta) = (Instant::now(), &self.cfg.train, self.cfg.beta);
        let lr = self.schedule.at(step as usize);
        let (mut loss_sum, mut margin_sum, mut acc_sum) = (0.0, 0.0, 0.0);
        let (order, data, policy, reference) =
            (&mut self.order, self.data, self.policy, self.reference);
        let (pad, device) = (self.pad, self.device);
        let grad_norm = policy.optimizer_step(
            &mut self.opt,
            t,
            self.cfg.model_dropout,
            DPO_DROPOUT_STREAM,
            step,
            lr,
            |micro, dropout| {
                let idx = order.batch(step, micro, t.grad_accum as u64, t.batch_size);
                let pairs: Vec<&PairTokens> = idx.iter().map(|&i| &data.train[i]).collect();
                let (pc, pr) = pair_logps(&policy.model, &pairs, pad, dropout, device)?;
                let (rc, rr) = pair_logps(reference, &pairs, pad, &mut Dropout::eval(), device)?;
                let out = dpo_loss(&pc, &pr, &rc, &rr, beta)?;
                let (margin, acc, _, _) = reward_stats(&out)?;
                loss_sum += out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                margin_sum += margin;
                acc_sum += acc;
                Ok(out.loss)
            },
        )?;
        let k = t.grad_accum as f64;
        let (loss, margin, acc) = (loss_sum / k, margin_sum / k, acc_sum / k);
        crate::train::checkpoint::check_finite(step, "DPO loss", loss)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        Ok(StepLog {
            examples: (t.batch_size * t.grad_accum) as u64,
            status: format!("loss {loss:.4} acc {acc:.2}"),
            line: format!(
                "step {step} | loss {loss:.4} | margin {margin:+.4} | acc {acc:.2} | lr {lr:.1e} \
                 | {ms:.0} ms"
            ),
            metrics: serde_json::json!({
                "step": step, "loss": loss, "margin": margin, "accuracy": acc, "lr": lr,
                "grad_norm": grad_norm, "ms": ms,
            }),
        })
    }

    fn evaluate(&mut self, step: u64) -> Result<DpoEval> {
        let e = self.held_out.evaluate(self.frozen, self.cfg.beta)?;
        if step == 0 {
            self.start_eval = Some(e);
        }
        Ok(e)
    }

    fn eval_log(&mut self, step: u64, e: &DpoEval) -> Option<EvalLog> {
        Some(EvalLog {
            line: format!(
                "step {step} | held-out loss {:.4} | accuracy {:.3} | margin {:+.4} | rewards \
                 chosen {:+.4} rejected {:+.4}",
                e.loss, e.accuracy, e.margin, e.chosen_reward, e.rejected_reward
            ),
            metrics: serde_json::json!({
                "step": step, "val_loss": e.loss, "val_accuracy": e.accuracy,
                "val_margin": e.margin, "val_chosen_reward": e.chosen_reward,
                "val_rejected_reward": e.rejected_reward,
            }),
            val_loss: Some(e.loss),
        })
    }

    /// Replies to the held-out prompts, into `samples/`.
    fn sample(&mut self, step: u64) -> Result<()> {
        let prompts = self.data.val_prompts.iter().cloned();
        let seed = self.cfg.train.seed ^ step;
        let stop = &self.template.stop;
        let replies = report::replies(self.frozen, self.tokenizer, self.bos, prompts, stop, seed)?;
        report::write_samples(self.run, step, &replies)?;
        self.replies = replies;
        Ok(())
    }

    fn plot(&self) -> Result<()> {
        plot_dpo(self.run)
    }
}

/// What the model card of an aligned run says beyond the config and state.
struct DpoCard<'a> {
    family: &'a str,
    base_path: &'a str,
    params: usize,
    trainable: usize,
    set: &'a PreferenceSet,
    data: &'a DpoData,
    /// Held-out statistics before and after.
    start: &'a DpoEval,
    end: &'a DpoEval,
}

fn write_card(run: &RunDir, cfg: &AlignConfig, state: &TrainState, c: &DpoCard) -> Result<()> {
    let (t, set, data) = (&cfg.train, c.set, c.data);
    report::write_card(
        run,
        &report::Card {
            dataset: set.source.name.clone(),
            method: "dpo",
            config: serde_json::to_value(cfg).unwrap_or_default(),
            what: format!(
                "A {} language model aligned by Muse to preference pairs with Direct \
                 Preference Optimization (beta {}{}), against a frozen reference copy of its \
                 base.",
                c.family,
                cfg.beta,
                if cfg.lora.is_some() {
                    ", LoRA adapters"
                } else {
                    ""
                }
            ),
            base: c.base_path,
            family: c.family,
            params: c.params,
            trainable: c.trainable,
            data: vec![
                format!(
                    "- `{}` ({}), sha256 `{}`",
                    set.source.name, set.source.path, set.source.sha256
                ),
                format!(
                    "- {} training and {} held-out pairs ({} lines skipped, {})",
                    data.train.len(),
                    data.val.len(),
                    set.skipped,
                    data.dropped
                ),
            ],
            training: vec![format!(
                "- {} steps of {} pairs, lr {:.1e}, seed {}, {:.0} s",
                state.step,
                t.batch_size * t.grad_accum,
                t.lr,
                t.seed,
                state.train_seconds
            )],
            metrics: vec![
                format!("| DPO loss | {:.4} | {:.4} |", c.start.loss, c.end.loss),
                format!(
                    "| preference accuracy (ties half) | {:.3} | {:.3} |",
                    c.start.accuracy, c.end.accuracy
                ),
                format!(
                    "| reward margin | {:.4} | {:.4} |",
                    c.start.margin, c.end.margin
                ),
            ],
            lora: cfg.lora.is_some(),
        },
    )
}

fn plot_dpo(run: &RunDir) -> Result<()> {
    report::plot(
        run,
        "DPO loss and held-out preference accuracy",
        "loss / accuracy",
        &[
            ("train loss (batch)", "loss"),
            ("held-out loss", "val_loss"),
            ("held-out accuracy", "val_accuracy"),
        ],
    )
}

/// The stored config and base path of a run written by [`align`], for `--resume`.
pub fn stored_config(run: &Path) -> Result<(AlignConfig, String)> {
    let stored = read_record(run, "muse align")?;
    Ok((stored.config, stored.base))
}

/// The `--dpo` data a run was started with (its registry name or path).
pub fn stored_data(run: &Path) -> Result<String> {
    Ok(read_record::<AlignConfig>(run, "muse align")?.data)
}
