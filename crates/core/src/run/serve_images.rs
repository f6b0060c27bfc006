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

    pub(super) fn generate(&self, job: &ImageJob) -> Result<Vec<Vec<u8>>> {
        if job.n == 0 {
            return Err(Error::usage("n must be at least 1"));
        }
        let not_diffusion = |what: &str| {
            Err(Error::usage(format!(
                "{what} is for diffusion models; this model samples in one pass from noise"
            )))
        };
        match self {
            ImageModel::Gan(gan, device, path) => {
                if job.steps.is_some() {
                    return not_diffusion("steps");
                }
                if job.guidance.is_some() {
                    return not_diffusion("guidance");
                }
                let wanted = job.label.map_or(Labels::Any, Labels::Class);
                let labels = labels_for(gan, job.n, wanted)?;
                let images = generate_images(gan, job.n, labels.as_deref(), job.seed, device)?;
                let prov = Provenance {
                    seed: Some(job.seed),
                    label: job.label,
                    ..Provenance::of(path, "gan").caption(format!("GAN, seed {}", job.seed))
                };
                split_png(&images, &prov)
            }
            ImageModel::Vae(vae, device, path) => {
                if job.label.is_some() {
                    return Err(Error::usage(
                        "label needs a class-conditional model; a VAE is not conditioned on \
                         labels",
                    ));
                }
                if job.steps.is_some() {
                    return not_diffusion("steps");
                }
                if job.guidance.is_some() {
                    return not_diffusion("guidance");
                }
                let images = prior_samples(&vae.model, job.n, job.seed, device)?;
                let prov = Provenance {
                    seed: Some(job.seed),
                    ..Provenance::of(path, "vae")
                        .caption(format!("VAE prior sample, seed {}", job.seed))
                };
                split_png(&images, &prov)
            }
            ImageModel::Diffusion(path, device) => diffusion(path, device, job),
        }
    }
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
/// into its cells.
fn diffusion(path: &Path, device: &Device, job: &ImageJob) -> Result<Vec<Vec<u8>>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = std::env::temp_dir().join(format!(
        "muse-serve-{}-{}.png",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
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
            ..Default::default()
        },
        device: device.clone(),
    };
    let result = super::sample(req).and_then(|plan| match plan {
        SamplePlan::Images { path, .. } => std::fs::read(&path).map_err(Error::io(&path)),
        SamplePlan::Text(_) => Err(Error::input("a diffusion run sampled text")),
    });
    let _ = std::fs::remove_file(&tmp);
    let grid = result?;
    let prov = grid_provenance(&grid, path, job);
    cut_grid(&grid, job.n, &prov)
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
