//! Supervised fine-tuning (SFT) of a pretrained language model on instruction data, with the
//! loss on response tokens only, in the shape of the GPT loop (`train::gpt`): learning rate
//! for this step, evaluate and checkpoint every N steps, micro-steps with accumulation, clip,
//! step, one log line. Full fine-tuning trains every weight; `--lora` trains adapters only
//! ("LoRA", Hu et al. 2021). Examples are padded per batch (one example per row, causal
//! attention: no example sees another).

mod config;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};

pub use config::{FinetuneConfig, SftDataConfig};

use crate::data::instructions::{
    InstructionSet, TokenizedExample, read_instructions, tokenize_conversation,
};
use crate::error::{Error, Result};
use crate::models::pretrained::TextLm;
use crate::run_dir::{OnExisting, RunDir};
use crate::tokenizer::chat::{ChatMessage, ChatTemplate, Role};
use crate::train::cadence::{Cadence, EvalLog, StepLog, TrainingLoop, finish, run_steps};
use crate::train::checkpoint::{TrainClock, TrainState};
use crate::train::metrics::MetricsLog;
use crate::train::optimizer::AdamW;
use crate::train::progress::Progress;
use crate::train::schedule::LrSchedule;
use crate::train::seeds::SFT_DROPOUT_STREAM;
use crate::train::tuning::{
    Base, DropReason, Dropped, EpochOrder, Policy, TuneJob, example_length, first_sentence,
    open_state, pad_batch, record, report, resolve_template, split_indices, truncate,
};

/// What to fine-tune, on what, and where.
pub type FinetuneJob = TuneJob<FinetuneConfig>;

/// The outcome of a finished run.
pub struct FinetuneReport {
    pub run_dir: PathBuf,
    pub steps: u64,
    /// Held-out loss per response token before training (step 0) and at the end.
    pub val_loss_start: f64,
    pub val_loss: f64,
    pub train_loss: f64,
    pub train_examples: usize,
    pub val_examples: usize,
    pub params: usize,
    pub trainable: usize,
    pub train_seconds: f64,
    /// Replies to held-out prompts at the end.
    pub samples: Vec<(String, String)>,
}

/// Examples ready for training.
pub struct SftData {
    pub train: Vec<TokenizedExample>,
    pub val: Vec<TokenizedExample>,
    /// Held-out conversations without their last reply, for samples.
    pub val_prompts: Vec<Vec<ChatMessage>>,
    /// Examples cut to the maximum length.
    pub truncated: usize,
    /// Examples left out, by reason: nothing to learn within the maximum length, or text the
    /// tokenizer cannot spell (a character-level vocabulary).
    pub dropped: Dropped,
}

