//! Sampling from a trained VAE: images from the prior, reconstructions, latent-space walks
//! between two images, and denoising. Every function returns images in `[0, 1]`; the caller
//! writes them with [`crate::data::images::grid`] (labelled as AI-generated).

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::data::images::{ImageDataConfig, ImageDataset, Scale, Split};
use crate::error::{Error, Result};
use crate::models::vae::{Vae, load_vae};
use crate::nn::noise::standard_normal;
use crate::run_dir::RunDir;

/// A trained VAE with the data section it was trained with.
pub struct VaeRun {
    pub model: Vae,
    pub data: ImageDataConfig,
}

/// Opens the VAE run at `dir`.
pub fn open_vae(dir: &Path, device: &Device) -> Result<VaeRun> {
    let run = RunDir::open(dir)?;
    let family = run.family()?;
    if family != "vae" {
        return Err(Error::input(format!(
            "{} holds a '{family}' run, not a VAE",
            dir.display()
        )));
    }
    if !run.weights().is_file() {
        return Err(Error::input(format!(
            "{} has no model.safetensors yet: wait for the first checkpoint or resume training",
            dir.display()
        )));
    }
    let model = load_vae(dir, device).map_err(Error::model_load)?;
    Ok(VaeRun {
        model,
        data: ImageDataConfig::of_run(&run)?,
    })
}

impl VaeRun {
    /// The whole training split of the run's dataset, at the model's image size.
    pub fn train_images(&self) -> Result<ImageDataset> {
        let m = self.model.config();
        let cfg = ImageDataConfig {
            train_limit: 0,
            image_size: m.image_size,
            channels: m.channels,
            ..self.data.clone()
        };
        cfg.load(Split::Train)
    }

    /// The test split of `data` (a `--data` value, `name[:split]`), else of the run's own
    /// dataset, at the model's image size.
    pub fn test_images(&self, data: Option<&str>) -> Result<ImageDataset> {
        let mut cfg = self.data.clone();
        cfg.test_limit = 0;
        let mut split = Split::Test;
        if let Some(d) = data {
            let (name, s) = crate::data::images::parse_data_split(d);
            cfg.dataset = name;
            split = s.unwrap_or(Split::Test);
        }
        let m = self.model.config();
        (cfg.image_size, cfg.channels) = (m.image_size, m.channels);
        cfg.train_limit = 0;
        cfg.load(split)
    }
}

/// `n` images decoded from z ~ N(0, I) drawn from the stream `seed`.
///
/// # Shapes
/// -> (n, C, H, W).
pub fn prior_samples(model: &Vae, n: usize, seed: u64, device: &Device) -> Result<Tensor> {
    let z = standard_normal((n, model.config().latent_dim()), seed, 0, device)?;
    Ok(model.decode(&z)?)
}

/// Reconstructions of `x` through the posterior means (no sampling noise).
///
/// # Shapes
/// `x`: (N, C, H, W) -> (N, C, H, W).
pub fn reconstruct(model: &Vae, x: &Tensor) -> Result<Tensor> {
    let (mu, _) = model.encode(x)?;
    Ok(model.decode(&mu)?)
}

/// The decoded straight line between the posterior means of `a` and `b`, `steps` points with
/// both ends included.
///
/// # Shapes
/// `a`, `b`: (1, C, H, W) -> (steps, C, H, W).
pub fn interpolate(model: &Vae, a: &Tensor, b: &Tensor, steps: usize) -> Result<Tensor> {
    if steps < 2 {
        return Err(Error::usage(
            "--steps must be at least 2 (the two end points)",
        ));
    }
    let (za, _) = model.encode(a)?;
    let (zb, _) = model.encode(b)?;
    let ts: Vec<f32> = (0..steps).map(|i| i as f32 / (steps - 1) as f32).collect();
    let t = Tensor::from_vec(ts, (steps, 1), a.device())?; // (steps, 1)
    let z = za
        .broadcast_mul(&(1.0 - &t)?)?
        .broadcast_add(&zb.broadcast_mul(&t)?)?; // (steps, latent)
    Ok(model.decode(&z)?)
}

/// Corrupts `x` with Gaussian noise of standard deviation `sigma` (clamped to [0, 1]) from
/// the stream `seed`.
pub fn add_noise(x: &Tensor, sigma: f64, seed: u64) -> Result<Tensor> {
    let noise = standard_normal(x.shape(), seed, 0, x.device())?;
    Ok((x + (noise * sigma)?)?.clamp(0f32, 1f32)?)
}

/// Test images `indices` of `ds` in `[0, 1]`, with a usage error for an index out of range.
pub fn pick(ds: &ImageDataset, indices: &[usize], device: &Device) -> Result<Tensor> {
    ds.batch(indices, Scale::Unit, device)
}

/// An image next to its reconstruction, for `--denoise`.
///
/// # Shapes
/// `x`: (1, C, H, W) -> (2, C, H, W).
pub fn with_reconstruction(model: &Vae, x: &Tensor) -> Result<Tensor> {
    let r = reconstruct(model, x)?;
    Ok(Tensor::cat(&[x, &r], 0)?)
}
