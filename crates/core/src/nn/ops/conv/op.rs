//! The convolution as a candle custom op: forward and backward over chunks of samples.

use std::mem::MaybeUninit;
use std::ops::Range;

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, TensorId};

use super::super::activation::Activation;
use super::super::biased::BiasedOp;
use super::super::cpu::{CpuRead, run_tasks, tensor};
use super::columns::{Bias, Scratch, channel_sums, col2im, from_cnp, im2col, to_cnp};
use super::geom::{Geom, RunSums, chunk_len, chunks, task_ranges};
use super::product::{filled_by_chunks, mm, mm_add};
use super::winograd;

pub(super) struct ConvOp {
    pub(super) g: Geom,
    /// `conv_transpose2d` (input on the grid side) rather than `conv2d`.
    pub(super) transposed: bool,
    /// Applied to the output.
    pub(super) act: Activation,
    /// The bias is (N, Co), one row per sample, rather than (Co); conv2d only.
    pub(super) sample_bias: bool,
    /// The weight tensor, whose transformed kernels a [`winograd::FrozenWeights`] scope keeps.
    pub(super) weight: TensorId,
}

const NAME: &str = "muse-conv2d";

impl ConvOp {
    fn out_shape(&self) -> Shape {
        let g = &self.g;
        if self.transposed {
            Shape::from((g.n, g.ci, g.hi, g.wi))
        } else {
            Shape::from((g.n, g.co, g.hg, g.wg))
        }
    }

    fn forward(&self, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let (k, p) = (g.k(), g.p());
        let bias_of = |r: &Range<usize>| b.map(|b| Bias::for_samples(b, self.sample_bias, g.co, r));
        let y = if self.transposed {
            // image = col2im(Wm^T (K, Co) @ grid (Co, m*P)), chunk by chunk
            filled_by_chunks(g.image_len(), g.ci * g.hi * g.wi, chunks(g), |r, out| {
                let cp = r.len() * p;
                let mut xg = Scratch::new(g.co * cp);
                to_cnp(x, g.co, p, r.clone(), &mut xg);
                let mut col = Scratch::new(k * cp);
                mm(k, cp, g.co, &mut col, (w, 1, k), (&xg, cp, 1));
                col2im(g, &col, r.len(), b, self.act, out);
            })
        } else if winograd::applies(g, false) {
            let s = winograd::Shape::forward(g);
            let u = winograd::filters_of(w, g.co, g.ci, false, self.weight);
            filled_by_chunks(
                g.grid_len(),
                g.co * p,
                winograd::chunks(&s, g.n),
                |r, out| winograd::conv3x3(&s, x, r.clone(), &u, bias_of(&r), self.act, out),
            )
        } else {
            // grid (Co, m*P) = Wm (Co, K) @ im2col(image) (K, m*P), chunk by chunk
            filled_by_chunks(g.grid_len(), g.co * p, chunks(g), |r, out| {
                let cp = r.len() * p;
                let mut col = Scratch::new(k * cp);
                im2col(g, x, r.clone(), &mut col);
                let mut yg = Scratch::new(g.co * cp);
                mm(g.co, cp, k, &mut yg, (w, k, 1), (&col, cp, 1));
                from_cnp(&yg, g.co, p, r.len(), bias_of(&r), self.act, out);
            })
        };
        Ok((CpuStorage::F32(y), self.out_shape()))
    }

