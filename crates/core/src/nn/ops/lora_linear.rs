//! A LoRA-adapted linear layer as one op ("LoRA: Low-Rank Adaptation of Large Language Models",
//! Hu et al. 2021): `y = x W (+ b) + scale * (drop(x) A^T) B^T` with `W` and `b` frozen, forward
//! and backward.
//!
//! Composed from tensor ops, an adapted layer keeps until backward the dropout mask and the
//! dropped input (N x in each), the rank-r product, the update before and after scaling and the
//! sum with the base output (N x out each): with `W` frozen that made LoRA fine-tuning of GPT-2
//! 124M need more memory than full fine-tuning. This op's graph node holds only its output,
//! inputs the model keeps anyway (`x`, `A`, `B`, and the frozen `W`, `b` inside the op) and the
//! dropout mask at one bit per element; the backward recomputes the cheap (N x r) product.

use candle_core::{CpuStorage, CustomOp3, D, Layout, Result, Shape, Tensor, bail};

use super::cpu::{CpuRead, f32_slice, matmul, matmul_new, tensor};
use super::linear::LinearOp;
use super::{WeightLayout, fast_path, reference};
use crate::nn::dropout::KeepMask;

/// The low-rank update of an adapted layer: `scale * B A`.
#[derive(Clone, Copy, Debug)]
pub struct LoraUpdate<'a> {
    /// (r, in)
    pub a: &'a Tensor,
    /// (out, r)
    pub b: &'a Tensor,
    /// `alpha / r`.
    pub scale: f64,
}

/// `y = x @ w (+ bias) + scale * (drop(x) @ A^T) @ B^T`, where `drop(x)` multiplies `x` by
/// `mask` (kept elements by `1 / (1 - p)`, dropped ones by 0) or is `x` without a mask.
///
/// Fused for F32 CPU tensors with `w` and `bias` frozen (no gradient flows to them); otherwise
/// composed from [`super::linear()`] and tensor ops.
///
/// # Shapes
/// `x`: (..., in), `w`: (in, out) for [`WeightLayout::InOut`] or (out, in) for
/// [`WeightLayout::OutIn`], `bias`: (out), `A`: (r, in), `B`: (out, r), `mask`: one bit per
/// element of `x` -> (..., out).
pub fn lora_linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    layout: WeightLayout,
    update: LoraUpdate,
    mask: Option<KeepMask>,
) -> Result<Tensor> {
    let in_dim = x.dim(D::Minus1)?;
    let (w_in, out_dim) = match (layout, w.dims2()?) {
        (WeightLayout::InOut, (i, o)) => (i, o),
        (WeightLayout::OutIn, (o, i)) => (i, o),
    };
    let (rank, a_in) = update.a.dims2()?;
    let (b_out, b_rank) = update.b.dims2()?;
    let bias_len = bias.map(|b| b.dims1()).transpose()?;
    if w_in != in_dim
        || bias_len.is_some_and(|n| n != out_dim)
        || a_in != in_dim
        || b_out != out_dim
        || b_rank != rank
    {
        bail!(
            "lora_linear: x {:?}, w {:?} ({layout:?}), bias {:?}, A {:?} and B {:?} do not fit",
            x.shape(),
            w.shape(),
            bias.map(|b| b.shape()),
            update.a.shape(),
            update.b.shape()
        )
    }
    if let Some(m) = &mask
        && m.len() != x.elem_count()
    {
        bail!(
            "lora_linear: a dropout mask of {} elements for x {:?}",
            m.len(),
            x.shape()
        )
    }
    let frozen = !w.track_op() && !bias.is_some_and(|b| b.track_op());
    let fused = frozen
        && fast_path(&[x, w, update.a, update.b])
        && bias.is_none_or(|b| fast_path(&[b]))
        && in_dim > 0
        && out_dim > 0
        && rank > 0;
    if !fused {
        // The composed path: where gradients must reach W or b (the op has no input for
        // them), and off the CPU, where `super::linear` is itself the candle composition.
        return reference::lora_composed(x, w, bias, layout, update, mask.as_ref(), super::linear);
    }
    let op = LoraLinearOp {
        base: LinearOp {
            layout,
            in_dim,
            out_dim,
        },
        w: w.contiguous()?,
        bias: bias.map(|b| b.contiguous()).transpose()?,
        rank,
        scale: update.scale as f32,
        mask,
    };
    x.contiguous()?
        .apply_op3(&update.a.contiguous()?, &update.b.contiguous()?, op)
}

/// The op over (x, A, B); the frozen base and the mask ride along in the op.
struct LoraLinearOp {
    base: LinearOp,
    w: Tensor,
    bias: Option<Tensor>,
    rank: usize,
    scale: f32,
    mask: Option<KeepMask>,
}

const NAME: &str = "muse-lora-linear";

/// `x` times the mask's factors (the composed path's `x * mask`, element for element).
fn dropped(x: &[f32], mask: &KeepMask) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    mask.for_each_block(|w, f| {
        out.extend(
            x[64 * w..64 * w + f.len()]
                .iter()
                .zip(f)
                .map(|(v, f)| v * f),
        );
    });
    out
}

