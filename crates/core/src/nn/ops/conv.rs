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

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::cpu::{CpuRead, SendPtr, f32_slice, matmul, run_tasks, tensor, threads};
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
        return reference_conv2d(x, w, b, stride, padding);
    }
    apply(
        x,
        w,
        b,
        ConvOp {
            g,
            transposed: false,
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
        return reference_conv_transpose2d(x, w, b, stride, padding, output_padding);
    }
    apply(
        x,
        w,
        b,
        ConvOp {
            g,
            transposed: true,
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

    /// For window offset `k` (ky or kx) along an axis of `len` image pixels and `out` window
    /// positions: the positions `lo..hi` whose pixel `pos * stride + k - pad` lies inside.
    fn valid(&self, k: usize, len: usize, out: usize) -> (usize, usize) {
        let s = self.stride;
        // pos * s + k >= pad  <=>  pos >= ceil((pad - k) / s)
        let lo = self.pad.saturating_sub(k).div_ceil(s).min(out);
        // pos * s + k - pad <= len - 1  <=>  pos <= (len - 1 + pad - k) / s
        let hi = match (len + self.pad).checked_sub(k + 1) {
            Some(v) => (v / s + 1).min(out),
            None => 0,
        };
        (lo, hi.max(lo))
    }
}

/// Sample ranges, a few per thread, for work split by sample.
fn sample_tasks(n: usize) -> Vec<std::ops::Range<usize>> {
    let per = n.div_ceil(threads() * 2).max(1);
    (0..n).step_by(per).map(|a| a..(a + per).min(n)).collect()
}

/// `col` (K, N*P) = the windows of `image` (N, Ci, Hi, Wi), zeros where they overhang.
fn im2col(g: &Geom, image: &[f32]) -> Vec<f32> {
    let (p, np) = (g.p(), g.n * g.p());
    let mut col = vec![0f32; g.k() * np];
    let dst = SendPtr(col.as_mut_ptr());
    run_tasks(sample_tasks(g.n), |samples| {
        for n in samples {
            for c in 0..g.ci {
                let img = &image[(n * g.ci + c) * g.hi * g.wi..][..g.hi * g.wi];
                for ky in 0..g.kh {
                    let (ylo, yhi) = g.valid(ky, g.hi, g.hg);
                    for kx in 0..g.kw {
                        let (xlo, xhi) = g.valid(kx, g.wi, g.wg);
                        let row = (c * g.kh + ky) * g.kw + kx;
                        // SAFETY: this task alone writes the columns of samples in its range;
                        // `col` outlives the tasks.
                        let out = unsafe {
                            std::slice::from_raw_parts_mut(dst.get().add(row * np + n * p), p)
                        };
                        for oy in ylo..yhi {
                            let iy = oy * g.stride + ky - g.pad;
                            let src = &img[iy * g.wi..][..g.wi];
                            let o = &mut out[oy * g.wg..][..g.wg];
                            if g.stride == 1 {
                                let ix0 = xlo + kx - g.pad;
                                o[xlo..xhi].copy_from_slice(&src[ix0..ix0 + (xhi - xlo)]);
                            } else {
                                for ox in xlo..xhi {
                                    o[ox] = src[ox * g.stride + kx - g.pad];
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    col
}

/// `image` (N, Ci, Hi, Wi) += the windows of `col` (K, N*P) added back where they came from.
fn col2im(g: &Geom, col: &[f32], image: &mut [f32]) {
    let (p, np) = (g.p(), g.n * g.p());
    let hw = g.hi * g.wi;
    let dst = SendPtr(image.as_mut_ptr());
    run_tasks(sample_tasks(g.n), |samples| {
        for n in samples {
            // SAFETY: each task writes only the images of its own samples.
            let img_n =
                unsafe { std::slice::from_raw_parts_mut(dst.get().add(n * g.ci * hw), g.ci * hw) };
            for c in 0..g.ci {
                let img = &mut img_n[c * hw..][..hw];
                for ky in 0..g.kh {
                    let (ylo, yhi) = g.valid(ky, g.hi, g.hg);
                    for kx in 0..g.kw {
                        let (xlo, xhi) = g.valid(kx, g.wi, g.wg);
                        let row = (c * g.kh + ky) * g.kw + kx;
                        let src = &col[row * np + n * p..][..p];
                        for oy in ylo..yhi {
                            let iy = oy * g.stride + ky - g.pad;
                            let d = &mut img[iy * g.wi..][..g.wi];
                            let s = &src[oy * g.wg..][..g.wg];
                            if g.stride == 1 {
                                let ix0 = xlo + kx - g.pad;
                                for (a, b) in d[ix0..ix0 + (xhi - xlo)].iter_mut().zip(&s[xlo..xhi])
                                {
                                    *a += b;
                                }
                            } else {
                                for ox in xlo..xhi {
                                    d[ox * g.stride + kx - g.pad] += s[ox];
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// (N, C, P) -> (C, N*P).
fn to_cnp(x: &[f32], n: usize, c: usize, p: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (i, row) in x.chunks_exact(p).enumerate() {
        let (s, ch) = (i / c, i % c);
        out[(ch * n + s) * p..][..p].copy_from_slice(row);
    }
    out
}

/// (C, N*P) -> (N, C, P), adding `bias[c]` when given.
fn from_cnp(x: &[f32], n: usize, c: usize, p: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (i, row) in out.chunks_exact_mut(p).enumerate() {
        let (s, ch) = (i / c, i % c);
        let src = &x[(ch * n + s) * p..][..p];
        match bias {
            Some(b) => row.iter_mut().zip(src).for_each(|(o, v)| *o = v + b[ch]),
            None => row.copy_from_slice(src),
        }
    }
    out
}

/// Per-channel sums of `x` (N, C, P): the bias gradient.
fn channel_sums(x: &[f32], c: usize, p: usize) -> Vec<f32> {
    let mut out = vec![0f32; c];
    for (i, row) in x.chunks_exact(p).enumerate() {
        out[i % c] += row.iter().sum::<f32>();
    }
    out
}

struct ConvOp {
    g: Geom,
    /// `conv_transpose2d` (input on the grid side) rather than `conv2d`.
    transposed: bool,
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
        let (k, np, p) = (g.k(), g.n * g.p(), g.p());
        let y = if self.transposed {
            // image = col2im(Wm^T (K, Co) @ grid (Co, N*P))
            let xg = to_cnp(x, g.n, g.co, p);
            let mut col = vec![0f32; k * np];
            matmul(k, np, g.co, &mut col, false, (w, 1, k), (&xg, np, 1));
            let hw = g.hi * g.wi;
            let mut y = vec![0f32; g.image_len()];
            if let Some(b) = b {
                for (i, plane) in y.chunks_exact_mut(hw).enumerate() {
                    plane.fill(b[i % g.ci]);
                }
            }
            col2im(g, &col, &mut y);
            y
        } else {
            // grid (Co, N*P) = Wm (Co, K) @ im2col(image) (K, N*P)
            let col = im2col(g, x);
            let mut yg = vec![0f32; g.co * np];
            matmul(g.co, np, k, &mut yg, false, (w, k, 1), (&col, np, 1));
            from_cnp(&yg, g.n, g.co, p, b)
        };
        Ok((CpuStorage::F32(y), self.out_shape()))
    }

    /// Gradients of the tracked inputs: (dx, dw, db).
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        want: [bool; 3],
    ) -> Result<[Option<Tensor>; 3]> {
        let g = &self.g;
        let (k, np, p) = (g.k(), g.n * g.p(), g.p());
        let dy = dy.contiguous()?;
        let (xr, wr, dyr) = (
            CpuRead::new(x, NAME)?,
            CpuRead::new(w, NAME)?,
            CpuRead::new(&dy, NAME)?,
        );
        let (xs, ws, dys) = (xr.slice(), wr.slice(), dyr.slice());
        // The image-side and grid-side tensors of this call, whichever is input or output.
        let (image, grid) = if self.transposed {
            (dys, xs)
        } else {
            (xs, dys)
        };
        let grid_cnp = if want[1] || (want[0] && !self.transposed) {
            to_cnp(grid, g.n, g.co, p)
        } else {
            Vec::new()
        };
        let col = if want[1] || (want[0] && self.transposed) {
            Some(im2col(g, image))
        } else {
            None
        };
        // dWm (Co, K) = grid (Co, N*P) @ col^T (N*P, K), for either op.
        let dw = if want[1] {
            let col = col
                .as_deref()
                .expect("computed when the weight gradient is wanted");
            let mut dw = vec![0f32; g.co * k];
            matmul(
                g.co,
                k,
                np,
                &mut dw,
                false,
                (&grid_cnp, np, 1),
                (col, 1, np),
            );
            Some(tensor(dw, w.shape())?)
        } else {
            None
        };
        let dx = match (want[0], self.transposed) {
            (false, _) => None,
            // conv_transpose2d: d grid (Co, N*P) = Wm (Co, K) @ im2col(d image) (K, N*P)
            (true, true) => {
                let col = col.as_deref().expect("computed for the transposed op");
                let mut dg = vec![0f32; g.co * np];
                matmul(g.co, np, k, &mut dg, false, (ws, k, 1), (col, np, 1));
                Some(tensor(from_cnp(&dg, g.n, g.co, p, None), x.shape())?)
            }
            // conv2d: d image = col2im(Wm^T (K, Co) @ d grid (Co, N*P))
            (true, false) => {
                let mut dcol = vec![0f32; k * np];
                matmul(
                    k,
                    np,
                    g.co,
                    &mut dcol,
                    false,
                    (ws, 1, k),
                    (&grid_cnp, np, 1),
                );
                let mut dx = vec![0f32; g.image_len()];
                col2im(g, &dcol, &mut dx);
                Some(tensor(dx, x.shape())?)
            }
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
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [dx, dw, _] = self.backward(x, w, dy, [x.track_op(), w.track_op(), false])?;
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
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [dx, dw, db] = self.backward(x, w, dy, [x.track_op(), w.track_op(), b.track_op()])?;
        Ok((dx, dw, db))
    }
}
