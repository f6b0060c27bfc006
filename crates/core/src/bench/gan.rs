//! `muse bench gan`: milliseconds per GAN training step (D update on a real and a fake batch,
//! then G update), the workload of `shared/bench/pytorch/dcgan28.py`: same networks, batch 64,
//! Adam, MNIST in [-1, 1] (random images when MNIST is not available).

use std::time::Instant;

use candle_core::Device;
use serde_json::{Value, json};

use super::gpt::peak_rss_mb;
use crate::data::images::{EpochBatches, ImageDataset, Split};
use crate::error::Result;
use crate::models::gan::parameter_counts;
use crate::nn::ops::conv::{fused_conv_enabled, set_fused_conv};
use crate::run_dir::DatasetRecord;
use crate::train::gan::{GanRunConfig, GanTrainer};
use crate::train::progress::Progress;

/// What to measure.
pub struct GanBenchOptions {
    /// The resolved run configuration (preset plus overrides).
    pub config: GanRunConfig,
    pub preset: String,
    /// Timed steps, after `warmup` untimed ones.
    pub steps: usize,
    pub warmup: usize,
    /// Run candle's own convolutions instead of the fused kernels.
    pub candle_conv: bool,
    pub device: Device,
}

/// Runs the benchmark and returns its JSON report.
pub fn bench_gan(opts: &GanBenchOptions) -> Result<Value> {
    let mut cfg = opts.config.clone();
    cfg.validate()?;
    let (data, source) = match cfg.data.load(Split::Train) {
        Ok(d) => (d, cfg.data.dataset.clone()),
        Err(_) => (random_images(&cfg)?, "random".to_string()),
    };
    (cfg.model.image_channels, cfg.model.image_size) = (data.channels, data.height);
    if cfg.model.conditional() {
        cfg.model.n_classes = data.n_classes.max(2);
    }
    let mut batches =
        EpochBatches::new(data.len(), cfg.train.batch_size, cfg.train.seed)?.drop_last(true)?;
    let t = cfg.train.optimizer_config(1_000_000);
    let was_fused = fused_conv_enabled();
    set_fused_conv(!opts.candle_conv);
    let mut tr = GanTrainer::new(&cfg.model, &t, &opts.device)?;
    let total = opts.warmup + opts.steps;
    let progress = Progress::new("bench", 0, total as u64);
    let mut times = Vec::with_capacity(opts.steps);
    let mut last = Default::default();
    let run = (|| -> Result<()> {
        for step in 0..total as u64 {
            let t0 = Instant::now();
            last = tr.step(&cfg, &data, &mut batches, step, cfg.train.lr)?;
            if step as usize >= opts.warmup {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            progress.set(step + 1);
        }
        Ok(())
    })();
    set_fused_conv(was_fused);
    run?;
    progress.finish();
    let (pg, pd) = parameter_counts(&cfg.model);
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        sorted
            .get(((sorted.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let ms = pct(0.5);
    Ok(json!({
        "bench": "gan", "preset": opts.preset, "loss": cfg.gan.loss.as_str(),
        "threads": crate::device::cpu_threads(), "device": crate::device::device_name(&opts.device),
        "conv": if opts.candle_conv { "candle" } else { "fused" },
        "data": source, "batch": cfg.train.batch_size, "n_critic": cfg.gan.n_critic,
        "params_g": pg, "params_d": pd, "timed_steps": times.len(),
        "ms_per_step_median": round(ms), "ms_per_step_p10": round(pct(0.1)),
        "ms_per_step_p90": round(pct(0.9)),
        "images_per_s": round((cfg.train.batch_size * cfg.gan.n_critic) as f64 / (ms / 1e3)),
        "final_loss_d": round(last.loss_d), "final_loss_g": round(last.loss_g),
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// 2048 uniform random images of the configured shape (speed does not depend on the values).
fn random_images(cfg: &GanRunConfig) -> Result<ImageDataset> {
    use rand::{Rng, SeedableRng};
    let (c, s) = (cfg.model.image_channels, cfg.model.image_size);
    let n = 2048;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let pixels: Vec<u8> = (0..n * c * s * s).map(|_| rng.random()).collect();
    let labels = cfg.model.conditional().then(|| {
        (0..n)
            .map(|i| (i % cfg.model.n_classes.max(2)) as u8)
            .collect()
    });
    let record = DatasetRecord {
        name: "random".into(),
        path: "-".into(),
        sha256: String::new(),
    };
    ImageDataset::from_parts(pixels, labels, (c, s, s), record, Split::Train)
}
