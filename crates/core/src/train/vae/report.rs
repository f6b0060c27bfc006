//! What a VAE run reports: the test loss, the loss plot, sample and reconstruction grids, and
//! the model card.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::VaeRunConfig;
use crate::data::images::grid::{write_grid, write_strip};
use crate::data::images::provenance::Provenance;
use crate::data::images::{ImageDataset, Scale, chunks};
use crate::error::Result;
use crate::models::vae::Vae;
use crate::nn::noise::standard_normal;
use crate::run_dir::RunDir;
use crate::train::cadence::EvalLog;
use crate::train::card::{ModelCard, Outputs};
use crate::train::checkpoint::TrainState;
use crate::train::images::step_seed;
use crate::train::metrics::{read_metrics, series};
use crate::train::plot::{Series, line_chart};

/// Random stream of the evaluation noise, apart from training.
const EVAL_STREAM: u64 = 0xE7A1;

/// Test-split figures of a VAE: the negative ELBO per image and its two terms (one posterior
/// sample per image, as the PyTorch example's `test()`, with seeded noise).
#[derive(Clone, Debug, Serialize)]
pub struct VaeEval {
    /// BCE + KL per image (nats), beta = 1 whatever the training beta.
    pub loss: f64,
    pub bce: f64,
    pub kl: f64,
    pub images: usize,
}

/// The per-image test loss over all of `ds` (clean inputs, beta = 1).
pub fn evaluate_vae(
    model: &Vae,
    ds: &ImageDataset,
    batch: usize,
    seed: u64,
    device: &Device,
) -> Result<VaeEval> {
    let (mut bce, mut kl) = (0f64, 0f64);
    for (i, idx) in chunks(ds.len(), batch).enumerate() {
        let x = ds.batch(&idx, Scale::Unit, device)?;
        let eps = standard_normal(
            (idx.len(), model.config().latent_dim()),
            step_seed(seed, i as u64, EVAL_STREAM),
            0,
            device,
        )?;
        let (b, k) = model.loss_per_image(&x, &eps)?;
        bce += b.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        kl += k.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    }
    let n = ds.len().max(1) as f64;
    Ok(VaeEval {
        loss: (bce + kl) / n,
        bce: bce / n,
        kl: kl / n,
        images: ds.len(),
    })
}

/// The log line and metrics record of a test evaluation after `step` steps.
pub(super) fn eval_log(step: u64, spe: u64, ev: &VaeEval) -> EvalLog {
    EvalLog {
        line: format!(
            "step {step} | epoch {:.2} | test loss {:.4} (bce {:.2} + kl {:.2})",
            step as f64 / spe as f64,
            ev.loss,
            ev.bce,
            ev.kl
        ),
        metrics: serde_json::json!({
            "step": step, "val_loss": ev.loss, "val_bce": ev.bce, "val_kl": ev.kl,
        }),
        val_loss: Some(ev.loss),
    }
}

/// Redraws `loss.svg` from `metrics.jsonl`.
pub(super) fn plot(run: &RunDir) -> Result<()> {
    let records = read_metrics(&run.metrics())?;
    line_chart(
        &run.loss_plot(),
        "VAE loss per image (BCE + KL, nats)",
        "step",
        "loss",
        &[
            Series {
                name: "train (batch)",
                points: series(&records, "loss"),
            },
            Series {
                name: "test",
                points: series(&records, "val_loss"),
            },
        ],
    )
}

/// `samples/step_NNNNNN.png`: the decoded fixed latent batch.
pub(super) fn write_samples(
    run: &RunDir,
    model: &Vae,
    z: &Tensor,
    nrow: usize,
    step: u64,
) -> Result<()> {
    let images = model.decode(z)?;
    write_grid(
        &run.samples().join(format!("step_{step:06}.png")),
        &images,
        nrow,
        &Provenance {
            training_step: Some(step),
            ..Provenance::of(run.root(), "vae")
                .caption(format!("VAE samples from the prior, training step {step}"))
        },
    )
}

/// A two-row strip: the first `n` images of `ds` above their reconstructions (decoded
/// posterior means), written with the provenance of the run at `run`.
pub fn write_reconstructions(
    run: &RunDir,
    path: &Path,
    model: &Vae,
    ds: &ImageDataset,
    n: usize,
    device: &Device,
) -> Result<()> {
    let idx: Vec<usize> = (0..n.min(ds.len())).collect();
    let x = ds.batch(&idx, Scale::Unit, device)?;
    let (mu, _) = model.encode(&x)?;
    let recon = model.decode(&mu)?;
    write_strip(
        path,
        &[x, recon],
        &Provenance::of(run.root(), "vae").caption("top: test images; bottom: VAE reconstructions"),
    )
}

pub(super) fn write_model_card(
    run: &RunDir,
    preset: &str,
    cfg: &VaeRunConfig,
    train: &ImageDataset,
    test: &ImageDataset,
    state: &TrainState,
    ev: &VaeEval,
) -> Result<()> {
    let m = &cfg.model;
    let kind = match (cfg.objective.beta == 1.0, cfg.objective.train_noise > 0.0) {
        (true, false) => "a variational autoencoder (VAE)".to_string(),
        (false, false) => format!("a beta-VAE (beta = {})", cfg.objective.beta),
        (true, true) => format!(
            "a denoising VAE (inputs corrupted with Gaussian noise, sigma = {})",
            cfg.objective.train_noise
        ),
        (false, true) => format!(
            "a denoising beta-VAE (beta = {}, input noise sigma = {})",
            cfg.objective.beta, cfg.objective.train_noise
        ),
    };
    let model = format!(
        "- {:?} encoder/decoder, {} parameters, hidden width {}, latent dimension {}\n\
         - Bernoulli (sigmoid) outputs on {c}x{s}x{s} images in [0, 1]\n\
         - loss per image: BCE summed over pixels + {} x KL(q(z|x) || N(0, I))",
        m.arch,
        m.parameter_count(),
        m.hidden,
        m.latent_dim(),
        cfg.objective.beta,
        c = m.channels,
        s = m.image_size,
    );
    let metrics = format!(
        "Test split, one posterior sample per image:\n\n\
         | loss (BCE + KL, nats/image) | BCE | KL |\n|---|---|---|\n\
         | {:.2} | {:.2} | {:.2} |\n\n\
         `muse eval {dir}` adds an importance-sampled NLL estimate and, with a classifier, FID \
         and class coverage of samples; `muse audit {dir}` compares samples with their nearest \
         training images.",
        ev.loss,
        ev.bce,
        ev.kl,
        dir = run.root().display(),
    );
    ModelCard::new(
        run,
        format!(
            "{kind} trained with Muse (preset `{preset}`), after Kingma & Welling, \
             \"Auto-Encoding Variational Bayes\" (2013)."
        ),
        Outputs::Images,
        preset,
    )
    .section("Model", model)
    .data(
        &train.record,
        &format!("{} training and {} test images", train.len(), test.len()),
    )
    .config(cfg)
    .section(
        "Training",
        format!(
            "- {} steps of batch {}, Adam lr {:e}, seed {}, {:.0} s",
            state.step, cfg.train.batch_size, cfg.train.lr, cfg.train.seed, state.train_seconds
        ),
    )
    .section("Metrics", metrics)
    .limits(
        "Trained on one small dataset; samples are blurry averages of what it saw and can \
         reproduce features of training images. Do not present its output as real images.",
    )
    .write(run)
}
