//! Multi-head self-attention over the pixels of a feature map, with a residual connection: the
//! attention block of the DDPM U-Net (Ho et al. 2020) in the form of
//! `shared/bench/pytorch/ddpm_unet28.py` (`Attn`): GroupNorm, a 1x1 convolution to q, k, v,
//! scaled dot-product attention per head, a 1x1 output convolution. Tensor names `norm`,
//! `qkv`, `out`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::GroupNorm;
use super::conv::Conv2d;
use super::ops;

/// `x + out(attention(qkv(norm(x))))` over the H * W positions.
#[derive(Clone, Debug)]
pub struct SpatialSelfAttention {
    pub norm: GroupNorm,
    pub qkv: Conv2d,
    pub out: Conv2d,
    pub heads: usize,
}

impl SpatialSelfAttention {
    pub fn new(channels: usize, heads: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        if heads == 0 || !channels.is_multiple_of(heads) {
            candle_core::bail!("attention: {channels} channels do not split into {heads} heads")
        }
        Ok(Self {
            norm: GroupNorm::new(groups, channels, vb.pp("norm"))?,
            qkv: Conv2d::new(channels, 3 * channels, 1, 1, 0, vb.pp("qkv"))?,
            out: Conv2d::new(channels, channels, 1, 1, 0, vb.pp("out"))?,
            heads,
        })
    }

    /// # Shapes
    /// `x`: (N, C, H, W) -> (N, C, H, W).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (nh, hs) = (self.heads, c / self.heads);
        let qkv = self
            .qkv
            .forward(&self.norm.forward(x)?)?
            .reshape((n, 3, nh, hs, h * w))?; // (N, 3, nh, hs, HW)
        let part = |i: usize| qkv.narrow(1, i, 1)?.squeeze(1); // (N, nh, hs, HW)
        let q = part(0)?.transpose(2, 3)?.contiguous()?; // (N, nh, HW, hs)
        let kt = part(1)?.contiguous()?; // (N, nh, hs, HW)
        let v = part(2)?.transpose(2, 3)?.contiguous()?; // (N, nh, HW, hs)
        let scores = q.matmul(&kt)?; // (N, nh, HW, HW)
        let att = ops::softmax_last_dim_scaled(&scores, 1.0 / (hs as f64).sqrt(), None)?;
        let y = att.matmul(&v)?; // (N, nh, HW, hs)
        let y = y.transpose(2, 3)?.reshape((n, c, h, w))?; // (N, C, H, W)
        x + self.out.forward(&y)?
    }
}
