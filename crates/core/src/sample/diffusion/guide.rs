//! Image-to-image: start the reverse chain from a given image instead of pure noise.
//!
//! - SDEdit (Meng et al. 2022): the image is noised to an intermediate step `t` (chosen by
//!   `strength`: 1 starts from noise, 0 would return the image) and denoised from there, so
//!   the result keeps the image's layout and the model redraws its detail.
//! - Inpainting: a mask marks the pixels to keep. After every step those pixels are replaced
//!   by the image noised to the chain's current step (fresh noise each time), and after the
//!   last step by the image itself, so they come out unchanged while the model fills the rest
//!   in keeping with them.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::DynamicImage;

use super::NoiseSchedule;
use crate::error::{Error, Result};
use crate::nn::noise::standard_normal;

/// Noise streams of the re-noised known pixels, apart from the chain's own (0 and 1..=steps).
const KNOWN_NOISE_STREAM: u64 = 1 << 32;

/// The image a chain starts from, and what of it to keep.
#[derive(Clone, Debug)]
pub struct ImageGuide {
    /// The image in [-1, 1]: (1, C, S, S), the same for every sample.
    pub x0: Tensor,
    /// Share of the chain that is run, in (0, 1]: the chain starts this far towards noise.
    pub strength: f64,
    /// 1 where the pixel is kept from `x0`, 0 where the model paints: (1, 1, S, S).
    pub keep: Option<Tensor>,
}

impl ImageGuide {
    /// How many of a chain's `steps` to skip so that `strength` of it runs (at least one
    /// step always runs).
    pub fn skipped_steps(&self, steps: usize) -> usize {
        let run = ((steps as f64 * self.strength).round() as usize).clamp(1, steps);
        steps - run
    }

    /// `x_t` for `n` samples: the image noised to step `t` with the chain's first noise
    /// (stream 0 of `seed`): `sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`.
    pub fn start(&self, schedule: &NoiseSchedule, t: usize, n: usize, seed: u64) -> Result<Tensor> {
        let x0 = self.x0.repeat((n, 1, 1, 1))?;
        let eps = standard_normal(x0.shape(), seed, 0, x0.device())?;
        noised(&x0, &eps, schedule.abar(Some(t)))
    }

    /// After step `i` of the chain reached `prev_t`: the kept pixels replaced by the image
    /// noised to `prev_t` (the image itself after the last step). Unchanged without a mask.
    pub fn put_back(
        &self,
        x: Tensor,
        schedule: &NoiseSchedule,
        prev_t: Option<usize>,
        i: usize,
        seed: u64,
    ) -> Result<Tensor> {
        let Some(keep) = &self.keep else {
            return Ok(x);
        };
        let n = x.dim(0)?;
        let x0 = self.x0.repeat((n, 1, 1, 1))?;
        let known = match prev_t {
            Some(t) => {
                let eps =
                    standard_normal(x0.shape(), seed, KNOWN_NOISE_STREAM + i as u64, x.device())?;
                noised(&x0, &eps, schedule.abar(Some(t)))?
            }
            None => x0,
        };
        // keep ? known : x, exactly (a select, not a blend, so kept pixels are bit-equal).
        let keep = keep.broadcast_as(x.shape())?.ne(0f32)?;
        Ok(keep.where_cond(&known, &x)?)
    }
}

/// `sqrt(abar) x0 + sqrt(1 - abar) eps`.
fn noised(x0: &Tensor, eps: &Tensor, abar: f64) -> Result<Tensor> {
    Ok(((x0 * abar.sqrt())? + (eps * (1.0 - abar).sqrt())?)?)
}

/// Reads the image to start from: a PNG (or JPEG) of exactly `size` x `size`, greyscale for a
/// one-channel model (colour images whose channels are equal are accepted as grey). Returns
/// (1, C, S, S) in [-1, 1].
pub fn read_init(path: &Path, size: usize, channels: usize, device: &Device) -> Result<Tensor> {
    let img = decode(path, "--init")?;
    check_size(&img, path, size, "--init")?;
    let pixels: Vec<u8> = if channels == 1 {
        grey_pixels(&img).ok_or_else(|| {
            Error::usage(format!(
                "--init {}: the image has colour and this model makes greyscale images; give a \
                 greyscale image",
                path.display()
            ))
        })?
    } else {
        crate::data::images::rgb_planes(&img.to_rgb8().into_raw())
    };
    let x = Tensor::from_vec(pixels, (1, channels, size, size), device)?.to_dtype(DType::F32)?;
    Ok(((x / 127.5)? - 1.0)?)
}

/// Reads an inpainting mask: `size` x `size`, black where the init image is kept and white
/// where the model paints, nothing in between. Returns the keep mask (1, 1, S, S): 1 = keep.
pub fn read_mask(path: &Path, size: usize, device: &Device) -> Result<Tensor> {
    let img = decode(path, "--mask")?;
    check_size(&img, path, size, "--mask")?;
    let grey = grey_pixels(&img).ok_or_else(|| {
        Error::usage(format!(
            "--mask {}: the mask has colour; use black (keep) and white (repaint) only",
            path.display()
        ))
    })?;
    if let Some((i, v)) = grey
        .iter()
        .enumerate()
        .find(|(_, v)| **v != 0 && **v != 255)
    {
        return Err(Error::usage(format!(
            "--mask {}: pixel ({}, {}) is grey ({v}); a mask is black (keep) and white \
             (repaint) only",
            path.display(),
            i % size,
            i / size
        )));
    }
    if grey.iter().all(|v| *v == 0) {
        return Err(Error::usage(format!(
            "--mask {}: the mask is all black, so nothing would be painted; mark the area to \
             repaint in white",
            path.display()
        )));
    }
    let keep: Vec<f32> = grey
        .iter()
        .map(|v| if *v == 0 { 1.0 } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(keep, (1, 1, size, size), device)?)
}

fn decode(path: &Path, flag: &str) -> Result<DynamicImage> {
    if path.is_dir() {
        return Err(Error::usage(format!(
            "{flag} {}: is a folder; give a PNG file",
            path.display()
        )));
    }
    image::ImageReader::open(path)
        .map_err(Error::io(path))?
        .with_guessed_format()
        .map_err(Error::io(path))?
        .decode()
        .map_err(|e| {
            Error::input(format!(
                "{flag} {}: cannot decode the image ({e}); give a PNG file",
                path.display()
            ))
        })
}

fn check_size(img: &DynamicImage, path: &Path, size: usize, flag: &str) -> Result<()> {
    if (img.width() as usize, img.height() as usize) != (size, size) {
        return Err(Error::usage(format!(
            "{flag} {}: the image is {}x{} and this model makes {size}x{size} images; resize \
             it first",
            path.display(),
            img.width(),
            img.height()
        )));
    }
    Ok(())
}

/// The grey values of an image, or `None` when some pixel's channels differ (colour).
fn grey_pixels(img: &DynamicImage) -> Option<Vec<u8>> {
    if img.color().channel_count() <= 2 {
        return Some(img.to_luma8().into_raw());
    }
    let rgb = img.to_rgb8();
    rgb.pixels()
        .map(|p| (p[0] == p[1] && p[1] == p[2]).then_some(p[0]))
        .collect()
}
