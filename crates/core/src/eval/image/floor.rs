//! What a perfect generator would score. FID estimated from `n` samples is biased upward, the
//! more so the smaller `n` (Chong & Forsyth, "Effectively Unbiased FID", 2020), so a figure
//! from 500 samples and one from 10,000 do not compare. Scoring `n` real training images the
//! same way gives the floor at that count; scoring them again after a VAE's encode-decode gives
//! the floor of any model whose images that VAE decodes (latent diffusion).

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::{Classified, Gaussian, frechet_distance};
use crate::data::images::{ImageDataset, Scale, chunks, epoch_permutation};
use crate::error::{Error, Result};
use crate::models::classifier::Classifier;

/// Random stream of the draw of training images, apart from the sampling seeds.
const FLOOR_STREAM: u64 = 0xF100;

/// Images through an autoencoder, in [0, 1]: (N, C, H, W) -> (N, C, H, W).
pub type Reconstruct<'a> = dyn Fn(&Tensor) -> Result<Tensor> + 'a;

/// Where a floor's images come from: the training split, and the autoencoder the model draws
/// through, if any.
#[derive(Clone, Copy)]
pub struct FloorFrom<'a> {
    pub train: &'a ImageDataset,
    pub reconstruct: Option<&'a Reconstruct<'a>>,
}

/// FIDs of real images at the sample count of an evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct FidFloor {
    /// Training images drawn (without replacement; all of them when fewer).
    pub images: usize,
    /// FID of those images against the reference: what perfect samples would score.
    pub real: f64,
    /// FID of the same images after encoding and decoding (posterior means), when the model
    /// draws through an autoencoder.
    pub reconstructed: Option<f64>,
}

/// Scores `n` training images drawn with `seed` (and their reconstructions) with `classifier`
/// against `reference`, the Gaussian of the reference images' features.
pub fn fid_floor(
    classifier: &Classifier,
    from: FloorFrom,
    reference: &Gaussian,
    n: usize,
    seed: u64,
    device: &Device,
) -> Result<FidFloor> {
    let FloorFrom { train, reconstruct } = from;
    let n = n.min(train.len());
    if n < 2 {
        return Err(Error::usage(
            "the FID floor needs at least 2 training images",
        ));
    }
    let order = epoch_permutation(train.len(), seed, FLOOR_STREAM);
    let drawn = &order[..n];
    let dim = classifier.config().hidden;
    let (mut real, mut rebuilt) = (Classified::new(dim), Classified::new(dim));
    for idx in chunks(n, 500) {
        let picked: Vec<usize> = idx.iter().map(|&i| drawn[i]).collect();
        let images = train.batch(&picked, Scale::Unit, device)?;
        if let Some(reconstruct) = reconstruct {
            rebuilt.push(classifier, &reconstruct(&images)?)?;
        }
        real.push(classifier, &images)?;
    }
    Ok(FidFloor {
        images: n,
        real: frechet_distance(&real.gaussian(), reference),
        reconstructed: reconstruct.map(|_| frechet_distance(&rebuilt.gaussian(), reference)),
    })
}
