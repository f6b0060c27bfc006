//! Images for `muse serve`: a GAN or VAE opened once and sampled in memory; a diffusion run
//! sampled through [`super::sample`] (the same checks `muse sample` makes) into a temporary
//! grid that is cut back into its images. Every PNG carries the AI-generated label and the
//! XMP provenance of the request (a diffusion cell keeps the one `muse sample` wrote).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Tensor};

use super::family::Family;
use super::sample::{DiffusionRequest, ImageRequest, SamplePlan, SampleRequest, TextRequest};
use crate::data::images::grid::{GridImage, PADDING, encode_png};
use crate::data::images::png_meta::{read_png_metadata, xmp_properties};
use crate::data::images::provenance::Provenance;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::models::gan::Gan;
use crate::models::vae::Vae;
use crate::nn::noise::standard_normal;
use crate::sample::gan::{Labels, generate_images, labels_for, open_gan};
use crate::sample::vae::{VaeRun, open_vae, prior_samples};

/// One images request.
#[derive(Clone, Debug, Default)]
pub struct ImageJob {
    pub n: usize,
    pub seed: u64,
    /// Class of a class-conditional model (GAN, diffusion).
    pub label: Option<usize>,
    /// Classifier-free guidance weight (diffusion).
    pub guidance: Option<f64>,
    /// Denoising steps (diffusion).
    pub steps: Option<usize>,
    /// What to draw, for a text-to-image diffusion model (other models ignore it: OpenAI
    /// clients always send one).
    pub prompt: Option<String>,
    /// Diffusion: also draw the denoising chain (x_t and the predicted x_0 at ten points) as
    /// one strip.
    pub trajectory: bool,
    /// VAE: the `n` images walk the latent space from the prior sample of `seed` to that of
    /// `seed + 1` instead of being drawn independently.
    pub walk: bool,
}

/// What an images request produced: one labelled PNG per image, and the denoising strip when
/// it was asked.
#[derive(Clone, Debug, Default)]
pub struct GeneratedImages {
    pub images: Vec<Vec<u8>>,
    pub trajectory: Option<Vec<u8>>,
}

impl From<Vec<Vec<u8>>> for GeneratedImages {
    fn from(images: Vec<Vec<u8>>) -> Self {
        GeneratedImages {
            images,
            trajectory: None,
        }
    }
}

pub(super) enum ImageModel {
    /// The model, its device, and its path (named in every image's provenance).
    Gan(Box<Gan>, Device, PathBuf),
    Vae(Box<VaeRun>, Device, PathBuf),
    /// Opened per request by `muse sample`'s path, which checks steps, labels and guidance.
    Diffusion(PathBuf, Device),
}

impl ImageModel {
    pub(super) fn open(path: &Path, family: Family, device: &Device) -> Result<Self> {
        Ok(match family {
            Family::Gan => ImageModel::Gan(
                Box::new(open_gan(path, device)?),
                device.clone(),
                path.to_path_buf(),
            ),
            Family::Vae => ImageModel::Vae(
                Box::new(open_vae(path, device)?),
                device.clone(),
                path.to_path_buf(),
            ),
            Family::Diffusion => {
                if !path.join("model.safetensors").is_file() {
                    return Err(Error::input(format!(
                        "{} has no model.safetensors yet: wait for the first checkpoint",
                        path.display()
                    )));
                }
                ImageModel::Diffusion(path.to_path_buf(), device.clone())
            }
            other => {
                return Err(Error::usage(format!(
                    "{} holds {}, not an image generator",
                    path.display(),
                    other.describe()
                )));
            }
        })
    }