/// Tokenizes conversations through `template` and splits off the held-out part.
pub fn prepare_sft(
    set: &InstructionSet,
    base: &Base,
    template: &ChatTemplate,
    max_len: usize,
    val_fraction: f64,
) -> Result<SftData> {
    let n = set.conversations.len();
    if n < 2 {
        return Err(Error::input(format!(
            "{} holds {n} example(s); fine-tuning needs at least 2 (one is held out)",
            set.source.path
        )));
    }
    let (train_idx, val_idx) = split_indices(n, val_fraction);
    let mut truncated = 0;
    let mut dropped = Dropped::new(max_len);
    let mut encode = |i: usize| -> Result<Option<TokenizedExample>> {
        let ex = match tokenize_conversation(
            &base.tokenizer,
            template,
            &set.conversations[i],
            base.bos,
            base.eos,
        ) {
            Ok(ex) => ex,
            Err(Error::Input(msg)) if base.tokenizer.is_char_level() => {
                dropped.add(DropReason::Unspellable, i, || first_sentence(&msg));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if ex.ids.len() > max_len {
            truncated += 1;
        }
        let cut = truncate(&ex, max_len);
        if cut.is_none() {
            dropped.add(DropReason::NoReplyWithinLength, i, || {
                format!("{} tokens", ex.ids.len())
            });
        }
        Ok(cut)
    };
    let mut train = Vec::new();
    for &i in &train_idx {
        train.extend(encode(i)?);
    }
    let mut val = Vec::new();
    let mut val_prompts = Vec::new();
    for &i in &val_idx {
        if let Some(ex) = encode(i)? {
            val.push(ex);
            let mut convo = set.conversations[i].clone();
            while convo.last().is_some_and(|m| m.role == Role::Assistant) {
                convo.pop();
            }
            val_prompts.push(convo);
        }
    }
    if train.is_empty() || val.is_empty() {
        return Err(Error::input(format!(
            "no examples left to {} after tokenizing ({dropped})",
            if train.is_empty() {
                "train on"
            } else {
                "hold out"
            }
        )));
    }
    Ok(SftData {
        train,
        val,
        val_prompts,
        truncated,
        dropped,
    })
}

/// Runs supervised fine-tuning as `job` says. Returns [`Error::Interrupted`] after saving a
/// checkpoint when Ctrl-C was pressed.
/// With `replies`, the loop answers a few held-out prompts every `sample_interval` steps and at
/// the end (into `samples/` and the report).
pub fn finetune(job: FinetuneJob, replies: bool) -> Result<FinetuneReport> {
    let cfg = job.config.clone();
    cfg.validate()?;
    RunDir::check(&job.out, job.on_existing)?;
    let resuming = job.on_existing == OnExisting::Resume;
    let t = &cfg.train;

    // Inputs first, so bad input leaves no half-made run folder behind. A resumed run reopens
    // itself: its config, tokenizer, template and (LoRA) frozen base weights.
    let set = read_instructions(&job.data, cfg.data.format)?;
    let (base, template) = open_base(&job, resuming)?;
    let max_len = example_length(cfg.data.max_len, &base)?;
    let data = prepare_sft(&set, &base, &template, max_len, cfg.data.val_fraction)?;
    let mut policy = Policy::new(&base, cfg.lora.as_ref(), t.seed, &job.device)?;
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
        || check_same_data(&run, &set),
    )?;
    let frozen = policy.frozen(&base, &job.device)?;
    let pad = base.eos.unwrap_or(0);
    let params = base.parameter_count();
    let trainable = policy.trainable_count();
    tracing::info!(
        "fine-tuning {trainable} of {params} parameters ({:.2}%) on {} examples, {} held out \
         ({} truncated to {max_len} tokens, {})",
        100.0 * trainable as f64 / params.max(1) as f64,
        data.train.len(),
        data.val.len(),
        data.truncated,
        data.dropped
    );
    // As many training examples as held-out ones, for the train loss beside the held-out one.
    let train_probe = &data.train[..data.val.len().min(data.train.len())];

    // Drop the base copy the policy no longer needs (full fine-tuning copied it).
    let tokenizer = base.tokenizer.clone();
    let bos = base.bos;
    let base_path = base.path.display().to_string();
    let family = base.family();
    let base = if policy.lora.is_some() {
        Some(base)
    } else {
        None
    };

    let metrics = MetricsLog::open(
        &run.metrics(),
        resuming.then_some((state.step, state.metrics_bytes)),
    )?;
    let (start_step, end) = (state.step, t.max_iters as u64);
    let progress = Progress::new("finetune", start_step, end);
    let cadence = Cadence {
        eval_every: t.eval_interval as u64,
        sample_every: if replies { t.sample_interval as u64 } else { 0 },
        log_every: t.log_interval as u64,
        eval_first: true,
        sample_first: false,
    };
    let mut l = SftLoop {
        clock: TrainClock::start(&state),
        run: &run,
        policy: &policy,
        frozen: &frozen,
        opt,
        state,
        metrics,
        cfg: &cfg,
        data: &data,
        train_probe,
        template: &template,
        tokenizer: &tokenizer,
        bos,
        order: EpochOrder::new(data.train.len(), t.seed),
        schedule: LrSchedule::from_config(t),
        pad,
        device: &job.device,
        val_start: f64::NAN,
        replies: Vec::new(),
    };
    run_steps(&mut l, &cadence, start_step, end, &progress)?;
    let (train_loss, val_loss) = finish(&mut l, start_step, end, &progress)?;
    if replies {
        l.sample(end)?;
    }
    let val_start = if l.val_start.is_nan() {
        first_val_loss(&run).unwrap_or(f64::NAN)
    } else {
        l.val_start
    };
    let (state, samples) = (l.state, l.replies);
    drop(base);
    let what = SftCard {
        family,
        base_path: &base_path,
        params,
        trainable,
        set: &set,
        data: &data,
        template_name: &template.name,
        val: (val_start, val_loss),
    };
    write_card(&run, &cfg, &state, &what)?;
    Ok(FinetuneReport {
        run_dir: run.root().to_path_buf(),
        steps: state.step,
        val_loss_start: val_start,
        val_loss,
        train_loss,
        train_examples: data.train.len(),
        val_examples: data.val.len(),
        params,
        trainable,
        train_seconds: state.train_seconds,
        samples,
    })
}

/// The base model and the chat template of a fine-tuning run (a resumed run reopens itself:
/// its tokenizer, template and, for LoRA, its frozen base weights).
fn open_base(job: &FinetuneJob, resuming: bool) -> Result<(Base, ChatTemplate)> {
    if resuming {
        let base = Base::load(&job.out, None, false, &job.device)?;
        let template = base.template.clone();
        return Ok((base, template));
    }
    let base = Base::load(&job.base, job.tokenizer.as_deref(), true, &job.device)?;
    let template = resolve_template(&job.config.data.template, &base)?;
    Ok((base, template))
}

/// Supervised fine-tuning's part of the shared cadence.
struct SftLoop<'a> {
    run: &'a RunDir,
    policy: &'a Policy,
    /// The policy's weights without autograd tracking, for evaluation and replies.
    frozen: &'a TextLm,
    opt: AdamW,
    state: TrainState,
    metrics: MetricsLog,
    clock: TrainClock,
    cfg: &'a FinetuneConfig,
    data: &'a SftData,
    /// As many training examples as held-out ones, for the train loss beside the held-out one.
    train_probe: &'a [TokenizedExample],
    template: &'a ChatTemplate,
    tokenizer: &'a crate::tokenizer::TextTokenizer,
    /// The base's beginning-of-sequence id, when its tokenizer adds one.
    bos: Option<u32>,
    order: EpochOrder,
    schedule: LrSchedule,
    pad: u32,
    device: &'a Device,
    /// The held-out loss before training (step 0 of this run), NaN until measured.
    val_start: f64,
    /// The last replies to held-out prompts.
    replies: Vec<(String, String)>,
}

