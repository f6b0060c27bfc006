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

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::batch_norm::Activation;
use super::cpu::{CpuRead, SendPtr, f32_slice, new_filled, run_tasks, tensor, threads};
use super::fast_path;

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
/// `x`: (N, C, H, W), `w`: (O, C, kh, kw), `b`: (O) -> (N, O, Ho, Wo) with
/// `Ho = (H + 2 * padding - kh) / stride + 1` (likewise `Wo`).
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
    check_bias(b, o, "conv2d")?;
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
    apply(
        x,
        w,
        b,
        ConvOp {
            g,
            transposed: false,
            act,
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
    check_bias(b, o, "conv_transpose2d")?;
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
    apply(
        x,
        w,
        b,
        ConvOp {
            g,
            transposed: true,
            act,
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

fn add_bias(y: Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

fn check_bias(b: Option<&Tensor>, o: usize, op: &str) -> Result<()> {
    if let Some(b) = b
        && b.dims1()? != o
    {
        bail!("{op}: bias {:?} must have shape ({o})", b.shape())
    }
    Ok(())
}

fn use_fused(ts: &[&Tensor], b: Option<&Tensor>) -> bool {
    fused_conv_enabled() && fast_path(ts) && b.is_none_or(|b| fast_path(&[b]))
}

fn apply(x: &Tensor, w: &Tensor, b: Option<&Tensor>, op: ConvOp) -> Result<Tensor> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
        None => x.apply_op2(&w, op),
    }
}

/// The shapes of one convolution, seen from the image side (where the windows lie) and the
/// grid side (one value per window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geom {
    n: usize,
    /// Image channels and size.
    ci: usize,
    hi: usize,
    wi: usize,
    /// Grid channels and size.
    co: usize,
    hg: usize,
    wg: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
}

impl Geom {
    /// Rows of the column matrix: one per (image channel, ky, kx).
    fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }
    /// Window positions per sample.
    fn p(&self) -> usize {
        self.hg * self.wg
    }
    fn image_len(&self) -> usize {
        self.n * self.ci * self.hi * self.wi
    }
    fn grid_len(&self) -> usize {
        self.n * self.co * self.p()
    }
    fn empty(&self) -> bool {
        self.image_len() == 0 || self.grid_len() == 0 || self.k() == 0
    }
}

thread_local! {
    /// Freed scratch buffers of this thread, for reuse: a fresh allocation of a column matrix
    /// costs page faults and zeroing on every call.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer of `len` f32 from this thread's pool. Its contents are unspecified (zeros
/// or an earlier call's values): callers write every element before reading it.
struct Scratch(Vec<f32>);

impl Scratch {
    fn new(len: usize) -> Self {
        let mut v = POOL
            .with_borrow_mut(|pool| {
                // The smallest free buffer that is large enough, else the largest (grown).
                let fit = (0..pool.len())
                    .filter(|&i| pool[i].capacity() >= len)
                    .min_by_key(|&i| pool[i].capacity());
                let pick = fit.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()));
                pick.map(|i| pool.swap_remove(i))
            })
            .unwrap_or_default();
        if v.len() < len {
            v.resize(len, 0.0);
        }
        v.truncate(len);
        Scratch(v)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        POOL.with_borrow_mut(|pool| {
            if pool.len() < 8 {
                pool.push(v);
            }
        });
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

/// Column matrices of about this many floats (512 KiB) stay in a core's L2 cache between
/// im2col, the product and col2im, beside the other operand. Measured on the DCGAN step
/// (`muse bench gan`, 2 threads, AVX-512 machine): 128 Ki floats 40.1 ms, 256 Ki 43.4 ms,
/// 64 Ki 42.7 ms.
const CHUNK_FLOATS: usize = 128 * 1024;

/// Samples per chunk: each chunk's column matrix is about [`CHUNK_FLOATS`], with at least two
/// chunks per thread. A chunk runs start to end (im2col, products, col2im) on one thread.
fn chunk_len(g: &Geom) -> usize {
    let by_cache = (CHUNK_FLOATS / (g.k() * g.p()).max(1)).max(1);
    let by_threads = g.n.div_ceil(2 * threads()).max(1);
    by_cache.min(by_threads)
}

/// The sample ranges the batch is cut into, one chunk each.
fn chunks(g: &Geom) -> Vec<Range<usize>> {
    let per = chunk_len(g);
    (0..g.n)
        .step_by(per)
        .map(|a| a..(a + per).min(g.n))
        .collect()
}

/// The backward pass's tasks: runs of whole chunks, two per thread, so that per-task weight
/// gradient sums stay few.
fn task_ranges(g: &Geom) -> Vec<Range<usize>> {
    let per_chunk = chunk_len(g);
    let n_chunks = g.n.div_ceil(per_chunk);
    let per = n_chunks.div_ceil(2 * threads()).max(1) * per_chunk;
    (0..g.n)
        .step_by(per)
        .map(|a| a..(a + per).min(g.n))
        .collect()
}

/// Side lengths of an image plane with its zero padding, plus one spare element so that
/// stride-2 reads may take whole pairs.
fn padded_dims(g: &Geom) -> (usize, usize) {
    let (hp, wp) = (g.hi + 2 * g.pad, g.wi + 2 * g.pad);
    (wp, hp * wp + g.stride)
}

/// `col` (K, m*P) = the windows of the images `samples` (m of them) of `image` (N, Ci, Hi,
/// Wi), zeros where they overhang; column `(n - start) * P + p`.
///
/// Each image plane is first copied into a zero-padded plane, so the window loops read
/// without bounds tests; windows fit inside since `(Hg - 1) * stride + kh <= Hi + 2 pad`.
fn im2col(g: &Geom, image: &[f32], samples: Range<usize>, col: &mut [f32]) {
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
fn gather(o: &mut [f32], src: &[f32], s: usize) {
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
fn scatter_add(dst: &mut [f32], v: &[f32], s: usize) {
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
fn col2im(
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
fn to_cnp(x: &[f32], c: usize, p: usize, samples: Range<usize>, out: &mut [f32]) {
    let cp = samples.len() * p;
    for (j, n) in samples.enumerate() {
        for ch in 0..c {
            out[ch * cp + j * p..][..p].copy_from_slice(&x[(n * c + ch) * p..][..p]);
        }
    }
}

/// `out` (m, C, P) = `act(x (C, m*P) (+ bias[c]))`.
fn from_cnp(
    x: &[f32],
    c: usize,
    p: usize,
    m: usize,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [MaybeUninit<f32>],
) {
    let cp = m * p;
    for j in 0..m {
        for ch in 0..c {
            let b = bias.map_or(0.0, |b| b[ch]);
            let src = &x[ch * cp + j * p..][..p];
            act.apply_slice(src, 1.0, b, &mut out[(j * c + ch) * p..][..p]);
        }
    }
}

/// Per-channel sums of `x` (N, C, P): the bias gradient.
fn channel_sums(x: &[f32], c: usize, p: usize) -> Vec<f32> {
    let mut out = vec![0f32; c];
    for (i, row) in x.chunks_exact(p).enumerate() {
        out[i % c] += row.iter().sum::<f32>();
    }
    out
}

/// Index one past the last element an (rows x cols) view with these strides touches.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst (m x n, row stride n) = lhs (m x k) @ rhs (k x n)` on the calling thread, operands as
/// `(slice, row stride, column stride)`, bounds checked.
fn mm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) {
    assert!(dst.len() >= m * n, "conv: product output too small");
    assert!(
        lhs.0.len() >= extent(m, k, lhs.1, lhs.2),
        "conv: lhs too small"
    );
    assert!(
        rhs.0.len() >= extent(k, n, rhs.1, rhs.2),
        "conv: rhs too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        return dst[..m * n].fill(0.0);
    }
    // SAFETY: the bounds are asserted above, `dst` is a unique borrow (so it overlaps neither
    // operand), and with alpha = 0 `gemm` writes `dst` without reading it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// A vector of `len` elements that `chunks` of samples fill in parallel: `fill(range, out)`
/// must write every element of `out`, the `per_sample * range.len()` elements of its samples.
fn filled_by_chunks<F>(
    len: usize,
    per_sample: usize,
    chunks: Vec<Range<usize>>,
    fill: F,
) -> Vec<f32>
where
    F: Fn(Range<usize>, &mut [MaybeUninit<f32>]) + Sync + Send,
{
    let write = |buf: &mut [MaybeUninit<f32>]| {
        let ptr = SendPtr(buf.as_mut_ptr().cast::<f32>());
        run_tasks(chunks, |r| {
            // SAFETY: sample ranges are disjoint, so each task has its own part of `buf`.
            let out = unsafe {
                std::slice::from_raw_parts_mut(
                    ptr.get()
                        .add(r.start * per_sample)
                        .cast::<MaybeUninit<f32>>(),
                    r.len() * per_sample,
                )
            };
            fill(r, out)
        });
    };
    // SAFETY: the chunks cover every sample, and `fill` writes all of each chunk's elements.
    unsafe { new_filled(len, write) }
}

struct ConvOp {
    g: Geom,
    /// `conv_transpose2d` (input on the grid side) rather than `conv2d`.
    transposed: bool,
    /// Applied to the output.
    act: Activation,
}

/// `dst (m x n) += lhs (m x k) @ rhs (k x n)` on the calling thread, operands as in [`mm`].
fn mm_add(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) {
    assert!(dst.len() >= m * n, "conv: product output too small");
    assert!(
        lhs.0.len() >= extent(m, k, lhs.1, lhs.2),
        "conv: lhs too small"
    );
    assert!(
        rhs.0.len() >= extent(k, n, rhs.1, rhs.2),
        "conv: rhs too small"
    );
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: as in `mm`; with read_dst, alpha = 1 and beta = 1 `gemm` adds the product to
    // `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
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
        } else {
            // grid (Co, m*P) = Wm (Co, K) @ im2col(image) (K, m*P), chunk by chunk
            filled_by_chunks(g.grid_len(), g.co * p, chunks(g), |r, out| {
                let cp = r.len() * p;
                let mut col = Scratch::new(k * cp);
                im2col(g, x, r.clone(), &mut col);
                let mut yg = Scratch::new(g.co * cp);
                mm(g.co, cp, k, &mut yg, (w, k, 1), (&col, cp, 1));
                from_cnp(&yg, g.co, p, r.len(), b, self.act, out);
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
        // The image-side and grid-side tensors of this call, whichever is input or output.
        let (image, grid) = if self.transposed {
            (dys, xs)
        } else {
            (xs, dys)
        };
        // dWm (Co, K) = sum over chunks of grid (Co, m*P) @ im2col(image)^T (m*P, K). Each
        // task sums its own run of chunks; the runs' sums are added in sample order afterwards,
        // so the result does not depend on which thread finishes first (exact resume needs it).
        let dw_parts: Mutex<Vec<(usize, Vec<f32>)>> = Mutex::new(Vec::new());
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
                let mut parts = dw_parts.lock().unwrap_or_else(|e| e.into_inner());
                parts.push((r.start, dw));
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
            let mut parts = dw_parts.into_inner().unwrap_or_else(|e| e.into_inner());
            parts.sort_by_key(|(start, _)| *start);
            let mut parts = parts.into_iter().map(|(_, v)| v);
            let mut dw = parts.next().unwrap_or_else(|| vec![0f32; g.co * k]);
            for part in parts {
                dw.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
            }
            Some(tensor(dw, w.shape())?)
        } else {
            None
        };
        let db = if want[2] {
            let (c, plane) = if self.transposed {
                (g.ci, g.hi * g.wi)
            } else {
                (g.co, p)
            };
            Some(tensor(channel_sums(dys, c, plane), c)?)
        } else {
            None
        };
        Ok([dx, dw, db])
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward(f32_slice(s1, l1, NAME)?, f32_slice(s2, l2, NAME)?, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [dx, dw, _] = self.backward(x, w, y, dy, [x.track_op(), w.track_op(), false])?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for ConvOp {
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
        let b = f32_slice(s3, l3, NAME)?;
        self.forward(f32_slice(s1, l1, NAME)?, f32_slice(s2, l2, NAME)?, Some(b))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [dx, dw, db] =
            self.backward(x, w, y, dy, [x.track_op(), w.track_op(), b.track_op()])?;
        Ok((dx, dw, db))
    }
}
