//! Cross-attention from the pixels of a feature map to a sequence of text-token states, with a
//! residual connection: how a text-to-image U-Net reads its prompt (Rombach et al. 2022,
//! "High-Resolution Image Synthesis with Latent Diffusion Models"). Queries come from the
//! normalised feature map through a 1x1 convolution, keys and values from the token states
//! through one linear layer; padded tokens are masked out. Tensor names `norm`, `q`, `kv`,
//! `out`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::Conv2d;
use super::{GroupNorm, Linear};
use crate::nn::ops::{self, WeightLayout};

/// Added to the scores of padding tokens: large enough that softmax gives them nothing, finite
/// so a row of padding alone cannot produce NaN.
const MASKED: f64 = -1e9;

/// The text a feature map attends to.
#[derive(Clone, Debug)]
pub struct TextContext {
    /// One state per token. (N, L, D).
    pub states: Tensor,
    /// 1 for real tokens, 0 for padding. (N, L) f32.
    pub mask: Tensor,
}

impl TextContext {
    /// The masked mean of the token states (mean pooling, as sentence encoders pool).
    ///
    /// # Shapes
    /// -> (N, D).
    pub fn pooled(&self) -> Result<Tensor> {
        let m = self.mask.unsqueeze(2)?; // (N, L, 1)
        let sum = self.states.broadcast_mul(&m)?.sum(1)?; // (N, D)
        let count = m.sum(1)?.clamp(1f32, f32::MAX)?; // (N, 1)
        sum.broadcast_div(&count)
    }

    /// [`TextContext::pooled`] scaled to norm `sqrt(D)`: the direction of sentence-transformers'
    /// sentence embedding, with components of unit variance on average. Every prompt's mean
    /// shares a large offset (norm about 6 for all-minilm-l6-v2 against 4 to 6 between two
    /// prompts); on the unit sphere the prompts lie about three times as far apart for a
    /// layer that sees them.
    ///
    /// # Shapes
    /// -> (N, D).
    pub fn pooled_unit(&self) -> Result<Tensor> {
        let p = self.pooled()?; // (N, D)
        let d = p.dim(1)? as f64;
        let norm = p.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?; // (N, 1)
        p.broadcast_div(&norm)? * d.sqrt()
    }

    /// The additive attention bias: 0 for real tokens, [`MASKED`] for padding.
    ///
    /// # Shapes
    /// -> (N, 1, 1, L).
    fn bias(&self) -> Result<Tensor> {
        let (n, l) = self.mask.dims2()?;
        (self.mask.reshape((n, 1, 1, l))? - 1.0)? * -MASKED
    }

    /// Rows `[self; other]`, padded to the longer sequence (for one batched guided call).
    pub fn concat(&self, other: &TextContext) -> Result<TextContext> {
        let l = self.states.dim(1)?.max(other.states.dim(1)?);
        let pad = |c: &TextContext| -> Result<TextContext> {
            let extra = l - c.states.dim(1)?;
            Ok(TextContext {
                states: c.states.pad_with_zeros(1, 0, extra)?,
                mask: c.mask.pad_with_zeros(1, 0, extra)?,
            })
        };
        let (a, b) = (pad(self)?, pad(other)?);
        Ok(TextContext {
            states: Tensor::cat(&[&a.states, &b.states], 0)?,
            mask: Tensor::cat(&[&a.mask, &b.mask], 0)?,
        })
    }
}

/// `x + out(attention(q(norm(x)), kv(text)))` over the H * W positions.
#[derive(Clone, Debug)]
pub struct SpatialCrossAttention {
    pub norm: GroupNorm,
    pub q: Conv2d,
    pub kv: Linear,
    pub out: Conv2d,
    pub heads: usize,
}

impl SpatialCrossAttention {
    pub fn new(
        channels: usize,
        context_dim: usize,
        heads: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        if heads == 0 || !channels.is_multiple_of(heads) {
            candle_core::bail!("attention: {channels} channels do not split into {heads} heads")
        }
        Ok(Self {
            norm: GroupNorm::new(groups, channels, vb.pp("norm"))?,
            q: Conv2d::new(channels, channels, 1, 1, 0, vb.pp("q"))?,
            kv: Linear::new(
                context_dim,
                2 * channels,
                true,
                WeightLayout::OutIn,
                vb.pp("kv"),
            )?,
            out: Conv2d::new(channels, channels, 1, 1, 0, vb.pp("out"))?,
            heads,
        })
    }

