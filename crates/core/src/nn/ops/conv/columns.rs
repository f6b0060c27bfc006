//! Moving data between the image layout (N, C, H, W) and the column matrices the products
//! read: im2col / col2im over zero-padded planes, the grid's (C, N*P) layout, and the per-thread
//! scratch buffers they use.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::Range;

use super::super::activation::Activation;
use super::super::math::sum_map;
use super::geom::Geom;

thread_local! {
    /// Freed scratch buffers of this thread, for reuse: a fresh allocation of a column matrix
    /// costs page faults and zeroing on every call.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer of `len` f32 from this thread's pool. Its contents are unspecified (zeros
/// or an earlier call's values): callers write every element before reading it.
///
/// The vector keeps the whole length it was ever initialised to and the buffer shows its first
/// `len` elements, so reusing a buffer for a longer request than its last one zeroes only
/// memory it never had, not the part an earlier, longer request already wrote.
pub(super) struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

impl Scratch {
    pub(super) fn new(len: usize) -> Self {
        let mut buf = POOL
            .with_borrow_mut(|pool| {
                // The smallest free buffer that is large enough, else the largest (grown).
                let fit = (0..pool.len())
                    .filter(|&i| pool[i].len() >= len)
                    .min_by_key(|&i| pool[i].len());
                let pick = fit.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
                pick.map(|i| pool.swap_remove(i))
            })
            .unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        Scratch { buf, len }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        POOL.with_borrow_mut(|pool| {
            if pool.len() < 8 {
                pool.push(buf);
            }
        });
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

/// Side lengths of an image plane with its zero padding, plus one spare element so that
/// stride-2 reads may take whole pairs.
pub(super) fn padded_dims(g: &Geom) -> (usize, usize) {
    let (hp, wp) = (g.hi + 2 * g.pad, g.wi + 2 * g.pad);
    (wp, hp * wp + g.stride)
}

/// `col` (K, m*P) = the windows of the images `samples` (m of them) of `image` (N, Ci, Hi,
/// Wi), zeros where they overhang; column `(n - start) * P + p`.
///
/// Each image plane is first copied into a zero-padded plane, so the window loops read
/// without bounds tests; windows fit inside since `(Hg - 1) * stride + kh <= Hi + 2 pad`.
pub(super) fn im2col(g: &Geom, image: &[f32], samples: Range<usize>, col: &mut [f32]) {
    let (p, hw, wg, s) = (g.p(), g.hi * g.wi, g.wg, g.stride);
    let cp = samples.len() * p;
    let (wp, plane_len) = padded_dims(g);
    let mut plane = Scratch::new(plane_len);
    plane.fill(0.0);
    for (j, n) in samples.enumerate() {
        for c in 0..g.ci {
            let img = &image[(n * g.ci + c) * hw..][..hw];
            for (y, row) in img.chunks_exact(g.wi).enumerate() {
                plane[(y + g.pad) * wp + g.pad..][..g.wi].copy_from_slice(row);
            }
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let row = (c * g.kh + ky) * g.kw + kx;
                    let out = &mut col[row * cp + j * p..][..p];
                    for (oy, o) in out.chunks_exact_mut(wg).enumerate() {
                        gather(o, &plane[(oy * s + ky) * wp + kx..], s);
                    }
                }
            }
        }
    }
}

/// `o[i] = src[i * s]`.
#[inline(always)]
pub(super) fn gather(o: &mut [f32], src: &[f32], s: usize) {
    match s {
        1 => o.copy_from_slice(&src[..o.len()]),
        2 => {
            let n = o.len();
            for (d, pair) in o.iter_mut().zip(src[..2 * n].chunks_exact(2)) {
                *d = pair[0];
            }
        }
        _ => {
            for (d, v) in o.iter_mut().zip(src.iter().step_by(s)) {
                *d = *v;
            }
        }
    }
}

/// `dst[i * s] += v[i]`.
#[inline(always)]
pub(super) fn scatter_add(dst: &mut [f32], v: &[f32], s: usize) {
    match s {
        1 => {
            for (a, b) in dst[..v.len()].iter_mut().zip(v) {
                *a += b;
            }
        }
        2 => {
            for (pair, b) in dst[..2 * v.len()].chunks_exact_mut(2).zip(v) {
                pair[0] += b;
            }
        }
        _ => {
            for (a, b) in dst.iter_mut().step_by(s).zip(v) {
                *a += b;
            }
        }
    }
}

/// `out` (m, Ci, Hi, Wi) = `act(base[c]` (or 0) + the windows of `col` (K, m*P) added back where
/// they came from, through a zero-padded plane as in [`im2col`].
pub(super) fn col2im(
    g: &Geom,
    col: &[f32],
    m: usize,
    base: Option<&[f32]>,
    act: Activation,
    out: &mut [MaybeUninit<f32>],
) {
    let (p, hw, wg, s) = (g.p(), g.hi * g.wi, g.wg, g.stride);
    let cp = m * p;
    let (wp, plane_len) = padded_dims(g);
    let mut plane = Scratch::new(plane_len);
    for j in 0..m {
        for c in 0..g.ci {
            plane.fill(0.0);
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let row = (c * g.kh + ky) * g.kw + kx;
                    let src = &col[row * cp + j * p..][..p];
                    for (oy, v) in src.chunks_exact(wg).enumerate() {
                        scatter_add(&mut plane[(oy * s + ky) * wp + kx..], v, s);
                    }
                }
            }
            let b = base.map_or(0.0, |b| b[c]);
            let img = &mut out[(j * g.ci + c) * hw..][..hw];
            for (y, row) in img.chunks_exact_mut(g.wi).enumerate() {
                let from = &plane[(y + g.pad) * wp + g.pad..][..g.wi];
                act.apply_slice(from, 1.0, b, row);
            }
        }
    }
}

