//! `muse bench generate`: prompt processing and generation speed of any text model (GGUF file,
//! Hugging Face folder, run), measured as llama.cpp's `llama-bench` measures them, so the two
//! compare side by side: `pp` is one batch of `prompt_tokens` tokens into an empty cache,
//! `tg` is `gen_tokens` tokens decoded one at a time from an empty cache; each is timed alone.
//! With `batch` above 1, `tg` decodes that many sequences together, one batched step per
//! token (`CausalLm::forward_step_many`, what `muse serve` does with concurrent requests), and
//! counts the tokens of all of them.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::gpt::peak_rss_mb;
use crate::error::{Error, Result};
use crate::models::CausalLm;
use crate::sample::logits::argmax;
use crate::sample::open::open_text_model;
use crate::train::progress::Progress;

/// What to measure.
pub struct GenerateBenchOptions {
    /// A GGUF file, a model folder or a run.
    pub model: PathBuf,
    /// Tokens of the prompt-processing test (llama-bench's `-p`, default 512).
    pub prompt_tokens: usize,
    /// Tokens of the generation test (llama-bench's `-n`, default 128).
    pub gen_tokens: usize,
    /// Timed repetitions of each test after one untimed warm-up (llama-bench's `-r`, 5).
    pub reps: usize,
    /// Sequences the generation test decodes together (1: llama-bench's `tg`).
    pub batch: usize,
    pub device: Device,
}

/// Runs both tests and returns the JSON report.
pub fn bench_generate(opts: &GenerateBenchOptions) -> Result<Value> {
    if opts.reps == 0 || opts.batch == 0 || (opts.prompt_tokens == 0 && opts.gen_tokens == 0) {
        return Err(Error::usage(
            "nothing to measure: give --reps and --batch of at least 1 and a non-zero \
             --prompt-tokens or --gen-tokens",
        ));
    }
    let tm = open_text_model(&opts.model, &opts.device)?;
    let model = tm.model.as_ref();
    let longest = opts.prompt_tokens.max(opts.gen_tokens);
    if longest > model.context_len() {
        return Err(Error::usage(format!(
            "{longest} tokens do not fit the model's context of {}: give fewer with \
             --prompt-tokens / --gen-tokens",
            model.context_len()
        )));
    }
    // Random ids, as llama-bench uses: speed does not depend on which tokens they are.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let vocab = model.vocab_size() as u32;
    let ids: Vec<u32> = (0..longest).map(|_| rng.random_range(0..vocab)).collect();
    let progress = Progress::new("bench", 0, 2 * (opts.reps as u64 + 1));
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for rep in 0..=opts.reps {
        if opts.prompt_tokens > 0 {
            let s = time_prompt(model, &ids[..opts.prompt_tokens])?;
            if rep > 0 {
                pp.push(opts.prompt_tokens as f64 / s);
            }
        }
        progress.set(2 * rep as u64 + 1);
        if opts.gen_tokens > 0 {
            let s = if opts.batch == 1 {
                time_generation(model, ids[0], opts.gen_tokens)?
            } else {
                time_batched_generation(model, &ids[..opts.batch.min(ids.len())], opts.gen_tokens)?
            };
            if rep > 0 {
                tg.push((opts.batch * opts.gen_tokens) as f64 / s);
            }
        }
        progress.set(2 * rep as u64 + 2);
    }
    progress.finish();
    Ok(json!({
        "bench": "generate",
        "model": opts.model.display().to_string(),
        "family": tm.family,
        "threads": crate::device::cpu_threads(),
        "device": crate::device::device_name(&opts.device),
        "prompt_tokens": opts.prompt_tokens,
        "gen_tokens": opts.gen_tokens,
        "batch": opts.batch,
        "reps": opts.reps,
        "prompt_tokens_per_s": median(&pp),
        "gen_tokens_per_s": median(&tg),
        "prompt_tokens_per_s_runs": pp.iter().map(|x| round(*x)).collect::<Vec<_>>(),
        "gen_tokens_per_s_runs": tg.iter().map(|x| round(*x)).collect::<Vec<_>>(),
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// Seconds to run `ids` as one batch into an empty cache.
fn time_prompt(model: &dyn CausalLm, ids: &[u32]) -> Result<f64> {
    let mut cache = model.new_cache(1)?;
    let input = Tensor::new(ids, model.device())?.unsqueeze(0)?; // (1, T)
    let t0 = Instant::now();
    // Reading the logits back waits for the device (CUDA runs asynchronously).
    model.forward_cached(&input, &mut cache)?.to_vec2::<f32>()?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Seconds to decode `n` tokens greedily, one at a time, from `first` into an empty cache.
fn time_generation(model: &dyn CausalLm, first: u32, n: usize) -> Result<f64> {
    let mut cache = model.new_cache(1)?;
    let mut next = first;
    let t0 = Instant::now();
    for _ in 0..n {
        let input = Tensor::new(&[next], model.device())?.unsqueeze(0)?; // (1, 1)
        let logits: Vec<f32> = model
            .forward_cached(&input, &mut cache)?
            .squeeze(0)?
            .to_vec1()?;
        next = argmax(&logits);
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Seconds to decode `n` tokens greedily for each of `firsts.len()` sequences, each from its
/// first token into an empty cache, then one batched step per token for all of them.
fn time_batched_generation(model: &dyn CausalLm, firsts: &[u32], n: usize) -> Result<f64> {
    let mut caches = (0..firsts.len())
        .map(|_| model.new_cache(1))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let t0 = Instant::now();
    let mut next = Vec::with_capacity(firsts.len());
    for (&first, cache) in firsts.iter().zip(caches.iter_mut()) {
        let input = Tensor::new(&[first], model.device())?.unsqueeze(0)?; // (1, 1)
        let logits: Vec<f32> = model.forward_cached(&input, cache)?.squeeze(0)?.to_vec1()?;
        next.push(argmax(&logits));
    }
    for _ in 1..n {
        let mut refs: Vec<&mut crate::nn::KvCache> = caches.iter_mut().collect();
        let logits: Vec<Vec<f32>> = model.forward_step_many(&next, &mut refs)?.to_vec2()?;
        next = logits.iter().map(|row| argmax(row)).collect();
    }
    Ok(t0.elapsed().as_secs_f64())
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).map(|x| round(*x))
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
