//! `muse bench FAMILY`: one request for every family's speed measurement, one JSON object back.

use std::path::PathBuf;

use serde_json::Value;

use super::family::Family;
use crate::bench::{
    BenchOptions, DiffusionBenchOptions, GanBenchOptions, Seq2SeqBenchOptions, VaeBenchOptions,
    bench_diffusion, bench_gan, bench_gpt, bench_seq2seq, bench_vae,
};
use crate::config::resolve;
use crate::device::Device;
use crate::error::{Error, Result};

pub use crate::bench::{
    GenerateBenchOptions, WatermarkBenchOptions, bench_generate, bench_watermark,
};

/// What `muse bench FAMILY` was asked.
#[derive(Clone, Debug)]
pub struct BenchRequest {
    pub family: Family,
    /// The preset to measure [default: the family's default preset].
    pub preset: Option<String>,
    /// `--set` overrides, as for `muse train`.
    pub sets: Vec<String>,
    /// Timed steps and untimed warm-up steps [defaults: the family's].
    pub steps: Option<usize>,
    pub warmup: Option<usize>,
    /// GPT: only decoding.
    pub generate_only: bool,
    /// GPT: the training text for presets with a trained tokenizer.
    pub text_data: Option<String>,
    /// GAN: objective override.
    pub gan_loss: Option<String>,
    /// GAN: candle's own convolutions, for comparison.
    pub candle_conv: bool,
    /// Diffusion: DDIM steps, images per sampling run and timed sampling runs.
    pub ddim_steps: Option<usize>,
    pub sample_batch: Option<usize>,
    pub sample_reps: Option<usize>,
    /// Seq2seq: a joint tokenizer.json to use instead of training one.
    pub tokenizer: Option<PathBuf>,
    pub device: Device,
}

impl BenchRequest {
    pub fn new(family: Family, device: Device) -> Self {
        Self {
            family,
            preset: None,
            sets: Vec::new(),
            steps: None,
            warmup: None,
            generate_only: false,
            text_data: None,
            gan_loss: None,
            candle_conv: false,
            ddim_steps: None,
            sample_batch: None,
            sample_reps: None,
            tokenizer: None,
            device,
        }
    }
}

/// Measures what `req` asks and returns the JSON line's object.
pub fn bench(req: BenchRequest) -> Result<Value> {
    let preset = |default: &str| req.preset.clone().unwrap_or_else(|| default.into());
    match req.family {
        Family::Gpt => {
            use crate::train::gpt::GptRunConfig;
            let name = preset("char-baby");
            bench_gpt(&BenchOptions {
                config: resolve(&GptRunConfig::preset(&name)?, None, &req.sets)?,
                preset: name,
                steps: req.steps.unwrap_or(50),
                warmup: req.warmup.unwrap_or(10),
                generate_only: req.generate_only,
                data: req
                    .text_data
                    .clone()
                    .unwrap_or_else(|| "tinyshakespeare".into()),
                device: req.device.clone(),
            })
        }
        Family::Gan => {
            use crate::train::gan::{GanLoss, GanRunConfig};
            let name = preset("dcgan-mnist");
            let mut base = GanRunConfig::preset(&name)?;
            if let Some(l) = req.gan_loss.as_deref() {
                base = base.with_loss(GanLoss::parse(l)?);
            }
            bench_gan(&GanBenchOptions {
                config: resolve(&base, None, &req.sets)?,
                preset: name,
                steps: req.steps.unwrap_or(100),
                warmup: req.warmup.unwrap_or(10),
                candle_conv: req.candle_conv,
                device: req.device.clone(),
            })
        }
        Family::Vae => {
            use crate::train::vae::VaeRunConfig;
            let name = preset("mnist-mlp");
            bench_vae(&VaeBenchOptions {
                config: resolve(&VaeRunConfig::preset(&name)?, None, &req.sets)?,
                preset: name,
                steps: req.steps.unwrap_or(200),
                warmup: req.warmup.unwrap_or(20),
                device: req.device.clone(),
            })
        }
        Family::Diffusion => {
            use crate::train::diffusion::DiffusionRunConfig;
            let name = preset("ddpm-mnist");
            let opts = DiffusionBenchOptions {
                config: resolve(&DiffusionRunConfig::preset(&name)?, None, &req.sets)?,
                preset: name,
                steps: req.steps.unwrap_or(30),
                warmup: req.warmup.unwrap_or(5),
                ddim_steps: req.ddim_steps.unwrap_or(50),
                sample_batch: req.sample_batch.unwrap_or(16),
                sample_reps: req.sample_reps.unwrap_or(3),
                device: req.device.clone(),
            };
            if opts.steps == 0
                || opts.ddim_steps == 0
                || opts.sample_batch == 0
                || opts.sample_reps == 0
            {
                return Err(Error::usage(
                    "--steps, --ddim-steps, --sample-batch and --sample-reps must be at least 1",
                ));
            }
            bench_diffusion(&opts)
        }
        Family::Seq2seq => {
            use crate::train::seq2seq::Seq2SeqRunConfig;
            let name = preset("tatoeba-en-fr");
            bench_seq2seq(&Seq2SeqBenchOptions {
                config: resolve(&Seq2SeqRunConfig::preset(&name)?, None, &req.sets)?,
                preset: name,
                steps: req.steps.unwrap_or(30),
                warmup: req.warmup.unwrap_or(5),
                tokenizer: req.tokenizer.clone(),
                device: req.device.clone(),
            })
        }
        other => Err(Error::usage(format!(
            "`muse bench` has no workload for {}",
            other.describe()
        ))),
    }
}
