//! One optimizer step of the fine-tuning loops (SFT and DPO): micro-batches with their own
//! seeded dropout, gradients accumulated, clipped and applied.

use candle_core::Tensor;

use super::Policy;
use crate::error::Result;
use crate::nn::Dropout;
use crate::train::config::TrainConfig;
use crate::train::optimizer::AdamW;
use crate::train::seeds::dropout_seed;

/// The LoRA dropout's seed, apart from the model's within a micro-batch.
const LORA_DROPOUT_SALT: u64 = 0x10AA;

impl Policy {
    /// One optimizer step at `lr` over `t.grad_accum` micro-batches. `micro_loss(micro,
    /// dropout)` builds micro-batch `micro`'s loss with the model dropout it is given (the LoRA
    /// dropout is set for it too, both seeded by (seed, step, micro, `stream`), so a resumed run
    /// draws the same masks). Each loss is scaled by `1 / grad_accum` before its backward pass,
    /// the gradients are summed, clipped at `t.grad_clip` (0: off) and applied. Returns the
    /// gradient norm before clipping (NaN when clipping is off).
    #[allow(clippy::too_many_arguments)]
    pub fn optimizer_step(
        &self,
        opt: &mut AdamW,
        t: &TrainConfig,
        model_dropout: f32,
        stream: u64,
        step: u64,
        lr: f64,
        mut micro_loss: impl FnMut(u64, &mut Dropout) -> Result<Tensor>,
    ) -> Result<f64> {
        let (grads, _, grad_norm) = opt.accumulate_grads(t, |micro| {
            let seed = dropout_seed(t.seed, step, micro, stream);
            if let Some((l, _)) = &self.lora {
                self.lora_dropout.train(l.dropout, seed ^ LORA_DROPOUT_SALT);
            }
            let loss = micro_loss(micro, &mut Dropout::train(model_dropout, seed));
            self.lora_dropout.eval();
            loss
        })?;
        opt.step(&grads, lr)?;
        Ok(grad_norm)
    }
}
