//! The full configuration of a diffusion run, and its named presets.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::diffusion::{UNetConfig, UNetInit};
use crate::sample::diffusion::{BetaSchedule, NoiseScheduleConfig};
use crate::train::config::ScheduleKind;
use crate::train::images::{EpochConfig, ImageDataConfig};

/// Everything `muse train diffusion` can be told. The forward process sits at the top level
/// (`--set schedule=cosine`), where sampling reads it back from `training.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionRunConfig {
    /// Diffusion steps T.
    pub timesteps: usize,
    /// Noise schedule: linear (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021).
    pub schedule: BetaSchedule,
    /// First and last beta of the linear schedule.
    pub beta_start: f64,
    pub beta_end: f64,
    /// Decay of the exponential moving average of the weights (what sampling uses), warmed
    /// up as `min(decay, (1 + step) / (10 + step))`.
    pub ema_decay: f64,
    /// Probability of training a conditional model on "no label" instead of the image's
    /// label (classifier-free guidance, Ho & Salimans 2022).
    pub label_dropout: f64,
    /// Standard deviation of a fresh class embedding (conditional presets). `nn.Embedding`'s
    /// 1 makes two labels' rows lie about 15 apart against 1.2 between the time embeddings of
    /// t = 0 and t = 100, and samples keep a speckled background; 0.02 gives clean
    /// backgrounds, but after 2000 steps the labels barely matter (docs/diffusion.md).
    #[serde(default = "default_class_embedding_std")]
    pub class_embedding_std: f64,
    /// Start a text model's cross-attention outputs and pooled-prompt projection at zero, so
    /// it starts as the unconditional model (text presets only; docs/diffusion.md).
    #[serde(default)]
    pub text_zero_init: bool,
    /// The network (channels and image size are taken from the data, classes too for a
    /// conditional model).
    pub model: UNetConfig,
    pub train: EpochConfig,
    pub data: ImageDataConfig,
    pub sample: DiffusionSampleConfig,
    /// Colour every image with one of eight named tints (seeded, docs/diffusion.md): the data
    /// of text-to-image, and of a label-only baseline on the same images.
    #[serde(default)]
    pub tint: bool,
    /// Text-to-image: condition on captions read by a frozen sentence encoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConditioning>,
    /// Latent diffusion: denoise a frozen VAE's latent grids instead of pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent: Option<LatentConfig>,
}

/// The VAE of a latent-diffusion run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentConfig {
    /// The VAE run (`muse train vae --preset mnist-latent`), given as `--set vae=RUN`; the
    /// run keeps a copy in its `vae/` folder.
    pub vae: String,
    /// The factor that gives the latents unit variance: 0 in a preset, measured on the
    /// training set when the run starts and kept from then on.
    pub scale: f64,
}

/// `nn.Embedding`'s initialisation, N(0, 1).
fn default_class_embedding_std() -> f64 {
    1.0
}

/// How a text-to-image model reads its captions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConditioning {
    /// The frozen sentence encoder: a registered name (`all-minilm-l6-v2`) or a folder.
    pub encoder: String,
    /// Probability of training on the empty prompt instead of the caption (classifier-free
    /// guidance).
    pub prompt_dropout: f64,
}

/// The sample grids written to `samples/` while training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionSampleConfig {
    /// Images per grid (from a fixed noise batch, the same at every step).
    pub n: usize,
    /// Images per row.
    pub nrow: usize,
    /// DDIM steps of the progress grids (deterministic, eta 0).
    pub steps: usize,
    /// Guidance weight of a conditional model's grids (classes in turn).
    pub guidance: f64,
}

/// Keys only a new run may set, beside the model, the data and the seed: the forward process
/// (sampling reads it back from `training.json`), the initialisation, the tint and the text
/// encoder, which the checkpoint's weights already depend on.
pub const START_ONLY_KEYS: &[&str] = &[
    "timesteps",
    "schedule",
    "beta_start",
    "beta_end",
    "class_embedding_std",
    "text_zero_init",
    "tint",
    "text",
    "latent",
];

/// The preset names `--preset` accepts.
pub const PRESETS: &[&str] = &[
    "ddpm-mnist",
    "ddpm-fashion",
    "ddpm-mnist-cond",
    "ddpm-fashion-cond",
    "t2i-fashion",
    "t2i-mnist",
    "ldm-mnist",
    "ldm-fashion",
    "ldm-mnist-cond",
    "ldm-fashion-cond",
];

/// Optimizer steps of the presets: about two hours on the 2-core AMD EPYC (`muse --threads 2
/// bench diffusion`: 3.4 s per step of batch 64 under load, plus the progress grids), a bit
/// over two epochs of MNIST. Longer runs give cleaner samples: `--set max_steps=N`.
pub const DEFAULT_STEPS: usize = 2_000;

/// Steps of the class-conditional latent presets, whose steps cost a third of a pixel step:
/// 4,000 took 74 minutes on one thread and brought `ldm-mnist-cond` from 96.4% to 99.0% label
/// accuracy at guidance 3 (docs/diffusion.md).
pub const LATENT_COND_STEPS: usize = 4_000;

impl DiffusionRunConfig {
    /// How a fresh run's weights start.
    pub fn init(&self) -> UNetInit {
        UNetInit {
            class_std: self.class_embedding_std,
            zero_text_outputs: self.text_zero_init,
        }
    }

