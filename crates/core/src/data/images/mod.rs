//! Image datasets: MNIST and Fashion-MNIST (IDX files, raw or `.gz`) and any folder of PNG /
//! JPEG images, as one [`ImageDataset`] of u8 pixels laid out (N, C, H, W), with labels when
//! the data has them, batches in a seeded per-epoch order, and the PNG grids every image model
//! writes ([`grid`]).
//!
//! `--data` takes a registry name (`mnist`, `fashion-mnist`), a folder holding IDX files, or
//! a folder of images; a `:train` / `:test` suffix picks the split. Folders of images are split
//! by sorted path: every tenth image (index 9, 19, ...) is the test split.

mod batches;
mod folder;
pub mod grid;
mod idx;
mod load;
pub mod png_meta;
pub mod provenance;

use candle_core::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use batches::{EpochBatches, chunks, epoch_permutation};
pub use folder::{conform, decode_image, is_image_file, rgb_planes};
pub use idx::{
    IMAGES_MAGIC, IdxImages, LABELS_MAGIC, parse_idx_images, parse_idx_labels, read_idx_images,
    read_idx_labels, read_maybe_gz,
};
pub use load::{load_images, parse_data_split};

use super::windows::step_rng;
use crate::error::{Error, Result};
use crate::run_dir::DatasetRecord;

/// Which part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    /// `train` / `test` (also `val`, `t10k`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "train" => Some(Split::Train),
            "test" | "val" | "t10k" => Some(Split::Test),
            _ => None,
        }
    }
}

/// The pixel range a model wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// `[0, 1]`: `p / 255` (VAEs with Bernoulli outputs, the classifier).
    Unit,
    /// `[-1, 1]`: `p / 127.5 - 1` (tanh generators).
    Signed,
}

/// Shape wanted from a dataset; `None` keeps the native value (28 and 1 for IDX, 32 and 3 for
/// folders of images).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageOptions {
    /// Side of the square images (resized with a triangle filter when it differs).
    pub image_size: Option<usize>,
    /// 1 (grey) or 3 (RGB).
    pub channels: Option<usize>,
}

/// Images in memory: u8 pixels (N, C, H, W), optional labels.
#[derive(Clone, Debug)]
pub struct ImageDataset {
    /// (N, C, H, W) pixels, row-major.
    pub images: Vec<u8>,
    /// One label per image, `< n_classes`.
    pub labels: Option<Vec<u8>>,
    /// Number of classes (0 when unlabelled).
    pub n_classes: usize,
    /// Class names (folder names, or "0".."9").
    pub class_names: Vec<String>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Name, path and fingerprint, for `training.json`.
    pub record: DatasetRecord,
    pub split: Split,
}

