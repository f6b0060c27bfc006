//! Convolution layers for the image models (`torch.nn.Conv2d` / `ConvTranspose2d` with
//! PyTorch's tensor names and shapes) and PyTorch's default initialisation.
//!
//! Forwards go through the fused CPU kernels of [`crate::nn::ops::conv2d`] /
//! [`crate::nn::ops::conv_transpose2d`] (candle's own convolutions elsewhere).

use std::collections::HashMap;

use candle_core::{Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::nn::Init;
use crate::nn::ops;

/// A 2-D convolution, weight (out, in, k, k) and bias (out).
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    pub fn new(
        in_c: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        padding: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out_c, in_c, k, k), "weight")?,
            bias: vb.get(out_c, "bias")?,
            stride,
            padding,
        })
    }

    /// # Shapes
    /// `x`: (N, in, H, W) -> (N, out, (H + 2p - k) / s + 1, ...).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv2d(x, &self.weight, Some(&self.bias), self.stride, self.padding)
    }

    /// `forward(x)` plus `shift` per sample and channel (a U-Net's time embedding), added with
    /// the bias inside the one op: a broadcast add after the convolution would cost a pass over
    /// the output each way and a reduction over its planes in the backward pass.
    ///
    /// # Shapes
    /// `x`: (N, in, H, W), `shift`: (N, out) -> as [`Conv2d::forward`].
    pub fn forward_shifted(&self, x: &Tensor, shift: &Tensor) -> Result<Tensor> {
        let bias = shift.broadcast_add(&self.bias)?; // (N, out)
        ops::conv2d(x, &self.weight, Some(&bias), self.stride, self.padding)
    }
}

/// A 2-D transposed convolution, weight (in, out, k, k) and bias (out).
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub stride: usize,
    pub padding: usize,
    pub output_padding: usize,
}

impl ConvTranspose2d {
    pub fn new(
        in_c: usize,
        out_c: usize,
        k: usize,
        (stride, padding, output_padding): (usize, usize, usize),
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            weight: vb.get((in_c, out_c, k, k), "weight")?,
            bias: vb.get(out_c, "bias")?,
            stride,
            padding,
            output_padding,
        })
    }

    /// # Shapes
    /// `x`: (N, in, H, W) -> (N, out, (H - 1) s - 2p + k + output_padding, ...).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv_transpose2d(
            x,
            &self.weight,
            Some(&self.bias),
            self.stride,
            self.padding,
            self.output_padding,
        )
    }
}

/// PyTorch's default initialisation of `nn.Linear`, `nn.Conv2d` and `nn.ConvTranspose2d`
/// (`kaiming_uniform_(a=sqrt(5))`): weights and biases Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
/// with `fan_in = prod(weight.shape[1:])`, the bias taking its weight's fan-in. For
/// [`crate::nn::init_varmap`].
pub fn torch_default_init(varmap: &VarMap) -> impl Fn(&str, &[usize]) -> Init + use<> {
    let fan_in: HashMap<String, usize> = {
        let data = varmap.data().lock().expect("varmap lock is never poisoned");
        data.iter()
            .filter_map(|(name, v)| {
                let prefix = name.strip_suffix(".weight")?;
                Some((prefix.to_string(), v.dims()[1..].iter().product()))
            })
            .collect()
    };
    move |name: &str, dims: &[usize]| {
        let fan = match name.strip_suffix(".bias") {
            Some(prefix) => fan_in.get(prefix).copied().unwrap_or(dims[0]),
            None => dims[1..].iter().product::<usize>().max(1),
        };
        Init::Uniform(1.0 / (fan.max(1) as f64).sqrt())
    }
}