    /// A named preset.
    pub fn preset(name: &str) -> Result<Self> {
        let (dataset, cond, text, latent) = match name {
            "ddpm-mnist" => ("mnist", false, false, false),
            "ddpm-fashion" => ("fashion-mnist", false, false, false),
            "ddpm-mnist-cond" => ("mnist", true, false, false),
            "ddpm-fashion-cond" => ("fashion-mnist", true, false, false),
            "t2i-mnist" => ("mnist", false, true, false),
            "t2i-fashion" => ("fashion-mnist", false, true, false),
            "ldm-mnist" => ("mnist", false, false, true),
            "ldm-fashion" => ("fashion-mnist", false, false, true),
            "ldm-mnist-cond" => ("mnist", true, false, true),
            "ldm-fashion-cond" => ("fashion-mnist", true, false, true),
            _ => {
                return Err(Error::usage(format!(
                    "unknown diffusion preset '{name}'; choose one of: {}",
                    PRESETS.join(", ")
                )));
            }
        };
        let noise = NoiseScheduleConfig::ddpm();
        Ok(Self {
            timesteps: noise.timesteps,
            schedule: noise.schedule,
            beta_start: noise.beta_start,
            beta_end: noise.beta_end,
            ema_decay: 0.999,
            label_dropout: if cond { 0.1 } else { 0.0 },
            class_embedding_std: default_class_embedding_std(),
            text_zero_init: false,
            // n_classes is set from the data for a conditional model, context_dim from the
            // text encoder.
            // A conditional preset is its unconditional network with the label embedding.
            model: UNetConfig {
                n_classes: if cond { 10 } else { 0 },
                ..match (text, latent) {
                    (true, _) => UNetConfig::ddpm28_text(384),
                    (_, true) => UNetConfig::latent8(),
                    _ => UNetConfig::ddpm28(),
                }
            },
            train: EpochConfig {
                max_steps: if latent && cond {
                    LATENT_COND_STEPS
                } else {
                    DEFAULT_STEPS
                },
                batch_size: 64,
                lr: 2e-4,
                min_lr: 2e-4,
                schedule: ScheduleKind::Constant,
                // torch.optim.AdamW's default decay (here on kernels and matrices only).
                weight_decay: 0.01,
                log_interval: 100,
                eval_interval: 500,
                sample_interval: 500,
                ..EpochConfig::adam_mnist(0)
            },
            data: ImageDataConfig {
                dataset: dataset.into(),
                test_limit: 1000,
                ..ImageDataConfig::mnist()
            },
            // Text grids: one row per colour, one column per class.
            sample: DiffusionSampleConfig {
                n: if text { 80 } else { 64 },
                nrow: if text { 10 } else { 8 },
                steps: 50,
                guidance: if text { 4.0 } else { 3.0 },
            },
            tint: text,
            text: text.then(|| TextConditioning {
                encoder: crate::embed::DEFAULT_MODEL.into(),
                prompt_dropout: 0.1,
            }),
            latent: latent.then(|| LatentConfig {
                vae: String::new(),
                scale: 0.0,
            }),
        })
    }

    /// The forward process.
    pub fn noise(&self) -> NoiseScheduleConfig {
        NoiseScheduleConfig {
            timesteps: self.timesteps,
            schedule: self.schedule,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
        }
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<()> {
        self.noise().validate()?;
        self.train.validate()?;
        self.model
            .validate()
            .map_err(|e| Error::usage(format!("model: {e}")))?;
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(Error::usage("ema_decay must be in [0, 1)"));
        }
        if !(self.class_embedding_std.is_finite() && self.class_embedding_std > 0.0) {
            return Err(Error::usage("class_embedding_std must be a number above 0"));
        }
        if self.text_zero_init && self.text.is_none() {
            return Err(Error::usage(
                "text_zero_init applies to text models only (the t2i-* presets)",
            ));
        }
        if !(0.0..1.0).contains(&self.label_dropout) {
            return Err(Error::usage("label_dropout must be in [0, 1)"));
        }
        if self.label_dropout > 0.0 && !self.model.conditional() {
            return Err(Error::usage(
                "label_dropout needs a conditional model (a -cond preset)",
            ));
        }
        if let Some(t) = &self.text {
            if !(0.0..1.0).contains(&t.prompt_dropout) {
                return Err(Error::usage("text.prompt_dropout must be in [0, 1)"));
            }
            if !self.tint {
                return Err(Error::usage(
                    "text conditioning trains on tinted, captioned images: set tint=true",
                ));
            }
            if self.model.conditional() {
                return Err(Error::usage(
                    "a text-to-image model takes no class labels (model.n_classes = 0)",
                ));
            }
        }
        if let Some(l) = &self.latent {
            if l.vae.is_empty() {
                return Err(Error::usage(
                    "latent diffusion denoises the latents of a VAE run: train one with `muse \
                     train vae --preset mnist-latent` (add `--data fashion-mnist` for \
                     ldm-fashion and ldm-fashion-cond) and pass `--set vae=RUN`",
                ));
            }
            if !(l.scale.is_finite() && l.scale >= 0.0) {
                return Err(Error::usage(
                    "latent.scale must be >= 0 (0: measured when the run starts)",
                ));
            }
            if self.tint || self.text.is_some() {
                return Err(Error::usage(
                    "latent diffusion is unconditional or class-conditional here; tint and text \
                     conditioning need pixel space (a ddpm or t2i preset)",
                ));
            }
        }
        if self.text.is_none() && self.model.text_conditional() {
            return Err(Error::usage(
                "model.context_dim is set but the run has no text section (use a t2i preset)",
            ));
        }
        let s = &self.sample;
        if s.n == 0 || s.nrow == 0 || s.steps == 0 || s.steps > self.timesteps {
            return Err(Error::usage(
                "sample: n and nrow must be positive, steps in 1..=timesteps",
            ));
        }
        if !(s.guidance >= 0.0 && s.guidance.is_finite()) {
            return Err(Error::usage("sample: guidance must be >= 0"));
        }
        Ok(())
    }
}