impl ImageDataset {
    /// Builds a dataset from raw parts, checking that sizes agree.
    pub fn from_parts(
        images: Vec<u8>,
        labels: Option<Vec<u8>>,
        (channels, height, width): (usize, usize, usize),
        record: DatasetRecord,
        split: Split,
    ) -> Result<Self> {
        let per = channels * height * width;
        if per == 0 || !images.len().is_multiple_of(per) {
            return Err(Error::input(format!(
                "{}: {} pixel bytes do not divide into images of {channels}x{height}x{width}",
                record.path,
                images.len()
            )));
        }
        let n = images.len() / per;
        if let Some(l) = &labels
            && l.len() != n
        {
            return Err(Error::input(format!(
                "{}: {n} images but {} labels; the image and label files do not belong together",
                record.path,
                l.len()
            )));
        }
        let n_classes = labels
            .as_ref()
            .map_or(0, |l| l.iter().map(|&x| x as usize + 1).max().unwrap_or(0));
        Ok(Self {
            class_names: (0..n_classes).map(|c| c.to_string()).collect(),
            images,
            labels,
            n_classes,
            channels,
            height,
            width,
            record,
            split,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len() / self.pixels_per_image()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// C * H * W.
    pub fn pixels_per_image(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// (C, H, W).
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.channels, self.height, self.width)
    }

    /// The u8 pixels of image `i`, (C, H, W).
    pub fn image(&self, i: usize) -> &[u8] {
        let p = self.pixels_per_image();
        &self.images[i * p..(i + 1) * p]
    }

    /// The images at `indices` as an f32 tensor scaled as asked.
    ///
    /// # Shapes
    /// -> (B, C, H, W).
    pub fn batch(&self, indices: &[usize], scale: Scale, device: &Device) -> Result<Tensor> {
        let (mul, add) = match scale {
            Scale::Unit => (1.0 / 255.0, 0.0),
            Scale::Signed => (2.0 / 255.0, -1.0),
        };
        let mut out = Vec::with_capacity(indices.len() * self.pixels_per_image());
        for &i in indices {
            self.check_index(i)?;
            out.extend(self.image(i).iter().map(|&p| p as f32 * mul + add));
        }
        let (c, h, w) = self.shape();
        Ok(Tensor::from_vec(out, (indices.len(), c, h, w), device)?)
    }

    /// Like [`ImageDataset::batch`], with each image translated by a random whole number of
    /// pixels in `[-max_shift, max_shift]` along each axis (uncovered pixels are 0): the data
    /// augmentation of the classifier. The shifts are a pure function of `seed`.
    ///
    /// # Shapes
    /// -> (B, C, H, W).
    pub fn shifted_batch(
        &self,
        indices: &[usize],
        scale: Scale,
        max_shift: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Tensor> {
        if max_shift == 0 {
            return self.batch(indices, scale, device);
        }
        let (c, h, w) = self.shape();
        let (mul, add) = match scale {
            Scale::Unit => (1.0 / 255.0, 0.0),
            Scale::Signed => (2.0 / 255.0, -1.0),
        };
        let mut rng = step_rng(seed, 0, SHIFT_STREAM);
        let s = max_shift as i64;
        let mut out = vec![add; indices.len() * self.pixels_per_image()];
        for (b, &i) in indices.iter().enumerate() {
            self.check_index(i)?;
            let (dy, dx) = (rng.random_range(-s..=s), rng.random_range(-s..=s));
            let src = self.image(i);
            let dst = &mut out[b * c * h * w..(b + 1) * c * h * w];
            for ch in 0..c {
                for y in 0..h as i64 {
                    let sy = y - dy;
                    if sy < 0 || sy >= h as i64 {
                        continue;
                    }
                    for x in 0..w as i64 {
                        let sx = x - dx;
                        if sx >= 0 && sx < w as i64 {
                            let p = src[(ch * h + sy as usize) * w + sx as usize];
                            dst[(ch * h + y as usize) * w + x as usize] = p as f32 * mul + add;
                        }
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (indices.len(), c, h, w), device)?)
    }

    /// The labels at `indices` as u32 (None for unlabelled data).
    ///
    /// # Shapes
    /// -> (B,).
    pub fn labels_at(&self, indices: &[usize], device: &Device) -> Result<Option<Tensor>> {
        let Some(labels) = &self.labels else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices {
            self.check_index(i)?;
            out.push(labels[i] as u32);
        }
        Ok(Some(Tensor::from_vec(out, indices.len(), device)?))
    }

    /// A dataset of the images at `indices` (in that order).
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let mut images = Vec::with_capacity(indices.len() * self.pixels_per_image());
        for &i in indices {
            self.check_index(i)?;
            images.extend_from_slice(self.image(i));
        }
        let labels = self
            .labels
            .as_ref()
            .map(|l| indices.iter().map(|&i| l[i]).collect());
        Ok(Self {
            images,
            labels,
            ..self.clone_meta()
        })
    }

    /// The first `n` images (all of them when `n >= len`).
    pub fn take(&self, n: usize) -> Self {
        let n = n.min(self.len());
        Self {
            images: self.images[..n * self.pixels_per_image()].to_vec(),
            labels: self.labels.as_ref().map(|l| l[..n].to_vec()),
            ..self.clone_meta()
        }
    }

    fn clone_meta(&self) -> Self {
        Self {
            images: Vec::new(),
            labels: None,
            n_classes: self.n_classes,
            class_names: self.class_names.clone(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            record: self.record.clone(),
            split: self.split,
        }
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i >= self.len() {
            return Err(Error::usage(format!(
                "image index {i} is out of range: {} has {} {} images",
                self.record.name,
                self.len(),
                self.split.as_str()
            )));
        }
        Ok(())
    }

    /// Resizes and converts channels (a no-op when nothing changes).
    fn conformed(mut self, opts: &ImageOptions) -> Result<Self> {
        let size = opts.image_size.unwrap_or(self.height);
        let channels = opts.channels.unwrap_or(self.channels);
        check_options(size, channels)?;
        if size == self.height && size == self.width && channels == self.channels {
            return Ok(self);
        }
        let (c, h, w) = self.shape();
        let mut out = Vec::with_capacity(self.len() * channels * size * size);
        for i in 0..self.len() {
            let px = self.image(i);
            let img = if c == 1 {
                image::DynamicImage::ImageLuma8(
                    image::GrayImage::from_raw(w as u32, h as u32, px.to_vec())
                        .expect("sizes checked"),
                )
            } else {
                let mut hwc = vec![0u8; 3 * h * w];
                for (j, chunk) in hwc.chunks_exact_mut(3).enumerate() {
                    for (k, v) in chunk.iter_mut().enumerate() {
                        *v = px[k * h * w + j];
                    }
                }
                image::DynamicImage::ImageRgb8(
                    image::RgbImage::from_raw(w as u32, h as u32, hwc).expect("sizes checked"),
                )
            };
            out.extend(conform(&img, size, channels));
        }
        self.images = out;
        (self.channels, self.height, self.width) = (channels, size, size);
        Ok(self)
    }
}

fn check_options(size: usize, channels: usize) -> Result<()> {
    if !(4..=1024).contains(&size) {
        return Err(Error::usage(format!(
            "--image-size {size} is out of range: use 4 to 1024 pixels"
        )));
    }
    if channels != 1 && channels != 3 {
        return Err(Error::usage(format!(
            "--channels {channels}: use 1 (grey) or 3 (RGB)"
        )));
    }
    Ok(())
}

/// Which images a run trains and tests on: the `[data]` section of every image run config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDataConfig {
    /// `mnist`, `fashion-mnist`, a folder of IDX files or a folder of PNG/JPEG images.
    pub dataset: String,
    /// Side of the square images (0: the data's own, 28 for MNIST, 32 for image folders).
    pub image_size: usize,
    /// 1 (grey) or 3 (RGB) (0: the data's own, 1 for MNIST, 3 for image folders).
    pub channels: usize,
    /// Use only the first N training images (0: all).
    pub train_limit: usize,
    /// Use only the first N test images (0: all).
    pub test_limit: usize,
}

impl ImageDataConfig {
    /// All of MNIST at its own size.
    pub fn mnist() -> Self {
        Self {
            dataset: "mnist".into(),
            image_size: 0,
            channels: 0,
            train_limit: 0,
            test_limit: 0,
        }
    }

    /// The resize / channel options for [`load_images`].
    pub fn options(&self) -> ImageOptions {
        ImageOptions {
            image_size: (self.image_size > 0).then_some(self.image_size),
            channels: (self.channels > 0).then_some(self.channels),
        }
    }

    /// Loads one split, cut to its limit.
    pub fn load(&self, split: Split) -> Result<ImageDataset> {
        let ds = load_images(&self.dataset, split, &self.options())?;
        let limit = match split {
            Split::Train => self.train_limit,
            Split::Test => self.test_limit,
        };
        Ok(if limit > 0 { ds.take(limit) } else { ds })
    }
}

impl ImageDataConfig {
    /// The `[data]` section recorded in a run's `training.json` (image families).
    pub fn of_run(run: &crate::run_dir::RunDir) -> Result<Self> {
        let record = run.read_training()?;
        let data = record.config.get("data").cloned().ok_or_else(|| {
            Error::input(format!(
                "{} records no image data section: is it an image model run?",
                run.training().display()
            ))
        })?;
        serde_json::from_value(data).map_err(|e| {
            Error::input(format!(
                "{} has a malformed data section: {e}",
                run.training().display()
            ))
        })
    }
}
/// Random stream of [`ImageDataset::shifted_batch`].
const SHIFT_STREAM: u64 = 0x5348_4654; // "SHFT"
