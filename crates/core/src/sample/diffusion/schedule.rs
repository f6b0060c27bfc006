//! Noise schedules of the forward process `q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`:
//! the linear betas of Ho et al. 2020 and the cosine schedule of Nichol & Dhariwal 2021
//! ("Improved Denoising Diffusion Probabilistic Models"), equal to diffusers' `linear` and
//! `squaredcos_cap_v2`. Computed in f64 (diffusers works in f32; they agree to ~1e-6).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the betas run from t = 0 to T - 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BetaSchedule {
    /// Evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020: 1e-4 .. 0.02).
    Linear,
    /// `abar(t) = cos^2(((t / T) + 0.008) / 1.008 * pi / 2)`, betas capped at 0.999.
    Cosine,
}

impl BetaSchedule {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(Self::Linear),
            "cosine" | "squaredcos_cap_v2" => Ok(Self::Cosine),
            _ => Err(Error::usage(format!(
                "unknown noise schedule '{s}': choose linear or cosine"
            ))),
        }
    }
}

/// The forward process of a run: what `training.json` records at its top level (other keys
/// are ignored when reading it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseScheduleConfig {
    /// Diffusion steps T.
    pub timesteps: usize,
    pub schedule: BetaSchedule,
    /// First and last beta of the linear schedule.
    pub beta_start: f64,
    pub beta_end: f64,
}

impl NoiseScheduleConfig {
    /// T = 1000, linear betas 1e-4 .. 0.02 (Ho et al. 2020).
    pub fn ddpm() -> Self {
        Self {
            timesteps: 1000,
            schedule: BetaSchedule::Linear,
            beta_start: 1e-4,
            beta_end: 0.02,
        }
    }

    /// Checks the values once.
    pub fn validate(&self) -> Result<()> {
        if self.timesteps < 2 || self.timesteps > 100_000 {
            return Err(Error::usage("timesteps must be in 2..=100000"));
        }
        let ok = |b: f64| b > 0.0 && b < 1.0;
        if !(ok(self.beta_start) && ok(self.beta_end) && self.beta_start <= self.beta_end) {
            return Err(Error::usage(
                "beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1",
            ));
        }
        Ok(())
    }
}

/// Betas and their cumulative products `abar_t = prod_{s <= t} (1 - beta_s)`.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    pub fn new(cfg: &NoiseScheduleConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(match cfg.schedule {
            BetaSchedule::Linear => Self::linear(cfg.timesteps, cfg.beta_start, cfg.beta_end),
            BetaSchedule::Cosine => Self::cosine(cfg.timesteps),
        })
    }

    /// `torch.linspace(start, end, t)`.
    pub fn linear(t: usize, start: f64, end: f64) -> Self {
        let betas = (0..t)
            .map(|i| start + (end - start) * i as f64 / (t - 1).max(1) as f64)
            .collect();
        Self::from_betas(betas)
    }

    /// diffusers' `betas_for_alpha_bar` with the cosine transform (`squaredcos_cap_v2`).
    pub fn cosine(t: usize) -> Self {
        let abar = |x: f64| {
            ((x + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        let betas = (0..t)
            .map(|i| {
                let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
                (1.0 - abar(t2) / abar(t1)).min(0.999)
            })
            .collect();
        Self::from_betas(betas)
    }

    pub fn from_betas(betas: Vec<f64>) -> Self {
        let mut acc = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        Self {
            betas,
            alphas_cumprod,
        }
    }

    /// T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// `abar` at `t`, and 1 for "before the first step" (`None`).
    pub fn abar(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.alphas_cumprod[t])
    }
}