    /// # Shapes
    /// `x`: (N, C, H, W), `text`: states (N, L, D) and mask (N, L) -> (N, C, H, W).
    pub fn forward(&self, x: &Tensor, text: &TextContext) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let l = text.states.dim(1)?;
        let (nh, hs) = (self.heads, c / self.heads);
        let q = self
            .q
            .forward(&self.norm.forward(x)?)?
            .reshape((n, nh, hs, h * w))?
            .transpose(2, 3)?
            .contiguous()?; // (N, nh, HW, hs)
        let kv = self.kv.forward(&text.states)?.reshape((n, l, 2, nh, hs))?; // (N, L, 2, nh, hs)
        let part = |i: usize| kv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2); // (N, nh, L, hs)
        let kt = part(0)?.transpose(2, 3)?.contiguous()?; // (N, nh, hs, L)
        let v = part(1)?.contiguous()?; // (N, nh, L, hs)
        let scores = q.matmul(&kt)?; // (N, nh, HW, L)
        let scale = 1.0 / (hs as f64).sqrt();
        let att = ops::softmax_last_dim_scaled(&scores, scale, Some(&text.bias()?))?;
        let y = att.matmul(&v)?; // (N, nh, HW, hs)
        let y = y.transpose(2, 3)?.reshape((n, c, h, w))?; // (N, C, H, W)
        x + self.out.forward(&y)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn layer(dev: &Device) -> (SpatialCrossAttention, VarMap) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
        let layer = SpatialCrossAttention::new(8, 6, 2, 4, vb).unwrap();
        crate::nn::init_varmap(&varmap, 3, |_, _| crate::nn::Init::Normal(0.3)).unwrap();
        (layer, varmap)
    }

    /// Unit pooling: norm sqrt(D) for every row, blind to the scale of the states, and the
    /// direction of the masked mean.
    #[test]
    fn unit_pooling_has_norm_sqrt_d() {
        let dev = Device::Cpu;
        let states = Tensor::randn(0f32, 1., (2, 3, 6), &dev).unwrap();
        let mask = Tensor::new(&[[1f32, 1., 0.], [1., 1., 1.]], &dev).unwrap();
        let ctx = |states: Tensor| TextContext {
            states,
            mask: mask.clone(),
        };
        let unit = ctx(states.clone()).pooled_unit().unwrap();
        let norms: Vec<f32> = unit
            .sqr()
            .unwrap()
            .sum(1)
            .unwrap()
            .sqrt()
            .unwrap()
            .to_vec1()
            .unwrap();
        for n in norms {
            assert!((n - 6f32.sqrt()).abs() < 1e-5, "norm {n}");
        }
        let scaled = ctx((states.clone() * 7.0).unwrap()).pooled_unit().unwrap();
        let diff = (&unit - &scaled).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        let mean = ctx(states).pooled().unwrap();
        let cos = (mean.broadcast_mul(&unit).unwrap().sum(1).unwrap()
            / (mean.sqr().unwrap().sum(1).unwrap().sqrt().unwrap() * 6f64.sqrt()).unwrap())
        .unwrap();
        for c in cos.to_vec1::<f32>().unwrap() {
            assert!((c - 1.0).abs() < 1e-5, "cosine {c}");
        }
    }

    /// What padding holds never reaches the output, and a batch row equals the same text alone.
    #[test]
    fn padding_is_ignored() {
        let dev = Device::Cpu;
        let (layer, _vm) = layer(&dev);
        let x = Tensor::randn(0f32, 1., (1, 8, 3, 3), &dev).unwrap();
        let states = Tensor::randn(0f32, 1., (1, 2, 6), &dev).unwrap();
        let short = TextContext {
            states: states.clone(),
            mask: Tensor::ones((1, 2), DType::F32, &dev).unwrap(),
        };
        let junk = Tensor::randn(0f32, 5., (1, 3, 6), &dev).unwrap();
        let padded = TextContext {
            states: Tensor::cat(&[&states, &junk], 1).unwrap(),
            mask: Tensor::new(&[[1f32, 1., 0., 0., 0.]], &dev).unwrap(),
        };
        let a = layer.forward(&x, &short).unwrap();
        let b = layer.forward(&x, &padded).unwrap();
        let diff = (a - &b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        // Pooling ignores padding too.
        let pa = short.pooled().unwrap();
        let pb = padded.pooled().unwrap();
        let d = (pa - pb).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        // concat pads the shorter text; its rows give the same outputs.
        let both = short.concat(&padded).unwrap();
        let xx = Tensor::cat(&[&x, &x], 0).unwrap();
        let y = layer.forward(&xx, &both).unwrap();
        let d = (y.narrow(0, 0, 1).unwrap() - &b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
    }

    /// The text changes the output (the layer is not a no-op), and gradients reach `kv`.
    #[test]
    fn text_reaches_the_output_and_gradients_flow() {
        let dev = Device::Cpu;
        let (layer, vm) = layer(&dev);
        let x = Tensor::randn(0f32, 1., (1, 8, 3, 3), &dev).unwrap();
        let ctx = |s| TextContext {
            states: Tensor::randn(0f32, s, (1, 4, 6), &dev).unwrap(),
            mask: Tensor::ones((1, 4), DType::F32, &dev).unwrap(),
        };
        let a = layer.forward(&x, &ctx(1.0)).unwrap();
        let b = layer.forward(&x, &ctx(1.0)).unwrap();
        let d = (&a - &b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() > 1e-4);
        let grads = a.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let data = vm.data().lock().unwrap();
        let g = grads
            .get(data["kv.weight"].as_tensor())
            .expect("kv gets a gradient");
        assert!(
            g.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        );
    }
}
