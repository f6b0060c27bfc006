//! 3x3 convolutions with stride 1 and padding 1 by Winograd's minimal filtering F(2x2, 3x3)
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! Each 2x2 output tile is `A^T [U ⊙ V] A`, where `U = G g G^T` is a 4x4 transform of the 3x3
//! kernel and `V = B^T d B` one of the 4x4 input patch `d` around the tile. Summed over input
//! channels, each of the 16 positions of `U ⊙ V` is a matrix product (Co, Ci) @ (Ci, tiles),
//! so a tile costs 16 multiply-adds per channel pair instead of the 36 of im2col (2.25x fewer
//! in the products that are most of a U-Net's time), and the transformed input is 16/4 = 4
//! floats per input value instead of im2col's 9.
//!
//! The same kernel serves conv2d's forward and its input gradient, which is itself a 3x3,
//! stride-1, padding-1 convolution of the output gradient with the kernel flipped and its
//! channel axes swapped ([`filters`] with `flipped`). The weight gradient takes the same
//! transforms the other way round ([`weight_grad`]).

use std::mem::MaybeUninit;
use std::ops::Range;

mod cache;
mod weight;

use super::super::activation::Activation;
use super::super::math::{Fma, simd_dispatch};
// The path `simd_dispatch!` names from a submodule.
use super::columns::{Bias, Scratch};
use super::geom::{Geom, samples_per_chunk, split_samples};
use super::math;
use super::product::mm;
pub use cache::FrozenWeights;
pub(super) use cache::filters_of;
pub(super) use weight::weight_grad;

/// Whether a convolution of this shape runs here: conv2d (not transposed) with a 3x3 kernel,
/// stride 1 and padding 1 (so the output has the input's size).
pub(super) fn applies(g: &Geom, transposed: bool) -> bool {
    !transposed && g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad == 1
}

/// One convolution as this module sees it: `cin` planes of `h x w` in, `cout` planes of the
/// same size out.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub(super) cin: usize,
    pub(super) cout: usize,
    pub(super) h: usize,
    pub(super) w: usize,
}

impl Shape {
    /// conv2d's forward: image channels in, grid channels out.
    pub(super) fn forward(g: &Geom) -> Self {
        Shape {
            cin: g.ci,
            cout: g.co,
            h: g.hi,
            w: g.wi,
        }
    }

    /// conv2d's input gradient: grid channels in, image channels out.
    pub(super) fn input_grad(g: &Geom) -> Self {
        Shape {
            cin: g.co,
            cout: g.ci,
            h: g.hi,
            w: g.wi,
        }
    }

    fn tiles_y(&self) -> usize {
        self.h.div_ceil(2)
    }
    fn tiles_x(&self) -> usize {
        self.w.div_ceil(2)
    }
    /// 2x2 output tiles per sample (the last row or column half outside for odd sizes).
    fn tiles(&self) -> usize {
        self.tiles_y() * self.tiles_x()
    }
}

/// The transformed kernels `U = G g G^T` as 16 matrices (cout, cin), position-major:
/// `u[(k * cout + o) * cin + i]`. `w` is conv2d's weight (Co, Ci, 3, 3); `flipped` gives the
/// input gradient's kernels (cout = Ci, cin = Co, each 3x3 kernel rotated by 180 degrees).
fn filters(w: &[f32], co: usize, ci: usize, flipped: bool) -> Vec<f32> {
    let (cout, cin) = if flipped { (ci, co) } else { (co, ci) };
    // Each kernel's 16 values side by side first (sequential writes), then spread out into
    // the 16 matrices one position at a time.
    let mut by_kernel = Scratch::new(16 * cout * cin);
    for (pair, t) in by_kernel.chunks_exact_mut(16).enumerate() {
        let (o, i) = (pair / cin, pair % cin);
        let (wo, wi) = if flipped { (i, o) } else { (o, i) };
        let k = &w[(wo * ci + wi) * 9..][..9];
        let g: [f32; 9] = std::array::from_fn(|j| if flipped { k[8 - j] } else { k[j] });
        // G = [1 0 0], [.5 .5 .5], [.5 -.5 .5], [0 0 1], first down the columns of g ...
        let gg = [
            [g[0], g[1], g[2]],
            std::array::from_fn(|x| 0.5 * (g[x] + g[3 + x] + g[6 + x])),
            std::array::from_fn(|x| 0.5 * (g[x] - g[3 + x] + g[6 + x])),
            [g[6], g[7], g[8]],
        ];
        // ... then along the rows of G g.
        for (y, [a, b, c]) in gg.into_iter().enumerate() {
            t[y * 4..][..4].copy_from_slice(&[a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]);
        }
    }
    let mut u = vec![0f32; 16 * cout * cin];
    for (k, uk) in u.chunks_exact_mut(cout * cin).enumerate() {
        for (d, t) in uk.iter_mut().zip(by_kernel.chunks_exact(16)) {
            *d = t[k];
        }
    }
    u
}

