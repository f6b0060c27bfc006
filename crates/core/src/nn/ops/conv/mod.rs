//! 2-D convolution and transposed convolution (PyTorch's `conv2d` / `conv_transpose2d`,
//! dilation 1, groups 1, bias optional) as CPU kernels with their backward: im2col / col2im
//! around one `gemm` per product, over the whole batch at once.
//!
//! candle's CPU `conv_transpose2d` is a direct loop of dot products, and its backward passes
//! are built from those convolutions again (huggingface/candle#1383, #1139); a DCGAN step spent
//! most of its time there. Here both ops are one linear map read in two directions. Call the
//! spatially large side the *image* (conv2d's input, conv_transpose2d's output) and the other
//! the *grid* (one value per kernel window position). With `K = Ci * kh * kw` and the weight
//! read as a matrix `Wm` of shape (Co, K):
//!
//! ```text
//! conv2d:            grid  (Co, N*P) = Wm @ im2col(image)           (P = Hg * Wg)
//! conv_transpose2d:  image           = col2im(Wm^T @ grid (Co, N*P))
//! ```
//!
//! so each op's backward is the other op's forward plus one weight-gradient product:
//! `dWm = grid (Co, N*P) @ im2col(image)^T`. Columns hold all samples side by side
//! (`n * P + p`), so every product is one large `gemm` split across the thread pool; the grid is
//! moved between NCHW and that (C, N*P) layout by row copies.
//!
//! conv2d with a 3x3 kernel, stride 1 and padding 1 (most of a U-Net's convolutions) takes
//! Winograd's F(2x2, 3x3) instead, for its forward and its input gradient (`winograd.rs`).

mod columns;
mod geom;
mod op;
mod product;
mod winograd;

pub use winograd::FrozenWeights;

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Result, Tensor, bail};

use super::activation::Activation;
use super::biased::apply_biased;
use super::fast_path;
// For `simd_dispatch!` in the submodules, which names `super::math`.
use super::math;
use geom::Geom;
use op::ConvOp;

static FUSED: AtomicBool = AtomicBool::new(true);

/// Turns the fused convolution kernels on (the default) or off; off, [`conv2d`] and
/// [`conv_transpose2d`] run candle's own convolutions (what `muse bench gan --candle-conv`
/// measures against).
pub fn set_fused_conv(enabled: bool) {
    FUSED.store(enabled, Ordering::Relaxed);
}

/// Whether [`conv2d`] and [`conv_transpose2d`] take the fused CPU path for f32 CPU tensors.
pub fn fused_conv_enabled() -> bool {
    FUSED.load(Ordering::Relaxed)
}

/// 2-D convolution (cross-correlation, as `torch.nn.functional.conv2d`).
///
/// # Shapes
/// `x`: (N, C, H, W), `w`: (O, C, kh, kw), `b`: (O), or (N, O) for a bias per sample and
/// channel -> (N, O, Ho, Wo) with `Ho = (H + 2 * padding - kh) / stride + 1` (likewise `Wo`).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    conv2d_act(x, w, b, stride, padding, Activation::Identity)
}

/// `act(conv2d(x, w, b))` as one op: the activation is applied as the output is written and
/// its derivative (read from the output) folded into the backward.
///
/// # Shapes
/// As [`conv2d`].
pub fn conv2d_act(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
    act: Activation,
) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (o, wc, kh, kw) = w.dims4()?;
    if wc != c || stride == 0 || h + 2 * padding < kh || wd + 2 * padding < kw {
        bail!(
            "conv2d: input {:?} and weight {:?} (stride {stride}, padding {padding}) do not fit",
            x.shape(),
            w.shape()
        )
    }
    let sample_bias = check_bias(b, Some(n), o, "conv2d")?;
    let g = Geom {
        n,
        ci: c,
        hi: h,
        wi: wd,
        co: o,
        hg: (h + 2 * padding - kh) / stride + 1,
        wg: (wd + 2 * padding - kw) / stride + 1,
        kh,
        kw,
        stride,
        pad: padding,
    };
    if !use_fused(&[x, w], b) || g.empty() {
        return act.reference(&reference_conv2d(x, w, b, stride, padding)?);
    }
    apply_biased(
        x,
        w,
        b,
        ConvOp {
            g,
            transposed: false,
            act,
            sample_bias,
            weight: w.id(),
        },
    )
}

