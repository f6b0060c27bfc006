//! The full configuration of a GAN run, and its named presets.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::gan::{DNorm, GanConfig};
use crate::train::images::{EpochConfig, ImageDataConfig};

/// The adversarial objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// Binary cross-entropy on D's logits; G maximises `log D(G(z))` (Goodfellow et al. 2014,
    /// the non-saturating form).
    Bce,
    /// Wasserstein distance estimated by a critic, kept 1-Lipschitz by a gradient penalty
    /// (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs").
    WganGp,
}

impl GanLoss {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "bce" | "dcgan" | "non-saturating" => Ok(GanLoss::Bce),
            "wgan-gp" | "wgan_gp" => Ok(GanLoss::WganGp),
            _ => Err(Error::usage(format!(
                "unknown GAN loss '{s}': use bce (non-saturating, DCGAN) or wgan-gp"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GanLoss::Bce => "bce",
            GanLoss::WganGp => "wgan-gp",
        }
    }
}

/// The adversarial part of the loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdversarialConfig {
    /// `bce` (non-saturating DCGAN loss) or `wgan-gp`.
    pub loss: GanLoss,
    /// Discriminator (critic) updates per generator update.
    pub n_critic: usize,
    /// Weight of the gradient penalty (WGAN-GP's lambda).
    pub gp_weight: f64,
    /// Samples the reference classifier sorts into classes at each evaluation (class coverage;
    /// 0: no coverage check).
    pub coverage_samples: usize,
    /// Images in each progress grid in `samples/` (for a conditional model: per class, 8).
    pub grid_size: usize,
}

/// Everything `muse train gan` can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GanRunConfig {
    pub model: GanConfig,
    /// Epochs count passes over the data by the discriminator; steps are generator steps,
    /// each after `n_critic` discriminator steps.
    pub train: EpochConfig,
    pub data: ImageDataConfig,
    pub gan: AdversarialConfig,
}

/// The preset names `--preset` accepts.
pub const PRESETS: &[&str] = &["dcgan-mnist", "cgan-mnist", "wgan-gp-mnist"];

impl GanRunConfig {
    /// A named preset.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "dcgan-mnist" => Ok(Self::dcgan_mnist()),
            "cgan-mnist" => Ok(Self::cgan_mnist()),
            "wgan-gp-mnist" => Ok(Self::dcgan_mnist().with_loss(GanLoss::WganGp)),
            _ => Err(Error::usage(format!(
                "unknown gan preset '{name}'; choose one of: {}",
                PRESETS.join(", ")
            ))),
        }
    }

    /// The DCGAN of `shared/bench/pytorch/dcgan28.py` on MNIST: Adam 2e-4, betas (0.5, 0.999),
    /// batch 64, non-saturating loss, 5 epochs.
    pub fn dcgan_mnist() -> Self {
        let mut train = EpochConfig::adam_mnist(5);
        (train.batch_size, train.lr, train.min_lr) = (64, 2e-4, 2e-4);
        (train.beta1, train.beta2) = (0.5, 0.999);
        (
            train.log_interval,
            train.sample_interval,
            train.eval_interval,
        ) = (100, 500, 1000);
        train.seed = 1;
        Self {
            model: GanConfig::dcgan_mnist(),
            train,
            data: ImageDataConfig::mnist(),
            gan: AdversarialConfig {
                loss: GanLoss::Bce,
                n_critic: 1,
                gp_weight: 10.0,
                coverage_samples: 1000,
                grid_size: 64,
            },
        }
    }

    /// The same conditioned on the digit class.
    pub fn cgan_mnist() -> Self {
        Self {
            model: GanConfig::cgan_mnist(),
            ..Self::dcgan_mnist()
        }
    }

    /// Switches the objective, with the settings the WGAN-GP paper uses for it: a critic
    /// without batch norm, 5 critic steps per generator step, lambda 10, Adam 1e-4 with betas
    /// (0.5, 0.9). Switching to `bce` restores batch norm and a single D step.
    pub fn with_loss(mut self, loss: GanLoss) -> Self {
        self.gan.loss = loss;
        match loss {
            GanLoss::WganGp => {
                self.model.d_norm = DNorm::None;
                self.gan.n_critic = 5;
                self.gan.gp_weight = 10.0;
                (self.train.lr, self.train.min_lr) = (1e-4, 1e-4);
                (self.train.beta1, self.train.beta2) = (0.5, 0.9);
                // Five critic steps per generator step: as many D passes over the data as
                // the DCGAN preset's generator steps would make.
                self.train.epochs = self.train.epochs.max(5) * 2;
            }
            GanLoss::Bce => {
                self.model.d_norm = DNorm::Batch;
                self.gan.n_critic = 1;
            }
        }
        self
    }

    /// Checks every section (image size and channels are checked against the data later).
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.model
            .validate()
            .map_err(|e| Error::usage(format!("model: {e}")))?;
        if self.gan.n_critic == 0 {
            return Err(Error::usage("gan: n_critic must be at least 1"));
        }
        if !(self.gan.gp_weight >= 0.0 && self.gan.gp_weight.is_finite()) {
            return Err(Error::usage("gan: gp_weight must be a number >= 0"));
        }
        if self.gan.loss == GanLoss::WganGp && self.model.d_norm != DNorm::None {
            return Err(Error::usage(
                "wgan-gp takes a critic without batch norm (its penalty is per sample): set \
                 model.d_norm=none, or pass --loss wgan-gp which does",
            ));
        }
        if self.gan.grid_size == 0 {
            return Err(Error::usage("gan: grid_size must be at least 1"));
        }
        if self.train.batch_size < 2 {
            return Err(Error::usage(
                "train: batch_size must be at least 2 (batch norm needs two images)",
            ));
        }
        Ok(())
    }
}