/// Float budget of a chunk's transformed input and products together, about half a Zen 3 L2.
const CHUNK_FLOATS: usize = 64 * 1024;

/// At least this many tiles per product of the forward pass and the input gradient when the
/// batch allows. The tiles are the rows of `gemm`'s micro-kernel (our output is row-major, so
/// it multiplies the transposed problem): its AVX-512 kernel takes 64 rows at a time, and a
/// 7x7 image has 16 tiles, so one sample a chunk ran the narrowest kernel, which spends most
/// of its time on broadcasts (9.6% of `muse bench diffusion` on an AVX-512 Xeon; none at 64).
const MIN_TILES: usize = 64;

/// The sample ranges a batch is cut into: transforms and products of a chunk stay in cache
/// (unless [`MIN_TILES`] asks for more), with at least two chunks per thread.
pub(super) fn chunks(s: &Shape, n: usize) -> Vec<Range<usize>> {
    let per_tile = 16 * (s.cin + s.cout);
    let budget = CHUNK_FLOATS.max(per_tile * MIN_TILES);
    split_samples(n, samples_per_chunk(n, per_tile * s.tiles(), budget))
}

/// Tiles transformed together, one per vector lane.
const L: usize = 8;
type Lanes = [f32; L];

/// `out` (m, cout, h, w) = `act(conv3x3(src[samples]) + bias)`, `src` being the whole batch
/// (N, cin, h, w) and `u` from [`filters`].
///
/// The transformed input is kept as 16 matrices (cin, T tiles) and the products as 16
/// matrices (cout, T), each row followed by [`L`] spare floats: the transforms read and write
/// whole vectors of 8 tiles, and the part of a vector past the end of a row of tiles lands in
/// the next row (rewritten later) or in the spare floats.
pub(super) fn conv3x3(
    s: &Shape,
    src: &[f32],
    samples: Range<usize>,
    u: &[f32],
    bias: Option<Bias<'_>>,
    act: Activation,
    out: &mut [MaybeUninit<f32>],
) {
    let t = samples.len() * s.tiles();
    let stride = t + L;
    let m_samples = samples.len();
    let mut v = Scratch::new(16 * s.cin * stride);
    transform_input(s, src, samples, stride, &mut v);
    let mut m = Scratch::new(16 * s.cout * t + L);
    for k in 0..16 {
        // M_k (cout, T) = U_k (cout, cin) @ V_k (cin, T)
        mm(
            s.cout,
            t,
            s.cin,
            &mut m[k * s.cout * t..][..s.cout * t],
            (&u[k * s.cout * s.cin..], s.cin, 1),
            (&v[k * s.cin * stride..], stride, 1),
        );
    }
    transform_output(s, &m, m_samples, bias, act, out);
}

