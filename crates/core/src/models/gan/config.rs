//! The architecture of a DCGAN-style generator and discriminator for small square images.

use serde::{Deserialize, Serialize};

/// How the discriminator normalises its second convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DNorm {
    /// Batch norm (DCGAN).
    Batch,
    /// None: a WGAN-GP critic, whose gradient penalty is taken per sample (Gulrajani et al.
    /// 2017, section 4: batch norm would couple the samples of a batch).
    None,
}

/// Generator and discriminator shapes. Stored as the run's `config.json`.
///
/// ```text
/// G: [z (z_dim) | one-hot label] -> linear g_channels*s*s -> BN/ReLU (s = image_size / 4)
///    -> ConvT(g, g/2, 4, 2, 1) -> BN/ReLU -> ConvT(g/2, channels, 4, 2, 1) -> tanh
/// D: [image | one-hot label planes] -> Conv(c, d, 4, 2, 1) LeakyReLU(0.2)
///    -> Conv(d, 2d, 4, 2, 1) [BN] LeakyReLU(0.2) -> linear 2d*s*s -> 1 (a logit or critic score)
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GanConfig {
    /// Always `"dcgan"`: tells readers of `config.json` which model this is.
    pub model_type: String,
    /// Length of the noise vector.
    pub z_dim: usize,
    /// 1 (grey) or 3 (RGB).
    pub image_channels: usize,
    /// Side of the square images; a multiple of 4.
    pub image_size: usize,
    /// Generator channels at the smallest resolution (halved once on the way up).
    pub g_channels: usize,
    /// Discriminator channels after the first convolution (doubled by the second).
    pub d_channels: usize,
    /// Classes the model is conditioned on (one-hot into G and D); 0 for an unconditional GAN.
    pub n_classes: usize,
    /// Normalisation in the discriminator.
    pub d_norm: DNorm,
}

impl GanConfig {
    /// The DCGAN of `shared/bench/pytorch/dcgan28.py`: z 100, G 128 -> 64 channels, D 64 -> 128,
    /// 28x28 grey images.
    pub fn dcgan_mnist() -> Self {
        Self {
            model_type: "dcgan".into(),
            z_dim: 100,
            image_channels: 1,
            image_size: 28,
            g_channels: 128,
            d_channels: 64,
            n_classes: 0,
            d_norm: DNorm::Batch,
        }
    }

    /// The same, conditioned on the 10 digit classes.
    pub fn cgan_mnist() -> Self {
        Self {
            n_classes: 10,
            ..Self::dcgan_mnist()
        }
    }

    /// Side of the first feature map (`image_size / 4`).
    pub fn base_size(&self) -> usize {
        self.image_size / 4
    }

    /// True for a class-conditional model.
    pub fn conditional(&self) -> bool {
        self.n_classes > 0
    }

    /// Checks the shapes once, with a message naming the key to change.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.model_type == "dcgan", "model_type must be \"dcgan\""),
            (self.z_dim > 0, "z_dim must be positive"),
            (
                self.image_channels == 1 || self.image_channels == 3,
                "image_channels must be 1 or 3",
            ),
            (
                self.image_size >= 8 && self.image_size.is_multiple_of(4),
                "image_size must be a multiple of 4, at least 8",
            ),
            (
                self.g_channels >= 2 && self.g_channels.is_multiple_of(2),
                "g_channels must be even and at least 2",
            ),
            (self.d_channels > 0, "d_channels must be positive"),
            (self.n_classes <= 1000, "n_classes must be at most 1000"),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg.to_string()),
            None => Ok(()),
        }
    }
}
