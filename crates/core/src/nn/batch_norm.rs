//! `BatchNorm2d` (PyTorch's `nn.BatchNorm2d`, tensor names `weight`, `bias`, `running_mean`,
//! `running_var`), its training forward calling the fused kernel of [`super::ops`], optionally
//! fused with the activation after it. The convolution layers live in `nn::conv`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::ops::{self, Activation, BatchStats};

/// Which statistics a batch norm uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormMode {
    /// Batch statistics, and the running averages move towards them (training).
    Train,
    /// Batch statistics, running averages untouched (e.g. progress samples during training).
    Batch,
    /// The running averages (inference, `model.eval()`).
    Eval,
}

/// Batch normalisation over (N, H, W) per channel (`nn.BatchNorm2d`, affine, tracking running
/// statistics with `momentum`), optionally fused with the activation after it.
///
/// The running averages are tensors that share storage with the model's variables and are
/// updated in place, so they travel with the weights into checkpoints; the optimizer must
/// leave them alone (they get no gradient).
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub eps: f64,
    pub momentum: f64,
}

impl BatchNorm2d {
    /// PyTorch's defaults: eps 1e-5, momentum 0.1; weight 1, bias 0, running mean 0, var 1.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let one = candle_nn::Init::Const(1.0);
        let zero = candle_nn::Init::Const(0.0);
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", one)?,
            bias: vb.get_with_hints(channels, "bias", zero)?,
            running_mean: vb.get_with_hints(channels, "running_mean", zero)?,
            running_var: vb.get_with_hints(channels, "running_var", one)?,
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    /// True for the names of the running averages (to keep them out of an optimizer).
    pub fn is_buffer(name: &str) -> bool {
        name.ends_with("running_mean") || name.ends_with("running_var")
    }

    /// `act(batchnorm(x))`.
    ///
    /// # Shapes
    /// `x`: (N, C, H, W) or (N, C) -> same.
    pub fn forward(&self, x: &Tensor, mode: NormMode, act: Activation) -> Result<Tensor> {
        match mode {
            NormMode::Eval => {
                let mut shape = vec![1usize; x.rank()];
                shape[1] = x.dim(1)?;
                let scale = (&self.weight / (&self.running_var + self.eps)?.sqrt()?)?;
                let shift = (&self.bias - (&self.running_mean * &scale)?)?;
                let y = x
                    .broadcast_mul(&scale.reshape(shape.as_slice())?)?
                    .broadcast_add(&shift.reshape(shape.as_slice())?)?;
                act.reference(&y)
            }
            NormMode::Train | NormMode::Batch => {
                let (y, stats) = ops::batch_norm_train(x, &self.weight, &self.bias, self.eps, act)?;
                if mode == NormMode::Train {
                    self.update_running(&stats)?;
                }
                Ok(y)
            }
        }
    }

    /// `running = (1 - momentum) * running + momentum * batch`, with the unbiased batch
    /// variance (as PyTorch).
    fn update_running(&self, s: &BatchStats) -> Result<()> {
        let m = self.momentum as f32;
        let unbias = s.count as f32 / (s.count as f32 - 1.0).max(1.0);
        let blend = |running: &Tensor, batch: &[f32], k: f32| -> Result<()> {
            let old = running
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?;
            let new: Vec<f32> = old
                .iter()
                .zip(batch)
                .map(|(r, b)| (1.0 - m) * r + m * b * k)
                .collect();
            let new =
                Tensor::from_vec(new, old.len(), running.device())?.to_dtype(running.dtype())?;
            running.slice_set(&new, 0, 0)
        };
        blend(&self.running_mean, &s.mean, 1.0)?;
        blend(&self.running_var, &s.var, unbias)
    }
}
