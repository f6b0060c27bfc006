//! Sampling from a trained diffusion model: the reverse chain from Gaussian noise with the
//! DDPM (ancestral) or DDIM sampler, optionally guided towards a class (classifier-free
//! guidance), with the intermediate `x_t` and predicted `x_0` kept at chosen steps for a strip
//! that shows noise turning into an image.
//!
//! Every function returns images in `[0, 1]`; the caller writes them with
//! [`crate::data::images::grid`] (labelled as AI-generated).

mod guide;
mod prompt;
mod schedule;
mod space;
mod step;

use std::path::Path;

use candle_core::{Device, Tensor};

pub use guide::{ImageGuide, read_init, read_mask};
pub use prompt::{Conditioning, PromptStates};
pub use schedule::{BetaSchedule, NoiseSchedule, NoiseScheduleConfig};
pub use space::ImageSpace;
pub use step::{Spacing, StepOut, ddim_step, ddpm_step, guided_eps, predict_x0, timesteps};

use crate::error::{Error, Result};
use crate::models::diffusion::{Condition, LatentCodec, UNet, UNetConfig, VAE_DIR, load_unet};
use crate::nn::noise::standard_normal;
use crate::run_dir::RunDir;
use prompt::Ready;

/// Which reverse process to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// Ancestral sampling (Ho et al. 2020), stochastic.
    Ddpm,
    /// DDIM (Song et al. 2021); `eta = 0` is deterministic for a seed.
    Ddim { eta: f64 },
}

/// How to sample.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    pub sampler: Sampler,
    /// Model evaluations (steps of the chain): T for full DDPM, e.g. 50 for DDIM.
    pub steps: usize,
    pub spacing: Spacing,
    /// Clip the predicted `x_0` to [-1, 1] at every step (diffusers' `clip_sample`, on by
    /// default in both schedulers); pixel-space models only ([`ImageSpace::clips`]).
    pub clip: bool,
    /// Labels or prompts for a conditional model.
    pub condition: Conditioning,
    /// Guidance weight `w` (1: the conditional model alone; ignored without a condition).
    pub guidance: f64,
    /// Seed of the initial noise and of each step's noise.
    pub seed: u64,
    /// Keep `x_t` and the predicted `x_0` after these steps of the chain (0-based indices
    /// into the `steps` model evaluations).
    pub record: Vec<usize>,
    /// Image-to-image: start from this image (SDEdit) and keep its masked pixels
    /// (inpainting); `None` starts from pure noise.
    pub guide: Option<ImageGuide>,
}

impl SampleOptions {
    /// DDIM, `steps` steps, deterministic, no labels.
    pub fn ddim(steps: usize, seed: u64) -> Self {
        Self {
            sampler: Sampler::Ddim { eta: 0.0 },
            steps,
            spacing: Spacing::Leading,
            clip: true,
            condition: Conditioning::None,
            guidance: 1.0,
            seed,
            record: Vec::new(),
            guide: None,
        }
    }

    /// Steps of the chain skipped because an init image starts it part-way (0 without one).
    pub fn skipped_steps(&self) -> usize {
        self.guide
            .as_ref()
            .map_or(0, |g| g.skipped_steps(self.steps))
    }
}

/// One recorded point of the chain.
pub struct TrajectoryPoint {
    /// The timestep just denoised.
    pub t: usize,
    /// `x_{t_prev}` in [0, 1] (a latent model's: decoded).
    pub x: Tensor,
    /// The predicted clean image in [0, 1].
    pub x0: Tensor,
}

/// Images and the recorded points of the chain.
pub struct Samples {
    /// (N, C, S, S) in [0, 1].
    pub images: Tensor,
    pub trajectory: Vec<TrajectoryPoint>,
}

/// Runs the reverse chain for `n` images from `x_T ~ N(0, I)` drawn from stream 0 of
/// `opts.seed` (step `i`'s noise: stream `i + 1`), so the same seed gives the same images.
/// The chain runs in `space` (pixels, or a VAE's latents decoded at the end).
pub fn sample(
    model: &UNet,
    space: &ImageSpace,
    schedule: &NoiseSchedule,
    n: usize,
    opts: &SampleOptions,
    device: &Device,
) -> Result<Samples> {
    let cfg = model.config();
    let x_t = match &opts.guide {
        Some(guide) => {
            space.refuse_init_image()?;
            let chain = timesteps(schedule.len(), opts.steps, opts.spacing);
            let (t_start, _) = chain[opts.skipped_steps().min(chain.len() - 1)];
            guide.start(schedule, t_start, n, opts.seed)?
        }
        None => standard_normal(
            (n, cfg.image_channels, cfg.image_size, cfg.image_size),
            opts.seed,
            0,
            device,
        )?,
    };
    sample_from(model, space, schedule, x_t, opts)
}