    pub(super) fn generate(&self, job: &ImageJob) -> Result<GeneratedImages> {
        if job.n == 0 {
            return Err(Error::usage("n must be at least 1"));
        }
        let not_diffusion = |what: &str| {
            Err(Error::usage(format!(
                "{what} is for diffusion models; this model samples in one pass from noise"
            )))
        };
        let diffusion_only = [
            ("steps", job.steps.is_some()),
            ("guidance", job.guidance.is_some()),
            ("trajectory", job.trajectory),
        ];
        if !matches!(self, ImageModel::Diffusion(..))
            && let Some((what, _)) = diffusion_only.iter().find(|(_, asked)| *asked)
        {
            return not_diffusion(what);
        }
        if job.walk && !matches!(self, ImageModel::Vae(..)) {
            return Err(Error::usage(
                "walk is for VAE models: it moves through their latent space",
            ));
        }
        match self {
            ImageModel::Gan(gan, device, path) => {
                let wanted = job.label.map_or(Labels::Any, Labels::Class);
                let labels = labels_for(gan, job.n, wanted)?;
                let images = generate_images(gan, job.n, labels.as_deref(), job.seed, device)?;
                let prov = Provenance {
                    seed: Some(job.seed),
                    label: job.label,
                    ..Provenance::of(path, "gan").caption(format!("GAN, seed {}", job.seed))
                };
                split_png(&images, &prov).map(Into::into)
            }
            ImageModel::Vae(vae, device, path) => {
                if job.label.is_some() {
                    return Err(Error::usage(
                        "label needs a class-conditional model; a VAE is not conditioned on \
                         labels",
                    ));
                }
                let (images, caption) = if job.walk {
                    let caption = format!(
                        "VAE latent walk from the prior sample of seed {} to that of seed {}",
                        job.seed,
                        job.seed.wrapping_add(1)
                    );
                    (latent_walk(&vae.model, job.n, job.seed, device)?, caption)
                } else {
                    let caption = format!("VAE prior sample, seed {}", job.seed);
                    (prior_samples(&vae.model, job.n, job.seed, device)?, caption)
                };
                let prov = Provenance {
                    seed: Some(job.seed),
                    ..Provenance::of(path, "vae").caption(caption)
                };
                split_png(&images, &prov).map(Into::into)
            }
            ImageModel::Diffusion(path, device) => diffusion(path, device, job),
        }
    }
}

/// `n` decoded points on the great circle from the prior sample of `seed` to that of
/// `seed + 1`, both ends included. Spherical rather than straight: halfway along a straight
/// line between two Gaussian draws the latent has about 0.7 of their norm, where the prior
/// puts almost no mass, so the middle images wash out (White 2016, "Sampling generative
/// networks").
///
/// # Shapes
/// -> (n, C, H, W) in `[0, 1]`.
fn latent_walk(model: &Vae, n: usize, seed: u64, device: &Device) -> Result<Tensor> {
    if n < 2 {
        return Err(Error::usage(
            "a latent walk needs n >= 2 images (its two ends)",
        ));
    }
    let latent = model.config().latent_dim();
    let a = standard_normal((1, latent), seed, 0, device)?;
    let b = standard_normal((1, latent), seed.wrapping_add(1), 0, device)?;
    let (va, vb): (Vec<f32>, Vec<f32>) = (a.flatten_all()?.to_vec1()?, b.flatten_all()?.to_vec1()?);
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cos = va.iter().zip(&vb).map(|(x, y)| x * y).sum::<f32>() / (norm(&va) * norm(&vb));
    let omega = cos.clamp(-1.0, 1.0).acos();
    let mut points = Vec::with_capacity(n * latent);
    for i in 0..n {
        let t = i as f32 / (n - 1) as f32;
        // slerp; nearly parallel ends fall back to the straight line.
        let (wa, wb) = if omega.sin().abs() < 1e-6 {
            (1.0 - t, t)
        } else {
            (
                ((1.0 - t) * omega).sin() / omega.sin(),
                (t * omega).sin() / omega.sin(),
            )
        };
        points.extend(va.iter().zip(&vb).map(|(x, y)| wa * x + wb * y));
    }
    let z = Tensor::from_vec(points, (n, latent), a.device())?;
    Ok(model.decode(&z)?)
}

/// Each image of (N, C, H, W) in `[0, 1]` as its own labelled PNG.
fn split_png(images: &Tensor, prov: &Provenance) -> Result<Vec<Vec<u8>>> {
    let (n, c, h, w) = images.dims4()?;
    let data: Vec<f32> = images
        .to_dtype(DType::F32)?
        .to_device(&candle_core::Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    if data.iter().any(|v| !v.is_finite()) {
        return Err(Error::input(
            "the model generated NaN or infinite pixels: its weights are damaged or its \
             training diverged",
        ));
    }
    (0..n)
        .map(|i| {
            // (C, H, W) planes to interleaved (H, W, C) bytes.
            let mut pixels = vec![0u8; h * w * c];
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let v = data[((i * c + ch) * h + y) * w + x].clamp(0.0, 1.0);
                        pixels[(y * w + x) * c + ch] = (v * 255.0 + 0.5) as u8;
                    }
                }
            }
            let one = GridImage {
                channels: c,
                width: w,
                height: h,
                pixels,
            };
            encode_png(&one, prov)
        })
        .collect()
}

