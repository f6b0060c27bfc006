//! `muse bench`: training-step and generation speed, as one JSON object.
//!
//! The workloads mirror the PyTorch references in `shared/bench/` (same model, batch,
//! optimizer and threads) so the two can be timed side by side and compared as a ratio.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::data::text_splits::prepare_text;
use crate::error::Result;
use crate::models::CausalLm;
use crate::models::gpt::{DTYPE, Gpt, GptConfig, gpt2_init, parameter_count};
use crate::nn::init_varmap;
use crate::sample::logits::argmax;
use crate::train::AdamW;
use crate::train::gpt::{GptRunConfig, train_step};
use crate::train::progress::Progress;

/// What to measure.
pub struct BenchOptions {
    /// The resolved run configuration (preset plus overrides).
    pub config: GptRunConfig,
    pub preset: String,
    /// Timed training steps (after `warmup` untimed ones).
    pub steps: usize,
    pub warmup: usize,
    /// Measure greedy decoding only (the `gpt2_infer.py` workload) instead of training.
    pub generate_only: bool,
    /// Text to train on (registry name or file); random tokens for GPT-2 BPE presets.
    pub data: String,
    pub device: Device,
}

/// Runs the benchmark and returns its JSON report.
pub fn bench_gpt(opts: &BenchOptions) -> Result<Value> {
    let mut cfg = opts.config.clone();
    cfg.validate()?;
    let ids = training_tokens(&mut cfg, &opts.data)?;
    let model_cfg = &cfg.model;
    let varmap = VarMap::new();
    let model = Gpt::new(
        model_cfg,
        VarBuilder::from_varmap(&varmap, DTYPE, &opts.device),
    )?;
    init_varmap(&varmap, cfg.train.seed, gpt2_init(model_cfg))?;
    let mut report = json!({
        "bench": "gpt", "preset": opts.preset, "threads": crate::device::cpu_threads(),
        "device": crate::device::device_name(&opts.device), "params": parameter_count(model_cfg),
    });
    if !opts.generate_only {
        let t = &cfg.train;
        let mut opt = AdamW::new(&varmap, t)?;
        let progress = Progress::new("bench", 0, (opts.warmup + opts.steps) as u64);
        let mut times = Vec::with_capacity(opts.steps);
        let mut loss = f64::NAN;
        for step in 0..(opts.warmup + opts.steps) as u64 {
            let t0 = Instant::now();
            (loss, _) = train_step(&model, &mut opt, &ids, t, step, t.lr, &opts.device)?;
            if step as usize >= opts.warmup {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            progress.set(step + 1);
        }
        progress.finish();
        let tokens = (t.batch_size * t.grad_accum * model_cfg.n_positions) as f64;
        let ms = median(&mut times);
        report["batch_size"] = json!(t.batch_size);
        report["block_size"] = json!(model_cfg.n_positions);
        report["timed_steps"] = json!(opts.steps);
        report["ms_per_step_median"] = json!(round(ms));
        report["ms_per_step_p10"] = json!(round(percentile(&times, 0.1)));
        report["ms_per_step_p90"] = json!(round(percentile(&times, 0.9)));
        report["tokens_per_s"] = json!(round(tokens / (ms / 1e3)));
        report["final_step_loss"] = json!(round(loss));
    }
    let frozen = Gpt::new(
        model_cfg,
        crate::train::gpt::detached(&varmap, &opts.device)?,
    )?;
    let (new, tps, runs) = greedy_tokens_per_s(&frozen, 16, 128, 3, &opts.device)?;
    report["generate_prompt_tokens"] = json!(16);
    report["generate_new_tokens"] = json!(new);
    report["generate_tokens_per_s_median"] = json!(round(tps));
    report["generate_runs_s"] = json!(runs.iter().map(|x| round(*x)).collect::<Vec<_>>());
    if opts.generate_only {
        for ctx in [64usize, 900] {
            if ctx < model_cfg.n_positions {
                let ms = ms_per_token_at(&frozen, ctx, 16, &opts.device)?;
                report[format!("ms_per_token_at_{ctx}")] = json!(round(ms));
                if ctx == 64 {
                    report["weights_gb_per_s_at_64"] =
                        json!(round(decode_bytes_per_token(model_cfg) / ms / 1e6));
                }
            }
        }
    }
    report["peak_rss_mb"] = json!(peak_rss_mb());
    if opts.generate_only {
        // After the peak memory is read: the probe's buffer would count in it.
        report["weights_mb_per_token"] = json!(round(decode_bytes_per_token(model_cfg) / 1e6));
        report["memory_read_gb_per_s"] = json!(round(super::memory::read_bandwidth_gb_per_s()));
    }
    Ok(report)
}

/// Token ids to train on: the real corpus for trained tokenizers, random ids for GPT-2 BPE
/// (speed does not depend on the values). Sets the model's vocabulary size.
fn training_tokens(cfg: &mut GptRunConfig, data: &str) -> Result<Vec<u32>> {
    if cfg.data.tokenizer == "gpt2" {
        cfg.model.vocab_size = cfg.model.vocab_size.max(50257);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.train.seed);
        let n = 4 * cfg.model.n_positions * cfg.train.batch_size + 2;
        return Ok((0..n)
            .map(|_| rng.random_range(0..cfg.model.vocab_size as u32))
            .collect());
    }
    let splits = prepare_text(data, &cfg.data, None)?;
    cfg.model.vocab_size = cfg.model.vocab_size.max(splits.tokenizer.vocab_size());
    Ok(splits.train)
}

