//! Sequence log-probabilities of pairs under a model, and the held-out DPO statistics.

use candle_core::{DType, Device, Tensor};

use super::loss::{dpo_loss, reward_stats, sequence_logps};
use super::pairs::PairTokens;
use crate::data::instructions::TokenizedExample;
use crate::error::Result;
use crate::models::CausalLm;
use crate::models::pretrained::TextLm;
use crate::nn::Dropout;
use crate::train::finetune::pad_batch;

/// Held-out DPO statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DpoEval {
    pub loss: f64,
    /// Fraction of pairs whose implicit reward ranks chosen above rejected (ties half).
    pub accuracy: f64,
    pub margin: f64,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
}

/// Sequence log-probabilities of the chosen and rejected replies of `pairs` under `model`:
/// one forward over a batch of 2B rows (chosen rows first).
///
/// # Shapes
/// -> ((B,), (B,)).
pub fn pair_logps(
    model: &TextLm,
    pairs: &[&PairTokens],
    pad: u32,
    dropout: &mut Dropout,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let b = pairs.len();
    let rows: Vec<&TokenizedExample> = pairs
        .iter()
        .map(|p| &p.chosen)
        .chain(pairs.iter().map(|p| &p.rejected))
        .collect();
    let batch = pad_batch(&rows, pad, device)?;
    let logits = model.forward(&batch.inputs, dropout)?; // (2B * T, V)
    let logps = sequence_logps(&logits, &batch.targets)?; // (2B,)
    Ok((logps.narrow(0, 0, b)?, logps.narrow(0, b, b)?))
}

/// DPO statistics of `policy` against `reference` over `pairs` (at most `max_batches`).
pub fn evaluate(
    policy: &TextLm,
    reference: &TextLm,
    pairs: &[PairTokens],
    beta: f64,
    batch_size: usize,
    max_batches: usize,
    pad: u32,
) -> Result<DpoEval> {
    let device = policy.device();
    let mut sum = DpoEval::default();
    let mut n = 0usize;
    for chunk in pairs.chunks(batch_size.max(1)).take(max_batches.max(1)) {
        let refs: Vec<&PairTokens> = chunk.iter().collect();
        let (pc, pr) = pair_logps(policy, &refs, pad, &mut Dropout::eval(), device)?;
        let (rc, rr) = pair_logps(reference, &refs, pad, &mut Dropout::eval(), device)?;
        let out = dpo_loss(&pc, &pr, &rc, &rr, beta)?;
        let (margin, acc, c, r) = reward_stats(&out)?;
        let k = chunk.len() as f64;
        sum.loss += out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * k;
        sum.accuracy += acc * k;
        sum.margin += margin * k;
        sum.chosen_reward += c * k;
        sum.rejected_reward += r * k;
        n += chunk.len();
    }
    let n = n.max(1) as f64;
    Ok(DpoEval {
        loss: sum.loss / n,
        accuracy: sum.accuracy / n,
        margin: sum.margin / n,
        chosen_reward: sum.chosen_reward / n,
        rejected_reward: sum.rejected_reward / n,
    })
}
