//! The fused ops composed from plain candle tensor ops: what runs on CUDA (and for non-F32
//! dtypes), and the baseline that tests and benchmarks compare the fused kernels against.
//!
//! Every function here only uses ops that candle implements, with backward, on every backend.
//! F16/BF16 inputs to the normalisations and the loss are computed in F32 and cast back.

use candle_core::{D, DType, Result, Tensor, Var};

use super::{AdamWHyper, GeluKind, IGNORE_INDEX, LoraUpdate, WeightLayout};
use crate::nn::dropout::KeepMask;

/// Upcasts half-precision tensors to F32 for reductions.
fn widen(x: &Tensor) -> Result<Tensor> {
    match x.dtype() {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32),
        _ => Ok(x.clone()),
    }
}

/// See [`super::layer_norm()`].
///
/// # Shapes
/// `x`: (..., C), `weight`: (C), `bias`: (C) -> (..., C).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let c = x.dim(D::Minus1)? as f64;
    let xw = widen(x)?;
    let mean = (xw.sum_keepdim(D::Minus1)? / c)?;
    let xc = xw.broadcast_sub(&mean)?;
    let var = (xc.sqr()?.sum_keepdim(D::Minus1)? / c)?;
    let xhat = xc
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .to_dtype(x.dtype())?;
    let y = xhat.broadcast_mul(weight)?;
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// See [`super::rms_norm()`].
///
/// # Shapes
/// `x`: (..., C), `weight`: (C) -> (..., C).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let c = x.dim(D::Minus1)? as f64;
    let xw = widen(x)?;
    let ms = (xw.sqr()?.sum_keepdim(D::Minus1)? / c)?;
    let xhat = xw
        .broadcast_div(&(ms + eps)?.sqrt()?)?
        .to_dtype(x.dtype())?;
    xhat.broadcast_mul(weight)
}

/// See [`super::causal_self_attention`].
///
/// # Shapes
/// `qkv`: (B, T, 3C) -> (B, T, C).
pub fn causal_self_attention(qkv: &Tensor, n_head: usize) -> Result<Tensor> {
    let (b, t, c3) = qkv.dims3()?;
    let c = c3 / 3;
    let hs = c / n_head;
    let head = |i: usize| -> Result<Tensor> {
        qkv.narrow(2, i * c, c)?
            .reshape((b, t, n_head, hs))?
            .transpose(1, 2)?
            .contiguous() // (B, nh, T, hs)
    };
    let (q, k, v) = (head(0)?, head(1)?, head(2)?);
    let att = (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (hs as f64).sqrt()))?; // (B, nh, T, T)
    let mask: Vec<f32> = (0..t * t)
        .map(|i| {
            if i % t > i / t {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (t, t), qkv.device())?.to_dtype(qkv.dtype())?;
    let att = candle_nn::ops::softmax(&att.broadcast_add(&mask)?, D::Minus1)?;
    let y = att.matmul(&v)?; // (B, nh, T, hs)
    y.transpose(1, 2)?.reshape((b, t, c)) // (B, T, C)
}

/// See [`super::linear()`].
///
/// # Shapes
/// `x`: (..., in), `w`: (in, out) or (out, in), `b`: (out) -> (..., out).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, layout: WeightLayout) -> Result<Tensor> {
    let w_io = match layout {
        WeightLayout::InOut => w.clone(),
        WeightLayout::OutIn => w.t()?,
    }; // (in, out)
    let mut dims = x.dims().to_vec();
    let in_dim = x.dim(D::Minus1)?;
    let y = x.reshape(((), in_dim))?.matmul(&w_io)?; // (N, out)
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    if let Some(last) = dims.last_mut() {
        *last = w_io.dim(1)?;
    }
    y.reshape(dims)
}

/// See [`super::lora_linear()`]: the base layer plus dropout, two rank-r products and a scale.
///
/// # Shapes
/// `x`: (..., in), `w`: (in, out) or (out, in), `bias`: (out), `A`: (r, in), `B`: (out, r)
/// -> (..., out).
pub fn lora_linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    layout: WeightLayout,
    update: LoraUpdate,
    mask: Option<&KeepMask>,
) -> Result<Tensor> {
    lora_composed(x, w, bias, layout, update, mask, linear)
}

