//! The variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", 2013)
//! with Bernoulli outputs, in the shape of the PyTorch examples MNIST VAE (`vae/main.py`), and
//! a convolutional variant.
//!
//! ```text
//! x -> encoder -> (mu, logvar) -> z = mu + eps * exp(logvar / 2) -> decoder -> logits
//! loss per image = BCE(x, sigmoid(logits)) summed over pixels
//!                + beta * KL(N(mu, exp(logvar)) || N(0, I)) = -0.5 * sum(1 + logvar - mu² - exp(logvar))
//! ```
//!
//! The decoder returns logits; the BCE is computed from them (`softplus(l) - x l`), which
//! equals PyTorch's `binary_cross_entropy(sigmoid(l), x)` without its log clamp at -100.
//! Noise `eps` is an input, so training draws it from a seeded stream and resumes exactly.

mod config;
mod spatial;

use candle_core::backprop::GradStore;
use candle_core::{D, Result, Tensor};
use candle_nn::VarBuilder;

pub use config::{VaeArch, VaeConfig};

use crate::nn::Linear;
use crate::nn::conv::{Conv2d, ConvTranspose2d};
use crate::nn::ops::vae_mlp::{MlpVaeParams, mlp_vae_step};
use crate::nn::ops::{self, WeightLayout};

/// Layers of the fully connected VAE (PyTorch examples names: fc1, fc21, fc22, fc3, fc4).
struct Mlp {
    fc1: Linear,
    fc21: Linear,
    fc22: Linear,
    fc3: Linear,
    fc4: Linear,
}

/// Layers of the convolutional VAE.
struct Conv {
    enc_conv1: Conv2d,
    enc_conv2: Conv2d,
    enc_fc: Linear,
    fc_mu: Linear,
    fc_logvar: Linear,
    dec_fc1: Linear,
    dec_fc2: Linear,
    dec_conv1: ConvTranspose2d,
    dec_conv2: ConvTranspose2d,
}

enum Layers {
    Mlp(Mlp),
    Conv(Conv),
    Spatial(spatial::Spatial),
}

/// A VAE; see the module docs.
pub struct Vae {
    layers: Layers,
    cfg: VaeConfig,
}

/// The two terms of the loss, each summed over the batch (scalars), and their sum
/// `bce + beta * kl`.
pub struct VaeLoss {
    pub bce: Tensor,
    pub kl: Tensor,
    pub total: Tensor,
}

fn linear(i: usize, o: usize, vb: VarBuilder) -> Result<Linear> {
    Linear::new(i, o, true, WeightLayout::OutIn, vb)
}

