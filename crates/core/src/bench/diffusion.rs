//! `muse bench diffusion`: milliseconds per DDPM training step (batch 64, AdamW, EMA update)
//! and per DDIM-50 sampling run of 16 images, the workload of
//! `shared/bench/pytorch/ddpm_unet28.py`: same U-Net, MNIST in [-1, 1] (random images when
//! MNIST is not available). An ldm-* preset with `--set vae=RUN` times latent diffusion: the
//! same loop on the VAE's latent grids, sampling with the decode at the end.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{Value, json};

use super::gpt::peak_rss_mb;
use crate::data::images::{EpochBatches, ImageDataset, Split};
use crate::error::Result;
use crate::models::diffusion::parameter_count;
use crate::nn::noise::standard_normal;
use crate::run_dir::DatasetRecord;
use crate::sample::diffusion::{
    Conditioning, ImageSpace, NoiseSchedule, SampleOptions, labels_for, sample_from,
};
use crate::train::AdamW;
use crate::train::diffusion::{
    Clean, Conditioner, DiffusionRunConfig, Encoded, Nets, ema_update, fresh_weights, train_step,
};
use crate::train::progress::Progress;

/// What to measure.
pub struct DiffusionBenchOptions {
    /// The resolved run configuration (preset plus overrides).
    pub config: DiffusionRunConfig,
    pub preset: String,
    /// Timed training steps, after `warmup` untimed ones.
    pub steps: usize,
    pub warmup: usize,
    /// DDIM steps and images of the sampling measurement.
    pub ddim_steps: usize,
    pub sample_batch: usize,
    /// Timed sampling runs (after one short warm-up run).
    pub sample_reps: usize,
    pub device: Device,
}

/// Runs the benchmark and returns its JSON report.
pub fn bench_diffusion(opts: &DiffusionBenchOptions) -> Result<Value> {
    let mut cfg = opts.config.clone();
    let (data, source) = match cfg.data.load(Split::Train) {
        Ok(d) => (d, cfg.data.dataset.clone()),
        Err(_) => (
            random_images(cfg.model.conditional())?,
            "random".to_string(),
        ),
    };
    (cfg.model.image_channels, cfg.model.image_size) = (data.channels, data.height);
    if cfg.model.conditional() {
        cfg.model.n_classes = data.n_classes.max(2);
    }
    if cfg.text.is_some() {
        return Err(crate::Error::usage(
            "muse bench diffusion times the U-Net without text: pick a ddpm-* or ldm-* preset \
             (the text path adds cross-attention at 7x7 only)",
        ));
    }
    cfg.validate()?;
    // Latent diffusion: the training set is encoded once, as a training run does (not
    // timed); the test latents are not used here.
    let encoded = match cfg.latent {
        Some(_) => Some(Encoded::prepare(
            &mut cfg,
            Path::new(""),
            false,
            &data,
            &data.take(1),
            &opts.device,
        )?),
        None => None,
    };
    let (clean, space) = match &encoded {
        Some(e) => (Clean::Latents(&e.train), e.space()),
        None => (Clean::Pixels(&data), ImageSpace::Pixels),
    };
    let conditioner = Conditioner::new(&cfg, Vec::new(), &opts.device)?;
    let schedule = NoiseSchedule::new(&cfg.noise())?;
    let varmap = VarMap::new();
    let nets = Nets::new(
        &cfg.model,
        VarBuilder::from_varmap(&varmap, DType::F32, &opts.device),
    )?;
    fresh_weights(&varmap, cfg.train.seed, cfg.init())?;
    let t = cfg.train.optimizer_config(1_000_000);
    let mut opt = AdamW::new(&varmap, &t)?;
    let mut batches =
        EpochBatches::new(data.len(), cfg.train.batch_size, cfg.train.seed)?.drop_last(true)?;
    let total = opts.warmup + opts.steps;
    let progress = Progress::new("bench", 0, total as u64);
    let mut times = Vec::with_capacity(opts.steps);
    let mut loss = f64::NAN;
    for step in 0..total as u64 {
        let t0 = Instant::now();
        let idx = batches.indices(step);
        loss = train_step(
            &nets.net,
            &mut opt,
            &schedule,
            &data,
            &clean,
            &idx,
            &conditioner,
            &cfg,
            step,
            cfg.train.lr,
            &opts.device,
        )?;
        ema_update(&varmap, cfg.ema_decay)?;
        if step as usize >= opts.warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        progress.set(step + 1);
    }
    progress.finish();
    // Sampling with detached weights (no autograd), as `muse sample` runs.
    let frozen = Nets::new(
        &cfg.model,
        crate::train::gpt::detached(&varmap, &opts.device)?,
    )?;
    let m = &cfg.model;
    let noise = standard_normal(
        (
            opts.sample_batch,
            m.image_channels,
            m.image_size,
            m.image_size,
        ),
        0,
        0,
        &opts.device,
    )?;
    let mut so = SampleOptions::ddim(opts.ddim_steps, 0);
    so.condition = Conditioning::labels(labels_for(m, opts.sample_batch, None)?);
    so.guidance = 1.0;
    sample_from(
        &frozen.ema,
        &space,
        &schedule,
        noise.clone(),
        &SampleOptions {
            steps: 2,
            ..so.clone()
        },
    )?;
    let mut sample_ms = Vec::with_capacity(opts.sample_reps);
    for _ in 0..opts.sample_reps {
        let t0 = Instant::now();
        sample_from(&frozen.ema, &space, &schedule, noise.clone(), &so)?;
        sample_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let round = |x: f64, d: f64| (x * d).round() / d;
    let ms = median(&times);
    let sms = median(&sample_ms);
    Ok(json!({
        "bench": "diffusion", "preset": opts.preset,
        "threads": crate::device::cpu_threads(), "device": crate::device::device_name(&opts.device),
        "data": source, "batch": cfg.train.batch_size, "params": parameter_count(m)?,
        "timed_steps": times.len(), "ms_per_step_median": round(ms, 100.0),
        "final_loss": round(loss, 1e4), "ddim_steps": opts.ddim_steps,
        "sample_batch": opts.sample_batch, "ddim_sample_ms_median": round(sms, 10.0),
        "ddim_ms_per_model_eval": round(sms / opts.ddim_steps.max(1) as f64, 100.0),
        "peak_rss_mb": peak_rss_mb(),
    }))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// 2048 uniform random 28x28 grey images (speed does not depend on the values), labelled
/// 0..9 in turn for a conditional model.
fn random_images(labelled: bool) -> Result<ImageDataset> {
    use rand::{Rng, SeedableRng};
    let n = 2048;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let pixels: Vec<u8> = (0..n * 28 * 28).map(|_| rng.random()).collect();
    let labels = labelled.then(|| (0..n).map(|i| (i % 10) as u8).collect());
    let record = DatasetRecord {
        name: "random".into(),
        path: "-".into(),
        sha256: String::new(),
    };
    ImageDataset::from_parts(pixels, labels, (1, 28, 28), record, Split::Train)
}
