//! Preference alignment with Direct Preference Optimization (Rafailov et al. 2023): the policy
//! (every weight, or LoRA adapters) learns to raise the likelihood of chosen replies over
//! rejected ones relative to a frozen reference copy of the starting model. The loop has the
//! GPT loop's shape; it logs the loss, reward margins and preference accuracy, and evaluates
//! them on a held-out split.

pub mod loss;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

pub use loss::{DpoOutput, dpo_loss, reward_stats, sequence_logps};

use crate::data::instructions::{TokenizedExample, tokenize_conversation, tokenize_spans};
use crate::data::preferences::{PreferencePair, PreferenceSet, read_preferences};
use crate::error::{Error, Result};
use crate::models::CausalLm;
use crate::models::pretrained::{ModelConfig, TextLm};
use crate::nn::Dropout;
use crate::nn::lora::LoraConfig;
use crate::run_dir::{OnExisting, RunDir};
use crate::tokenizer::chat::{ChatMessage, ChatTemplate, Role};
use crate::train::checkpoint::TrainState;
use crate::train::config::TrainConfig;
use crate::train::finetune::record::{dropout_seed, read_record, write_record};
use crate::train::finetune::{
    Base, EpochOrder, Policy, ReplyFn, bos_of, check_common, finetune_train_config, pad_batch,
    report, resolve_template, split_indices, truncate, write_model_files,
};
use crate::train::interrupt;
use crate::train::metrics::MetricsLog;
use crate::train::optimizer::AdamW;
use crate::train::progress::Progress;
use crate::train::schedule::LrSchedule;

/// Everything `muse align` can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignConfig {
    pub train: TrainConfig,
    /// DPO's beta: how far the policy may move from the reference (smaller: further).
    pub beta: f64,
    pub data: PrefDataConfig,
    /// LoRA adapters on the policy instead of full fine-tuning.
    pub lora: Option<LoraConfig>,
    /// Dropout inside the model while training (0: off, the usual choice for DPO).
    pub model_dropout: f32,
}

/// How preference pairs become sequences.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefDataConfig {
    /// Chat template for pairs with a `prompt`: `base`, `plain`, `chatml` or a path.
    pub template: String,
    /// Use `prompt` + reply as raw text, without the chat template.
    pub raw: bool,
    /// Fraction of the pairs held out for evaluation.
    pub val_fraction: f64,
    /// Longest sequence in tokens (0: the model's context + 1); longer ones are cut.
    pub max_len: usize,
}

impl AlignConfig {
    /// DPO defaults: beta 0.1, 200 steps of 8 pairs, lr 5e-5 (LoRA 5e-4), 10% held out.
    pub fn preset(beta: f64, lora: Option<LoraConfig>) -> Self {
        let mut train = finetune_train_config(lora.is_some());
        train.max_iters = 200;
        train.lr_decay_iters = 200;
        train.warmup_iters = 10;
        (train.lr, train.min_lr) = if lora.is_some() {
            (5e-4, 5e-5)
        } else {
            (5e-5, 5e-6)
        };
        train.eval_interval = 25;
        Self {
            train,
            beta,
            data: PrefDataConfig {
                template: "base".into(),
                raw: false,
                val_fraction: 0.1,
                max_len: 0,
            },
            lora,
            model_dropout: 0.0,
        }
    }

    /// `dpo` or `dpo-lora`.
    pub fn preset_name(&self) -> &'static str {
        if self.lora.is_some() {
            "dpo-lora"
        } else {
            "dpo"
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.train
            .validate()
            .map_err(|e| Error::usage(format!("train: {e}")))?;
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err(Error::usage("--beta must be a positive number"));
        }
        check_common(
            self.data.val_fraction,
            self.model_dropout,
            self.lora.as_ref(),
        )
    }
}

/// What to align, with which preferences, and where.
pub struct AlignJob {
    pub base: PathBuf,
    pub tokenizer: Option<PathBuf>,
    /// `--dpo`: a JSONL file, a folder of them, or `hh-rlhf`.
    pub data: String,
    pub config: AlignConfig,
    pub out: PathBuf,
    pub on_existing: OnExisting,
    pub device: Device,
}

