//! Group normalisation (Wu & He 2018, "Group Normalization"), PyTorch's `nn.GroupNorm`: the
//! channels are split into groups, each sample's group is normalised over its channels and
//! pixels, then a per-channel affine map is applied. Tensor names `weight`, `bias`.
//!
//! Composed from candle ops (differentiable on every device).

use candle_core::{D, Result, Tensor};
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
}

/// `F.group_norm(x, groups, weight, bias, eps)`: biased variance, as PyTorch.
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
    let dims = x.dims().to_vec();
    let (n, c) = (dims[0], dims[1]);
    let xg = x.reshape((n, groups, ()))?; // (N, G, C/G * H * W)
    let mean = xg.mean_keepdim(D::Minus1)?; // (N, G, 1)
    let xc = xg.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?; // (N, G, 1)
    let xn = xc
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .reshape(dims.as_slice())?; // (N, C, ...)
    let mut affine = vec![1usize; dims.len()];
    affine[1] = c;
    xn.broadcast_mul(&weight.reshape(affine.as_slice())?)?
        .broadcast_add(&bias.reshape(affine.as_slice())?)
}