/// The `gpt2_infer.py` workload: batch 1, `prompt` random tokens, exactly `new` greedy
/// tokens with the cache; tokens/s = new / wall time (prefill included), median of `reps`
/// after one warm-up. New tokens are capped so prompt and output fit the context.
fn greedy_tokens_per_s(
    model: &Gpt,
    prompt: usize,
    new: usize,
    reps: usize,
    dev: &Device,
) -> Result<(usize, f64, Vec<f64>)> {
    let cfg: &GptConfig = model.config();
    let new = new.min(cfg.n_positions.saturating_sub(prompt));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let ids: Vec<u32> = (0..prompt)
        .map(|_| rng.random_range(0..cfg.vocab_size as u32))
        .collect();
    let mut runs = Vec::new();
    for rep in 0..=reps {
        let t0 = Instant::now();
        let mut cache = model.new_cache(1)?;
        let mut next = ids.clone();
        for _ in 0..new {
            let input = Tensor::new(next.as_slice(), dev)?.unsqueeze(0)?;
            let logits: Vec<f32> = model
                .forward_cached(&input, &mut cache)?
                .squeeze(0)?
                .to_vec1()?;
            next = vec![argmax(&logits)];
        }
        if rep > 0 {
            runs.push(t0.elapsed().as_secs_f64());
        }
    }
    let med = median(&mut runs.clone());
    Ok((new, new as f64 / med, runs))
}

/// Milliseconds per decoded token once `ctx` positions are in the cache (median of `n`).
fn ms_per_token_at(model: &Gpt, ctx: usize, n: usize, dev: &Device) -> Result<f64> {
    let mut cache = model.new_cache(1)?;
    let prompt: Vec<u32> = (0..ctx as u32)
        .map(|i| i % model.config().vocab_size as u32)
        .collect();
    model.forward_cached(
        &Tensor::new(prompt.as_slice(), dev)?.unsqueeze(0)?,
        &mut cache,
    )?;
    let mut times = Vec::new();
    let mut next = 0u32;
    for _ in 0..n {
        let t0 = Instant::now();
        let logits: Vec<f32> = model
            .forward_cached(&Tensor::new(&[next], dev)?.unsqueeze(0)?, &mut cache)?
            .squeeze(0)?
            .to_vec1()?;
        next = argmax(&logits);
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut times))
}

/// Bytes of weights one decoded token reads: every parameter once (the tied token embedding
/// as the output head), except the position table, of which it reads one row.
fn decode_bytes_per_token(cfg: &GptConfig) -> f64 {
    let positions = cfg.n_positions * cfg.n_embd;
    ((parameter_count(cfg) - positions) * DTYPE.size_in_bytes()) as f64
}

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The process's peak resident memory (Linux `VmHWM`), in MiB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}