impl Vae {
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let (p, h, l) = (cfg.pixels(), cfg.hidden, cfg.latent);
        let layers = match cfg.arch {
            VaeArch::Mlp => Layers::Mlp(Mlp {
                fc1: linear(p, h, vb.pp("fc1"))?,
                fc21: linear(h, l, vb.pp("fc21"))?,
                fc22: linear(h, l, vb.pp("fc22"))?,
                fc3: linear(l, h, vb.pp("fc3"))?,
                fc4: linear(h, p, vb.pp("fc4"))?,
            }),
            VaeArch::Conv => {
                let (c, c1, c2) = (cfg.channels, cfg.conv_channels, 2 * cfg.conv_channels);
                let flat = c2 * (cfg.image_size / 4).pow(2);
                Layers::Conv(Conv {
                    enc_conv1: Conv2d::new(c, c1, 4, 2, 1, vb.pp("enc_conv1"))?,
                    enc_conv2: Conv2d::new(c1, c2, 4, 2, 1, vb.pp("enc_conv2"))?,
                    enc_fc: linear(flat, h, vb.pp("enc_fc"))?,
                    fc_mu: linear(h, l, vb.pp("fc_mu"))?,
                    fc_logvar: linear(h, l, vb.pp("fc_logvar"))?,
                    dec_fc1: linear(l, h, vb.pp("dec_fc1"))?,
                    dec_fc2: linear(h, flat, vb.pp("dec_fc2"))?,
                    dec_conv1: ConvTranspose2d::new(c2, c1, 4, (2, 1, 0), vb.pp("dec_conv1"))?,
                    dec_conv2: ConvTranspose2d::new(c1, c, 4, (2, 1, 0), vb.pp("dec_conv2"))?,
                })
            }
            VaeArch::Spatial => Layers::Spatial(spatial::Spatial::new(cfg, vb)?),
        };
        Ok(Self {
            layers,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// The approximate posterior q(z|x) = N(mu, exp(logvar)), flattened for every
    /// architecture (a spatial latent: [`Vae::encode_grid`]).
    ///
    /// # Shapes
    /// `x`: (N, C, H, W) in [0, 1] -> (mu (N, latent_dim), logvar (N, latent_dim)).
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = x.dim(0)?;
        match &self.layers {
            Layers::Mlp(m) => {
                let h = ops::relu(&m.fc1.forward(&x.reshape((n, ()))?)?)?; // (N, hidden)
                Ok((m.fc21.forward(&h)?, m.fc22.forward(&h)?))
            }
            Layers::Conv(m) => {
                let h = ops::relu(&m.enc_conv1.forward(x)?)?; // (N, c1, H/2, W/2)
                let h = ops::relu(&m.enc_conv2.forward(&h)?)?; // (N, c2, H/4, W/4)
                let h = ops::relu(&m.enc_fc.forward(&h.reshape((n, ()))?)?)?; // (N, hidden)
                Ok((m.fc_mu.forward(&h)?, m.fc_logvar.forward(&h)?))
            }
            Layers::Spatial(m) => {
                let (mu, logvar) = m.encode(&self.cfg, x)?;
                Ok((mu.reshape((n, ()))?, logvar.reshape((n, ()))?))
            }
        }
    }

    /// The posterior of a spatial-latent VAE as grids.
    ///
    /// # Shapes
    /// `x`: (N, C, H, W) in [0, 1] -> (mu, logvar), each (N, latent, P/4, P/4).
    pub fn encode_grid(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        match &self.layers {
            Layers::Spatial(m) => m.encode(&self.cfg, x),
            _ => candle_core::bail!("only a spatial-latent VAE encodes to a grid"),
        }
    }

    /// Bernoulli logits of p(x|z).
    ///
    /// # Shapes
    /// `z`: (N, latent_dim), or a spatial latent's grid (N, latent, P/4, P/4) -> (N, C, H, W).
    pub fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        let n = z.dim(0)?;
        let (c, s) = (self.cfg.channels, self.cfg.image_size);
        match &self.layers {
            Layers::Mlp(m) => {
                let h = ops::relu(&m.fc3.forward(z)?)?; // (N, hidden)
                m.fc4.forward(&h)?.reshape((n, c, s, s)) // (N, C, H, W)
            }
            Layers::Conv(m) => {
                let c2 = 2 * self.cfg.conv_channels;
                let h = ops::relu(&m.dec_fc1.forward(z)?)?; // (N, hidden)
                let h = ops::relu(&m.dec_fc2.forward(&h)?)?; // (N, c2 * H/4 * W/4)
                let h = h.reshape((n, c2, s / 4, s / 4))?; // (N, c2, H/4, W/4)
                let h = ops::relu(&m.dec_conv1.forward(&h)?)?; // (N, c1, H/2, W/2)
                m.dec_conv2.forward(&h) // (N, C, H, W)
            }
            Layers::Spatial(m) => {
                let (lc, side) = self.cfg.latent_grid().expect("a spatial VAE has a grid");
                m.decode_logits(&self.cfg, &z.reshape((n, lc, side, side))?)
            }
        }
    }