    /// Gradients of the tracked inputs: (dx, dw, db).
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        dy: &Tensor,
        want: [bool; 3],
    ) -> Result<[Option<Tensor>; 3]> {
        let g = &self.g;
        let (k, p) = (g.k(), g.p());
        let dy = dy.contiguous()?;
        let (xr, wr, dyr) = (
            CpuRead::new(x, NAME)?,
            CpuRead::new(w, NAME)?,
            CpuRead::new(&dy, NAME)?,
        );
        let (xs, ws) = (xr.slice(), wr.slice());
        // The gradient before the activation: dy * act'(y).
        let pre: Vec<f32>;
        let dys = if self.act == Activation::Identity {
            dyr.slice()
        } else {
            let yr = CpuRead::new(y, NAME)?;
            let act = self.act;
            pre = act.grad(dyr.slice(), yr.slice());
            &pre
        };
        let db = if want[2] {
            let (c, plane) = if self.transposed {
                (g.ci, g.hi * g.wi)
            } else {
                (g.co, p)
            };
            if self.sample_bias {
                // A slot per sample and channel: (N, Co).
                Some(tensor(channel_sums(dys, g.n * c, plane), (g.n, c))?)
            } else {
                Some(tensor(channel_sums(dys, c, plane), c)?)
            }
        } else {
            None
        };
        if winograd::applies(g, self.transposed) {
            let dx = if want[0] {
                // A convolution of the same kind: the output gradient through the kernel
                // rotated by 180 degrees, channel axes swapped.
                let s = winograd::Shape::input_grad(g);
                let u = winograd::filters_of(ws, g.co, g.ci, true, self.weight);
                let dx = filled_by_chunks(
                    g.image_len(),
                    g.ci * g.hi * g.wi,
                    winograd::chunks(&s, g.n),
                    |r, out| winograd::conv3x3(&s, dys, r, &u, None, Activation::Identity, out),
                );
                Some(tensor(dx, x.shape())?)
            } else {
                None
            };
            let dw = if want[1] {
                let dw = winograd::weight_grad(&winograd::Shape::forward(g), xs, dys, g.n);
                Some(tensor(dw, w.shape())?)
            } else {
                None
            };
            return Ok([dx, dw, db]);
        }
        // The image-side and grid-side tensors of this call, whichever is input or output.
        let (image, grid) = if self.transposed {
            (dys, xs)
        } else {
            (xs, dys)
        };
        // dWm (Co, K) = sum over chunks of grid (Co, m*P) @ im2col(image)^T (m*P, K). Each
        // task sums its own run of chunks; the runs' sums are added in sample order afterwards,
        // so the result does not depend on which thread finishes first (exact resume needs it).
        let dw_parts = RunSums::new();
        let (x_len, per_x) = if self.transposed {
            (g.grid_len(), g.co * p)
        } else {
            (g.image_len(), g.ci * g.hi * g.wi)
        };
        let per_chunk = chunk_len(g);
        let chunk = |r: Range<usize>, dx_out: Option<&mut [MaybeUninit<f32>]>, dw: &mut [f32]| {
            let cp = r.len() * p;
            let mut gc = Scratch::new(g.co * cp);
            to_cnp(grid, g.co, p, r.clone(), &mut gc);
            let need_col = want[1] || (want[0] && self.transposed);
            let mut col = Scratch::new(if need_col { k * cp } else { 0 });
            if need_col {
                im2col(g, image, r.clone(), &mut col);
            }
            if want[1] {
                mm_add(g.co, k, cp, dw, (&gc, cp, 1), (&col, 1, cp));
            }
            if let Some(out) = dx_out {
                if self.transposed {
                    // d grid (Co, m*P) = Wm (Co, K) @ im2col(d image) (K, m*P)
                    let mut dg = Scratch::new(g.co * cp);
                    mm(g.co, cp, k, &mut dg, (ws, k, 1), (&col, cp, 1));
                    from_cnp(&dg, g.co, p, r.len(), None, Activation::Identity, out);
                } else {
                    // d image = col2im(Wm^T (K, Co) @ d grid (Co, m*P))
                    let mut dcol = Scratch::new(k * cp);
                    mm(k, cp, g.co, &mut dcol, (ws, 1, k), (&gc, cp, 1));
                    col2im(g, &dcol, r.len(), None, Activation::Identity, out);
                }
            }
        };
        // One task: the chunks of the samples `r`, in order.
        let task = |r: Range<usize>, mut dx_out: Option<&mut [MaybeUninit<f32>]>| {
            let mut dw = vec![0f32; if want[1] { g.co * k } else { 0 }];
            for a in r.clone().step_by(per_chunk) {
                let sub = a..(a + per_chunk).min(r.end);
                let out = dx_out
                    .as_deref_mut()
                    .map(|o| &mut o[(sub.start - r.start) * per_x..(sub.end - r.start) * per_x]);
                chunk(sub, out, &mut dw);
            }
            if want[1] {
                dw_parts.add(r.start, dw);
            }
        };
        let tasks = task_ranges(g);
        let dx = if want[0] {
            let dx = filled_by_chunks(x_len, per_x, tasks, |r, out| task(r, Some(out)));
            Some(tensor(dx, x.shape())?)
        } else {
            if want[1] {
                run_tasks(tasks, |r| task(r, None));
            }
            None
        };
        let dw = if want[1] {
            Some(tensor(dw_parts.total(g.co * k), w.shape())?)
        } else {
            None
        };
        Ok([dx, dw, db])
    }
}

impl BiasedOp for ConvOp {
    const NAME: &'static str = NAME;

    fn cpu_forward(
        &self,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        _x_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(x, w, b)
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        dy: &Tensor,
        want: [bool; 3],
    ) -> Result<[Option<Tensor>; 3]> {
        self.backward(x, w, y, dy, want)
    }
}
