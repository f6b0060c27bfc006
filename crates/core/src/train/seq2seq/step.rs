//! One optimizer step of the translation model, shared by the training loop and `muse bench
//! seq2seq` so that the benchmark times exactly what training runs.

use candle_core::Device;

use crate::data::parallel::batch::make_batch;
use crate::error::Result;
use crate::models::seq2seq::Seq2Seq;
use crate::nn::Dropout;
use crate::train::checkpoint;
use crate::train::optimizer::AdamW;
use crate::train::seeds::{SEQ2SEQ_DROPOUT_STREAM, dropout_seed};

use super::{PairData, Seq2SeqRunConfig};

/// What one step did.
pub struct StepOutcome {
    /// Label-smoothed loss, the mean over the micro-batches.
    pub loss: f64,
    /// Gradient norm before clipping (NaN when clipping is off).
    pub grad_norm: f64,
    /// Target tokens that counted in the loss.
    pub target_tokens: usize,
}

/// Forward, backward and clip over `batches` (one per micro-batch: `grad_accum` of them,
/// indices into `data.train`), then an AdamW step at `lr`. Dropout is seeded by `step`.
pub fn train_step(
    model: &Seq2Seq,
    opt: &mut AdamW,
    data: &PairData,
    batches: &[Vec<usize>],
    cfg: &Seq2SeqRunConfig,
    (step, lr): (u64, f64),
    device: &Device,
) -> Result<StepOutcome> {
    let t = &cfg.train;
    let mut target_tokens = 0;
    let (grads, loss_sum, grad_norm) = opt.accumulate_grads(t, |micro| {
        let b = make_batch(&data.train, &batches[micro as usize], data.specials, device)?;
        target_tokens += b.target_tokens;
        let mut dropout = Dropout::train(
            cfg.model.dropout,
            dropout_seed(t.seed, step, micro, SEQ2SEQ_DROPOUT_STREAM),
        );
        Ok(model.loss(
            &b.src,
            &b.tgt_in,
            &b.tgt_out,
            cfg.label_smoothing,
            &mut dropout,
        )?)
    })?;
    let loss = loss_sum / t.grad_accum as f64;
    checkpoint::check_finite(step, "loss", loss)?;
    if t.grad_clip > 0.0 {
        checkpoint::check_finite(step, "gradient norm", grad_norm)?;
    }
    opt.step(&grads, lr)?;
    Ok(StepOutcome {
        loss,
        grad_norm,
        target_tokens,
    })
}
