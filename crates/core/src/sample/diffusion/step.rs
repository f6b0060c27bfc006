//! One reverse step of each sampler, as diffusers computes it for epsilon prediction:
//! `DDPMScheduler.step` (ancestral, variance "fixed_small", Ho et al. 2020) and
//! `DDIMScheduler.step` (Song, Meng & Ermon 2021, `eta` between deterministic DDIM (0) and
//! DDPM-like (1)), with diffusers' timestep spacings, and the classifier-free guidance
//! combination (Ho & Salimans 2022).
//!
//! Coefficients are computed in f64 and applied to f32 tensors.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::schedule::NoiseSchedule;

/// What one step returns.
pub struct StepOut {
    /// `x_{t_prev}`.
    pub prev: Tensor,
    /// The predicted `x_0` (clipped to [-1, 1] when asked).
    pub x0: Tensor,
}

/// `x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`, clamped to [-1, 1] when `clip`.
pub fn predict_x0(abar_t: f64, x: &Tensor, eps: &Tensor, clip: bool) -> Result<Tensor> {
    let x0 = ((x - (eps * (1.0 - abar_t).sqrt())?)? * (1.0 / abar_t.sqrt()))?;
    if clip { x0.clamp(-1f32, 1f32) } else { Ok(x0) }
}

/// The ancestral DDPM step from `t` to `prev_t` (`t - 1` over all T steps; `None` past the
/// first step), diffusers' `DDPMScheduler.step` with `variance_type = "fixed_small"`:
/// posterior mean from the (optionally clipped) `x0` plus `sqrt(var) * noise` for `t > 0`,
/// `var = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)`.
///
/// # Shapes
/// `eps`, `x`, `noise`: (N, C, H, W) -> (N, C, H, W).
pub fn ddpm_step(
    s: &NoiseSchedule,
    eps: &Tensor,
    t: usize,
    prev_t: Option<usize>,
    x: &Tensor,
    noise: &Tensor,
    clip: bool,
) -> Result<StepOut> {
    let (a_t, a_prev) = (s.abar(Some(t)), s.abar(prev_t));
    let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
    let cur_alpha = a_t / a_prev;
    let cur_beta = 1.0 - cur_alpha;
    let x0 = predict_x0(a_t, x, eps, clip)?;
    let c0 = a_prev.sqrt() * cur_beta / b_t;
    let ct = cur_alpha.sqrt() * b_prev / b_t;
    let mut prev = ((&x0 * c0)? + (x * ct)?)?;
    if t > 0 {
        let var = (b_prev / b_t * cur_beta).max(1e-20);
        prev = (prev + (noise * var.sqrt())?)?;
    }
    Ok(StepOut { prev, x0 })
}

/// The DDIM step from `t` to `prev_t` (`None`: to the clean image, diffusers'
/// `set_alpha_to_one`), diffusers' `DDIMScheduler.step` with `use_clipped_model_output =
/// False`: `x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma noise`,
/// `sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))`.
///
/// # Shapes
/// `eps`, `x`, `noise`: (N, C, H, W) -> (N, C, H, W); `noise` is read only when `eta > 0`.
#[allow(clippy::too_many_arguments)]
pub fn ddim_step(
    s: &NoiseSchedule,
    eps: &Tensor,
    t: usize,
    prev_t: Option<usize>,
    x: &Tensor,
    eta: f64,
    noise: &Tensor,
    clip: bool,
) -> Result<StepOut> {
    let (a_t, a_prev) = (s.abar(Some(t)), s.abar(prev_t));
    let x0 = predict_x0(a_t, x, eps, clip)?;
    let var = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev);
    let std = eta * var.sqrt();
    let dir = (1.0 - a_prev - std * std).max(0.0).sqrt();
    let mut prev = ((&x0 * a_prev.sqrt())? + (eps * dir)?)?;
    if eta > 0.0 {
        prev = (prev + (noise * std)?)?;
    }
    Ok(StepOut { prev, x0 })
}

/// How a shorter sampling chain picks its timesteps out of T (diffusers' `timestep_spacing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Spacing {
    /// `k * (T / n)` for k = n-1 .. 0 (diffusers' default): 980, 960, ..., 0 for 50 of 1000.
    Leading,
    /// `round(T - k T / n) - 1`: 999, 979, ..., 19 (Lin et al. 2024).
    Trailing,
}

/// The `n` timesteps of a sampling chain over `t_total` training steps, from noisiest to
/// cleanest, each with the timestep it steps to (`None`: the clean image). The step size is
/// `T / n` (integer division) as diffusers'.
pub fn timesteps(t_total: usize, n: usize, spacing: Spacing) -> Vec<(usize, Option<usize>)> {
    let n = n.clamp(1, t_total);
    let ratio = t_total / n;
    let ts: Vec<usize> = match spacing {
        Spacing::Leading => (0..n).rev().map(|k| k * ratio).collect(),
        Spacing::Trailing => {
            let r = t_total as f64 / n as f64;
            (0..n)
                .map(|k| ((t_total as f64 - k as f64 * r).round() as usize).saturating_sub(1))
                .collect()
        }
    };
    ts.into_iter().map(|t| (t, t.checked_sub(ratio))).collect()
}

/// Classifier-free guidance: `eps_uncond + w (eps_cond - eps_uncond)`. `w = 1` is the
/// conditional model, `w = 0` the unconditional one, `w > 1` pushes towards the label.
///
/// # Shapes
/// `eps_uncond`, `eps_cond`: (N, C, H, W) -> (N, C, H, W).
pub fn guided_eps(eps_uncond: &Tensor, eps_cond: &Tensor, w: f64) -> Result<Tensor> {
    eps_uncond + ((eps_cond - eps_uncond)? * w)?
}
