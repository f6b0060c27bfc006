//! DCGAN (Radford, Metz & Chintala 2016, "Unsupervised Representation Learning with Deep
//! Convolutional Generative Adversarial Networks") for small images, optionally
//! class-conditional (Mirza & Osindero 2014, "Conditional Generative Adversarial Nets": a
//! one-hot label concatenated to G's noise and to D's input as constant planes).
//!
//! Tensor names follow `shared/bench/pytorch/dcgan28.py` under `g.` and `d.` prefixes
//! (`g.fc.weight`, `g.bn0.running_mean`, `d.c2.weight`, ...), `nn.Linear` weights (out, in).

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{DNorm, GanConfig};
use crate::nn::conv::{Conv2d, ConvTranspose2d};
use crate::nn::ops::{self, Activation, WeightLayout};
use crate::nn::{BatchNorm2d, Init, Linear, NormMode};

/// Weights are f32 throughout.
pub const DTYPE: DType = DType::F32;

/// Slope of the discriminator's leaky ReLUs.
pub const LEAKY_SLOPE: f64 = 0.2;

/// The generator: noise (and a label) to an image in [-1, 1].
#[derive(Clone, Debug)]
pub struct Generator {
    cfg: GanConfig,
    fc: Linear,
    bn0: BatchNorm2d,
    up1: ConvTranspose2d,
    bn1: BatchNorm2d,
    up2: ConvTranspose2d,
}

impl Generator {
    pub fn new(cfg: &GanConfig, vb: VarBuilder) -> Result<Self> {
        let (g, s) = (cfg.g_channels, cfg.base_size());
        Ok(Self {
            cfg: cfg.clone(),
            fc: Linear::new(
                cfg.z_dim + cfg.n_classes,
                g * s * s,
                true,
                WeightLayout::OutIn,
                vb.pp("fc"),
            )?,
            bn0: BatchNorm2d::new(g, vb.pp("bn0"))?,
            up1: ConvTranspose2d::new(g, g / 2, 4, (2, 1, 0), vb.pp("up1"))?,
            bn1: BatchNorm2d::new(g / 2, vb.pp("bn1"))?,
            up2: ConvTranspose2d::new(g / 2, cfg.image_channels, 4, (2, 1, 0), vb.pp("up2"))?,
        })
    }

    /// Images from noise `z` and, for a conditional model, the wanted classes.
    ///
    /// # Shapes
    /// `z`: (N, z_dim), `labels`: (N) u32 -> (N, C, S, S) in [-1, 1].
    pub fn forward(&self, z: &Tensor, labels: Option<&Tensor>, mode: NormMode) -> Result<Tensor> {
        let (g, s) = (self.cfg.g_channels, self.cfg.base_size());
        let n = z.dim(0)?;
        let input = match (self.cfg.conditional(), labels) {
            (true, Some(l)) => Tensor::cat(&[z, &one_hot(l, self.cfg.n_classes, z.dtype())?], 1)?,
            (false, None) => z.clone(),
            (true, None) => candle_core::bail!("a conditional generator needs labels"),
            (false, Some(_)) => candle_core::bail!("an unconditional generator takes no labels"),
        };
        let h = self.fc.forward(&input)?.reshape((n, g, s, s))?; // (N, g, s, s)
        let h = self.bn0.forward(&h, mode, Activation::Relu)?;
        let h = self.up1.forward(&h)?; // (N, g/2, 2s, 2s)
        let h = self.bn1.forward(&h, mode, Activation::Relu)?;
        let up2 = &self.up2;
        // (N, C, 4s, 4s), tanh fused into the last convolution
        ops::conv_transpose2d_act(&h, &up2.weight, Some(&up2.bias), 2, 1, 0, Activation::Tanh)
    }
}

/// The discriminator (or WGAN critic): an image (and its label) to one score.
#[derive(Clone, Debug)]
pub struct Discriminator {
    cfg: GanConfig,
    c1: Conv2d,
    c2: Conv2d,
    bn2: Option<BatchNorm2d>,
    fc: Linear,
}

