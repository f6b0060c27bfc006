//! The full configuration of a VAE run, and its named presets.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::vae::VaeConfig;
use crate::train::images::{EpochConfig, ImageDataConfig};

/// Everything `muse train vae` can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeRunConfig {
    /// The network (channels and image size are taken from the data).
    pub model: VaeConfig,
    pub train: EpochConfig,
    pub data: ImageDataConfig,
    pub objective: VaeObjective,
    pub sample: VaeSampleConfig,
}

/// What the loss asks of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeObjective {
    /// Weight of the KL term (1: the VAE; > 1: a beta-VAE, Higgins et al. 2017).
    pub beta: f64,
    /// Standard deviation of Gaussian noise added to the inputs (clamped to [0, 1]) while the
    /// clean image stays the target: a denoising VAE (Im et al. 2017). 0: off.
    pub train_noise: f64,
}

/// The sample grids written to `samples/` while training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeSampleConfig {
    /// Images per grid (decoded from a fixed batch of latents, the same at every step).
    pub n: usize,
    /// Images per row.
    pub nrow: usize,
}

/// The preset names `--preset` accepts.
pub const PRESETS: &[&str] = &[
    "mnist-mlp",
    "mnist-mlp-cosine",
    "mnist-conv",
    "mnist-latent",
];

impl VaeRunConfig {
    /// A named preset.
    pub fn preset(name: &str) -> Result<Self> {
        let base = Self {
            model: VaeConfig::mnist_mlp(),
            train: EpochConfig::adam_mnist(10),
            data: ImageDataConfig::mnist(),
            objective: VaeObjective {
                beta: 1.0,
                train_noise: 0.0,
            },
            sample: VaeSampleConfig { n: 64, nrow: 8 },
        };
        match name {
            // PyTorch examples vae/main.py: 784-400-20, Adam 1e-3, batch 128, 10 epochs.
            "mnist-mlp" => Ok(base),
            // The same model, batch and epochs; Adam at 5e-3 with a cosine decay to 0.
            "mnist-mlp-cosine" => {
                let mut cfg = base;
                (cfg.train.lr, cfg.train.min_lr) = (5e-3, 0.0);
                cfg.train.schedule = crate::train::config::ScheduleKind::Cosine;
                Ok(cfg)
            }
            "mnist-conv" => Ok(Self {
                model: VaeConfig::mnist_conv(),
                ..base
            }),
            // The autoencoder of latent diffusion (`muse train diffusion --preset ldm-mnist
            // --set vae=RUN`): a 4 x 8 x 8 latent grid, KL weighted down to 0.1 so that the
            // decoder gets back the strokes (a full-weight KL would blur them) while the
            // latents stay near N(0, I) for the diffusion model. `--data fashion-mnist` for
            // ldm-fashion.
            "mnist-latent" => Ok(Self {
                model: VaeConfig::mnist_spatial(),
                objective: VaeObjective {
                    beta: 0.1,
                    ..base.objective
                },
                ..base
            }),
            _ => Err(Error::usage(format!(
                "unknown vae preset '{name}'; choose one of: {}",
                PRESETS.join(", ")
            ))),
        }
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.model
            .validate()
            .map_err(|e| Error::usage(format!("model: {e}")))?;
        if !(self.objective.beta >= 0.0 && self.objective.beta.is_finite()) {
            return Err(Error::usage("objective: beta must be >= 0"));
        }
        if !(self.objective.train_noise >= 0.0 && self.objective.train_noise.is_finite()) {
            return Err(Error::usage("objective: train_noise must be >= 0"));
        }
        if self.sample.n == 0 || self.sample.nrow == 0 {
            return Err(Error::usage("sample: n and nrow must be positive"));
        }
        Ok(())
    }
}
