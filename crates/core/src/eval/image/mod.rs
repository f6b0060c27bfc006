//! How good generated images are, judged by the reference classifier
//! ([`crate::models::classifier`]):
//!
//! - **FID**: the Fréchet distance between Gaussians fitted to the classifier's penultimate
//!   features (after ReLU) of generated images and of the real test images ([`frechet`]);
//! - **class coverage**: the histogram of the classes the classifier assigns to samples, how
//!   many classes are found, and the entropy of that histogram;
//! - **conditional accuracy**: for class-conditional models, how often the classifier agrees
//!   with the label the sample was generated for;
//! - **AUROC**, for anomaly scores (`muse score`).
//!
//! Protocol (docs/images.md): 10,000 samples against the 10,000 test images, images in `[0, 1]`
//! at the classifier's size, sampling seed recorded; the classifier run is `--classifier RUN`,
//! by default `runs/classifier-<dataset>`.

pub mod floor;
pub mod frechet;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;

pub use floor::{FidFloor, FloorFrom, Reconstruct, fid_floor};
pub use frechet::{Gaussian, frechet_distance};

use crate::data::images::{ImageDataset, Scale, chunks};
use crate::error::{Error, Result};
use crate::models::classifier::{Classifier, load_classifier};
use crate::run_dir::RunDir;

/// Samples generated and test images used for FID unless told otherwise.
pub const FID_SAMPLES: usize = 10_000;

/// Where `muse eval` looks for the classifier of a model trained on `dataset`.
pub fn default_classifier_dir(dataset: &str) -> PathBuf {
    // A dataset given as a folder (`/data/mnist`) is named by its last component.
    let name = Path::new(dataset.trim_end_matches('/'))
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(dataset);
    PathBuf::from("runs").join(format!("classifier-{name}"))
}

/// Opens the classifier at `dir`, or at [`default_classifier_dir`] for `dataset`, with an
/// error that says how to train one when it is missing.
pub fn open_classifier(
    dir: Option<&Path>,
    dataset: &str,
    device: &Device,
) -> Result<(Classifier, PathBuf)> {
    let path = dir.map_or_else(|| default_classifier_dir(dataset), Path::to_path_buf);
    if !path.join("model.safetensors").is_file() {
        let how = format!(
            "train one with `muse train classifier --data {dataset} --out {}`",
            path.display()
        );
        return Err(Error::input(match dir {
            Some(_) => format!("{} holds no trained classifier: {how}", path.display()),
            None => format!(
                "no classifier at {} to measure FID and class coverage: {how}, or pass \
                 --classifier RUN (or --no-classifier to skip the image metrics)",
                path.display()
            ),
        }));
    }
    let run = RunDir::open(&path)?;
    if let Ok(family) = run.family()
        && family != "classifier"
    {
        return Err(Error::input(format!(
            "{} holds a '{family}' run, not a classifier",
            path.display()
        )));
    }
    let model = load_classifier(&path, device).map_err(Error::model_load)?;
    Ok((model, path))
}

/// The classifier's view of a set of images.
pub struct Classified {
    /// (n, dim) penultimate features.
    pub features: Vec<f32>,
    pub dim: usize,
    /// Most likely class of each image.
    pub predictions: Vec<u32>,
}

impl Classified {
    fn new(dim: usize) -> Self {
        Self {
            features: Vec::new(),
            dim,
            predictions: Vec::new(),
        }
    }

    /// Adds a batch of images in `[0, 1]`.
    ///
    /// # Shapes
    /// `images`: (N, C, H, W) at the classifier's size.
    pub fn push(&mut self, classifier: &Classifier, images: &Tensor) -> Result<()> {
        check_shape(classifier, images)?;
        let (h, probs) = classifier.features_and_probs(images)?;
        self.features.extend(h.flatten_all()?.to_vec1::<f32>()?);
        self.predictions.extend(probs.argmax(1)?.to_vec1::<u32>()?);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.predictions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.predictions.is_empty()
    }

    /// The Gaussian fitted to the features.
    pub fn gaussian(&self) -> Gaussian {
        Gaussian::fit(&self.features, self.dim)
    }
}

fn check_shape(classifier: &Classifier, images: &Tensor) -> Result<()> {
    let c = classifier.config();
    let (_, ch, h, w) = images.dims4()?;
    if (ch, h, w) != (c.channels, c.image_size, c.image_size) {
        return Err(Error::input(format!(
            "the classifier takes {}x{}x{} images but these are {ch}x{h}x{w}: use a classifier \
             trained on the same data (--classifier RUN)",
            c.channels, c.image_size, c.image_size
        )));
    }
    Ok(())
}

/// Runs the classifier over every image of `ds` (scaled to `[0, 1]`).
pub fn classify_dataset(
    classifier: &Classifier,
    ds: &ImageDataset,
    batch: usize,
    device: &Device,
) -> Result<Classified> {
    let mut out = Classified::new(classifier.config().hidden);
    for idx in chunks(ds.len(), batch) {
        out.push(classifier, &ds.batch(&idx, Scale::Unit, device)?)?;
    }
    Ok(out)
}