/// [`sample`] from a given `x_T` (with an init image: the `x_t` where the chain starts).
///
/// # Shapes
/// `x_t`: (N, C, S, S) -> images (N, C, S, S).
pub fn sample_from(
    model: &UNet,
    space: &ImageSpace,
    schedule: &NoiseSchedule,
    mut x: Tensor,
    opts: &SampleOptions,
) -> Result<Samples> {
    let n = x.dim(0)?;
    let device = x.device().clone();
    if opts.steps == 0 || opts.steps > schedule.len() {
        return Err(Error::usage(format!(
            "--steps must be in 1..={} (the model's diffusion steps)",
            schedule.len()
        )));
    }
    if !(opts.guidance.is_finite() && opts.guidance >= 0.0) {
        return Err(Error::usage("--guidance must be a number >= 0"));
    }
    if opts.guide.is_some() {
        space.refuse_init_image()?;
    }
    let clip = opts.clip && space.clips();
    let cond = Ready::new(model.config(), &opts.condition, n, &device)?;
    let chain = timesteps(schedule.len(), opts.steps, opts.spacing);
    let mut trajectory = Vec::new();
    let skip = opts.skipped_steps();
    // Nothing trains while the chain runs: the convolutions transform their kernels once.
    let _frozen = crate::nn::ops::FrozenWeights::begin();
    for (i, &(t, prev_t)) in chain.iter().enumerate().skip(skip) {
        let eps = predict_eps(model, &x, t, &cond, opts.guidance)?;
        // No noise is added by deterministic DDIM, nor by DDPM's last step.
        let noiseless = match opts.sampler {
            Sampler::Ddim { eta } => eta == 0.0,
            Sampler::Ddpm => prev_t.is_none(),
        };
        let noise = if noiseless {
            eps.zeros_like()?
        } else {
            standard_normal(x.shape(), opts.seed, i as u64 + 1, &device)?
        };
        let out = match opts.sampler {
            Sampler::Ddpm => ddpm_step(schedule, &eps, t, prev_t, &x, &noise, clip)?,
            Sampler::Ddim { eta } => ddim_step(schedule, &eps, t, prev_t, &x, eta, &noise, clip)?,
        };
        x = match &opts.guide {
            Some(guide) => guide.put_back(out.prev, schedule, prev_t, i, opts.seed)?,
            None => out.prev,
        };
        if opts.record.contains(&i) {
            trajectory.push(TrajectoryPoint {
                t,
                x: space.to_images(&x)?,
                x0: space.to_images(&out.x0)?,
            });
        }
    }
    Ok(Samples {
        images: space.to_images(&x)?,
        trajectory,
    })
}

/// The model's noise prediction at `t`, guided when conditioned:
/// `eps_u + w (eps_c - eps_u)` from one batched call over `[x; x]` with `[cond; null]` (the
/// "no label" row or the empty prompt).
///
/// # Shapes
/// `x`: (N, C, S, S) -> (N, C, S, S).
fn predict_eps(model: &UNet, x: &Tensor, t: usize, cond: &Ready, guidance: f64) -> Result<Tensor> {
    let n = x.dim(0)?;
    let dev = x.device();
    let ts = |rows: usize| Tensor::full(t as f32, rows, dev);
    let null_labels;
    let both = match cond {
        Ready::None => return Ok(model.forward_with(x, &ts(n)?, Condition::None)?),
        Ready::Labels(l) if guidance == 1.0 => {
            return Ok(model.forward_with(x, &ts(n)?, Condition::Labels(l))?);
        }
        // w = 0 is the unconditional model alone: the "no label" row, one call.
        Ready::Labels(_) if guidance == 0.0 => {
            let null = Tensor::full(model.config().null_label() as u32, n, dev)?;
            return Ok(model.forward_with(x, &ts(n)?, Condition::Labels(&null))?);
        }
        Ready::Text { prompted, .. } if guidance == 1.0 => {
            return Ok(model.forward_with(x, &ts(n)?, Condition::Text(prompted))?);
        }
        Ready::Labels(l) => {
            let null = Tensor::full(model.config().null_label() as u32, n, dev)?;
            null_labels = Tensor::cat(&[l, &null], 0)?; // (2N)
            Condition::Labels(&null_labels)
        }
        Ready::Text { both, .. } => Condition::Text(both),
    };
    let xx = Tensor::cat(&[x, x], 0)?; // (2N, C, S, S)
    let eps = model.forward_with(&xx, &ts(2 * n)?, both)?;
    let (cond, uncond) = (eps.narrow(0, 0, n)?, eps.narrow(0, n, n)?);
    Ok(guided_eps(&uncond, &cond, guidance)?)
}

