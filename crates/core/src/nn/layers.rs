//! Parameter-holding layers: `Linear`, `LayerNorm`, `RmsNorm`, `Embedding`.
//!
//! Each is built with `new(.., vb)` so the same constructor makes fresh weights (a `VarMap`)
//! or loads saved ones (safetensors), and each forward calls the fused op from [`super::ops`].

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::ops::{self, WeightLayout};

/// A dense layer `y = x W (+ b)`.
///
/// `layout` follows the checkpoint format: GPT-2 stores `(in, out)` (its `Conv1D`),
/// `nn.Linear`-style models store `(out, in)`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub layout: WeightLayout,
    /// A LoRA adapter added to the output (see [`super::lora`]); `None` for plain layers.
    pub lora: Option<super::lora::Lora>,
}

impl Linear {
    /// Creates `weight` (and `bias` when asked) under `vb`.
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        layout: WeightLayout,
        vb: VarBuilder,
    ) -> Result<Self> {
        let shape = match layout {
            WeightLayout::InOut => (in_dim, out_dim),
            WeightLayout::OutIn => (out_dim, in_dim),
        };
        let weight = vb.get(shape, "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        let lora = super::lora::attach(&vb, in_dim, out_dim, layout)?;
        Ok(Self {
            weight,
            bias,
            layout,
            lora,
        })
    }

    /// # Shapes
    /// `x`: (N, in) -> (N, out). Leading dimensions other than one are flattened and restored.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims
            .last()
            .expect("linear input has at least one dimension");
        let x2 = x.reshape(((), in_dim))?; // (N, in)
        let y = match &self.lora {
            None => ops::linear(&x2, &self.weight, self.bias.as_ref(), self.layout)?,
            Some(lora) => {
                lora.forward_adapted(&x2, &self.weight, self.bias.as_ref(), self.layout)?
            }
        }; // (N, out)
        let mut out_dims = dims;
        *out_dims.last_mut().expect("non-empty") = y.dim(1)?;
        y.reshape(out_dims)
    }
}

/// Layer normalisation over the last dimension, with optional bias.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, bias: bool, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        let bias = if bias {
            Some(vb.get(dim, "bias")?)
        } else {
            None
        };
        Ok(Self { weight, bias, eps })
    }
}

impl Module for LayerNorm {
    /// # Shapes
    /// `x`: (..., C) -> (..., C).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, self.bias.as_ref(), self.eps)
    }
}

/// Root-mean-square normalisation (Llama), weight only.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }
}

impl Module for RmsNorm {
    /// # Shapes
    /// `x`: (..., C) -> (..., C).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::rms_norm(x, &self.weight, self.eps)
    }
}

/// A lookup table of `n` vectors of width `dim`.
#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(n: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get((n, dim), "weight")?,
        })
    }

    /// # Shapes
    /// `ids`: (B, T) u32 -> (B, T, dim).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let dim = self.weight.dim(1)?;
        let flat = ids.flatten_all()?;
        self.weight.index_select(&flat, 0)?.reshape((b, t, dim)) // (B, T, dim)
    }
}