impl Discriminator {
    pub fn new(cfg: &GanConfig, vb: VarBuilder) -> Result<Self> {
        let (d, s) = (cfg.d_channels, cfg.base_size());
        Ok(Self {
            cfg: cfg.clone(),
            c1: Conv2d::new(cfg.image_channels + cfg.n_classes, d, 4, 2, 1, vb.pp("c1"))?,
            c2: Conv2d::new(d, 2 * d, 4, 2, 1, vb.pp("c2"))?,
            bn2: match cfg.d_norm {
                DNorm::Batch => Some(BatchNorm2d::new(2 * d, vb.pp("bn2"))?),
                DNorm::None => None,
            },
            fc: Linear::new(2 * d * s * s, 1, true, WeightLayout::OutIn, vb.pp("fc"))?,
        })
    }

    /// The image with its label planes appended, as the first convolution sees it.
    fn input(&self, x: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        match (self.cfg.conditional(), labels) {
            (true, Some(l)) => {
                let (n, _, h, w) = x.dims4()?;
                let planes = one_hot(l, self.cfg.n_classes, x.dtype())?
                    .reshape((n, self.cfg.n_classes, 1, 1))?
                    .broadcast_as((n, self.cfg.n_classes, h, w))?;
                Tensor::cat(&[x, &planes], 1) // (N, C + classes, H, W)
            }
            (false, None) => Ok(x.clone()),
            (true, None) => candle_core::bail!("a conditional discriminator needs labels"),
            (false, Some(_)) => {
                candle_core::bail!("an unconditional discriminator takes no labels")
            }
        }
    }

    /// `leaky_relu(conv1(input))` as one fused op.
    fn conv1_leaky(&self, input: &Tensor) -> Result<Tensor> {
        let c1 = &self.c1;
        let act = Activation::LeakyRelu(LEAKY_SLOPE as f32);
        ops::conv2d_act(
            input,
            &c1.weight,
            Some(&c1.bias),
            c1.stride,
            c1.padding,
            act,
        )
    }

    /// Scores: logits of "real" for a DCGAN, critic values for a WGAN.
    ///
    /// # Shapes
    /// `x`: (N, C, S, S), `labels`: (N) u32 -> (N).
    pub fn forward(&self, x: &Tensor, labels: Option<&Tensor>, mode: NormMode) -> Result<Tensor> {
        let n = x.dim(0)?;
        let input = self.input(x, labels)?;
        let h1 = self.conv1_leaky(&input)?; // (N, d, 2s, 2s)
        let a2 = self.c2.forward(&h1)?; // (N, 2d, s, s)
        let h2 = match &self.bn2 {
            Some(bn) => bn.forward(&a2, mode, Activation::LeakyRelu(LEAKY_SLOPE as f32))?,
            None => ops::leaky_relu(&a2, LEAKY_SLOPE)?,
        };
        self.fc.forward(&h2.reshape((n, ()))?)?.squeeze(1) // (N)
    }

    /// The gradient of each sample's score with respect to its image, `d D(x)_n / d x_n`,
    /// built from differentiable ops so that a loss on it (WGAN-GP's gradient penalty) can be
    /// back-propagated to the weights. Only for a critic without batch norm.
    ///
    /// candle's backward detaches the gradients it produces (second derivatives need the
    /// `CANDLE_GRAD_DO_NOT_DETACH` switch, which reaches neither the fused kernels nor the
    /// custom ops), so the chain rule is written out: with `m_i = leaky'(a_i)`, constants
    /// almost everywhere, and `Wfc` the final weight,
    ///
    /// ```text
    /// g2 = Wfc (as (N, 2d, s, s)) * m2
    /// g1 = conv_transpose2d(g2, W2) * m1
    /// dx = conv_transpose2d(g1, W1[:, :C])
    /// ```
    ///
    /// which is the exact gradient (the masks' own derivative is zero wherever it exists, as in
    /// PyTorch's double backward through `leaky_relu`).
    ///
    /// # Shapes
    /// `x`: (N, C, S, S), `labels`: (N) -> (N, C, S, S).
    pub fn input_gradient(&self, x: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        if self.bn2.is_some() {
            candle_core::bail!(
                "the input gradient is only defined here for a critic without batch norm (d_norm = none)"
            )
        }
        let input = self.input(&x.detach(), labels)?;
        let (n, _, h, w) = input.dims4()?;
        let (d, s) = (self.cfg.d_channels, self.cfg.base_size());
        // The activation masks, without a graph (leaky ReLU keeps the sign of its input).
        let h1 = self.conv1_leaky(&input)?.detach(); // (N, d, 2s, 2s)
        let a2 = self.c2.forward(&h1)?.detach(); // (N, 2d, s, s)
        let (m1, m2) = (leaky_slope_mask(&h1)?, leaky_slope_mask(&a2)?);
        let wfc = self.fc.weight.reshape((1, 2 * d, s, s))?; // (1, 2d, s, s), OutIn with out = 1
        let g2 = m2.broadcast_mul(&wfc)?; // (N, 2d, s, s)
        let op2 = output_padding(h1.dim(2)?, s, &self.c2)?;
        let g1 = (ops::conv_transpose2d(&g2, &self.c2.weight, None, 2, 1, op2)? * m1)?; // (N, d, 2s, 2s)
        let w1 = self.c1.weight.narrow(1, 0, self.cfg.image_channels)?; // (d, C, 4, 4)
        let op1 = output_padding(h, h1.dim(2)?, &self.c1)?;
        let dx = ops::conv_transpose2d(&g1, &w1, None, 2, 1, op1)?; // (N, C, H, W)
        debug_assert_eq!(dx.dims(), &[n, self.cfg.image_channels, h, w]);
        Ok(dx)
    }
}