/// Diffusion through `muse sample`'s path: one grid of `n` columns in a temporary file, cut
/// into its cells (and the trajectory strip, read back whole).
fn diffusion(path: &Path, device: &Device, job: &ImageJob) -> Result<GeneratedImages> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = |what: &str| {
        std::env::temp_dir().join(format!(
            "muse-serve-{}-{}-{what}.png",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    };
    let tmp = temp("grid");
    let strip = job.trajectory.then(|| temp("trajectory"));
    let reads_text = crate::models::diffusion::read_config(&path.join("config.json"))
        .is_ok_and(|c| c.text_conditional());
    let req = SampleRequest {
        model: path.to_path_buf(),
        seed: job.seed,
        text: TextRequest {
            prompt: job.prompt.clone().filter(|_| reads_text),
            ..Default::default()
        },
        image: ImageRequest {
            n: Some(job.n),
            out: Some(tmp.clone()),
            nrow: Some(job.n),
            steps: job.steps,
            label: job.label,
            ..Default::default()
        },
        diffusion: DiffusionRequest {
            guidance: job.guidance,
            trajectory: strip.clone(),
            ..Default::default()
        },
        device: device.clone(),
    };
    let result = super::sample(req).and_then(|plan| match plan {
        SamplePlan::Images { path, .. } => std::fs::read(&path).map_err(Error::io(&path)),
        SamplePlan::Text(_) => Err(Error::input("a diffusion run sampled text")),
    });
    let strip_png = strip
        .as_ref()
        .map(|p| std::fs::read(p).map_err(Error::io(p)));
    for p in std::iter::once(&tmp).chain(&strip) {
        let _ = std::fs::remove_file(p);
    }
    let grid = result?;
    let prov = grid_provenance(&grid, path, job);
    Ok(GeneratedImages {
        images: cut_grid(&grid, job.n, &prov)?,
        trajectory: strip_png.transpose()?,
    })
}

/// The provenance `muse sample` wrote into the grid (sampler and steps as resolved), with the
/// caption of one cell; the request's own fields if the grid has none.
fn grid_provenance(png: &[u8], path: &Path, job: &ImageJob) -> Provenance {
    let mut prov = Provenance {
        seed: Some(job.seed),
        label: job.label,
        prompt: job.prompt.clone(),
        steps: job.steps,
        guidance: job.guidance,
        ..Provenance::of(path, "diffusion")
    };
    let props = read_png_metadata(png)
        .ok()
        .and_then(|m| m.xmp)
        .map(|x| xmp_properties(&x))
        .unwrap_or_default();
    for (name, v) in props {
        match name.strip_prefix("muse:").unwrap_or("") {
            "Family" => prov.family = Some(v),
            "Prompt" => prov.prompt = Some(v),
            "Sampler" => prov.sampler = Some(v),
            "Steps" => prov.steps = v.parse().ok(),
            "Guidance" => prov.guidance = v.parse().ok(),
            _ => {}
        }
    }
    if prov.family.as_deref() != Some("text-to-image") {
        prov.prompt = None;
    }
    prov.caption(format!("diffusion, seed {}", job.seed))
}

/// The `n` cells of a one-row grid PNG (padding [`PADDING`] around each), each re-encoded.
fn cut_grid(png: &[u8], n: usize, prov: &Provenance) -> Result<Vec<Vec<u8>>> {
    let grid = image::load_from_memory(png)
        .map_err(|e| Error::input(format!("cannot read the sampled grid: {e}")))?;
    let c = if grid.color().channel_count() == 1 {
        1
    } else {
        3
    };
    let (gw, gh) = (grid.width() as usize, grid.height() as usize);
    let bytes = if c == 1 {
        grid.to_luma8().into_raw()
    } else {
        grid.to_rgb8().into_raw()
    };
    if gw < PADDING + n * (PADDING + 1) || gh <= 2 * PADDING {
        return Err(Error::input(format!(
            "the sampled grid is {gw}x{gh} pixels, too small for {n} images"
        )));
    }
    let w = (gw - PADDING) / n - PADDING;
    let h = gh - 2 * PADDING;
    (0..n)
        .map(|i| {
            let x0 = PADDING + i * (w + PADDING);
            let mut pixels = Vec::with_capacity(w * h * c);
            for y in PADDING..PADDING + h {
                let row = (y * gw + x0) * c;
                pixels.extend_from_slice(&bytes[row..row + w * c]);
            }
            let one = GridImage {
                channels: c,
                width: w,
                height: h,
                pixels,
            };
            encode_png(&one, prov)
        })
        .collect()
}