    /// Decoded images (the Bernoulli means) in [0, 1].
    ///
    /// # Shapes
    /// `z`: as [`Vae::decode_logits`] -> (N, C, H, W).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        candle_nn::ops::sigmoid(&self.decode_logits(z)?)
    }

    /// The loss terms for inputs `x_in` reconstructing `target` (the same images, or clean
    /// ones for a denoising VAE), with reparameterisation noise `eps` ~ N(0, I).
    ///
    /// # Shapes
    /// `x_in`, `target`: (N, C, H, W); `eps`: (N, latent) -> scalars.
    pub fn loss(&self, x_in: &Tensor, target: &Tensor, eps: &Tensor, beta: f64) -> Result<VaeLoss> {
        let (mu, logvar) = self.encode(x_in)?;
        let z = reparameterize(&mu, &logvar, eps)?;
        let logits = self.decode_logits(&z)?;
        let n = target.dim(0)?;
        let (bce, kl) = crate::nn::ops::vae_loss::bce_kl_sums(
            &logits.reshape((n, ()))?,
            &target.reshape((n, ()))?,
            &mu,
            &logvar,
        )?;
        let total = if beta == 1.0 {
            (&bce + &kl)?
        } else {
            (&bce + (&kl * beta)?)?
        };
        Ok(VaeLoss { bce, kl, total })
    }

    /// The loss terms (summed over the batch, as f64) and the gradients of
    /// `bce + beta * kl` with respect to every weight. The MLP on the CPU takes the
    /// hand-written step of [`crate::nn::ops::vae_mlp`]; everything else autograd.
    ///
    /// # Shapes
    /// as [`Vae::loss`].
    pub fn loss_and_grads(
        &self,
        x_in: &Tensor,
        target: &Tensor,
        eps: &Tensor,
        beta: f64,
    ) -> Result<(f64, f64, GradStore)> {
        let fast = [x_in, target, eps]
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32);
        match &self.layers {
            Layers::Mlp(m) if fast => {
                let n = x_in.dim(0)?;
                let layers = [&m.fc1, &m.fc21, &m.fc22, &m.fc3, &m.fc4];
                let bias = |lin: &Linear| {
                    lin.bias
                        .clone()
                        .ok_or_else(|| candle_core::Error::msg("VAE layers have biases"))
                };
                let b: Vec<Tensor> = layers.iter().map(|l| bias(l)).collect::<Result<_>>()?;
                let params = MlpVaeParams {
                    w1: &m.fc1.weight,
                    b1: &b[0],
                    w21: &m.fc21.weight,
                    b21: &b[1],
                    w22: &m.fc22.weight,
                    b22: &b[2],
                    w3: &m.fc3.weight,
                    b3: &b[3],
                    w4: &m.fc4.weight,
                    b4: &b[4],
                };
                let step = mlp_vae_step(
                    &params,
                    &x_in.reshape((n, ()))?,
                    &target.reshape((n, ()))?,
                    eps,
                    beta,
                )?;
                let mut store = GradStore::default();
                let mut grads = step.grads.into_iter();
                for (lin, bias) in layers.iter().zip(&b) {
                    for t in [&lin.weight, bias] {
                        let g = grads.next().expect("two gradients per layer");
                        store.insert(t, g);
                    }
                }
                Ok((step.bce, step.kl, store))
            }
            _ => self.loss_and_grads_autograd(x_in, target, eps, beta),
        }
    }

    /// [`Vae::loss_and_grads`] through candle's autograd (any architecture and device).
    pub fn loss_and_grads_autograd(
        &self,
        x_in: &Tensor,
        target: &Tensor,
        eps: &Tensor,
        beta: f64,
    ) -> Result<(f64, f64, GradStore)> {
        let loss = self.loss(x_in, target, eps, beta)?;
        let store = loss.total.backward()?;
        let f =
            |t: &Tensor| -> Result<f64> { t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>() };
        Ok((f(&loss.bce)?, f(&loss.kl)?, store))
    }

    /// Per-image reconstruction and KL terms (no reduction over the batch), for evaluation
    /// and anomaly scores.
    ///
    /// # Shapes
    /// `x`: (N, C, H, W); `eps`: (N, latent) -> (bce (N,), kl (N,)).
    pub fn loss_per_image(&self, x: &Tensor, eps: &Tensor) -> Result<(Tensor, Tensor)> {
        let (mu, logvar) = self.encode(x)?;
        let z = reparameterize(&mu, &logvar, eps)?;
        let n = x.dim(0)?;
        let logits = self.decode_logits(&z)?.reshape((n, ()))?;
        let bce = bce_with_logits(&logits, &x.reshape((n, ()))?)?.sum(D::Minus1)?;
        Ok((bce, kl_divergence(&mu, &logvar)?))
    }

    /// Log importance weights `log p(x|z) + log p(z) - log q(z|x)` of `k` posterior samples per
    /// image (IWAE, Burda et al. 2015); `eps` holds the k draws of every image.
    ///
    /// # Shapes
    /// `x`: (N, C, H, W); `eps`: (N, k, latent) -> (N, k).
    pub fn log_weights(&self, x: &Tensor, eps: &Tensor) -> Result<Tensor> {
        let (n, k, l) = eps.dims3()?;
        let (mu, logvar) = self.encode(x)?; // (N, L)
        let z = reparameterize(&mu.unsqueeze(1)?, &logvar.unsqueeze(1)?, eps)?; // (N, k, L)
        let logits = self.decode_logits(&z.reshape((n * k, l))?)?; // (N*k, C, H, W)
        let log_px = crate::nn::ops::vae_loss::bce_with_logits_rows(
            &logits.reshape((n, k, ()))?,
            &x.reshape((n, ()))?,
        )?
        .neg()?; // (N, k)
        // log p(z) - log q(z|x); the 2π constants cancel.
        let log_pz = (z.sqr()?.sum(D::Minus1)? * -0.5)?;
        let log_qz =
            ((eps.sqr()? + logvar.unsqueeze(1)?.broadcast_as((n, k, l))?)?.sum(D::Minus1)? * -0.5)?;
        (log_px + log_pz)? - log_qz
    }
}

