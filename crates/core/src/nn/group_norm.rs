//! Group normalisation (Wu & He 2018, "Group Normalization"), PyTorch's `nn.GroupNorm`: the
//! channels are split into groups, each sample's group is normalised over its channels and
//! pixels, then a per-channel affine map is applied. Tensor names `weight`, `bias`.
//!
//! The forward runs the fused CPU kernel of [`super::ops::group_norm_act`] (optionally with
//! the SiLU after it), composed candle ops on other devices.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// `nn.GroupNorm(groups, channels, eps=1e-5)` with its affine weight and bias.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    /// Weight 1 and bias 0 when fresh (PyTorch's initialisation).
    pub fn new(groups: usize, channels: usize, vb: VarBuilder) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            candle_core::bail!("GroupNorm: {channels} channels do not split into {groups} groups")
        }
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?,
            groups,
            eps: 1e-5,
        })
    }

    /// # Shapes
    /// `x`: (N, C, H, W) -> (N, C, H, W).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        group_norm(x, &self.weight, &self.bias, self.groups, self.eps)
    }

    /// `silu(forward(x))` as one fused op.
    ///
    /// # Shapes
    /// `x`: (N, C, H, W) -> (N, C, H, W).
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        super::ops::group_norm_act(x, &self.weight, &self.bias, self.groups, self.eps, true)
    }
}

/// `F.group_norm(x, groups, weight, bias, eps)`: biased variance, as PyTorch. The fused
/// kernel of [`super::ops::group_norm_act`] on the CPU (f32), composed candle ops elsewhere.
///
/// # Shapes
/// `x`: (N, C, ...), `weight`, `bias`: (C) -> (N, C, ...).
pub fn group_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    groups: usize,
    eps: f64,
) -> Result<Tensor> {
    super::ops::group_norm_act(x, weight, bias, groups, eps, false)
}
