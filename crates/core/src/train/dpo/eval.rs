//! Sequence log-probabilities of pairs under a model, and the held-out DPO statistics.

use candle_core::{DType, Device, Tensor};

use super::loss::{dpo_loss, reward_stats, sequence_logps};
use super::pairs::PairTokens;
use crate::data::instructions::TokenizedExample;
use crate::error::Result;
use crate::models::CausalLm;
use crate::models::pretrained::TextLm;
use crate::nn::Dropout;
use crate::train::tuning::pad_batch;

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
    HeldOutPairs::new(reference, pairs, batch_size, max_batches, pad)?.evaluate(policy, beta)
}

/// Held-out pairs in the batches an evaluation reads (at most `max_batches` of `batch_size`),
/// each with the frozen reference's log-probabilities: those never change during a run, so
/// they are computed once rather than at every evaluation.
pub struct HeldOutPairs<'a> {
    /// (pairs, reference log-probs of the chosen and of the rejected replies (B,) each).
    batches: Vec<(Vec<&'a PairTokens>, Tensor, Tensor)>,
    pad: u32,
}

impl<'a> HeldOutPairs<'a> {
    pub fn new(
        reference: &TextLm,
        pairs: &'a [PairTokens],
        batch_size: usize,
        max_batches: usize,
        pad: u32,
    ) -> Result<Self> {
        let device = reference.device();
        let batches = pairs
            .chunks(batch_size.max(1))
            .take(max_batches.max(1))
            .map(|chunk| {
                let refs: Vec<&PairTokens> = chunk.iter().collect();
                let (rc, rr) = pair_logps(reference, &refs, pad, &mut Dropout::eval(), device)?;
                Ok((refs, rc, rr))
            })
            .collect::<Result<_>>()?;
        Ok(Self { batches, pad })
    }

    /// DPO loss, preference accuracy and rewards of `policy` (which must not record a graph),
    /// averaged over the pairs.
    pub fn evaluate(&self, policy: &TextLm, beta: f64) -> Result<DpoEval> {
        let device = policy.device();
        let mut sum = DpoEval::default();
        let mut n = 0usize;
        for (refs, rc, rr) in &self.batches {
            let (pc, pr) = pair_logps(policy, refs, self.pad, &mut Dropout::eval(), device)?;
            let out = dpo_loss(&pc, &pr, rc, rr, beta)?;
            let (margin, acc, c, r) = reward_stats(&out)?;
            let k = refs.len() as f64;
            sum.loss += out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * k;
            sum.accuracy += acc * k;
            sum.margin += margin * k;
            sum.chosen_reward += c * k;
            sum.rejected_reward += r * k;
            n += refs.len();
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
}