/// The samples of `x` (N, C, P) in `samples` as (C, m*P).
pub(super) fn to_cnp(x: &[f32], c: usize, p: usize, samples: Range<usize>, out: &mut [f32]) {
    let cp = samples.len() * p;
    for (j, n) in samples.enumerate() {
        for ch in 0..c {
            out[ch * cp + j * p..][..p].copy_from_slice(&x[(n * c + ch) * p..][..p]);
        }
    }
}

/// The bias of a convolution's output channels for a run of samples: one value per channel
/// shared by every sample, or one per sample and channel (a U-Net's time embedding, folded into
/// the convolution that precedes its add).
#[derive(Clone, Copy)]
pub(super) struct Bias<'a> {
    values: &'a [f32],
    /// Elements from one sample's values to the next: 0 when shared.
    sample_stride: usize,
}

impl<'a> Bias<'a> {
    /// `values` (C) shared, or (N, C) one row per sample, as `per_sample` says; `samples` is
    /// the run the kernel writes, its first sample becoming sample 0 of [`Bias::at`].
    pub(super) fn for_samples(
        values: &'a [f32],
        per_sample: bool,
        c: usize,
        samples: &Range<usize>,
    ) -> Self {
        if per_sample {
            Bias {
                values: &values[samples.start * c..samples.end * c],
                sample_stride: c,
            }
        } else {
            Bias {
                values,
                sample_stride: 0,
            }
        }
    }

    /// The bias of channel `ch` of sample `j` of the run.
    #[inline]
    pub(super) fn at(&self, j: usize, ch: usize) -> f32 {
        self.values[j * self.sample_stride + ch]
    }
}

/// `out` (m, C, P) = `act(x (C, m*P) (+ bias of (sample, c)))`.
pub(super) fn from_cnp(
    x: &[f32],
    c: usize,
    p: usize,
    m: usize,
    bias: Option<Bias<'_>>,
    act: Activation,
    out: &mut [MaybeUninit<f32>],
) {
    let cp = m * p;
    for j in 0..m {
        for ch in 0..c {
            let b = bias.map_or(0.0, |b| b.at(j, ch));
            let src = &x[ch * cp + j * p..][..p];
            act.apply_slice(src, 1.0, b, &mut out[(j * c + ch) * p..][..p]);
        }
    }
}

/// The sums of the planes of `x` (N, C, P), plane `i` into slot `i % c`: per channel with `c`
/// = C, per sample and channel with `c` = N * C (the gradient of a bias of either kind). Each
/// plane is summed in independent lanes (a plain `sum` adds one element at a time, in order,
/// and does not vectorise).
pub(super) fn channel_sums(x: &[f32], c: usize, p: usize) -> Vec<f32> {
    let mut out = vec![0f32; c];
    for (i, row) in x.chunks_exact(p).enumerate() {
        out[i % c] += sum_map(row, |v| v);
    }
    out
}
