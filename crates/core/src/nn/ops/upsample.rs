//! Nearest-neighbour upsampling by 2 (`F.interpolate(x, scale_factor=2, mode="nearest")`),
//! fused forward and backward.
//!
//! Composed from candle ops (a broadcast and a reshape, [`reference::upsample_nearest2x`]) the
//! forward is candle's element-by-element strided copy, 2.5% of a U-Net's DDIM sampling, and
//! the backward a sum over the broadcast axes. Here the forward writes each value twice along
//! its row and each row twice, and the backward sums each 2x2 block of the output gradient,
//! both one pass over whole planes, split across threads.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::cpu::{CpuRead, f32_slice, map_chunks_to, rows_per_task, tensor};
use super::{fast_path, reference};

/// # Shapes
/// `x`: (N, C, H, W) -> (N, C, 2H, 2W).
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if !fast_path(&[x]) {
        return reference::upsample_nearest2x(x);
    }
    x.contiguous()?.apply_op1(Upsample2x { h, w })
}

struct Upsample2x {
    h: usize,
    w: usize,
}

const NAME: &str = "muse-upsample-nearest2x";

/// `f(src planes, out planes)` over groups of whole planes in parallel: `src` holds planes of
/// `src_plane` floats and the new output planes of `out_plane` floats each.
fn by_planes(
    src: &[f32],
    src_plane: usize,
    out_plane: usize,
    f: impl Fn(&[f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let planes = src.len() / src_plane.max(1);
    let per_task = rows_per_task(planes, src_plane.max(out_plane));
    // SAFETY: the tasks are whole planes and `f` writes each output plane it gets in full.
    unsafe {
        map_chunks_to(
            src,
            per_task * src_plane,
            planes * out_plane,
            per_task * out_plane,
            |_, s, o| f(s, o),
        )
    }
}

/// Each plane (h, w) of `x` into a plane (2h, 2w): every value fills its 2x2 block.
fn forward(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    by_planes(x, h * w, 4 * h * w, |src, out| {
        for (row, pair) in src.chunks_exact(w).zip(out.chunks_exact_mut(4 * w)) {
            let (top, bottom) = pair.split_at_mut(2 * w);
            for (two, &v) in top.chunks_exact_mut(2).zip(row) {
                two[0].write(v);
                two[1].write(v);
            }
            for (b, t) in bottom.iter_mut().zip(top.iter()) {
                // SAFETY: `top` was written in full just above.
                b.write(unsafe { t.assume_init() });
            }
        }
    })
}

/// Each plane (2h, 2w) of `dy` into a plane (h, w) of its 2x2 block sums.
fn block_sums(dy: &[f32], h: usize, w: usize) -> Vec<f32> {
    by_planes(dy, 4 * h * w, h * w, |src, out| {
        for (pair, row) in src.chunks_exact(4 * w).zip(out.chunks_exact_mut(w)) {
            let (top, bottom) = pair.split_at(2 * w);
            for ((d, t), b) in row
                .iter_mut()
                .zip(top.chunks_exact(2))
                .zip(bottom.chunks_exact(2))
            {
                d.write((t[0] + t[1]) + (b[0] + b[1]));
            }
        }
    })
}

impl CustomOp1 for Upsample2x {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let y = forward(f32_slice(s, l, NAME)?, h, w);
        Ok((CpuStorage::F32(y), Shape::from((n, c, 2 * h, 2 * w))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let dyr = CpuRead::new(&dy, NAME)?;
        let dx = block_sums(dyr.slice(), self.h, self.w);
        Ok(Some(tensor(dx, x.shape())?))
    }
}