/// `1` where `a > 0`, [`LEAKY_SLOPE`] elsewhere (the derivative of leaky ReLU).
fn leaky_slope_mask(a: &Tensor) -> Result<Tensor> {
    let pos = a.gt(0f64)?.to_dtype(a.dtype())?;
    pos.affine(1.0 - LEAKY_SLOPE, LEAKY_SLOPE)
}

/// The output padding that makes a transposed convolution of a `grid`-sized map return the
/// `image`-sized input of `conv`.
fn output_padding(image: usize, grid: usize, conv: &Conv2d) -> Result<usize> {
    let k = conv.weight.dim(3)?;
    let base = (grid - 1) * conv.stride + k;
    match (image + 2 * conv.padding).checked_sub(base) {
        Some(op) if op < conv.stride.max(1) => Ok(op),
        _ => candle_core::bail!("cannot invert a convolution from {image} to {grid}"),
    }
}

/// One-hot rows.
///
/// # Shapes
/// `labels`: (N) u32 -> (N, classes).
pub fn one_hot(labels: &Tensor, classes: usize, dtype: DType) -> Result<Tensor> {
    let ids = labels.to_dtype(DType::U32)?;
    let n = ids.dim(0)?;
    let classes_t = Tensor::arange(0u32, classes as u32, labels.device())?.reshape((1, classes))?;
    ids.reshape((n, 1))?
        .broadcast_eq(&classes_t)?
        .to_dtype(dtype)
}

/// DCGAN's initialisation: weights of convolutions and linear layers N(0, 0.02), biases 0,
/// batch-norm scale 1, shift 0, running mean 0, running variance 1.
pub fn dcgan_init(name: &str, _dims: &[usize]) -> Init {
    if name.ends_with("running_var") {
        return Init::Const(1.0);
    }
    if name.ends_with("running_mean") || name.ends_with("bias") {
        return Init::Const(0.0);
    }
    let is_bn = name
        .rsplit('.')
        .nth(1)
        .is_some_and(|layer| layer.starts_with("bn"));
    if is_bn {
        Init::Const(1.0)
    } else {
        Init::Normal(0.02)
    }
}

/// Trainable parameters of G and D: (generator, discriminator).
pub fn parameter_counts(cfg: &GanConfig) -> (usize, usize) {
    let (g, s, z, c, k) = (
        cfg.g_channels,
        cfg.base_size(),
        cfg.z_dim,
        cfg.image_channels,
        cfg.n_classes,
    );
    let generator = (z + k) * g * s * s + g * s * s // fc
        + 2 * g // bn0
        + g * (g / 2) * 16 + g / 2 // up1
        + 2 * (g / 2) // bn1
        + (g / 2) * c * 16 + c; // up2
    let d = cfg.d_channels;
    let bn = if cfg.d_norm == DNorm::Batch {
        2 * 2 * d
    } else {
        0
    };
    let dis = (c + k) * d * 16 + d // c1
        + d * 2 * d * 16 + 2 * d // c2
        + bn
        + 2 * d * s * s + 1; // fc
    (generator, dis)
}

/// Mean of `sigmoid(logits)`: the discriminator's average belief that its inputs are real.
pub fn mean_probability(logits: &Tensor) -> Result<f64> {
    candle_nn::ops::sigmoid(logits)?
        .mean_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()
}