/// Held-out DPO statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DpoEval {
    pub loss: f64,
    /// Fraction of pairs whose implicit reward ranks chosen above rejected (ties half).
    pub accuracy: f64,
    pub margin: f64,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
}

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

/// A pair as token ids.
#[derive(Clone, Debug)]
pub struct PairTokens {
    pub chosen: TokenizedExample,
    pub rejected: TokenizedExample,
}

/// Pairs ready for training.
pub struct DpoData {
    pub train: Vec<PairTokens>,
    pub val: Vec<PairTokens>,
    /// Held-out prompts as the model sees them, for samples.
    pub val_prompts: Vec<String>,
    pub dropped: usize,
}

/// The text of a pair's prompt and one reply as (prompt part, reply part) spans, and whether
/// the reply ends a chat turn (gets end-of-text).
fn pair_spans(
    pair: &PreferencePair,
    template: &ChatTemplate,
    raw: bool,
) -> (Option<Vec<ChatMessage>>, String) {
    if pair.has_prompt && !raw {
        let convo = vec![ChatMessage::new(Role::User, pair.prompt.clone())];
        let prompt = template.render(&convo, true);
        (Some(convo), prompt)
    } else {
        (None, pair.prompt.clone())
    }
}

/// Tokenizes pairs (through the chat template when they have a prompt, unless `raw`) and
/// splits off the held-out part.
pub fn prepare_pairs(
    set: &PreferenceSet,
    base: &Base,
    template: &ChatTemplate,
    raw: bool,
    max_len: usize,
    val_fraction: f64,
) -> Result<DpoData> {
    let n = set.pairs.len();
    if n < 2 {
        return Err(Error::input(format!(
            "{} holds {n} preference pair(s); alignment needs at least 2 (one is held out)",
            set.source.path
        )));
    }
    let (train_idx, val_idx) = split_indices(n, val_fraction);
    let mut dropped = 0;
    let tok = &base.tokenizer;
    let mut encode = |i: usize| -> Result<Option<(PairTokens, String)>> {
        let pair = &set.pairs[i];
        let (convo, prompt) = pair_spans(pair, template, raw);
        let one = |reply: &str| -> Result<TokenizedExample> {
            match &convo {
                Some(c) => {
                    let mut c = c.clone();
                    c.push(ChatMessage::new(Role::Assistant, reply));
                    tokenize_conversation(tok, template, &c, base.bos, base.eos)
                }
                None => {
                    tokenize_spans(tok, &[(&pair.prompt, false), (reply, true)], base.bos, None)
                }
            }
        };
        let (c, r) = match (one(&pair.chosen), one(&pair.rejected)) {
            (Ok(c), Ok(r)) => (c, r),
            (Err(Error::Input(_)), _) | (_, Err(Error::Input(_))) if tok.is_char_level() => {
                dropped += 1;
                return Ok(None);
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        match (truncate(&c, max_len), truncate(&r, max_len)) {
            (Some(chosen), Some(rejected)) => Ok(Some((PairTokens { chosen, rejected }, prompt))),
            _ => {
                dropped += 1;
                Ok(None)
            }
        }
    };
    let mut train = Vec::new();
    for &i in &train_idx {
        train.extend(encode(i)?.map(|(p, _)| p));
    }
    let mut val = Vec::new();
    let mut val_prompts = Vec::new();
    for &i in &val_idx {
        if let Some((p, prompt)) = encode(i)? {
            val.push(p);
            val_prompts.push(prompt);
        }
    }
    if train.is_empty() || val.is_empty() {
        return Err(Error::input(format!(
            "no preference pairs left to {} after tokenizing ({dropped} dropped)",
            if train.is_empty() {
                "train on"
            } else {
                "hold out"
            }
        )));
    }
    Ok(DpoData {
        train,
        val,
        val_prompts,
        dropped,
    })
}

/// Sequence log-probabilities of the chosen and rejected replies of `pairs` under `model`:
/// one forward over a batch of 2B rows (chosen rows first).
///
/// # Shapes
/// -> ((B,), (B,)).
pub fn pair_logps(
    model: &TextLm,
    pairs: &[&PairTokens],
    pad: u32,
    dropout: &mut Dropout,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let b = pairs.len();
    let rows: Vec<&TokenizedExample> = pairs
        .iter()
        .map(|p| &p.chosen)
        .chain(pairs.iter().map(|p| &p.rejected))
        .collect();
    let batch = pad_batch(&rows, pad, device)?;
    let logits = model.forward(&batch.inputs, dropout)?; // (2B * T, V)
    let logps = sequence_logps(&logits, &batch.targets)?; // (2B,)
    Ok((logps.narrow(0, 0, b)?, logps.narrow(0, b, b)?))
}

/// DPO statistics of `policy` against `reference` over `pairs` (at most `max_batches`).
pub fn evaluate(
    policy: &TextLm,
    reference: &TextLm,
    pairs: &[PairTokens],
    beta: f64,
    batch_size: usize,
    max_batches: usize,
    pad: u32,
) -> Result<DpoEval> {
    let device = policy.device();
    let mut sum = DpoEval::default();
    let mut n = 0usize;
    for chunk in pairs.chunks(batch_size.max(1)).take(max_batches.max(1)) {
        let refs: Vec<&PairTokens> = chunk.iter().collect();
        let (pc, pr) = pair_logps(policy, &refs, pad, &mut Dropout::eval(), device)?;
        let (rc, rr) = pair_logps(reference, &refs, pad, &mut Dropout::eval(), device)?;
        let out = dpo_loss(&pc, &pr, &rc, &rr, beta)?;
        let (margin, acc, c, r) = reward_stats(&out)?;
        let k = chunk.len() as f64;
        sum.loss += out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * k;
        sum.accuracy += acc * k;
        sum.margin += margin * k;
        sum.chosen_reward += c * k;
        sum.rejected_reward += r * k;
        n += chunk.len();
    }
    let n = n.max(1) as f64;
    Ok(DpoEval {
        loss: sum.loss / n,
        accuracy: sum.accuracy / n,
        margin: sum.margin / n,
        chosen_reward: sum.chosen_reward / n,
        rejected_reward: sum.rejected_reward / n,
    })
}

/// Runs DPO as `job` says. Returns [`Error::Interrupted`] after saving a checkpoint when
/// Ctrl-C was pressed.
pub fn align(job: AlignJob, reply: Option<ReplyFn>) -> Result<AlignReport> {
    let cfg = job.config.clone();
    cfg.validate()?;
    RunDir::check(&job.out, job.on_existing)?;
    let resuming = job.on_existing == OnExisting::Resume;
    let t = &cfg.train;

    let set = read_preferences(&job.data)?;
    // The reference is the starting model. A resumed full run must find it again: it is the
    // base named in training.json (a resumed LoRA run keeps it in its own folder).
    let (base, template) = if resuming {
        let run_base = Base::load(&job.out, None, false, &job.device)?;
        let template = run_base.template.clone();
        let base = if cfg.lora.is_some() {
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
        (base, template)
    } else {
        let base = Base::load(&job.base, job.tokenizer.as_deref(), true, &job.device)?;
        let template = resolve_template(&cfg.data.template, &base)?;
        (base, template)
    };
    let ctx = ModelConfig::context_len(&base.cfg);
    let max_len = match cfg.data.max_len {
        0 => ctx + 1,
        m => m.min(ctx + 1),
    };
    if max_len < 2 {
        return Err(Error::usage("data: max_len must be at least 2"));
    }
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
    let mut state = if resuming {
        policy.load_checkpoint(&run, &mut opt)?
    } else {
        write_model_files(&run, &base, &template, &policy)?;
        write_record(
            &run,
            &job.config,
            job.config.preset_name(),
            job.config.train.seed,
            &base,
            &set.source,
        )?;
        TrainState::default()
    };
    let frozen = policy.frozen(&base, &job.device)?;
    let pad = base.eos.unwrap_or(0);
    let params = base.parameter_count();
    let trainable = policy.trainable_count();
    let tokenizer = base.tokenizer.clone();
    let base_path = base.path.display().to_string();
    let family = base.family();
    tracing::info!(
        "DPO on {trainable} of {params} parameters, {} train / {} held-out pairs ({} dropped, \
         {} skipped by the reader)",
        data.train.len(),
        data.val.len(),
        data.dropped,
        set.skipped
    );
    let eval = |model: &TextLm| {
        evaluate(
            model,
            &reference,
            &data.val,
            cfg.beta,
            t.batch_size,
            t.eval_iters,
            pad,
        )
    };

    let schedule = LrSchedule::from_config(t);
    let mut metrics = MetricsLog::open(&run.metrics(), resuming.then_some(state.step))?;
    let mut order = EpochOrder::new(data.train.len(), t.seed);
    let start_step = state.step;
    let progress = Progress::new("align", start_step, t.max_iters as u64);
    let session_start = Instant::now();
    let seconds_before = state.train_seconds;
    let mut start_eval = None;

    for step in start_step..t.max_iters as u64 {
        if interrupt::stop_requested() {
            state.train_seconds = seconds_before + session_start.elapsed().as_secs_f64();
            policy.save(&run, &opt, &state)?;
            progress.println(&format!(
                "interrupted: checkpoint saved at step {step}; continue with --resume"
            ));
            return Err(Error::Interrupted);
        }
        if step % t.eval_interval as u64 == 0 && !(resuming && step == start_step) {
            let e = eval(&frozen)?;
            if step == 0 {
                start_eval = Some(e);
            }
            log_eval(&mut metrics, &progress, step, &e)?;
            state.last_val_loss = Some(e.loss);
            state.best_val_loss = Some(state.best_val_loss.map_or(e.loss, |b| b.min(e.loss)));
            if step > start_step {
                state.train_seconds = seconds_before + session_start.elapsed().as_secs_f64();
                policy.save(&run, &opt, &state)?;
                metrics.sync()?;
            }
            plot_dpo(&run)?;
        }
        if let Some(f) = reply
            && t.sample_interval > 0
            && step > 0
            && step % t.sample_interval as u64 == 0
        {
            let replies =
                held_out_replies(&frozen, &tokenizer, &template, &data, f, t.seed ^ step)?;
            report::write_samples(&run, step, &replies)?;
        }

        let t0 = Instant::now();
        let lr = schedule.at(step as usize);
        let mut grads = None;
        let (mut loss_sum, mut margin_sum, mut acc_sum) = (0.0, 0.0, 0.0);
        for micro in 0..t.grad_accum as u64 {
            let idx = order.batch(step, micro, t.grad_accum as u64, t.batch_size);
            let pairs: Vec<&PairTokens> = idx.iter().map(|&i| &data.train[i]).collect();
            let seed = dropout_seed(t.seed, step, micro, DPO_DROPOUT_STREAM);
            if let Some((l, _)) = &policy.lora {
                policy.lora_dropout.train(l.dropout, seed ^ 0x10AA);
            }
            let mut dropout = Dropout::train(cfg.model_dropout, seed);
            let (pc, pr) = pair_logps(&policy.model, &pairs, pad, &mut dropout, &job.device)?;
            let (rc, rr) = pair_logps(&reference, &pairs, pad, &mut Dropout::eval(), &job.device)?;
            let out = dpo_loss(&pc, &pr, &rc, &rr, cfg.beta)?;
            let scaled = if t.grad_accum > 1 {
                (&out.loss / t.grad_accum as f64)?
            } else {
                out.loss.clone()
            };
            let store = scaled.backward()?;
            let (margin, acc, _, _) = reward_stats(&out)?;
            loss_sum += out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            margin_sum += margin;
            acc_sum += acc;
            match grads.as_mut() {
                None => grads = Some(opt.grads(&store)),
                Some(g) => opt.accumulate(g, &store)?,
            }
        }
        policy.lora_dropout.eval();
        let mut grads = grads.expect("grad_accum >= 1");
        let grad_norm = if t.grad_clip > 0.0 {
            grads.clip(t.grad_clip)?
        } else {
            f64::NAN
        };
        opt.step(&grads, lr)?;
        let k = t.grad_accum as f64;
        let (loss, margin, acc) = (loss_sum / k, margin_sum / k, acc_sum / k);
        state.step = step + 1;
        state.examples_seen += (t.batch_size * t.grad_accum) as u64;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        progress.set(state.step);
        progress.message(format!("loss {loss:.4} acc {acc:.2}"));
        if step % t.log_interval as u64 == 0 {
            progress.println(&format!(
                "step {step} | loss {loss:.4} | margin {margin:+.4} | acc {acc:.2} | lr {lr:.1e} | {ms:.0} ms"
            ));
            metrics.log(&serde_json::json!({
                "step": step, "loss": loss, "margin": margin, "accuracy": acc, "lr": lr,
                "grad_norm": grad_norm, "ms": ms,
            }))?;
        }
    }
    progress.finish();

    let end_step = t.max_iters as u64;
    let end = eval(&frozen)?;
    if start_step < end_step {
        log_eval(&mut metrics, &progress, end_step, &end)?;
    }
    state.last_val_loss = Some(end.loss);
    state.best_val_loss = Some(state.best_val_loss.map_or(end.loss, |b| b.min(end.loss)));
    state.train_seconds = seconds_before + session_start.elapsed().as_secs_f64();
    policy.save(&run, &opt, &state)?;
    metrics.sync()?;
    plot_dpo(&run)?;
    let start = match start_eval {
        Some(e) => e,
        None => eval(&reference)?,
    };
    let samples = match reply {
        Some(f) => {
            let replies =
                held_out_replies(&frozen, &tokenizer, &template, &data, f, t.seed ^ end_step)?;
            report::write_samples(&run, end_step, &replies)?;
            replies
        }
        None => Vec::new(),
    };
    report::write_card(
        &run,
        &report::Card {
            what: format!(
                "A {family} language model aligned by Muse to preference pairs with Direct \
                 Preference Optimization (beta {}{}), against a frozen reference copy of its \
                 base.",
                cfg.beta,
                if cfg.lora.is_some() {
                    ", LoRA adapters"
                } else {
                    ""
                }
            ),
            base: &base_path,
            family,
            params,
            trainable,
            data: vec![
                format!(
                    "- `{}` ({}), sha256 `{}`",
                    set.source.name, set.source.path, set.source.sha256
                ),
                format!(
                    "- {} training and {} held-out pairs ({} lines skipped, {} dropped)",
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
                format!("| DPO loss | {:.4} | {:.4} |", start.loss, end.loss),
                format!(
                    "| preference accuracy (ties half) | {:.3} | {:.3} |",
                    start.accuracy, end.accuracy
                ),
                format!(
                    "| reward margin | {:.4} | {:.4} |",
                    start.margin, end.margin
                ),
            ],
            lora: cfg.lora.is_some(),
        },
    )?;
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

fn log_eval(metrics: &mut MetricsLog, progress: &Progress, step: u64, e: &DpoEval) -> Result<()> {
    progress.println(&format!(
        "step {step} | held-out loss {:.4} | accuracy {:.3} | margin {:+.4} | rewards chosen {:+.4} rejected {:+.4}",
        e.loss, e.accuracy, e.margin, e.chosen_reward, e.rejected_reward
    ));
    metrics.log(&serde_json::json!({
        "step": step, "val_loss": e.loss, "val_accuracy": e.accuracy, "val_margin": e.margin,
        "val_chosen_reward": e.chosen_reward, "val_rejected_reward": e.rejected_reward,
    }))
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

fn held_out_replies(
    model: &TextLm,
    tokenizer: &crate::tokenizer::TextTokenizer,
    template: &ChatTemplate,
    data: &DpoData,
    f: ReplyFn,
    seed: u64,
) -> Result<Vec<(String, String)>> {
    let bos = bos_of(model);
    data.val_prompts
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, prompt)| {
            let ids: Vec<u32> = bos.into_iter().chain(tokenizer.encode(prompt)?).collect();
            let reply = f(model, tokenizer, &ids, &template.stop, seed ^ i as u64)?;
            Ok((prompt.clone(), reply))
        })
        .collect()
}

/// DPO's dropout stream, apart from other loops'.
const DPO_DROPOUT_STREAM: u64 = 0xD90;

/// The stored config and base path of a run written by [`align`], for `--resume`.
pub fn stored_config(run: &Path) -> Result<(AlignConfig, String)> {
    let stored = read_record(run, "muse align")?;
    Ok((stored.config, stored.base))
}

/// The `--dpo` data a run was started with (its registry name or path).
pub fn stored_data(run: &Path) -> Result<String> {
    Ok(read_record::<AlignConfig>(run, "muse align")?.data)
}
