//! One GAN step: `n_critic` discriminator updates, then one generator update, each with its own
//! Adam (burn's `examples/wgan` loop; PyTorch's DCGAN example).
//!
//! Every random draw (the real batch, the noise, the fake labels, the interpolation weights of
//! the gradient penalty) is a pure function of (seed, step), so a resumed run repeats the
//! uninterrupted one exactly.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::config::{GanLoss, GanRunConfig};
use crate::data::images::{EpochBatches, ImageDataset, Scale};
use crate::data::windows::step_rng;
use crate::error::Result;
use crate::models::gan::{DTYPE, Gan, GanConfig, dcgan_init, mean_probability};
use crate::nn::{BatchNorm2d, NormMode, init_varmap};
use crate::train::checkpoint;
use crate::train::config::TrainConfig;
use crate::train::optimizer::AdamW;

/// Random streams of one step (`step_rng(seed, step, stream + i)` for critic iteration i).
const NOISE_STREAM: u64 = 0x4E00;
const LABEL_STREAM: u64 = 0x4C00;
const MIX_STREAM: u64 = 0x4D00;

/// The model, its detached twin and the two optimizers.
pub struct GanTrainer {
    pub varmap: VarMap,
    /// Built on the variables: forwards record a graph.
    pub gan: Gan,
    /// The same storage through detached tensors: forwards record nothing (G's input to the D
    /// step, D during the G step, sampling).
    pub frozen: Gan,
    pub opt_g: AdamW,
    pub opt_d: AdamW,
    pub device: Device,
}

/// What one step measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// D's loss on the last critic iteration (BCE: real + fake terms; WGAN-GP: critic loss
    /// including the penalty).
    pub loss_d: f64,
    /// G's loss.
    pub loss_g: f64,
    /// BCE: mean D(x) as a probability; WGAN-GP: mean critic score of real images.
    pub d_real: f64,
    /// BCE: mean D(G(z)) before D's update; WGAN-GP: mean critic score of fakes.
    pub d_fake: f64,
    /// The gradient penalty term (lambda included); 0 for BCE.
    pub gp: f64,
}

impl GanTrainer {
    /// A fresh model initialised from `seed` (DCGAN initialisation) and its optimizers.
    pub fn new(cfg: &GanConfig, t: &TrainConfig, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let gan = Gan::new(cfg, VarBuilder::from_varmap(&varmap, DTYPE, device))?;
        init_varmap(&varmap, t.seed, dcgan_init)?;
        let (g_vars, d_vars) = split_vars(&varmap);
        let opt_g = AdamW::with_vars(g_vars, 0.0, t)?;
        let opt_d = AdamW::with_vars(d_vars, 0.0, t)?;
        let frozen = Gan::new(cfg, crate::train::gpt::detached(&varmap, device)?)?;
        Ok(Self {
            varmap,
            gan,
            frozen,
            opt_g,
            opt_d,
            device: device.clone(),
        })
    }

    /// Names and tensors of every weight and running statistic, for a checkpoint.
    pub fn weights(&self) -> std::collections::HashMap<String, Tensor> {
        checkpoint::varmap_tensors(&self.varmap)
    }

    /// One generator step (after `n_critic` discriminator steps) at learning rate `lr`.
    pub fn step(
        &mut self,
        cfg: &GanRunConfig,
        data: &ImageDataset,
        batches: &mut EpochBatches,
        step: u64,
        lr: f64,
    ) -> Result<StepStats> {
        let seed = cfg.train.seed;
        let n_critic = cfg.gan.n_critic as u64;
        let mut stats = StepStats::default();
        let mut last_fake = None;
        for i in 0..n_critic {
            let idx = batches.indices(step * n_critic + i);
            let real = data.batch(&idx, Scale::Signed, &self.device)?;
            let real_labels = if cfg.model.conditional() {
                data.labels_at(&idx, &self.device)?
            } else {
                None
            };
            let n = idx.len();
            let z = noise(n, cfg.model.z_dim, seed, step, i, &self.device)?;
            let fake_labels = self.fake_labels(n, seed, step, i)?;
            // The last critic iteration's fakes feed the G step, so keep their graph.
            let last = i + 1 == n_critic;
            let g = if last { &self.gan.g } else { &self.frozen.g };
            let fake = g.forward(&z, fake_labels.as_ref(), NormMode::Train)?;
            let d_stats = self.d_step(
                cfg,
                &real,
                real_labels.as_ref(),
                &fake.detach(),
                fake_labels.as_ref(),
                (seed, step, i),
                lr,
            )?;
            (stats.loss_d, stats.d_real, stats.d_fake, stats.gp) = d_stats;
            if last {
                last_fake = Some((fake, fake_labels));
            }
        }
        let (fake, fake_labels) = last_fake.expect("n_critic >= 1");
        stats.loss_g = self.g_step(cfg.gan.loss, &fake, fake_labels.as_ref(), lr)?;
        Ok(stats)
    }

