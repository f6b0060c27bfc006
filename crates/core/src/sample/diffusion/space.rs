//! Where a diffusion model's chain runs: on pixels, or on the latent grids of a VAE (latent
//! diffusion), and how its last state becomes an image.

use std::sync::Arc;

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::models::diffusion::LatentCodec;

/// The space of `x_t`.
#[derive(Clone)]
pub enum ImageSpace {
    /// Pixels in [-1, 1].
    Pixels,
    /// Scaled latent grids of a frozen VAE, decoded at the end.
    Latent(Arc<LatentCodec>),
}

impl std::fmt::Debug for ImageSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pixels => write!(f, "Pixels"),
            Self::Latent(c) => write!(f, "Latent(scale {})", c.scale()),
        }
    }
}

impl ImageSpace {
    /// True when the predicted `x_0` may be clipped to [-1, 1] (diffusers' `clip_sample`):
    /// pixels only, as latents have no such bound (Stable Diffusion's schedulers turn it off).
    pub fn clips(&self) -> bool {
        matches!(self, Self::Pixels)
    }

    /// Images in [0, 1] from states of the chain.
    ///
    /// # Shapes
    /// `x`: (N, C, S, S) of this space -> (N, C', H, W).
    pub fn to_images(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Pixels => Ok(((x + 1.0)? * 0.5)?
                .clamp(0f32, 1f32)?
                .to_dtype(DType::F32)?),
            Self::Latent(codec) => Ok(codec.decode(x)?),
        }
    }

    /// An error for the image-to-image options, which work on pixels.
    pub fn refuse_init_image(&self) -> Result<()> {
        match self {
            Self::Pixels => Ok(()),
            Self::Latent(_) => Err(Error::usage(
                "--init and --mask work on pixel-space models; this run diffuses in a VAE's \
                 latent space (an ldm preset)",
            )),
        }
    }
}