/// [`lora_linear`] with the linear layer `lin` (this module's, or the fused one where only
/// the base weight's gradient keeps the adapted layer from fusing).
pub(crate) fn lora_composed(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    layout: WeightLayout,
    update: LoraUpdate,
    mask: Option<&KeepMask>,
    lin: fn(&Tensor, &Tensor, Option<&Tensor>, WeightLayout) -> Result<Tensor>,
) -> Result<Tensor> {
    let y = lin(x, w, bias, layout)?; // (..., out)
    let xd = match mask {
        Some(m) => dropout(x, m)?,
        None => x.clone(),
    }; // (..., in)
    let h = lin(&xd, update.a, None, WeightLayout::OutIn)?; // (..., r)
    let u = lin(&h, update.b, None, WeightLayout::OutIn)?; // (..., out)
    y + (u * update.scale)?
}

/// See [`super::dropout()`]: the product with the float mask.
///
/// # Shapes
/// `x`: any, with `mask.len()` elements -> same shape.
pub fn dropout(x: &Tensor, mask: &KeepMask) -> Result<Tensor> {
    x.mul(&mask.to_tensor(x)?)
}

/// See [`super::softmax_last_dim()`]: candle's differentiable softmax.
///
/// # Shapes
/// `x`: (..., N) -> same shape.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}

/// See [`super::softmax_last_dim_scaled()`]: the scaling, the bias and candle's softmax.
///
/// # Shapes
/// `x`: (..., N); `bias`: broadcastable to `x` -> the shape of `x`.
pub fn softmax_last_dim_scaled(x: &Tensor, scale: f64, bias: Option<&Tensor>) -> Result<Tensor> {
    let z = (x * scale)?;
    let z = match bias {
        Some(b) => z.broadcast_add(&b.detach())?,
        None => z,
    };
    softmax_last_dim(&z)
}

/// See [`super::gelu()`]: candle's own GELU ops.
///
/// # Shapes
/// `x`: any -> same shape.
pub fn gelu(x: &Tensor, kind: GeluKind) -> Result<Tensor> {
    match kind {
        GeluKind::Erf => x.gelu_erf(),
        GeluKind::Tanh => x.gelu(),
    }
}

/// See [`super::swiglu()`]: SiLU of the gate times the up projection.
///
/// # Shapes
/// `gate`, `up`: the same shape -> that shape.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.silu()? * up
}

/// See [`super::cross_entropy()`]: log-softmax, gather, masked mean.
///
/// # Shapes
/// `logits`: (N, V), `targets`: (N) u32 -> scalar ().
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let n = targets.dims1()?;
    let ignore = Tensor::full(IGNORE_INDEX, n, targets.device())?;
    let keep = targets.ne(&ignore)?; // (N) u8
    let safe = keep.where_cond(targets, &targets.zeros_like()?)?;
    let logp = candle_nn::ops::log_softmax(&widen(logits)?, D::Minus1)?; // (N, V)
    let picked = logp.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?; // (N)
    let keep = keep.to_dtype(picked.dtype())?;
    let count = keep.sum_all()?.maximum(1.0)?;
    let loss = (picked * keep)?.sum_all()?.neg()?.div(&count)?;
    loss.to_dtype(logits.dtype())
}

/// See [`super::adamw_update`]: the same step from tensor ops, written back with `Var::set`.
pub fn adamw_update(param: &Var, grad: &Tensor, m: &Var, v: &Var, h: &AdamWHyper) -> Result<()> {
    let t = h.step.min(i32::MAX as u64) as i32;
    let (bc1, bc2) = (1.0 - h.beta1.powi(t), 1.0 - h.beta2.powi(t));
    let g = grad.detach();
    let m_new = ((m.as_detached_tensor() * h.beta1)? + (&g * (1.0 - h.beta1))?)?;
    let v_new = ((v.as_detached_tensor() * h.beta2)? + (g.sqr()? * (1.0 - h.beta2))?)?;
    let denom = ((v_new.sqrt()? / bc2.sqrt())? + h.eps)?;
    let p_decayed = (param.as_detached_tensor() * (1.0 - h.lr * h.weight_decay))?;
    let p_new = (p_decayed - ((&m_new / &denom)? * (h.lr / bc1))?)?;
    m.set(&m_new)?;
    v.set(&v_new)?;
    param.set(&p_new)
}

/// Nearest-neighbour upsampling by 2 as a broadcast and a reshape, so that its backward (a sum
/// over each 2x2 block) comes from autograd. (candle's `upsample_nearest2d` backward
/// overwrites instead of accumulating the gradient of its input and runs a grouped
/// convolution.)
///
/// # Shapes
/// `x`: (N, C, H, W) -> (N, C, 2H, 2W).
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h, 1, w, 1))?
        .broadcast_as((n, c, h, 2, w, 2))? // (N, C, H, 2, W, 2)
        .reshape((n, c, 2 * h, 2 * w)) // (N, C, 2H, 2W)
}
