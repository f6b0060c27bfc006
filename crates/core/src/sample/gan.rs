//! Images from a trained GAN: seeded noise through the generator (inference mode), optionally
//! for chosen classes.

use std::path::Path;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};
use crate::models::gan::{Gan, load_gan};
use crate::nn::NormMode;
use crate::run_dir::RunDir;

/// Opens the GAN of a run folder, checking that it is one.
pub fn open_gan(dir: &Path, device: &Device) -> Result<Gan> {
    let run = RunDir::open(dir)?;
    let family = run.family()?;
    if family != "gan" {
        return Err(Error::input(format!(
            "{} holds a '{family}' run, not a GAN",
            dir.display()
        )));
    }
    load_gan(dir, device).map_err(Error::model_load)
}

/// Which classes to draw: every image of one class, or the classes in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// An unconditional model (or no preference: classes in turn for a conditional one).
    Any,
    /// Every image of this class.
    Class(usize),
}

/// The labels a batch of `n` images gets: `label` for all, or `0, 1, ..., K-1, 0, ...` for a
/// conditional model; None for an unconditional one. Errors name the valid range.
pub fn labels_for(gan: &Gan, n: usize, labels: Labels) -> Result<Option<Vec<u32>>> {
    let k = gan.cfg.n_classes;
    match (k, labels) {
        (0, Labels::Any) => Ok(None),
        (0, Labels::Class(_)) => Err(Error::usage(
            "this GAN is unconditional: it takes no --label (train one with --preset cgan-mnist)",
        )),
        (_, Labels::Class(c)) if c >= k => Err(Error::usage(format!(
            "--label {c} is out of range: this GAN knows {k} classes, 0 to {}",
            k - 1
        ))),
        (_, Labels::Class(c)) => Ok(Some(vec![c as u32; n])),
        (_, Labels::Any) => Ok(Some((0..n).map(|i| (i % k) as u32).collect())),
    }
}

/// `n` images in [0, 1] from noise seeded by `seed`, in batches of at most 500.
///
/// # Shapes
/// -> (n, C, S, S).
pub fn generate_images(
    gan: &Gan,
    n: usize,
    labels: Option<&[u32]>,
    seed: u64,
    device: &Device,
) -> Result<Tensor> {
    if n == 0 {
        return Err(Error::usage("--n must be at least 1"));
    }
    let z_dim = gan.cfg.z_dim;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for start in (0..n).step_by(500) {
        let m = 500.min(n - start);
        let z: Vec<f32> = (0..m * z_dim)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let z = Tensor::from_vec(z, (m, z_dim), device)?;
        let l = labels
            .map(|l| Tensor::from_vec(l[start..start + m].to_vec(), m, device))
            .transpose()?;
        let x = gan.g.forward(&z, l.as_ref(), NormMode::Eval)?;
        out.push(x.affine(0.5, 0.5)?.clamp(0f32, 1f32)?);
    }
    Ok(Tensor::cat(&out, 0)?)
}