impl TrainingLoop for SftLoop<'_> {
    /// (train loss, held-out loss) per response token.
    type Eval = (f64, f64);

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
        let (t0, t) = (Instant::now(), &self.cfg.train);
        let lr = self.schedule.at(step as usize);
        let (mut loss_sum, mut tokens) = (0.0, 0usize);
        let (order, data, policy) = (&mut self.order, self.data, self.policy);
        let (pad, device) = (self.pad, self.device);
        let grad_norm = policy.optimizer_step(
            &mut self.opt,
            t,
            self.cfg.model_dropout,
            SFT_DROPOUT_STREAM,
            step,
            lr,
            |micro, dropout| {
                let idx = order.batch(step, micro, t.grad_accum as u64, t.batch_size);
                let examples: Vec<&TokenizedExample> =
                    idx.iter().map(|&i| &data.train[i]).collect();
                let b = pad_batch(&examples, pad, device)?;
                tokens += b.n_tokens;
                let loss = policy.model.loss(&b.inputs, &b.targets, dropout)?;
                loss_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                Ok(loss)
            },
        )?;
        let loss = loss_sum / t.grad_accum as f64;
        crate::train::checkpoint::check_finite(step, "loss", loss)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let tok_s = tokens as f64 / (ms / 1e3);
        let examples = (t.batch_size * t.grad_accum) as u64;
        let val = self
            .state
            .last_val_loss
            .map_or("-".to_string(), |v| format!("{v:.4}"));
        Ok(StepLog {
            examples,
            status: format!("loss {loss:.4}"),
            line: format!(
                "step {step} | loss {loss:.4} | val {val} | lr {lr:.1e} | {ms:.0} ms | {} tok/s | \
                 epoch {:.2}",
                report::si(tok_s),
                self.order.epoch_of(self.state.examples_seen + examples)
            ),
            metrics: serde_json::json!({
                "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "ms": ms,
                "tok_per_s": tok_s,
            }),
        })
    }

    fn evaluate(&mut self, step: u64) -> Result<(f64, f64)> {
        let t = &self.cfg.train;
        let f = |ex: &[TokenizedExample]| {
            report::response_loss(
                self.frozen,
                ex,
                t.batch_size,
                t.eval_iters,
                self.pad,
                self.device,
            )
        };
        let losses = (f(self.train_probe)?, f(&self.data.val)?);
        if step == 0 {
            self.val_start = losses.1;
        }
        Ok(losses)
    }

    fn eval_log(&mut self, step: u64, &(train_loss, val_loss): &(f64, f64)) -> Option<EvalLog> {
        Some(EvalLog {
            line: format!(
                "step {step} | train {train_loss:.4} | val {val_loss:.4} (response tokens)"
            ),
            metrics: serde_json::json!({
                "step": step, "train_loss": train_loss, "val_loss": val_loss,
            }),
            val_loss: Some(val_loss),
        })
    }

    /// Replies to the held-out prompts, into `samples/`.
    fn sample(&mut self, step: u64) -> Result<()> {
        let template = self.template;
        let prompts = self
            .data
            .val_prompts
            .iter()
            .map(|c| template.render(c, true));
        let seed = self.cfg.train.seed ^ step;
        let replies = report::replies(
            self.frozen,
            self.tokenizer,
            self.bos,
            prompts,
            &template.stop,
            seed,
        )?;
        report::write_samples(self.run, step, &replies)?;
        self.replies = replies;
        Ok(())
    }

    fn plot(&self) -> Result<()> {
        plot_sft(self.run)
    }
}

