//! The architecture of a VAE, stored as `config.json`.

use serde::{Deserialize, Serialize};

/// Encoder / decoder shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaeArch {
    /// Fully connected: image -> hidden -> (mu, logvar); z -> hidden -> image (PyTorch
    /// examples `vae/main.py`).
    Mlp,
    /// Convolutional: two stride-2 convolutions down, two stride-2 transposed convolutions up.
    Conv,
    /// Convolutional with a latent grid instead of a vector (the autoencoder of latent
    /// diffusion, Rombach et al. 2022, made small): the image, zero-padded to a multiple of
    /// 16, goes down two stride-2 convolutions to `latent` channels at a quarter of its side.
    Spatial,
}

/// Architecture of a VAE with Bernoulli (sigmoid) outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    pub arch: VaeArch,
    /// Image channels (1 grey, 3 RGB).
    pub channels: usize,
    /// Side of the square images (a multiple of 4 for `conv`).
    pub image_size: usize,
    /// Width of the hidden layer (MLP) or of the fully connected layer next to the latent
    /// (conv); unused by `spatial`.
    pub hidden: usize,
    /// Dimension of the latent z; for `spatial`, the channels of the latent grid.
    pub latent: usize,
    /// Filters of the first convolution (the second has twice as many); conv and spatial.
    pub conv_channels: usize,
}

impl VaeConfig {
    /// The PyTorch examples VAE: 784-400-20 encoder, 20-400-784 decoder.
    pub fn mnist_mlp() -> Self {
        Self {
            arch: VaeArch::Mlp,
            channels: 1,
            image_size: 28,
            hidden: 400,
            latent: 20,
            conv_channels: 32,
        }
    }

    /// A convolutional VAE for 28x28 grey images: conv 4x4/2 (32) -> conv 4x4/2 (64) -> fc 256
    /// -> z (20), mirrored by the decoder.
    pub fn mnist_conv() -> Self {
        Self {
            arch: VaeArch::Conv,
            hidden: 256,
            ..Self::mnist_mlp()
        }
    }

    /// A spatial-latent VAE for 28x28 grey images (padded to 32): conv 4x4/2 (32) -> conv
    /// 4x4/2 (64) -> conv 3x3 (64) -> 1x1 to a 4 x 8 x 8 latent, mirrored by the decoder.
    pub fn mnist_spatial() -> Self {
        Self {
            arch: VaeArch::Spatial,
            latent: 4,
            ..Self::mnist_conv()
        }
    }

    /// The side the spatial VAE pads its images to: the next multiple of 16, so that the
    /// latent grid's side (a quarter of it) divides by 4 as the U-Net needs.
    pub fn padded_size(&self) -> usize {
        self.image_size.div_ceil(16) * 16
    }

    /// Values per latent z: `latent`, or for `spatial` its grid, `latent x side x side`.
    pub fn latent_dim(&self) -> usize {
        match self.latent_grid() {
            Some((c, s)) => c * s * s,
            None => self.latent,
        }
    }

    /// Channels and side of a spatial latent; `None` for a latent vector.
    pub fn latent_grid(&self) -> Option<(usize, usize)> {
        (self.arch == VaeArch::Spatial).then(|| (self.latent, self.padded_size() / 4))
    }

    /// Values per image (C * H * W).
    pub fn pixels(&self) -> usize {
        self.channels * self.image_size * self.image_size
    }

    /// Checks the values once.
    pub fn validate(&self) -> Result<(), String> {
        if self.channels != 1 && self.channels != 3 {
            return Err("channels must be 1 or 3".into());
        }
        if self.image_size < 4 {
            return Err("image_size must be at least 4".into());
        }
        if self.arch == VaeArch::Conv && !self.image_size.is_multiple_of(4) {
            return Err(format!(
                "the conv VAE needs an image_size divisible by 4 (got {})",
                self.image_size
            ));
        }
        if self.hidden == 0 || self.latent == 0 || self.conv_channels == 0 {
            return Err("hidden, latent and conv_channels must be positive".into());
        }
        Ok(())
    }

    /// Number of parameters.
    pub fn parameter_count(&self) -> usize {
        let (h, l, p) = (self.hidden, self.latent, self.pixels());
        match self.arch {
            VaeArch::Mlp => (p + 1) * h + 2 * (h + 1) * l + (l + 1) * h + (h + 1) * p,
            VaeArch::Conv => {
                let (c1, c2) = (self.conv_channels, 2 * self.conv_channels);
                let flat = c2 * (self.image_size / 4).pow(2);
                let convs = (self.channels * 16 + 1) * c1 + (c1 * 16 + 1) * c2;
                let deconvs = (c2 * 16 + 1) * c1 + c1 * 16 * self.channels + self.channels;
                convs + deconvs + (flat + 1) * h + 2 * (h + 1) * l + (l + 1) * h + (h + 1) * flat
            }
            VaeArch::Spatial => {
                let (c, c1, c2) = (self.channels, self.conv_channels, 2 * self.conv_channels);
                let encoder =
                    (c * 16 + 1) * c1 + (c1 * 16 + 1) * c2 + (c2 * 9 + 1) * c2 + 2 * (c2 + 1) * l;
                let decoder =
                    (l * 9 + 1) * c2 + (c2 * 9 + 1) * c2 + (c2 * 16 + 1) * c1 + c1 * 16 * c + c;
                encoder + decoder
            }
        }
    }
}
