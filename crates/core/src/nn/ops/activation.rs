//! Element-wise activations (ReLU, leaky ReLU, tanh) as one op each way.
//!
//! candle's ReLU backward builds four tensors per call (zeros, a comparison, its cast to f32,
//! the product) before summing the gradient in; here the backward is one pass that reads the
//! op's output. The same [`Activation`] is fused into the batch-norm and convolution kernels.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::cpu::{CpuRead, f32_slice, map_chunks, tensor};
use super::fast_path;
use super::math::{NoFma, tanh};

/// Elements per task of the parallel passes.
const PER_TASK: usize = 64 * 1024;

/// `act(x)`, element-wise, with a one-pass backward.
///
/// # Shapes
/// any -> same.
pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    let valid = !matches!(act, Activation::LeakyRelu(s) if s <= 0.0);
    if !fast_path(&[x]) || !valid || act == Activation::Identity {
        return act.reference(x);
    }
    x.contiguous()?.apply_op1(ActivationOp { act })
}

/// `max(x, 0)`: [`activation`] with [`Activation::Relu`].
pub fn relu(x: &Tensor) -> Result<Tensor> {
    activation(x, Activation::Relu)
}

/// Leaky ReLU, `x` for `x > 0` and `slope * x` otherwise: [`activation`] with
/// [`Activation::LeakyRelu`] (candle's composed ops for a slope that is not positive).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    activation(x, Activation::LeakyRelu(slope as f32))
}

/// An element-wise activation: alone ([`activation`]) or fused after a normalisation or a
/// convolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Identity,
    Relu,
    /// `x` for `x > 0`, `slope * x` otherwise (slope > 0).
    LeakyRelu(f32),
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// `out[i] = act(src[i] * scale + shift)`. The match on the activation sits outside the
    /// loop, so each arm is a plain loop the compiler vectorises (measured: the per-element
    /// match cost several percent of a DCGAN step).
    #[inline]
    pub(crate) fn apply_slice(
        self,
        src: &[f32],
        scale: f32,
        shift: f32,
        out: &mut [MaybeUninit<f32>],
    ) {
        #[inline(always)]
        fn each(src: &[f32], out: &mut [MaybeUninit<f32>], f: impl Fn(f32) -> f32) {
            for (o, &v) in out.iter_mut().zip(src) {
                o.write(f(v));
            }
        }
        let lin = move |v: f32| v * scale + shift;
        match self {
            Activation::Identity => each(src, out, lin),
            Activation::Relu => each(src, out, |v| lin(v).max(0.0)),
            Activation::LeakyRelu(s) => each(src, out, |v| {
                let v = lin(v);
                if v > 0.0 { v } else { v * s }
            }),
            Activation::Tanh => each(src, out, |v| tanh::<NoFma>(lin(v))),
        }
    }

    /// `out[i] = dy[i] * act'(y[i])`, the derivative read from the activation's *output* `y`
    /// (the signs of input and output agree for the piecewise-linear ones; tanh' = 1 - tanh^2),
    /// the match hoisted as in [`Activation::apply_slice`].
    #[inline]
    pub(crate) fn grad_slice(self, dy: &[f32], y: &[f32], out: &mut [MaybeUninit<f32>]) {
        #[inline(always)]
        fn each(dy: &[f32], y: &[f32], out: &mut [MaybeUninit<f32>], f: impl Fn(f32, f32) -> f32) {
            for ((o, &d), &y) in out.iter_mut().zip(dy).zip(y) {
                o.write(f(d, y));
            }
        }
        match self {
            Activation::Identity => each(dy, y, out, |d, _| d),
            Activation::Relu => each(dy, y, out, |d, y| if y > 0.0 { d } else { 0.0 }),
            Activation::LeakyRelu(s) => each(dy, y, out, |d, y| if y > 0.0 { d } else { d * s }),
            Activation::Tanh => each(dy, y, out, |d, y| d * (1.0 - y * y)),
        }
    }

    /// [`Activation::grad_slice`] over whole tensors, split across the thread pool.
    pub(crate) fn grad(self, dy: &[f32], y: &[f32]) -> Vec<f32> {
        let dy = &dy[..dy.len().min(y.len())];
        // SAFETY: `grad_slice` writes every element of its chunk.
        unsafe {
            map_chunks(dy, PER_TASK, |i, d, o| {
                self.grad_slice(d, &y[i * PER_TASK..][..d.len()], o)
            })
        }
    }

    /// The same activation composed from candle ops.
    pub fn reference(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Identity => Ok(x.clone()),
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(s) => candle_nn::ops::leaky_relu(x, s as f64),
            Activation::Tanh => x.tanh(),
        }
    }
}

struct ActivationOp {
    act: Activation,
}

const NAME: &str = "muse-activation";

impl CustomOp1 for ActivationOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, NAME)?;
        // SAFETY: `apply_slice` writes every element of its chunk.
        let y = unsafe { map_chunks(x, PER_TASK, |_, x, y| self.act.apply_slice(x, 1.0, 0.0, y)) };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// Needs only the output (see [`Activation::grad_slice`]).
    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let (yr, dyr) = (CpuRead::new(y, NAME)?, CpuRead::new(&dy, NAME)?);
        let dx = self.act.grad(dyr.slice(), yr.slice());
        Ok(Some(tensor(dx, y.shape())?))
    }
}
