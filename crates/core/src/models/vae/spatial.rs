//! The layers of the spatial-latent VAE ([`super::VaeArch::Spatial`]): the autoencoder that
//! latent diffusion denoises in. Unlike the conv VAE, no fully connected layer flattens the
//! image, so the latent keeps the image's layout: a grid of `latent` channels at a quarter of
//! the (padded) side, which a U-Net can take as it takes an image.
//!
//! ```text
//! x (C, S, S) -> zero-pad to P = 16 * ceil(S / 16) -> conv 4x4/2 c1, ReLU -> conv 4x4/2 c2, ReLU
//!   -> conv 3x3 c2, ReLU -> 1x1 to mu and to logvar (latent, P/4, P/4)
//! z -> conv 3x3 c2, ReLU -> conv 3x3 c2, ReLU -> convT 4x4/2 c1, ReLU -> convT 4x4/2 C
//!   -> crop to (C, S, S) logits
//! ```

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::VaeConfig;
use crate::nn::conv::{Conv2d, ConvTranspose2d};
use crate::nn::ops;

pub(super) struct Spatial {
    enc_conv1: Conv2d,
    enc_conv2: Conv2d,
    enc_conv3: Conv2d,
    conv_mu: Conv2d,
    conv_logvar: Conv2d,
    dec_conv_in: Conv2d,
    dec_conv_mid: Conv2d,
    dec_conv1: ConvTranspose2d,
    dec_conv2: ConvTranspose2d,
}

impl Spatial {
    pub(super) fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let (c, c1, c2, l) = (
            cfg.channels,
            cfg.conv_channels,
            2 * cfg.conv_channels,
            cfg.latent,
        );
        Ok(Self {
            enc_conv1: Conv2d::new(c, c1, 4, 2, 1, vb.pp("enc_conv1"))?,
            enc_conv2: Conv2d::new(c1, c2, 4, 2, 1, vb.pp("enc_conv2"))?,
            enc_conv3: Conv2d::new(c2, c2, 3, 1, 1, vb.pp("enc_conv3"))?,
            conv_mu: Conv2d::new(c2, l, 1, 1, 0, vb.pp("conv_mu"))?,
            conv_logvar: Conv2d::new(c2, l, 1, 1, 0, vb.pp("conv_logvar"))?,
            dec_conv_in: Conv2d::new(l, c2, 3, 1, 1, vb.pp("dec_conv_in"))?,
            dec_conv_mid: Conv2d::new(c2, c2, 3, 1, 1, vb.pp("dec_conv_mid"))?,
            dec_conv1: ConvTranspose2d::new(c2, c1, 4, (2, 1, 0), vb.pp("dec_conv1"))?,
            dec_conv2: ConvTranspose2d::new(c1, c, 4, (2, 1, 0), vb.pp("dec_conv2"))?,
        })
    }

    /// # Shapes
    /// `x`: (N, C, S, S) -> (mu, logvar), each (N, latent, P/4, P/4).
    pub(super) fn encode(&self, cfg: &VaeConfig, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (before, after) = padding(cfg);
        let x = x
            .pad_with_zeros(2, before, after)?
            .pad_with_zeros(3, before, after)?; // (N, C, P, P)
        let h = ops::relu(&self.enc_conv1.forward(&x)?)?; // (N, c1, P/2, P/2)
        let h = ops::relu(&self.enc_conv2.forward(&h)?)?; // (N, c2, P/4, P/4)
        let h = ops::relu(&self.enc_conv3.forward(&h)?)?;
        Ok((self.conv_mu.forward(&h)?, self.conv_logvar.forward(&h)?))
    }

    /// # Shapes
    /// `z`: (N, latent, P/4, P/4) -> logits (N, C, S, S).
    pub(super) fn decode_logits(&self, cfg: &VaeConfig, z: &Tensor) -> Result<Tensor> {
        let h = ops::relu(&self.dec_conv_in.forward(z)?)?; // (N, c2, P/4, P/4)
        let h = ops::relu(&self.dec_conv_mid.forward(&h)?)?;
        let h = ops::relu(&self.dec_conv1.forward(&h)?)?; // (N, c1, P/2, P/2)
        let logits = self.dec_conv2.forward(&h)?; // (N, C, P, P)
        let (before, _) = padding(cfg);
        let s = cfg.image_size;
        logits.narrow(2, before, s)?.narrow(3, before, s)
    }
}

/// Zero rows (and columns) added before and after the image to reach the padded side.
fn padding(cfg: &VaeConfig) -> (usize, usize) {
    let extra = cfg.padded_size() - cfg.image_size;
    (extra / 2, extra - extra / 2)
}