impl LoraLinearOp {
    /// `scale * xd (m, in) @ A^T (in, r)`, the scaled rank-r product (m, r).
    fn hidden(&self, xd: &[f32], a: &[f32]) -> Vec<f32> {
        let (k, r) = (self.base.in_dim, self.rank);
        let m = xd.len() / k;
        let mut h = matmul_new(m, r, k, (xd, k, 1), (a, 1, k));
        h.iter_mut().for_each(|v| *v *= self.scale);
        h
    }
}

impl CustomOp3 for LoraLinearOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (xs, a, b) = (
            f32_slice(s1, l1, NAME)?,
            f32_slice(s2, l2, NAME)?,
            f32_slice(s3, l3, NAME)?,
        );
        let (k, n, r) = (self.base.in_dim, self.base.out_dim, self.rank);
        let m = xs.len() / k;
        let w = CpuRead::new(&self.w, NAME)?;
        let bias = self
            .bias
            .as_ref()
            .map(|b| CpuRead::new(b, NAME))
            .transpose()?;
        // The plain layer's kernel, so a zero update leaves its output bit for bit.
        let mut y = self
            .base
            .forward_vec(xs, w.slice(), bias.as_ref().map(|b| b.slice())); // (m, out)
        // The dropped input lives only while `h` is made.
        let h = match &self.mask {
            Some(mask) => self.hidden(&dropped(xs, mask), a),
            None => self.hidden(xs, a),
        }; // (m, r)
        // y += h (m, r) @ B^T (r, out)
        matmul(m, n, r, &mut y, true, (&h, r, 1), (b, 1, r));
        Ok((CpuStorage::F32(y), self.base.out_shape(l1)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [want_dx, want_da, want_db] = [x.track_op(), a.track_op(), b.track_op()];
        let dy = dy.contiguous()?;
        let (xr, ar, br, dyr) = (
            CpuRead::new(x, NAME)?,
            CpuRead::new(a, NAME)?,
            CpuRead::new(b, NAME)?,
            CpuRead::new(&dy, NAME)?,
        );
        let (xs, as_, bs, dys) = (xr.slice(), ar.slice(), br.slice(), dyr.slice());
        let (k, n, r) = (self.base.in_dim, self.base.out_dim, self.rank);
        let m = xs.len() / k;

        // g = scale * dy (m, out) @ B (out, r): the gradient at the rank-r product.
        let g = (want_dx || want_da).then(|| {
            let mut g = matmul_new(m, r, n, (dys, n, 1), (bs, r, 1));
            g.iter_mut().for_each(|v| *v *= self.scale);
            g
        }); // (m, r)
        let mut drop_buf = match (&self.mask, want_da || want_db) {
            (Some(mask), true) => Some(dropped(xs, mask)),
            _ => None,
        }; // (m, in)

        let (mut da, mut db) = (None, None);
        {
            let xd = drop_buf.as_deref().unwrap_or(xs);
            if want_db {
                // dB (out, r) = dy^T (out, m) @ h (m, r), h recomputed rather than kept
                let h = self.hidden(xd, as_);
                db = Some(tensor(
                    matmul_new(n, r, m, (dys, 1, n), (&h, r, 1)),
                    b.shape(),
                )?);
            }
            if let (true, Some(g)) = (want_da, &g) {
                // dA (r, in) = g^T (r, m) @ drop(x) (m, in)
                da = Some(tensor(
                    matmul_new(r, k, m, (g, 1, r), (xd, k, 1)),
                    a.shape(),
                )?);
            }
        }

        let dx = match (want_dx, &g) {
            (true, Some(g)) => {
                let w = CpuRead::new(&self.w, NAME)?;
                let mut dx = self.base.dx_vec(dys, w.slice()); // (m, in) = dy @ W^T
                match &self.mask {
                    // dx += g (m, r) @ A (r, in)
                    None => matmul(m, k, r, &mut dx, true, (g, r, 1), (as_, k, 1)),
                    Some(mask) => {
                        // The dropped input is spent: its buffer takes g @ A, which then goes
                        // through the mask (the composed path's gradient of `x * mask`).
                        let ga = match drop_buf.take() {
                            Some(mut buf) => {
                                matmul(m, k, r, &mut buf, false, (g, r, 1), (as_, k, 1));
                                buf
                            }
                            None => matmul_new(m, k, r, (g, r, 1), (as_, k, 1)),
                        };
                        mask.for_each_block(|w, f| {
                            let at = 64 * w..64 * w + f.len();
                            dx[at.clone()]
                                .iter_mut()
                                .zip(&ga[at])
                                .zip(f)
                                .for_each(|((d, v), f)| *d += v * f);
                        });
                    }
                }
                Some(tensor(dx, x.shape())?)
            }
            _ => None,
        };
        Ok((dx, da, db))
    }
}
