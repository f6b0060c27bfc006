//! What the U-Net learns to denoise: pixels in [-1, 1], or (latent diffusion) the scaled
//! latent grids of a frozen VAE. The VAE encodes every training and test image once when the
//! run starts; each step then draws `z = mu + sigma * eps` from the stored posteriors, as
//! Stable Diffusion trains on a fresh sample of its autoencoder's posterior.

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::DiffusionRunConfig;
use crate::data::images::{ImageDataset, Scale, chunks};
use crate::error::{Error, Result};
use crate::models::diffusion::{LatentCodec, VAE_DIR, unit_variance_scale};
use crate::nn::noise::standard_normal;
use crate::sample::diffusion::ImageSpace;
use crate::train::images::step_seed;
use crate::train::progress::Progress;

/// Random stream of the posterior draws, apart from the timesteps and the noise.
pub const LATENT_STREAM: u64 = 4;

/// The scaled posteriors of one split, in dataset order.
///
/// # Shapes
/// `mu`, `std`: (N, latent, s, s).
pub struct LatentSet {
    mu: Tensor,
    std: Tensor,
}

/// The clean examples `x_0` of one split.
pub enum Clean<'a> {
    Pixels(&'a ImageDataset),
    Latents(&'a LatentSet),
}

impl Clean<'_> {
    /// Examples in the split.
    pub fn len(&self) -> usize {
        match self {
            Self::Pixels(d) => d.len(),
            Self::Latents(l) => l.mu.dim(0).unwrap_or(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per example (C * S * S).
    pub fn values_per_example(&self) -> usize {
        match self {
            Self::Pixels(d) => d.pixels_per_image(),
            Self::Latents(l) => l.mu.elem_count() / self.len().max(1),
        }
    }

    /// A training batch: pixels, or one posterior draw per image from the stream of
    /// (seed, step).
    ///
    /// # Shapes
    /// -> (B, C, S, S).
    pub fn train_batch(&self, idx: &[usize], seed: u64, step: u64, dev: &Device) -> Result<Tensor> {
        match self {
            Self::Pixels(d) => d.batch(idx, Scale::Signed, dev),
            Self::Latents(l) => {
                let (mu, std) = l.rows(idx, dev)?;
                let eps =
                    standard_normal(mu.shape(), step_seed(seed, step, LATENT_STREAM), 0, dev)?;
                Ok((mu + (std * eps)?)?)
            }
        }
    }

    /// An evaluation batch: pixels, or the posterior means (the same at every evaluation).
    ///
    /// # Shapes
    /// -> (B, C, S, S).
    pub fn eval_batch(&self, idx: &[usize], dev: &Device) -> Result<Tensor> {
        match self {
            Self::Pixels(d) => d.batch(idx, Scale::Signed, dev),
            Self::Latents(l) => Ok(l.rows(idx, dev)?.0),
        }
    }
}

impl LatentSet {
    fn rows(&self, idx: &[usize], dev: &Device) -> Result<(Tensor, Tensor)> {
        let ids = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect(), idx.len(), dev)?;
        Ok((
            self.mu.index_select(&ids, 0)?,
            self.std.index_select(&ids, 0)?,
        ))
    }
}

/// A latent-diffusion run's VAE and its two splits encoded.
pub struct Encoded {
    pub codec: Arc<LatentCodec>,
    pub train: LatentSet,
    pub test: LatentSet,
}

impl Encoded {
    /// Loads the VAE (the run's own copy when resuming, else the one `latent.vae` names),
    /// checks it reads these images, encodes both splits (`test` may be a few images where
    /// only the training latents matter) and, for a new run, measures the latent scale into
    /// `cfg.latent.scale`. Sets the U-Net's input shape to the latent grid.
    pub fn prepare(
        cfg: &mut DiffusionRunConfig,
        run_dir: &Path,
        resuming: bool,
        train: &ImageDataset,
        test: &ImageDataset,
        device: &Device,
    ) -> Result<Self> {
        let latent = cfg
            .latent
            .as_mut()
            .expect("Encoded::prepare is called for latent runs");
        let dir = if resuming {
            run_dir.join(VAE_DIR)
        } else {
            Path::new(&latent.vae).to_path_buf()
        };
        if let Ok(family) = crate::run_dir::RunDir::new(&dir).family()
            && family != "vae"
        {
            return Err(Error::usage(format!(
                "vae={}: that folder holds a '{family}' run, not a VAE; train one with `muse \
                 train vae --preset mnist-latent`",
                dir.display()
            )));
        }
        let vae = LatentCodec::load(&dir, 1.0, device).map_err(|e| {
            Error::usage(format!("vae={}: {}", dir.display(), Error::model_load(e)))
        })?;
        let v = vae.vae().config();
        if (v.channels, v.image_size) != (train.channels, train.height) {
            return Err(Error::usage(format!(
                "vae={}: the VAE reads {}x{}x{} images, the data ({}) has {}x{}x{}: train the \
                 VAE on the same data (`muse train vae --preset mnist-latent --data {}`)",
                dir.display(),
                v.channels,
                v.image_size,
                v.image_size,
                train.record.name,
                train.channels,
                train.height,
                train.width,
                train.record.name
            )));
        }
        let (mu, std) = encode_all(&vae, train, device)?;
        if latent.scale == 0.0 {
            latent.scale = unit_variance_scale(&mu, &std)?;
            tracing::info!(
                "latent scale {:.5} (unit variance over the training posteriors)",
                latent.scale
            );
        }
        let scale = latent.scale;
        let (test_mu, test_std) = encode_all(&vae, test, device)?;
        let codec = vae.with_scale(scale)?;
        (cfg.model.image_channels, cfg.model.image_size) = codec.latent_shape();
        let scaled = |t: Tensor| -> Result<Tensor> { Ok((t * scale)?) };
        Ok(Self {
            codec: Arc::new(codec),
            train: LatentSet {
                mu: scaled(mu)?,
                std: scaled(std)?,
            },
            test: LatentSet {
                mu: scaled(test_mu)?,
                std: scaled(test_std)?,
            },
        })
    }

    /// The sampling space of the progress grids.
    pub fn space(&self) -> ImageSpace {
        ImageSpace::Latent(self.codec.clone())
    }
}

/// Copies the VAE's `config.json` and `model.safetensors` into the run's `vae/`.
pub fn copy_vae(from: &Path, run_dir: &Path) -> Result<()> {
    let to = run_dir.join(VAE_DIR);
    std::fs::create_dir_all(&to).map_err(Error::io(&to))?;
    for name in ["config.json", "model.safetensors"] {
        let (src, dst) = (from.join(name), to.join(name));
        let bytes = std::fs::read(&src).map_err(Error::io(&src))?;
        crate::io::write_atomic(&dst, &bytes)?;
    }
    Ok(())
}

/// The unscaled posterior (mean, std) of every image of `ds`, in chunks.
fn encode_all(codec: &LatentCodec, ds: &ImageDataset, dev: &Device) -> Result<(Tensor, Tensor)> {
    let progress = Progress::new("encode", 0, ds.len().div_ceil(500) as u64);
    let (mut mus, mut stds) = (Vec::new(), Vec::new());
    for (i, idx) in chunks(ds.len(), 500).enumerate() {
        let (mu, std) = codec.posterior(&ds.batch(&idx, Scale::Unit, dev)?)?;
        mus.push(mu);
        stds.push(std);
        progress.set(i as u64 + 1);
    }
    progress.finish();
    Ok((Tensor::cat(&mus, 0)?, Tensor::cat(&stds, 0)?))
}