/// z = mu + eps * exp(logvar / 2) (shapes broadcast).
pub fn reparameterize(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<Tensor> {
    let std = (logvar * 0.5)?.exp()?;
    eps.broadcast_mul(&std)?.broadcast_add(mu)
}

/// Element-wise binary cross-entropy of `sigmoid(logits)` against targets in [0, 1]:
/// `max(l, 0) - l x + log(1 + exp(-|l|))`.
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (logits.relu()? - (logits * target)?)? + softplus_neg_abs
}

/// KL(N(mu, exp(logvar)) || N(0, I)) per row.
///
/// # Shapes
/// (N, L), (N, L) -> (N,).
pub fn kl_divergence(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let inner = (((logvar + 1.0)? - mu.sqr()?)? - logvar.exp()?)?;
    inner.sum(D::Minus1)? * -0.5
}

/// Reads `config.json` and `model.safetensors` of a VAE run.
pub fn load_vae(dir: &std::path::Path, device: &candle_core::Device) -> Result<Vae> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", cfg_path.display())))?;
    let cfg: VaeConfig = serde_json::from_str(&text).map_err(|e| {
        candle_core::Error::msg(format!("{} is not a VAE config: {e}", cfg_path.display()))
    })?;
    let weights = dir.join("model.safetensors");
    // SAFETY: the file is memory-mapped read-only and not modified while the model lives.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[&weights], candle_core::DType::F32, device)?
    };
    Vae::new(&cfg, vb).map_err(|e| {
        candle_core::Error::msg(format!(
            "{} does not match {}: {e}",
            weights.display(),
            cfg_path.display()
        ))
    })
}
