//! Latent diffusion's way in and out of pixels (Rombach et al. 2022, "High-Resolution Image
//! Synthesis with Latent Diffusion Models", Stable Diffusion's design): a frozen spatial-latent
//! VAE encodes images to a small grid, the U-Net denoises grids, and the VAE decodes the last
//! one. The grids are multiplied by `scale` (Stable Diffusion's 0.18215, here measured on the
//! training set) so that the diffusion model sees values of unit variance, as it does pixels
//! in [-1, 1].

use std::path::Path;

use candle_core::{Device, Result, Tensor};

use crate::models::vae::{Vae, VaeArch, load_vae};

/// The folder inside a latent-diffusion run that holds its copy of the VAE (`config.json` and
/// `model.safetensors`), so the run samples even if the VAE run it came from moves.
pub const VAE_DIR: &str = "vae";

/// A frozen spatial-latent VAE and the factor between its latents and the diffusion model's.
pub struct LatentCodec {
    vae: Vae,
    scale: f64,
}

impl LatentCodec {
    /// Wraps `vae`, which must encode to a grid.
    pub fn new(vae: Vae, scale: f64) -> Result<Self> {
        if vae.config().arch != VaeArch::Spatial {
            candle_core::bail!(
                "latent diffusion needs a VAE with a latent grid (`muse train vae --preset \
                 mnist-latent`); this one has a {:?} encoder and a latent vector of {}",
                vae.config().arch,
                vae.config().latent_dim()
            )
        }
        if !(scale.is_finite() && scale > 0.0) {
            candle_core::bail!("the latent scale must be a number above 0 (got {scale})")
        }
        Ok(Self { vae, scale })
    }

    /// Reads the VAE run at `dir`.
    pub fn load(dir: &Path, scale: f64, device: &Device) -> Result<Self> {
        Self::new(load_vae(dir, device)?, scale)
    }

    /// The same VAE with another latent scale.
    pub fn with_scale(self, scale: f64) -> Result<Self> {
        Self::new(self.vae, scale)
    }

    pub fn vae(&self) -> &Vae {
        &self.vae
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Channels and side of the grids the U-Net denoises.
    pub fn latent_shape(&self) -> (usize, usize) {
        self.vae
            .config()
            .latent_grid()
            .expect("checked in LatentCodec::new")
    }

    /// The scaled posterior of each image: mean and standard deviation.
    ///
    /// # Shapes
    /// `images`: (N, C, H, W) in [0, 1] -> (mean, std), each (N, latent, s, s).
    pub fn posterior(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        let (mu, logvar) = self.vae.encode_grid(images)?;
        let std = (logvar * 0.5)?.exp()?;
        Ok(((mu * self.scale)?, (std * self.scale)?))
    }

    /// Images from scaled latents, in [0, 1].
    ///
    /// # Shapes
    /// `z`: (N, latent, s, s) -> (N, C, H, W).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.vae.decode(&(z / self.scale)?)
    }
}

/// The factor that gives the VAE's latents unit variance over a set of posteriors: `1 /
/// sqrt(Var[mu] + E[sigma^2])`, the variance of a draw `z = mu + sigma * eps` over the set.
///
/// # Shapes
/// `mu`, `std`: unscaled (N, ...) -> scalar.
pub fn unit_variance_scale(mu: &Tensor, std: &Tensor) -> Result<f64> {
    let mean = mu.mean_all()?.to_scalar::<f32>()? as f64;
    let mean_sq = mu.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    let noise = std.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    let var = mean_sq - mean * mean + noise;
    if !(var.is_finite() && var > 0.0) {
        candle_core::bail!("the VAE's latents have no spread (variance {var}): is it trained?")
    }
    Ok(1.0 / var.sqrt())
}
