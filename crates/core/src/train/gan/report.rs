//! What a GAN run reports: progress grids from a fixed noise batch, class coverage, the loss
//! plot, the log line and the model card.

use std::path::PathBuf;

use candle_core::{Device, Tensor};

use super::config::{GanLoss, GanRunConfig};
use super::step::{GanTrainer, StepStats, noise};
use super::{GanQuality, GanTrainJob};
use crate::data::images::ImageDataset;
use crate::data::images::grid::write_grid as write_png_grid;
use crate::data::images::provenance::Provenance;
use crate::error::Result;
use crate::models::classifier::{Classifier, class_coverage};
use crate::models::gan::parameter_counts;
use crate::nn::NormMode;
use crate::run_dir::RunDir;
use crate::train::card::{ModelCard, Outputs};
use crate::train::checkpoint::TrainState;
use crate::train::images::per_second;
use crate::train::metrics::{read_metrics, series};
use crate::train::plot::{Series, line_chart};

/// Pseudo-steps of the fixed noise streams (grids, coverage), apart from every training step.
const GRID_STEP: u64 = u64::MAX >> 24;
const COVERAGE_STEP: u64 = GRID_STEP - 1;

/// The noise (and labels) every progress grid is drawn from: `grid_size` images, or for a
/// conditional model 8 per class, one class per row.
pub fn fixed_batch(cfg: &GanRunConfig, dev: &Device) -> Result<(Tensor, Option<Tensor>)> {
    let k = cfg.model.n_classes;
    let n = if k > 0 { 8 * k } else { cfg.gan.grid_size };
    let z = noise(n, cfg.model.z_dim, cfg.train.seed, GRID_STEP, 0, dev)?;
    let labels = (k > 0)
        .then(|| Tensor::from_vec((0..n as u32).map(|i| i / 8).collect(), n, dev))
        .transpose()?;
    Ok((z, labels))
}

/// Images in [0, 1] from the generator in inference mode (running batch-norm statistics).
fn generate(tr: &GanTrainer, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
    let x = tr.frozen.g.forward(z, labels, NormMode::Eval)?;
    Ok(x.affine(0.5, 0.5)?.clamp(0f32, 1f32)?)
}

/// Writes `samples/step_NNNNNN.png` from the fixed batch and returns its path.
pub fn write_grid(
    run: &RunDir,
    tr: &GanTrainer,
    cfg: &GanRunConfig,
    (z, labels): &(Tensor, Option<Tensor>),
    step: u64,
) -> Result<PathBuf> {
    let images = generate(tr, z, labels.as_ref())?;
    let path = run.samples().join(format!("step_{step:06}.png"));
    let caption = format!(
        "GAN ({}) samples at training step {step}",
        cfg.gan.loss.as_str()
    );
    let prov = Provenance {
        seed: Some(cfg.train.seed),
        training_step: Some(step),
        ..Provenance::of(run.root(), "gan").caption(caption)
    };
    write_png_grid(&path, &images, 8, &prov)?;
    Ok(path)
}

/// Class coverage (and label accuracy) of `coverage_samples` images from fixed noise, as the
/// reference classifier sees them.
pub fn measure(
    tr: &GanTrainer,
    cfg: &GanRunConfig,
    classifier: &Classifier,
    _step: u64,
) -> Result<GanQuality> {
    let n = cfg.gan.coverage_samples.max(cfg.model.n_classes).max(1);
    let k = cfg.model.n_classes;
    let mut images = Vec::new();
    let mut asked = Vec::new();
    for start in (0..n).step_by(500) {
        let m = 500.min(n - start);
        let z = noise(
            m,
            cfg.model.z_dim,
            cfg.train.seed,
            COVERAGE_STEP,
            start as u64,
            &tr.device,
        )?;
        let labels: Option<Vec<u32>> =
            (k > 0).then(|| (start..start + m).map(|i| (i % k) as u32).collect());
        let lt = labels
            .as_ref()
            .map(|l| Tensor::from_vec(l.clone(), m, &tr.device))
            .transpose()?;
        images.push(generate(tr, &z, lt.as_ref())?);
        asked.extend(labels.unwrap_or_default());
    }
    let images = Tensor::cat(&images, 0)?;
    let predictions = classifier.predict(&images)?;
    let cov = class_coverage(&predictions, classifier.config().n_classes);
    let label_accuracy = (k > 0).then(|| {
        let agree = asked
            .iter()
            .zip(&predictions)
            .filter(|(a, b)| a == b)
            .count();
        agree as f64 / asked.len().max(1) as f64
    });
    Ok(GanQuality {
        classes_found: cov.classes_found,
        n_classes: cov.n_classes,
        entropy_bits: cov.entropy_bits,
        label_accuracy,
    })
}