/// A trained diffusion model: the EMA weights, the noise schedule it was trained with, and
/// its class names (conditional models).
pub struct DiffusionRun {
    pub model: UNet,
    /// Pixels, or (latent diffusion) the run's VAE and latent scale.
    pub space: ImageSpace,
    pub schedule: NoiseSchedule,
    pub noise: NoiseScheduleConfig,
    /// The preset it was trained from (`training.json`).
    pub preset: String,
    /// A text-to-image model's frozen text encoder: a registered name or a folder.
    pub text_encoder: Option<String>,
    /// The dataset it was trained on (`training.json`).
    pub dataset: String,
    /// Trained on tinted images (text-to-image, or its label-only baseline).
    pub tint: bool,
}

/// Opens the diffusion run at `dir` (its EMA weights).
pub fn open_diffusion(dir: &Path, device: &Device) -> Result<DiffusionRun> {
    let run = RunDir::open(dir)?;
    let family = run.family()?;
    if family != "diffusion" {
        return Err(Error::input(format!(
            "{} holds a '{family}' run, not a diffusion model",
            dir.display()
        )));
    }
    if !run.weights().is_file() {
        return Err(Error::input(format!(
            "{} has no model.safetensors yet: wait for the first checkpoint or resume training",
            dir.display()
        )));
    }
    let model = load_unet(dir, true, device).map_err(Error::model_load)?;
    let record = run.read_training()?;
    let text_encoder = record
        .config
        .pointer("/text/encoder")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let dataset = record
        .config
        .pointer("/data/dataset")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let record_tint = record.config.get("tint").and_then(|v| v.as_bool()) == Some(true);
    if model.config().text_conditional() && text_encoder.is_none() {
        return Err(Error::input(format!(
            "{} records no text encoder for this text-conditioned model (text.encoder)",
            run.training().display()
        )));
    }
    let space = match record
        .config
        .pointer("/latent/scale")
        .and_then(|v| v.as_f64())
    {
        Some(scale) => {
            let codec = LatentCodec::load(&dir.join(VAE_DIR), scale, device).map_err(|e| {
                Error::input(format!(
                    "{} is a latent-diffusion run whose VAE does not load: {}",
                    dir.display(),
                    Error::model_load(e)
                ))
            })?;
            ImageSpace::Latent(std::sync::Arc::new(codec))
        }
        None => ImageSpace::Pixels,
    };
    let noise: NoiseScheduleConfig = serde_json::from_value(record.config).map_err(|e| {
        Error::input(format!(
            "{} records no noise schedule: {e}",
            run.training().display()
        ))
    })?;
    Ok(DiffusionRun {
        model,
        space,
        schedule: NoiseSchedule::new(&noise)?,
        noise,
        preset: record.preset,
        text_encoder,
        dataset,
        tint: record_tint,
    })
}

/// The guidance weight when none is asked: 4 for prompts, 3 for labels, 1 (none) for an
/// unconditional model.
pub fn default_guidance(cfg: &UNetConfig) -> f64 {
    if cfg.text_conditional() {
        4.0
    } else if cfg.conditional() {
        3.0
    } else {
        1.0
    }
}

/// Labels for `n` images: all `label`, or (a conditional model without one) the classes in
/// turn; `None` for an unconditional model.
pub fn labels_for(cfg: &UNetConfig, n: usize, label: Option<usize>) -> Result<Option<Vec<u32>>> {
    match (cfg.conditional(), label) {
        (_, Some(l)) => Ok(Some(vec![l as u32; n])),
        (true, None) => Ok(Some((0..n).map(|i| (i % cfg.n_classes) as u32).collect())),
        (false, None) => Ok(None),
    }
}

/// The rows of a trajectory strip: for each of the first `k` images, its `x_t` at every
/// recorded point, then its predicted `x_0` at the same points.
///
/// # Shapes
/// -> 2k tensors (points, C, S, S).
pub fn trajectory_rows(samples: &Samples, k: usize) -> Result<Vec<Tensor>> {
    let n = samples.images.dim(0)?;
    if samples.trajectory.is_empty() {
        return Err(Error::input("no points of the chain were recorded"));
    }
    let mut rows = Vec::with_capacity(2 * k);
    for i in 0..k.min(n) {
        for pick in [
            |p: &TrajectoryPoint| p.x.clone(),
            |p: &TrajectoryPoint| p.x0.clone(),
        ] {
            let imgs = samples
                .trajectory
                .iter()
                .map(|p| pick(p).narrow(0, i, 1))
                .collect::<candle_core::Result<Vec<_>>>()?;
            rows.push(Tensor::cat(&imgs, 0)?); // (points, C, S, S)
        }
    }
    Ok(rows)
}

/// `k` step indices spread evenly over a chain of `steps`, the last always included.
pub fn record_points(steps: usize, k: usize) -> Vec<usize> {
    let k = k.clamp(1, steps.max(1));
    (1..=k)
        .map(|j| (j * steps).div_ceil(k).saturating_sub(1))
        .collect()
}