pub use crate::models::classifier::{Coverage, class_coverage};

/// Everything `muse eval` reports about generated images.
#[derive(Clone, Debug, Serialize)]
pub struct ImageMetrics {
    /// FID on the classifier's penultimate features, samples vs reference images.
    pub fid: f64,
    pub coverage: Coverage,
    /// Fraction of samples the classifier puts in the class they were generated for
    /// (conditional models only).
    pub conditional_accuracy: Option<f64>,
    pub samples: usize,
    pub reference_images: usize,
    /// The classifier run used.
    pub classifier: String,
    /// Feature width (the classifier's `hidden`).
    pub feature_dim: usize,
    /// Real images scored at the same count, to read `fid` against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<FidFloor>,
}

/// One batch of generated images in `[0, 1]`, (N, C, H, W), with the labels they were
/// generated for when the model is conditional. Called as `generate(batch_index, count)`.
pub type GenerateBatch<'a> = dyn FnMut(usize, usize) -> Result<(Tensor, Option<Vec<u32>>)> + 'a;

/// Generates `n_samples` images in batches of `batch` through `generate` and measures them
/// against `reference` (the test split) with `classifier`; with `floor`, also as many real
/// images (and their reconstructions) at the sampling seed `seed`.
#[allow(clippy::too_many_arguments)]
pub fn image_metrics(
    classifier: &Classifier,
    classifier_dir: &Path,
    reference: &ImageDataset,
    n_samples: usize,
    batch: usize,
    floor: Option<(FloorFrom, u64)>,
    device: &Device,
    generate: &mut GenerateBatch,
) -> Result<ImageMetrics> {
    if n_samples < 2 || reference.len() < 2 {
        return Err(Error::usage(
            "FID needs at least 2 samples and 2 reference images",
        ));
    }
    let real = classify_dataset(classifier, reference, batch, device)?.gaussian();
    let mut fake = Classified::new(classifier.config().hidden);
    let (mut agree, mut asked) = (0usize, 0usize);
    for (i, idx) in chunks(n_samples, batch).enumerate() {
        let (images, labels) = generate(i, idx.len())?;
        let before = fake.len();
        fake.push(classifier, &images)?;
        if let Some(labels) = labels {
            asked += labels.len();
            agree += labels
                .iter()
                .zip(&fake.predictions[before..])
                .filter(|(a, b)| a == b)
                .count();
        }
    }
    let floor = match floor {
        Some((from, seed)) => Some(fid_floor(
            classifier,
            from,
            &real,
            fake.len(),
            seed,
            device,
        )?),
        None => None,
    };
    Ok(ImageMetrics {
        fid: frechet_distance(&fake.gaussian(), &real),
        coverage: class_coverage(&fake.predictions, classifier.config().n_classes),
        conditional_accuracy: (asked > 0).then(|| agree as f64 / asked as f64),
        samples: fake.len(),
        reference_images: reference.len(),
        classifier: classifier_dir.display().to_string(),
        feature_dim: classifier.config().hidden,
        floor,
    })
}

/// As many images of uniform noise as `like` holds, of the same shape (the "large FID" end of
/// the sanity check).
pub fn uniform_noise_like(like: &ImageDataset, seed: u64) -> Result<ImageDataset> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let pixels: Vec<u8> = (0..like.images.len()).map(|_| rng.random()).collect();
    let mut record = like.record.clone();
    record.name = "uniform-noise".into();
    ImageDataset::from_parts(pixels, None, like.shape(), record, like.split)
}

/// Area under the ROC curve of scores that should be higher for `positive` than for
/// `negative`: the probability that a random positive outscores a random negative, ties
/// counting one half (the Mann-Whitney U statistic over `|pos| * |neg|`). NaN when either set
/// is empty.
pub fn auroc(positive: &[f64], negative: &[f64]) -> f64 {
    let (np, nn) = (positive.len(), negative.len());
    if np == 0 || nn == 0 {
        return f64::NAN;
    }
    let mut all: Vec<(f64, bool)> = positive
        .iter()
        .map(|&s| (s, true))
        .chain(negative.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the (tie-averaged, 1-based) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let u = rank_sum - (np * (np + 1)) as f64 / 2.0;
    u / (np * nn) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_counts_classes_and_entropy() {
        let c = class_coverage(&[0, 0, 1, 1], 4);
        assert_eq!(c.histogram, vec![2, 2, 0, 0]);
        assert_eq!(c.classes_found, 2);
        assert!((c.entropy_bits - 1.0).abs() < 1e-12);
        assert!((c.max_entropy_bits - 2.0).abs() < 1e-12);
        // A collapsed generator: zero bits, printed as 0.00 rather than -0.00.
        let one = class_coverage(&[3, 3, 3], 4);
        assert_eq!(one.entropy_bits, 0.0);
        assert!(one.entropy_bits.is_sign_positive());
    }
}
