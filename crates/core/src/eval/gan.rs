//! `muse eval RUN` for a GAN: FID against the test images, class coverage and (conditional
//! models) label accuracy, all through the reference classifier ([`super::image`]).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::image::{FloorFrom, ImageMetrics, image_metrics, open_classifier};
use crate::data::images::{ImageDataConfig, Split};
use crate::error::{Error, Result};
use crate::run_dir::RunDir;
use crate::sample::gan::{Labels, generate_images, labels_for, open_gan};
use crate::train::gan::GanRunConfig;

/// What `muse eval` reports for a GAN run.
#[derive(Clone, Debug, Serialize)]
pub struct GanEval {
    pub run: String,
    pub preset: String,
    pub loss: String,
    pub dataset: String,
    /// Seed of the sampling noise.
    pub seed: u64,
    #[serde(flatten)]
    pub metrics: ImageMetrics,
}

/// Generates `samples` images (seeded; conditional models cycle through the classes) and
/// measures them against the run's test images.
pub fn eval_gan(
    dir: &Path,
    classifier: Option<&Path>,
    samples: usize,
    seed: u64,
    device: &Device,
) -> Result<GanEval> {
    let run = RunDir::open(dir)?;
    let record = run.read_training()?;
    let cfg: GanRunConfig = serde_json::from_value(record.config.clone()).map_err(|e| {
        Error::input(format!(
            "{} is not a GAN run config: {e}",
            run.training().display()
        ))
    })?;
    let gan = open_gan(dir, device)?;
    let dataset = cfg.data.dataset.clone();
    let (clf, clf_dir) = open_classifier(classifier, &dataset, device)?;
    let reference = cfg.data.load(Split::Test)?;
    let labels = labels_for(&gan, samples, Labels::Any)?;
    let mut generate = |i: usize, count: usize| -> Result<(Tensor, Option<Vec<u32>>)> {
        let start = i * 500;
        let l = labels.as_ref().map(|l| l[start..start + count].to_vec());
        let images = generate_images(
            &gan,
            count,
            l.as_deref(),
            seed.wrapping_add(i as u64),
            device,
        )?;
        Ok((images, l))
    };
    let train = ImageDataConfig {
        train_limit: 0,
        ..cfg.data.clone()
    }
    .load(Split::Train)?;
    let from = FloorFrom {
        train: &train,
        reconstruct: None,
    };
    let metrics = image_metrics(
        &clf,
        &clf_dir,
        &reference,
        samples,
        500,
        Some((from, seed)),
        device,
        &mut generate,
    )?;
    Ok(GanEval {
        run: dir.display().to_string(),
        preset: record.preset,
        loss: cfg.gan.loss.as_str().into(),
        dataset,
        seed,
        metrics,
    })
}
