//! The weight gradient of a 3x3, stride-1, padding-1 conv2d by the same F(2x2, 3x3).
//!
//! A tile's output is `A^T [U ⊙ V] A` with `U = G g G^T`, so the kernel's gradient from that
//! tile is `G^T [(A dY A^T) ⊙ V] G`, `dY` being the tile's 2x2 output gradient. Summed over
//! tiles, each of the 16 positions of the bracket is a matrix product (Co, T) @ (T, Ci) of the
//! transformed output gradients and the transformed input patches, the same `V` as the
//! forward's. The products cost 16 multiply-adds per tile and channel pair instead of
//! im2col's 36; the 16 sums go through `G^T . G` once, after the whole batch.

use std::ops::Range;

use super::super::super::cpu::run_tasks;
use super::super::super::math::{Fma, simd_dispatch};
use super::super::columns::Scratch;
use super::super::geom::{RunSums, chunk_runs, samples_per_chunk};
use super::super::product::mm_add;
use super::{
    CHUNK_FLOATS, L, Lanes, Shape, add, load, split_columns, sub, transform_input, zeroed_planes,
};

/// At least this many tiles per product when the batch allows: every chunk adds its products
/// into the 16 (Co, Ci) sums, which for small images with many channels outweigh the chunk.
const MIN_SUM_TILES: usize = 128;

/// `dW` (cout, cin, 3, 3) of conv2d's forward shape `s` (see [`Shape::forward`]) from its
/// input `x` (n, cin, h, w) and the gradient `dy` (n, cout, h, w) of its output before the
/// bias and activation. Each task sums its own run of chunks and the runs' sums are added in
/// sample order, so the result does not depend on which thread finishes first.
pub(in super::super) fn weight_grad(s: &Shape, x: &[f32], dy: &[f32], n: usize) -> Vec<f32> {
    let per_tile = 16 * (s.cin + s.cout);
    let budget = CHUNK_FLOATS.max(per_tile * MIN_SUM_TILES);
    let per_chunk = samples_per_chunk(n, per_tile * s.tiles(), budget);
    let sums_len = 16 * s.cout * s.cin;
    let runs = RunSums::new();
    run_tasks(chunk_runs(n, per_chunk), |run: Range<usize>| {
        let mut sums = vec![0f32; sums_len];
        for a in run.clone().step_by(per_chunk) {
            add_chunk(s, x, dy, a..(a + per_chunk).min(run.end), &mut sums);
        }
        runs.add(run.start, sums);
    });
    kernel_grads(s, &runs.total(sums_len))
}

/// `sums[(k * cout + o) * cin + i] += Σ_tiles (A dY A^T)[k][o] · V[k][i]` over the tiles of
/// `samples`.
fn add_chunk(s: &Shape, x: &[f32], dy: &[f32], samples: Range<usize>, sums: &mut [f32]) {
    let t = samples.len() * s.tiles();
    let stride = t + L;
    let mut v = Scratch::new(16 * s.cin * stride);
    transform_input(s, x, samples.clone(), stride, &mut v);
    let mut d = Scratch::new(16 * s.cout * stride);
    transform_output_grad(s, dy, samples, stride, &mut d);
    let pair = s.cout * s.cin;
    for k in 0..16 {
        // sums_k (cout, cin) += D_k (cout, T) @ V_k^T (T, cin)
        mm_add(
            s.cout,
            s.cin,
            t,
            &mut sums[k * pair..][..pair],
            (&d[k * s.cout * stride..], stride, 1),
            (&v[k * s.cin * stride..], 1, stride),
        );
    }
}

/// `G^T M G` for every channel pair: the 3x3 kernel gradients (cout, cin, 3, 3) from the 16
/// summed products. `G^T` is [1 .5 .5 0], [0 .5 -.5 0], [0 .5 .5 1].
fn kernel_grads(s: &Shape, sums: &[f32]) -> Vec<f32> {
    let pair = s.cout * s.cin;
    let gt = |m: [f32; 4]| {
        [
            m[0] + 0.5 * (m[1] + m[2]),
            0.5 * (m[1] - m[2]),
            0.5 * (m[1] + m[2]) + m[3],
        ]
    };
    let mut dw = vec![0f32; pair * 9];
    for (p, out) in dw.chunks_exact_mut(9).enumerate() {
        let m: [f32; 16] = std::array::from_fn(|k| sums[k * pair + p]);
        // Down the columns first, then along each of the three rows.
        let cols: [[f32; 3]; 4] =
            std::array::from_fn(|c| gt([m[c], m[4 + c], m[8 + c], m[12 + c]]));
        for r in 0..3 {
            out[r * 3..][..3]
                .copy_from_slice(&gt([cols[0][r], cols[1][r], cols[2][r], cols[3][r]]));
        }
    }
    dw
}

simd_dispatch!(fn transform_output_grad(s: &Shape, dy: &[f32], samples: Range<usize>, stride: usize, d: &mut [f32]) = transform_output_grad_lanes);

/// `A y` for two vectors `y` (a tile's two rows or columns), `A` being the transpose of the
/// forward's `A^T`: [1 0], [1 1], [1 -1], [0 -1].
#[inline(always)]
fn a(y0: &Lanes, y1: &Lanes) -> [Lanes; 4] {
    [*y0, add(y0, y1), sub(y0, y1), sub(&[0.0; L], y1)]
}

/// `d[(k * cout + o) * stride + tile]` = position `k` of `A dY A^T` for the 2x2 output
/// gradient of every tile, 8 tiles at a time, laid out like the forward's transformed input.
/// Values of a half tile past an odd edge are zero: the forward dropped them.
#[inline(always)]
fn transform_output_grad_lanes<F: Fma>(
    s: &Shape,
    dy: &[f32],
    samples: Range<usize>,
    stride: usize,
    d: &mut [f32],
) {
    let (ty, tx) = (s.tiles_y(), s.tiles_x());
    // The even and the odd columns of a plane, 2 * ty rows of tx (a zero row or column past an
    // odd edge, never written), with room for a vector read past the last row's end.
    let (mut even, mut odd) = zeroed_planes(2 * ty * tx + L);
    let hw = s.h * s.w;
    for (j, n) in samples.enumerate() {
        for o in 0..s.cout {
            let plane = &dy[(n * s.cout + o) * hw..][..hw];
            for (y, row) in plane.chunks_exact(s.w).enumerate() {
                let at = y * tx;
                split_columns(row, &mut even[at..], &mut odd[at..]);
            }
            for by in 0..ty {
                for bx in (0..tx).step_by(L) {
                    let at = 2 * by * tx + bx;
                    // A down the tile's two columns, then along each of the four rows.
                    let left = a(&load(&even, at), &load(&even, at + tx));
                    let right = a(&load(&odd, at), &load(&odd, at + tx));
                    let first = j * s.tiles() + by * tx + bx;
                    for r in 0..4 {
                        for (col, val) in a(&left[r], &right[r]).iter().enumerate() {
                            let at = ((r * 4 + col) * s.cout + o) * stride + first;
                            d[at..at + L].copy_from_slice(val);
                        }
                    }
                }
            }
        }
    }
}
