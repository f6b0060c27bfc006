//! `muse bench vae`: VAE training-step speed as one JSON object, the workload of
//! `shared/bench/pytorch/vae_mlp.py` (784-400-20 MLP VAE, BCE + KL summed, Adam 1e-3, batch
//! 128, real MNIST), timed the same way: median milliseconds of forward + backward + Adam step
//! after untimed warm-up steps.

use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{Value, json};

use crate::data::images::{EpochBatches, Split};
use crate::error::Result;
use crate::models::vae::Vae;
use crate::nn::conv::torch_default_init;
use crate::nn::init_varmap;
use crate::train::AdamW;
use crate::train::progress::Progress;
use crate::train::vae::{VaeRunConfig, train_step};

/// What to measure.
pub struct VaeBenchOptions {
    /// The resolved run configuration (preset plus overrides).
    pub config: VaeRunConfig,
    pub preset: String,
    /// Timed steps (after `warmup` untimed ones).
    pub steps: usize,
    pub warmup: usize,
    pub device: Device,
}

/// Runs the benchmark and returns its JSON report.
pub fn bench_vae(opts: &VaeBenchOptions) -> Result<Value> {
    let mut cfg = opts.config.clone();
    let data = cfg.data.load(Split::Train)?;
    (cfg.model.channels, cfg.model.image_size) = (data.channels, data.height);
    cfg.validate()?;
    let varmap = VarMap::new();
    let model = Vae::new(
        &cfg.model,
        VarBuilder::from_varmap(&varmap, DType::F32, &opts.device),
    )?;
    init_varmap(&varmap, cfg.train.seed, torch_default_init(&varmap))?;
    let mut batches =
        EpochBatches::new(data.len(), cfg.train.batch_size, cfg.train.seed)?.drop_last(true)?;
    let mut opt = AdamW::new(&varmap, &cfg.train.optimizer_config(1))?;
    let total = opts.warmup + opts.steps;
    let progress = Progress::new("bench", 0, total as u64);
    let mut times = Vec::with_capacity(opts.steps);
    let mut loss = f64::NAN;
    for step in 0..total as u64 {
        let idx = batches.indices(step);
        let t0 = Instant::now();
        (loss, _, _) = train_step(
            &model,
            &mut opt,
            &data,
            &idx,
            &cfg,
            step,
            cfg.train.lr,
            &opts.device,
        )?;
        if step as usize >= opts.warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        progress.set(step + 1);
    }
    progress.finish();
    let ms = percentile(&times, 0.5);
    Ok(json!({
        "bench": "vae", "preset": opts.preset, "arch": cfg.model.arch,
        "threads": crate::device::cpu_threads(),
        "device": crate::device::device_name(&opts.device),
        "data": data.record.name, "batch": cfg.train.batch_size,
        "params": cfg.model.parameter_count(), "timed_steps": times.len(),
        "ms_per_step_median": round(ms),
        "ms_per_step_p10": round(percentile(&times, 0.1)),
        "ms_per_step_p90": round(percentile(&times, 0.9)),
        "images_per_s": round(cfg.train.batch_size as f64 / (ms / 1e3)),
        "final_loss_per_example": round(loss),
        "peak_rss_mb": super::gpt::peak_rss_mb(),
    }))
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