/// 2-D transposed convolution (as `torch.nn.functional.conv_transpose2d`): the gradient of
/// [`conv2d`] with respect to its input, used to upsample.
///
/// # Shapes
/// `x`: (N, C, H, W), `w`: (C, O, kh, kw), `b`: (O) -> (N, O, Ho, Wo) with
/// `Ho = (H - 1) * stride - 2 * padding + kh + output_padding` (likewise `Wo`);
/// `output_padding < stride`.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Result<Tensor> {
    conv_transpose2d_act(
        x,
        w,
        b,
        stride,
        padding,
        output_padding,
        Activation::Identity,
    )
}

/// `act(conv_transpose2d(x, w, b))` as one op (see [`conv2d_act`]).
///
/// # Shapes
/// As [`conv_transpose2d`].
pub fn conv_transpose2d_act(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
    output_padding: usize,
    act: Activation,
) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (wc, o, kh, kw) = w.dims4()?;
    let size = |len: usize, k: usize| {
        ((len.max(1) - 1) * stride + k + output_padding).checked_sub(2 * padding)
    };
    let (ho, wo) = match (size(h, kh), size(wd, kw)) {
        (Some(ho), Some(wo)) if ho > 0 && wo > 0 => (ho, wo),
        _ => bail!(
            "conv_transpose2d: input {:?} and weight {:?} (stride {stride}, padding {padding}) give \
             an empty output",
            x.shape(),
            w.shape()
        ),
    };
    if wc != c || stride == 0 || output_padding >= stride || h == 0 || wd == 0 {
        bail!(
            "conv_transpose2d: input {:?} and weight {:?} (stride {stride}, padding {padding}, \
             output_padding {output_padding}) do not fit",
            x.shape(),
            w.shape()
        )
    }
    check_bias(b, None, o, "conv_transpose2d")?;
    let g = Geom {
        n,
        ci: o,
        hi: ho,
        wi: wo,
        co: c,
        hg: h,
        wg: wd,
        kh,
        kw,
        stride,
        pad: padding,
    };
    if !use_fused(&[x, w], b) || g.empty() {
        let y = reference_conv_transpose2d(x, w, b, stride, padding, output_padding)?;
        return act.reference(&y);
    }
    apply_biased(
        x,
        w,
        b,
        ConvOp {
            g,
            transposed: true,
            act,
            sample_bias: false,
            weight: w.id(),
        },
    )
}

/// candle's `conv2d` plus a broadcast bias: the path for CUDA, other dtypes and
/// [`set_fused_conv`]`(false)`.
pub fn reference_conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let y = x.conv2d(w, padding, stride, 1, 1)?;
    add_bias(y, b)
}

/// candle's `conv_transpose2d` plus a broadcast bias (see [`reference_conv2d`]).
pub fn reference_conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Result<Tensor> {
    let y = x.conv_transpose2d(w, padding, output_padding, stride, 1)?;
    add_bias(y, b)
}

/// `y` (N, O, H, W) plus a bias (O) or (N, O).
fn add_bias(y: Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    match b {
        Some(b) if b.rank() == 2 => y.broadcast_add(&b.unsqueeze(2)?.unsqueeze(3)?),
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// Checks a bias's shape: (O), or (N, O) with one row per sample where the op takes that
/// (`samples` is N). Returns whether it is a bias per sample.
fn check_bias(b: Option<&Tensor>, samples: Option<usize>, o: usize, op: &str) -> Result<bool> {
    let Some(b) = b else { return Ok(false) };
    match (b.dims(), samples) {
        (&[len], _) if len == o => Ok(false),
        (&[rows, len], Some(n)) if rows == n && len == o => Ok(true),
        (_, Some(n)) => bail!(
            "{op}: bias {:?} must have shape ({o}), or ({n}, {o}) for one row per sample",
            b.shape()
        ),
        (_, None) => bail!("{op}: bias {:?} must have shape ({o})", b.shape()),
    }
}

fn use_fused(ts: &[&Tensor], b: Option<&Tensor>) -> bool {
    fused_conv_enabled() && fast_path(ts) && b.is_none_or(|b| fast_path(&[b]))
}