// The transforms compiled for AVX-512 or AVX2 where the CPU has them; they are adds and
// subtractions only, so every build gives the same bits.
simd_dispatch!(fn transform_input(s: &Shape, src: &[f32], samples: Range<usize>, stride: usize, v: &mut [f32]) = transform_input_lanes);
simd_dispatch!(fn transform_output(s: &Shape, m: &[f32], samples: usize, bias: Option<Bias<'_>>, act: Activation, out: &mut [MaybeUninit<f32>]) = transform_output_lanes);

#[inline(always)]
fn load(src: &[f32], at: usize) -> Lanes {
    let mut r = [0f32; L];
    r.copy_from_slice(&src[at..at + L]);
    r
}

/// The vectors at `at` of four consecutive rows of `wh` floats.
#[inline(always)]
fn four_rows(plane: &[f32], at: usize, wh: usize) -> [Lanes; 4] {
    [
        load(plane, at),
        load(plane, at + wh),
        load(plane, at + 2 * wh),
        load(plane, at + 3 * wh),
    ]
}

#[inline(always)]
fn add(a: &Lanes, b: &Lanes) -> Lanes {
    let mut r = [0f32; L];
    for i in 0..L {
        r[i] = a[i] + b[i];
    }
    r
}

#[inline(always)]
fn sub(a: &Lanes, b: &Lanes) -> Lanes {
    let mut r = [0f32; L];
    for i in 0..L {
        r[i] = a[i] - b[i];
    }
    r
}

/// `B^T d` for four vectors `d` (one value of four patch rows or columns per lane), `B^T`
/// being [1 0 -1 0], [0 1 1 0], [0 -1 1 0], [0 1 0 -1].
#[inline(always)]
fn bt(d: &[Lanes; 4]) -> [Lanes; 4] {
    [
        sub(&d[0], &d[2]),
        add(&d[1], &d[2]),
        sub(&d[2], &d[1]),
        sub(&d[1], &d[3]),
    ]
}

/// `A^T m` for four vectors, `A^T` being [1 1 1 0], [0 1 -1 -1].
#[inline(always)]
fn at(m: &[Lanes; 4]) -> [Lanes; 2] {
    [
        add(&add(&m[0], &m[1]), &m[2]),
        sub(&sub(&m[1], &m[2]), &m[3]),
    ]
}

/// `v[(k * cin + c) * stride + tile]` = position `k` of `B^T d B` for the 4x4 patch `d` of
/// every tile (T tiles over the chunk's samples, sample-major).
///
/// Each plane is copied into two zero-padded planes of its even and of its odd columns, so
/// that 8 consecutive tiles of a row find the first column of their patches at 8 consecutive
/// addresses of the even plane (the second in the odd plane, the third one step on in the
/// even plane, the fourth likewise in the odd one).
#[inline(always)]
fn transform_input_lanes<F: Fma>(
    s: &Shape,
    src: &[f32],
    samples: Range<usize>,
    stride: usize,
    v: &mut [f32],
) {
    let (ty, tx) = (s.tiles_y(), s.tiles_x());
    // Padded column 2i (even) and 2i + 1 (odd), i in 0..=tx, with a zero row before the image
    // and enough rows after for whole patches; slack for vectors read past a row's end.
    let wh = tx + 1;
    let (mut even, mut odd) = zeroed_planes((2 * ty + 2) * wh + 2 * L);
    let hw = s.h * s.w;
    for (j, n) in samples.enumerate() {
        for c in 0..s.cin {
            let img = &src[(n * s.cin + c) * hw..][..hw];
            for (y, row) in img.chunks_exact(s.w).enumerate() {
                let at = (y + 1) * wh;
                // Image column x is padded column x + 1.
                split_columns(row, &mut odd[at..], &mut even[at + 1..]);
            }
            for by in 0..ty {
                for bx in (0..tx).step_by(L) {
                    let at = 2 * by * wh + bx;
                    // B^T down the columns: patch columns 0..4 are even, odd, even + 1, odd + 1.
                    let e0 = bt(&four_rows(&even, at, wh));
                    let o0 = bt(&four_rows(&odd, at, wh));
                    let e1 = bt(&four_rows(&even, at + 1, wh));
                    let o1 = bt(&four_rows(&odd, at + 1, wh));
                    let first = j * s.tiles() + by * tx + bx;
                    for i in 0..4 {
                        // B^T along the row of the column-transformed patch.
                        let vals = [
                            sub(&e0[i], &e1[i]),
                            add(&o0[i], &e1[i]),
                            sub(&e1[i], &o0[i]),
                            sub(&o0[i], &o1[i]),
                        ];
                        for (col, val) in vals.iter().enumerate() {
                            let at = ((i * 4 + col) * s.cin + c) * stride + first;
                            v[at..at + L].copy_from_slice(val);
                        }
                    }
                }
            }
        }
    }
}

/// Two scratch planes of `len` zeros, for the even and the odd columns of an image.
fn zeroed_planes(len: usize) -> (Scratch, Scratch) {
    let (mut even, mut odd) = (Scratch::new(len), Scratch::new(len));
    even.fill(0.0);
    odd.fill(0.0);
    (even, odd)
}

/// `row[2i]` into `first[i]` and `row[2i + 1]` into `second[i]`.
#[inline(always)]
fn split_columns(row: &[f32], first: &mut [f32], second: &mut [f32]) {
    let pairs = row.chunks_exact(2);
    if let [last] = pairs.remainder() {
        first[row.len() / 2] = *last;
    }
    for ((pair, a), b) in pairs.zip(first.iter_mut()).zip(second.iter_mut()) {
        *a = pair[0];
        *b = pair[1];
    }
}

/// `out` (m, cout, h, w) = `act(A^T M A + bias)` for every tile, from the 16 product matrices
/// `m[(k * cout + o) * T + tile]` (with [`L`] spare floats after the last), 8 tiles at a time
/// into a plane with the output's rows; the half tiles past an odd edge are dropped.
///
/// The plane's rows are as long as the output's, so the bias and activation run over each
/// plane in one pass (row by row, rows of 7, 14 or 28 left most of it to scalar remainders).
/// A vector of tiles at a row's right end writes past it into the rows below, so each row of
/// tiles is written right to left: the vectors to the left then overwrite what spilled into
/// the tile's second row, and the next row of tiles what spilled further.
#[inline(always)]
fn transform_output_lanes<F: Fma>(
    s: &Shape,
    m: &[f32],
    samples: usize,
    bias: Option<Bias<'_>>,
    act: Activation,
    out: &mut [MaybeUninit<f32>],
) {
    let (ty, tx) = (s.tiles_y(), s.tiles_x());
    let t = samples * s.tiles();
    // Whole tiles (a row past an odd bottom edge) and room for the last vector's spill.
    let (hw, w) = (s.h * s.w, s.w);
    let mut plane = Scratch::new(2 * ty * w + 2 * L);
    for j in 0..samples {
        for o in 0..s.cout {
            for by in 0..ty {
                for bx in (0..tx).step_by(L).rev() {
                    let first = j * s.tiles() + by * tx + bx;
                    // A^T down the columns (positions col, 4 + col, ...), then along the rows.
                    let at0 = o * t + first;
                    let step = s.cout * t;
                    let cols = [
                        at(&four_rows(m, at0, 4 * step)),
                        at(&four_rows(m, at0 + step, 4 * step)),
                        at(&four_rows(m, at0 + 2 * step, 4 * step)),
                        at(&four_rows(m, at0 + 3 * step, 4 * step)),
                    ];
                    for r in 0..2 {
                        let [left, right] = at(&[cols[0][r], cols[1][r], cols[2][r], cols[3][r]]);
                        let dst = &mut plane[(2 * by + r) * w + 2 * bx..][..2 * L];
                        for (i, pair) in dst.chunks_exact_mut(2).enumerate() {
                            pair[0] = left[i];
                            pair[1] = right[i];
                        }
                    }
                }
            }
            let b = bias.map_or(0.0, |b| b.at(j, o));
            act.apply_slice(
                &plane[..hw],
                1.0,
                b,
                &mut out[(j * s.cout + o) * hw..][..hw],
            );
        }
    }
}
