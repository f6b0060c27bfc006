//! Dense layer `y = x W (+ b)` with the weight in either storage order, fused forward (bias
//! folded into the `gemm` accumulator) and backward (dx, dW, db from one op).
//!
//! Both orders are read in place through `gemm`'s strides: GPT-2's `Conv1D` stores `(in, out)`,
//! `nn.Linear` and Llama store `(out, in)`, and neither needs a transposed copy. A single input
//! row (decoding) goes to the streaming kernels of [`super::gemv`] instead.

use candle_core::{CpuStorage, D, Layout, Result, Shape, Tensor, bail};

use super::biased::{BiasedOp, apply_biased};
use super::cpu::{CpuRead, matmul, matmul_new, tensor};
use super::gemv::gemv;
use super::{fast_path, reference};

/// How a weight matrix is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightLayout {
    /// `(in, out)`: Hugging Face GPT-2 `Conv1D`.
    InOut,
    /// `(out, in)`: `torch.nn.Linear`, Llama, tied embeddings used as the output head.
    OutIn,
}

/// `y = x @ w (+ b)`.
///
/// # Shapes
/// `x`: (N, in) (or (..., in)), `w`: (in, out) for [`WeightLayout::InOut`] or (out, in) for
/// [`WeightLayout::OutIn`], `b`: (out) -> (N, out) (or (..., out)).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, layout: WeightLayout) -> Result<Tensor> {
    let in_dim = x.dim(D::Minus1)?;
    let (w_in, out_dim) = match (layout, w.dims2()?) {
        (WeightLayout::InOut, (i, o)) => (i, o),
        (WeightLayout::OutIn, (o, i)) => (i, o),
    };
    if w_in != in_dim
        || b.map(|b| b.dims1())
            .transpose()?
            .is_some_and(|n| n != out_dim)
    {
        bail!(
            "linear: x {:?}, w {:?} ({layout:?}) and bias {:?} do not fit",
            x.shape(),
            w.shape(),
            b.map(|b| b.shape())
        )
    }
    if !fast_path(&[x, w]) || b.is_some_and(|b| !fast_path(&[b])) || in_dim == 0 || out_dim == 0 {
        return reference::linear(x, w, b, layout);
    }
    let op = LinearOp {
        layout,
        in_dim,
        out_dim,
    };
    apply_biased(x, w, b, op)
}

/// The op, also used by [`crate::nn::lora`] for the frozen base product of an adapted layer (so
/// that product is bit for bit the plain layer's).
pub(super) struct LinearOp {
    pub(super) layout: WeightLayout,
    pub(super) in_dim: usize,
    pub(super) out_dim: usize,
}

const NAME: &str = "muse-linear";

impl LinearOp {
    /// `w` as the (in, out) right-hand operand: (slice, row stride, column stride).
    fn w_as_in_out<'a>(&self, w: &'a [f32]) -> (&'a [f32], usize, usize) {
        match self.layout {
            WeightLayout::InOut => (w, self.out_dim, 1),
            WeightLayout::OutIn => (w, 1, self.in_dim),
        }
    }

    /// The output shape for an input laid out as `l`: its last dimension becomes `out`.
    pub(super) fn out_shape(&self, l: &Layout) -> Shape {
        let mut dims = l.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = self.out_dim;
        }
        Shape::from(dims)
    }

    /// `y (m, out) = x (m, in) @ w (+ b)`, row-major.
    pub(super) fn forward_vec(&self, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
        let (k, n) = (self.in_dim, self.out_dim);
        let m = x.len() / k.max(1);
        if m == 1 {
            return gemv(x, w, b, self.layout == WeightLayout::OutIn, n);
        }
        let w = self.w_as_in_out(w);
        let Some(b) = b else {
            return matmul_new(m, n, k, (x, k, 1), w);
        };
        // The bias in every row, then the product added to it: no zero-filled buffer first.
        let mut y = Vec::with_capacity(m * n);
        (0..m).for_each(|_| y.extend_from_slice(b));
        matmul(m, n, k, &mut y, true, (x, k, 1), w);
        y
    }

    fn forward(
        &self,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = self.forward_vec(x, w, b);
        Ok((CpuStorage::F32(y), self.out_shape(l)))
    }

    /// `dx (m, in) = dy (m, out) @ w^T (out, in)`, row-major.
    pub(super) fn dx_vec(&self, dy: &[f32], w: &[f32]) -> Vec<f32> {
        let (k, n) = (self.in_dim, self.out_dim);
        let m = dy.len() / n.max(1);
        let wt = match self.layout {
            WeightLayout::InOut => (w, 1, n),
            WeightLayout::OutIn => (w, k, 1),
        };
        matmul_new(m, k, n, (dy, n, 1), wt)
    }

    /// Gradients of the tracked inputs: (dx, dw, db).
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        want: [bool; 3],
    ) -> Result<[Option<Tensor>; 3]> {
        let dy = dy.contiguous()?;
        let (xr, wr, dyr) = (
            CpuRead::new(x, NAME)?,
            CpuRead::new(w, NAME)?,
            CpuRead::new(&dy, NAME)?,
        );
        let (xs, ws, dys) = (xr.slice(), wr.slice(), dyr.slice());
        let (k, n) = (self.in_dim, self.out_dim);
        let m = xs.len() / k.max(1);
        let dx = if want[0] {
            Some(tensor(self.dx_vec(dys, ws), x.shape())?)
        } else {
            None
        };
        let dw = if want[1] {
            let dw = match self.layout {
                // dw (in, out) = x^T (in, m) @ dy (m, out)
                WeightLayout::InOut => matmul_new(k, n, m, (xs, 1, k), (dys, n, 1)),
                // dw (out, in) = dy^T (out, m) @ x (m, in)
                WeightLayout::OutIn => matmul_new(n, k, m, (dys, 1, n), (xs, k, 1)),
            };
            Some(tensor(dw, w.shape())?)
        } else {
            None
        };
        let db = if want[2] {
            let mut db = vec![0f32; n];
            for row in dys.chunks_exact(n.max(1)) {
                db.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
            Some(tensor(db, n)?)
        } else {
            None
        };
        Ok([dx, dw, db])
    }
}

impl BiasedOp for LinearOp {
    const NAME: &'static str = NAME;

    fn cpu_forward(
        &self,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(x, w, b, l)
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
        want: [bool; 3],
    ) -> Result<[Option<Tensor>; 3]> {
        self.backward(x, w, dy, want)
    }
}
