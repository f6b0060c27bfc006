//! Ops of an input, a weight and an optional bias (linear, layer norm, convolutions): one
//! implementation each, run as candle's `CustomOp2` without a bias or `CustomOp3` with one.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::cpu::f32_slice;

/// The CPU forward and backward of an op `y = f(x, w, b)` whose bias is optional.
pub(super) trait BiasedOp: Send + Sync + 'static {
    /// The op's name in candle's graph and in error messages.
    const NAME: &'static str;

    /// `y` from contiguous f32 `x` (laid out as `x_layout`), `w` and `b`.
    fn cpu_forward(
        &self,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        x_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)>;

    /// The gradients of `x`, `w` and `b` where `want` asks for them (None elsewhere).
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        dy: &Tensor,
        want: [bool; 3],
    ) -> Result<[Option<Tensor>; 3]>;
}

/// `op(x, w, b)` on contiguous copies of the operands.
pub(super) fn apply_biased<T: BiasedOp>(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    op: T,
) -> Result<Tensor> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, Biased(op)),
        None => x.apply_op2(&w, Biased(op)),
    }
}

struct Biased<T>(T);

impl<T: BiasedOp> CustomOp2 for Biased<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_slice(s1, l1, T::NAME)?, f32_slice(s2, l2, T::NAME)?);
        self.0.cpu_forward(x, w, None, l1)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [dx, dw, _] = self
            .0
            .grads(x, w, y, dy, [x.track_op(), w.track_op(), false])?;
        Ok((dx, dw))
    }
}

impl<T: BiasedOp> CustomOp3 for Biased<T> {
    fn name(&self) -> &'static str {
        T::NAME
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
        let (x, w) = (f32_slice(s1, l1, T::NAME)?, f32_slice(s2, l2, T::NAME)?);
        self.0
            .cpu_forward(x, w, Some(f32_slice(s3, l3, T::NAME)?), l1)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let want = [x.track_op(), w.track_op(), b.track_op()];
        let [dx, dw, db] = self.0.grads(x, w, y, dy, want)?;
        Ok((dx, dw, db))
    }
}
