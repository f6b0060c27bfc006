//! `muse bench seq2seq`: training-step speed of the encoder-decoder transformer as one JSON
//! object, the workload of `scripts/bench/seq2seq_ref.py` (tatoeba-en-fr: 3 + 3 layers, d 256,
//! batches of 64 eng-fra pairs, label smoothing, Adam, clipping), timed the same way: median
//! milliseconds of the training step (batch, forward, backward, clip, Adam) after untimed
//! warm-up steps, on batches spread evenly over the length distribution
//! ([`quantile_batches`]), the very batches the reference times.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use candle_nn::{VarBuilder, VarMap};
use serde_json::{Value, json};

use crate::data::parallel::batch::quantile_batches;
use crate::error::{Error, Result};
use crate::models::seq2seq::{DTYPE, Seq2Seq, parameter_count, seq2seq_init};
use crate::nn::init_varmap;
use crate::tokenizer::TextTokenizer;
use crate::train::AdamW;
use crate::train::progress::Progress;
use crate::train::seq2seq::{Seq2SeqRunConfig, model_config_for, prepare_pairs, train_step};

/// What to measure.
pub struct Seq2SeqBenchOptions {
    /// The resolved run configuration (preset plus overrides).
    pub config: Seq2SeqRunConfig,
    pub preset: String,
    /// Timed steps (after `warmup` untimed ones).
    pub steps: usize,
    pub warmup: usize,
    /// A joint tokenizer to use (a translation run's tokenizer.json) instead of training one
    /// on the training pairs as `muse train` does.
    pub tokenizer: Option<PathBuf>,
    pub device: Device,
}

/// Runs the benchmark and returns its JSON report.
pub fn bench_seq2seq(opts: &Seq2SeqBenchOptions) -> Result<Value> {
    if opts.steps == 0 {
        return Err(Error::usage("--steps must be at least 1"));
    }
    let cfg = &opts.config;
    cfg.validate()?;
    let tokenizer = opts
        .tokenizer
        .as_deref()
        .map(TextTokenizer::from_file)
        .transpose()?;
    let data = prepare_pairs(&cfg.data, &cfg.model, tokenizer)?;
    let model_cfg = model_config_for(&cfg.model, &data)?;
    let t = &cfg.train;
    let varmap = VarMap::new();
    let model = Seq2Seq::new(
        &model_cfg,
        VarBuilder::from_varmap(&varmap, DTYPE, &opts.device),
    )?;
    init_varmap(&varmap, t.seed, seq2seq_init(&model_cfg))?;
    let mut opt = AdamW::new(&varmap, t)?;

    let lengths: Vec<usize> = data.train.iter().map(|p| p.len()).collect();
    let accum = t.grad_accum;
    let warmup = quantile_batches(&lengths, t.batch_size, opts.warmup * accum);
    let timed = quantile_batches(&lengths, t.batch_size, opts.steps * accum);
    let progress = Progress::new("bench", 0, (opts.warmup + opts.steps) as u64);
    let (mut times, mut cpu_times) = (Vec::with_capacity(opts.steps), Vec::new());
    let (mut tokens, mut loss) = (0, f64::NAN);
    let steps = warmup.chunks(accum).map(|b| (false, b));
    for (step, (is_timed, batches)) in steps
        .chain(timed.chunks(accum).map(|b| (true, b)))
        .enumerate()
    {
        let (t0, cpu0) = (Instant::now(), process_cpu_ms());
        let out = train_step(
            &model,
            &mut opt,
            &data,
            batches,
            cfg,
            (step as u64, t.lr),
            &opts.device,
        )?;
        if is_timed {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            cpu_times.extend(process_cpu_ms().zip(cpu0).map(|(c1, c0)| c1 - c0));
            tokens += out.target_tokens;
        }
        loss = out.loss;
        progress.set(step as u64 + 1);
    }
    progress.finish();
    let total_s: f64 = times.iter().sum::<f64>() / 1e3;
    Ok(json!({
        "bench": "seq2seq", "preset": opts.preset,
        "threads": crate::device::cpu_threads(),
        "device": crate::device::device_name(&opts.device),
        "data": data.dataset.name, "batch": t.batch_size, "grad_accum": accum,
        "params": parameter_count(&model_cfg), "timed_steps": times.len(),
        "ms_per_step_median": round(percentile(&times, 0.5)),
        "ms_per_step_p10": round(percentile(&times, 0.1)),
        "ms_per_step_p90": round(percentile(&times, 0.9)),
        // CPU time of every thread: the cost of a step even when other work takes the cores.
        "cpu_ms_per_step_median": (cpu_times.len() == times.len())
            .then(|| round(percentile(&cpu_times, 0.5))),
        // The same count in seq2seq_ref.py's line shows that both timed the same batches.
        "timed_tgt_tokens": tokens,
        "tgt_tokens_per_s": round(tokens as f64 / total_s),
        "final_loss": round(loss),
        "peak_rss_mb": super::gpt::peak_rss_mb(),
    }))
}

/// CPU time used so far by all of this process's threads, in milliseconds (Linux: the
/// nanosecond counters of /proc/self/task/*/schedstat; None elsewhere).
fn process_cpu_ms() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e6)
}

fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