/// `step 500 | D 1.2034 | G 0.9321 | D(x) 0.61 | D(G(z)) 0.33 | lr 2.0e-4 | 120 ms | 533 img/s`.
pub fn log_line(
    cfg: &GanRunConfig,
    step: u64,
    s: &StepStats,
    lr: f64,
    ms: f64,
    images: f64,
) -> String {
    let scores = match cfg.gan.loss {
        GanLoss::Bce => format!("D(x) {:.3} | D(G(z)) {:.3}", s.d_real, s.d_fake),
        GanLoss::WganGp => format!(
            "critic real {:.3} fake {:.3} | W {:.3} | gp {:.3}",
            s.d_real,
            s.d_fake,
            s.d_real - s.d_fake,
            s.gp
        ),
    };
    format!(
        "step {step} | D {:.4} | G {:.4} | {scores} | lr {lr:.1e} | {ms:.0} ms | {} img/s",
        s.loss_d,
        s.loss_g,
        per_second(images, ms)
    )
}

/// Redraws `loss.svg` from `metrics.jsonl`: D and G losses, D(x) and D(G(z)).
pub fn plot_losses(run: &RunDir) -> Result<()> {
    let records = read_metrics(&run.metrics())?;
    line_chart(
        &run.loss_plot(),
        "GAN training: losses and discriminator outputs",
        "step",
        "value",
        &[
            Series {
                name: "D loss",
                points: series(&records, "loss_d"),
            },
            Series {
                name: "G loss",
                points: series(&records, "loss_g"),
            },
            Series {
                name: "D(x)",
                points: series(&records, "d_real"),
            },
            Series {
                name: "D(G(z))",
                points: series(&records, "d_fake"),
            },
        ],
    )
}

/// Writes `MODEL_CARD.md`.
pub fn write_model_card(
    run: &RunDir,
    job: &GanTrainJob,
    cfg: &GanRunConfig,
    data: &ImageDataset,
    state: &TrainState,
    last: &StepStats,
    quality: Option<&GanQuality>,
) -> Result<()> {
    let m = &cfg.model;
    let (pg, pd) = parameter_counts(m);
    let kind = if m.conditional() {
        format!("class-conditional DCGAN ({} classes)", m.n_classes)
    } else {
        "DCGAN".to_string()
    };
    let quality = match quality {
        Some(q) => format!(
            "Class coverage by the reference classifier at the end of training: {}/{} classes, \
             entropy {:.2} bits{}. `muse eval {}` measures FID, coverage{} on 10,000 samples.",
            q.classes_found,
            q.n_classes,
            q.entropy_bits,
            q.label_accuracy.map_or(String::new(), |a| format!(
                ", label accuracy {:.1}%",
                100.0 * a
            )),
            run.root().display(),
            if m.conditional() {
                " and label accuracy"
            } else {
                ""
            }
        ),
        None => format!(
            "No classifier was available during training; `muse eval {}` measures FID and class \
             coverage once `muse train classifier` has made one.",
            run.root().display()
        ),
    };
    let model = format!(
        "- generator: {pg} parameters, z = {z}{cond} -> {g}x{s}x{s} -> {g2}x{s2}x{s2} -> \
         {c}x{size}x{size}, tanh\n\
         - discriminator: {pd} parameters, {d} and {d2} channels, {norm}\n\
         - weights: `model.safetensors` (`g.*`, `d.*`, PyTorch layouts), config: `config.json`",
        z = m.z_dim,
        cond = if m.conditional() {
            " + one-hot label"
        } else {
            ""
        },
        g = m.g_channels,
        g2 = m.g_channels / 2,
        s = m.base_size(),
        s2 = 2 * m.base_size(),
        c = m.image_channels,
        size = m.image_size,
        d = m.d_channels,
        d2 = 2 * m.d_channels,
        norm = match m.d_norm {
            crate::models::gan::DNorm::Batch => "batch norm",
            crate::models::gan::DNorm::None => "no normalisation (WGAN-GP critic)",
        },
    );
    let training = format!(
        "- {} generator steps, {} discriminator step(s) each, batch {}, Adam lr {:e} betas \
         ({}, {}), {:.0} s of training, seed {}\n\
         - last step: D loss {:.4}, G loss {:.4}",
        state.step,
        cfg.gan.n_critic,
        cfg.train.batch_size,
        cfg.train.lr,
        cfg.train.beta1,
        cfg.train.beta2,
        state.train_seconds,
        cfg.train.seed,
        last.loss_d,
        last.loss_g,
    );
    ModelCard::new(
        run,
        format!(
            "A {kind} image generator trained with Muse (preset `{}`, loss `{}`).",
            job.preset,
            cfg.gan.loss.as_str()
        ),
        Outputs::Images,
        &job.preset,
    )
    .section("Model", model)
    .data(&data.record, &format!("{} training images", data.len()))
    .config(cfg)
    .section("Training", training)
    .section(
        "Quality",
        format!(
            "{quality} `muse audit {}` compares samples with their nearest training images.",
            run.root().display()
        ),
    )
    .limits(
        "A small model trained on one dataset: samples can be blurry or malformed, some \
         classes may be under-represented (mode collapse), it can give back near-copies of \
         training images, and it reproduces the biases of its data. Do not present its images \
         as real or human-made.",
    )
    .write(run)
}