    /// One discriminator update. Returns (loss, d_real, d_fake, penalty).
    #[allow(clippy::too_many_arguments)]
    pub fn d_step(
        &mut self,
        cfg: &GanRunConfig,
        real: &Tensor,
        real_labels: Option<&Tensor>,
        fake: &Tensor,
        fake_labels: Option<&Tensor>,
        (seed, step, i): (u64, u64, u64),
        lr: f64,
    ) -> Result<(f64, f64, f64, f64)> {
        let d = &self.gan.d;
        // Two forward passes, each with its own batch statistics (as the PyTorch reference).
        let s_real = d.forward(real, real_labels, NormMode::Train)?;
        let s_fake = d.forward(fake, fake_labels, NormMode::Train)?;
        let (loss, d_real, d_fake, gp) = match cfg.gan.loss {
            GanLoss::Bce => {
                let loss = (bce_with_logits(&s_real, true)? + bce_with_logits(&s_fake, false)?)?;
                (
                    loss,
                    mean_probability(&s_real)?,
                    mean_probability(&s_fake)?,
                    None,
                )
            }
            GanLoss::WganGp => {
                let (mr, mf) = (s_real.mean_all()?, s_fake.mean_all()?);
                let mut rng = step_rng(seed, step, MIX_STREAM + i);
                let n = real.dim(0)?;
                let eps: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
                let eps = Tensor::from_vec(eps, (n, 1, 1, 1), &self.device)?;
                let gp = (gradient_penalty(&self.gan, real, fake, &eps, real_labels)?
                    * cfg.gan.gp_weight)?;
                let loss = ((&mf - &mr)? + &gp)?;
                (loss, scalar(&mr)?, scalar(&mf)?, Some(gp))
            }
        };
        let store = loss.backward()?;
        let grads = self.opt_d.grads(&store);
        self.opt_d.step(&grads, lr)?;
        let gp = gp.map(|g| scalar(&g)).transpose()?.unwrap_or(0.0);
        Ok((scalar(&loss)?, d_real, d_fake, gp))
    }

    /// One generator update through the (detached) discriminator: D's weights get no
    /// gradient. Returns G's loss.
    pub fn g_step(
        &mut self,
        loss_kind: GanLoss,
        fake: &Tensor,
        labels: Option<&Tensor>,
        lr: f64,
    ) -> Result<f64> {
        let s = self.frozen.d.forward(fake, labels, NormMode::Train)?;
        let loss = match loss_kind {
            GanLoss::Bce => bce_with_logits(&s, true)?,
            GanLoss::WganGp => s.mean_all()?.neg()?,
        };
        let store = loss.backward()?;
        let grads = self.opt_g.grads(&store);
        self.opt_g.step(&grads, lr)?;
        scalar(&loss)
    }

    /// Uniform random class labels for the fakes of a conditional model.
    fn fake_labels(&self, n: usize, seed: u64, step: u64, i: u64) -> Result<Option<Tensor>> {
        let k = self.gan.cfg.n_classes;
        if k == 0 {
            return Ok(None);
        }
        let mut rng = step_rng(seed, step, LABEL_STREAM + i);
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
        Ok(Some(Tensor::from_vec(labels, n, &self.device)?))
    }
}

/// WGAN-GP's penalty `mean_n (||d D(x̂_n) / d x̂_n||_2 - 1)^2` at `x̂ = eps * real + (1 - eps) *
/// fake`, differentiable with respect to the critic's weights (see
/// [`crate::models::gan::Discriminator::input_gradient`]). Without the lambda factor.
///
/// # Shapes
/// `real`, `fake`: (N, C, H, W), `eps`: (N, 1, 1, 1) -> scalar.
pub fn gradient_penalty(
    gan: &Gan,
    real: &Tensor,
    fake: &Tensor,
    eps: &Tensor,
    labels: Option<&Tensor>,
) -> Result<Tensor> {
    let mix = (real.broadcast_mul(eps)? + fake.broadcast_mul(&eps.affine(-1.0, 1.0)?)?)?.detach();
    let g = gan.d.input_gradient(&mix, labels)?; // (N, C, H, W)
    let n = g.dim(0)?;
    let norm = (g.reshape((n, ()))?.sqr()?.sum(1)? + 1e-12)?.sqrt()?; // (N)
    Ok((norm - 1.0)?.sqr()?.mean_all()?)
}

/// Mean binary cross-entropy of logits against an all-real (`true`) or all-fake target:
/// `softplus(-x)` or `softplus(x)`, with `softplus(x) = max(x, 0) + log(1 + exp(-|x|))`.
pub fn bce_with_logits(logits: &Tensor, real: bool) -> Result<Tensor> {
    let x = if real { logits.neg()? } else { logits.clone() };
    let soft = (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    Ok(soft.mean_all()?)
}

/// Standard normal noise of critic iteration `i` of `step`.
///
/// # Shapes
/// -> (n, z_dim).
pub fn noise(n: usize, z_dim: usize, seed: u64, step: u64, i: u64, dev: &Device) -> Result<Tensor> {
    let mut rng = step_rng(seed, step, NOISE_STREAM + i);
    let v: Vec<f32> = (0..n * z_dim)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Ok(Tensor::from_vec(v, (n, z_dim), dev)?)
}

/// Variables with their checkpoint names.
pub type NamedVars = Vec<(String, Var)>;

/// The trainable variables of G (`g.*`) and D (`d.*`), sorted by name, without the batch-norm
/// running statistics.
pub fn split_vars(varmap: &VarMap) -> (NamedVars, NamedVars) {
    let data = varmap.data().lock().expect("varmap lock is never poisoned");
    let mut all: Vec<(String, Var)> = data
        .iter()
        .filter(|(k, _)| !BatchNorm2d::is_buffer(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.into_iter().partition(|(k, _)| k.starts_with("g."))
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}