/// What the model card of a fine-tuned run says beyond the config and state.
struct SftCard<'a> {
    family: &'a str,
    base_path: &'a str,
    params: usize,
    trainable: usize,
    set: &'a InstructionSet,
    data: &'a SftData,
    template_name: &'a str,
    /// Held-out loss per response token before and after.
    val: (f64, f64),
}

fn write_card(run: &RunDir, cfg: &FinetuneConfig, state: &TrainState, c: &SftCard) -> Result<()> {
    let (t, set, data) = (&cfg.train, c.set, c.data);
    let (val_start, val_loss) = c.val;
    report::write_card(
        run,
        &report::Card {
            dataset: set.source.name.clone(),
            method: "sft",
            config: serde_json::to_value(cfg).unwrap_or_default(),
            what: format!(
                "A {} language model fine-tuned by Muse on instructions (supervised \
                 fine-tuning{}, loss on response tokens only).",
                c.family,
                if cfg.lora.is_some() {
                    " with LoRA adapters"
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
                    "- `{}` ({}), format `{}`, sha256 `{}`",
                    set.source.name,
                    set.source.path,
                    serde_json::to_value(cfg.data.format)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    set.source.sha256
                ),
                format!(
                    "- {} training and {} held-out examples ({} rows skipped by the reader, {} \
                     truncated, {})",
                    data.train.len(),
                    data.val.len(),
                    set.skipped,
                    data.truncated,
                    data.dropped
                ),
                format!("- chat template `{}`", c.template_name),
            ],
            training: vec![
                format!(
                    "- {} steps of {} examples, lr {:.1e}, seed {}, {:.0} s",
                    state.step,
                    t.batch_size * t.grad_accum,
                    t.lr,
                    t.seed,
                    state.train_seconds
                ),
                match &cfg.lora {
                    Some(l) => format!(
                        "- LoRA r={} alpha={} dropout={} targets={}",
                        l.r,
                        l.alpha,
                        l.dropout,
                        l.targets.join(",")
                    ),
                    None => "- full fine-tuning (every weight)".into(),
                },
            ],
            metrics: vec![format!(
                "| loss per response token | {val_start:.4} | {val_loss:.4} |"
            )],
            lora: cfg.lora.is_some(),
        },
    )
}

fn plot_sft(run: &RunDir) -> Result<()> {
    report::plot(
        run,
        "Fine-tuning loss (nats per response token)",
        "loss",
        &[
            ("train (batch)", "loss"),
            ("train (estimate)", "train_loss"),
            ("held-out", "val_loss"),
        ],
    )
}

/// The held-out loss logged at step 0 (for a resumed run's report).
fn first_val_loss(run: &RunDir) -> Option<f64> {
    let records = crate::train::metrics::read_metrics(&run.metrics()).ok()?;
    records
        .iter()
        .find(|r| r.get("step").and_then(|s| s.as_u64()) == Some(0) && r.get("val_loss").is_some())
        .and_then(|r| r.get("val_loss")?.as_f64())
}

/// The stored config of a run written by [`finetune`] and its data, for `--resume`.
pub fn stored_config(run: &Path) -> Result<(FinetuneConfig, String)> {
    let stored = record::read_record(run, "muse finetune")?;
    Ok((stored.config, stored.data))
}

/// A resumed run must see the data it started with.
fn check_same_data(run: &RunDir, set: &InstructionSet) -> Result<()> {
    let record = run.read_training()?;
    if record.dataset.sha256 != set.source.sha256 {
        return Err(Error::input(format!(
            "the data changed since this run started ({} had sha256 {}, now {}); resume with \
             the original data or start a new run",
            record.dataset.path, record.dataset.sha256, set.source.sha256
        )));
    }
    Ok(())
}
