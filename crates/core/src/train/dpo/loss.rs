//! The DPO objective ("Direct Preference Optimization: Your Language Model is Secretly a Reward
//! Model", Rafailov et al. 2023) and the sequence log-probabilities it compares.
//!
//! For a prompt `x` with preferred reply `y_c` and dispreferred `y_r`, policy `pi` and frozen
//! reference `ref`:
//!
//! ```text
//! loss = -log sigmoid(beta * ((log pi(y_c|x) - log ref(y_c|x)) - (log pi(y_r|x) - log ref(y_r|x))))
//! ```
//!
//! `beta * (log pi(y|x) - log ref(y|x))` is the implicit reward of a reply; the reward margin
//! is chosen minus rejected, and preference accuracy is how often the margin is positive.

use candle_core::{D, DType, Result, Tensor};

use crate::nn::ops::IGNORE_INDEX;

/// Sum of the log-probabilities of each row's targets, over the positions whose target is not
/// `IGNORE_INDEX` (the reply tokens): `log p(reply | prompt)` per sequence.
///
/// # Shapes
/// `logits`: (B * T, V), `targets`: (B, T) u32 -> (B,) f32.
pub fn sequence_logps(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t) = targets.dims2()?;
    let flat = targets.flatten_all()?; // (B * T)
    let mask = flat.ne(IGNORE_INDEX)?; // (B * T) u8
    let safe = mask.where_cond(&flat, &flat.zeros_like()?)?; // ignored targets -> id 0
    let lse = logits.log_sum_exp(D::Minus1)?; // (B * T)
    let picked = logits.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?; // (B * T)
    let logp = (picked - lse)?; // (B * T)
    let logp = (logp * mask.to_dtype(logits.dtype())?)?; // (B * T)
    logp.reshape((b, t))?.sum(1) // (B,)
}

/// What one DPO batch gives.
pub struct DpoOutput {
    /// Mean DPO loss (scalar).
    pub loss: Tensor,
    /// `beta * (log pi(y_c|x) - log ref(y_c|x))`, (B,).
    pub chosen_rewards: Tensor,
    /// `beta * (log pi(y_r|x) - log ref(y_r|x))`, (B,).
    pub rejected_rewards: Tensor,
}

/// The DPO loss from sequence log-probabilities of the policy (`pi_*`, with a graph) and the
/// reference (`ref_*`, constants).
///
/// # Shapes
/// each input (B,) -> [`DpoOutput`].
pub fn dpo_loss(
    pi_chosen: &Tensor,
    pi_rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    beta: f64,
) -> Result<DpoOutput> {
    let chosen_rewards = ((pi_chosen - ref_chosen)? * beta)?; // (B,)
    let rejected_rewards = ((pi_rejected - ref_rejected)? * beta)?; // (B,)
    let z = (&chosen_rewards - &rejected_rewards)?; // (B,)
    // -log sigmoid(z) = softplus(-z) = relu(-z) + log(1 + exp(-|z|)), stable for any z.
    let softplus = (z.neg()?.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    Ok(DpoOutput {
        loss: softplus.mean_all()?,
        chosen_rewards: chosen_rewards.detach(),
        rejected_rewards: rejected_rewards.detach(),
    })
}

/// Batch statistics: (mean margin, accuracy with ties counted half, mean chosen reward, mean
/// rejected reward).
pub fn reward_stats(out: &DpoOutput) -> Result<(f64, f64, f64, f64)> {
    let c: Vec<f32> = out.chosen_rewards.to_dtype(DType::F32)?.to_vec1()?;
    let r: Vec<f32> = out.rejected_rewards.to_dtype(DType::F32)?.to_vec1()?;
    let n = c.len().max(1) as f64;
    let mut margin = 0.0;
    let mut acc = 0.0;
    for (a, b) in c.iter().zip(&r) {
        let m = (*a - *b) as f64;
        margin += m;
        acc += if m > 0.0 {
            1.0
        } else if m == 0.0 {
            0.5
        } else {
            0.0
        };
    }
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / n;
    Ok((margin / n, acc / n, mean(&c), mean(&r)))
}
