//! Evaluating a VAE (`muse eval`, `muse score`): the test loss, an importance-sampled estimate
//! of the negative log-likelihood (Burda, Grosse & Salakhutdinov, "Importance Weighted
//! Autoencoders", 2015), FID and class coverage of prior samples, and per-image anomaly scores.
//!
//! Likelihoods are those of the model's Bernoulli decoder evaluated at grey levels in [0, 1]
//! (the PyTorch example's objective), in nats per image.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::image::{FloorFrom, ImageMetrics, image_metrics};
use crate::data::images::{ImageDataset, Scale, chunks};
use crate::error::Result;
use crate::models::classifier::Classifier;
use crate::models::vae::Vae;
use crate::nn::noise::standard_normal;
use crate::train::images::step_seed;
use crate::train::progress::Progress;
pub use crate::train::vae::{VaeEval, evaluate_vae};

/// Random streams of the evaluation noise.
const IWAE_STREAM: u64 = 0x1AAE;
const SCORE_STREAM: u64 = 0x5C0E;
const PRIOR_STREAM: u64 = 0x9E10;

/// An importance-sampled NLL estimate.
#[derive(Clone, Debug, Serialize)]
pub struct IwaeEstimate {
    /// `-mean_x log (1/k sum_i p(x, z_i) / q(z_i | x))`, nats per image (an upper bound on the
    /// true NLL that tightens as k grows).
    pub nll: f64,
    /// Importance samples per image.
    pub k: usize,
    pub images: usize,
}

/// The IWAE estimate of the test NLL with `k` posterior samples per image.
pub fn iwae_nll(
    model: &Vae,
    ds: &ImageDataset,
    k: usize,
    seed: u64,
    device: &Device,
) -> Result<IwaeEstimate> {
    // About 5000 decodings per forward pass.
    let per = (5000 / k.max(1)).max(1);
    let progress = Progress::new("iwae", 0, ds.len() as u64);
    let mut total = 0f64;
    let latent = model.config().latent_dim();
    for (i, idx) in chunks(ds.len(), per).enumerate() {
        let x = ds.batch(&idx, Scale::Unit, device)?;
        let eps = standard_normal(
            (idx.len(), k, latent),
            step_seed(seed, i as u64, IWAE_STREAM),
            0,
            device,
        )?;
        let lw = model.log_weights(&x, &eps)?; // (B, k)
        let log_px = (lw.log_sum_exp(1)? - (k as f64).ln())?; // (B,)
        total += log_px.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        progress.set((idx[idx.len() - 1] + 1) as u64);
    }
    progress.finish();
    Ok(IwaeEstimate {
        nll: -total / ds.len().max(1) as f64,
        k,
        images: ds.len(),
    })
}

/// FID, class coverage (and no conditional accuracy: the VAE is unconditional) of `n` prior
/// samples against `reference` (the test split), with the floor of as many images of `train`
/// and of their reconstructions.
#[allow(clippy::too_many_arguments)]
pub fn vae_image_metrics(
    model: &Vae,
    classifier: &Classifier,
    classifier_dir: &Path,
    reference: &ImageDataset,
    train: &ImageDataset,
    n: usize,
    seed: u64,
    device: &Device,
) -> Result<ImageMetrics> {
    let latent = model.config().latent_dim();
    let through_vae = |x: &Tensor| crate::sample::vae::reconstruct(model, x);
    let from = FloorFrom {
        train,
        reconstruct: Some(&through_vae),
    };
    image_metrics(
        classifier,
        classifier_dir,
        reference,
        n,
        500,
        Some((from, seed)),
        device,
        &mut |i, count| {
            let z = standard_normal(
                (count, latent),
                step_seed(seed, i as u64, PRIOR_STREAM),
                0,
                device,
            )?;
            Ok((model.decode(&z)?, None))
        },
    )
}

/// Anomaly score of every image of `ds`: the negative ELBO (BCE + KL, nats), averaged over
/// `samples` posterior draws per image. Higher means less like the training data.
pub fn anomaly_scores(
    model: &Vae,
    ds: &ImageDataset,
    samples: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<f64>> {
    let samples = samples.max(1);
    let latent = model.config().latent_dim();
    let mut out = Vec::with_capacity(ds.len());
    for (i, idx) in chunks(ds.len(), 500).enumerate() {
        let x = ds.batch(&idx, Scale::Unit, device)?;
        let mut sum = vec![0f64; idx.len()];
        for s in 0..samples as u64 {
            let eps = standard_normal(
                (idx.len(), latent),
                step_seed(seed, (i as u64) << 16 | s, SCORE_STREAM),
                0,
                device,
            )?;
            let (bce, kl) = model.loss_per_image(&x, &eps)?;
            let v: Vec<f64> = (bce + kl)?.to_dtype(DType::F64)?.to_vec1()?;
            for (a, b) in sum.iter_mut().zip(v) {
                *a += b;
            }
        }
        out.extend(sum.into_iter().map(|v| v / samples as f64));
    }
    Ok(out)
}
