//! What the ggml block formats (Q4_1, Q8_0) share when they multiply: `x @ W^T` with one row of
//! `W` per output, computed two ways.
//!
//! - Decoding (a few activation rows): each activation row is rounded to 8 bits per block of
//!   32 (as llama.cpp does) and every output is an integer dot product over the blocks, read
//!   straight from the packed weights: memory, not arithmetic, is the bound.
//! - A prompt (many activation rows): each weight is used once per row, so panels of weight
//!   rows are widened to f32 once and multiplied with `gemm`'s tuned micro-kernels, which keep
//!   every register busy where the block dots would re-unpack each block per row
//!   (`muse bench generate` pp512 on SmolLM2 Q4_1, 2 threads, AMD EPYC: 232 tokens/s with the
//!   dots, 321 with the panels).

use std::ops::Range;

use candle_core::{DType, Result, Tensor};

use super::cpu::{SendPtr, run_tasks};
use super::math::simd_dispatch;
use super::matmul::{Mat, gemm};

/// Weights per block in every format here.
pub const BLOCK: usize = 32;

/// Activation rows from which the f32 panels beat the block dots. Widening every weight to
/// f32 costs about as much as 25 rows of dots (SmolLM2-135M Q4_1, one Zen 4 core: 236 ms
/// for a step of 8 rows by panels, 16 ms for one row and 9 ms for each further row by dots),
/// so small batches, a continuous batch of decode steps above all, take the dots.
pub(crate) const MIN_BATCH: usize = 32;

/// Weight rows per panel: 64 rows of 1536 f32 are 384 KiB, inside a core's L2.
pub(crate) const PANEL_ROWS: usize = 64;

/// A (rows, cols) matrix in a block format.
pub(crate) trait QuantRows: Sync {
    /// (rows, cols).
    fn dims(&self) -> (usize, usize);

    /// Rows `rows` as f32, row-major, into `out` (`rows.len() * cols` long).
    fn widen_rows(&self, rows: Range<usize>, out: &mut [f32]);

    /// Weight row `r` dotted with activation row `i` of `x`.
    fn dot(&self, r: usize, x: &Activations, i: usize) -> f32;

    /// Weight row `r` dotted with every activation row of `x`, into `out` (one per row). A
    /// format may unpack each weight block once for several rows; the sums must equal
    /// [`QuantRows::dot`]'s bit for bit, so that a sequence decodes the same alone or in a
    /// batch.
    fn dots(&self, r: usize, x: &Activations, out: &mut [f32]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.dot(r, x, i);
        }
    }

    /// The op's name in messages.
    fn name(&self) -> &'static str;
}

/// Activation rows rounded to 8 bits per block of 32: `x ~ d * q`.
pub(crate) struct Activations {
    cols: usize,
    /// (n, cols) codes in [-127, 127].
    pub q: Vec<i8>,
    /// (n, cols / 32): scale `d` and `d * sum(q)` of each block.
    pub d: Vec<f32>,
    pub dsum: Vec<f32>,
}

impl Activations {
    /// Rounds `xs` (rows of `cols`, a multiple of 32).
    pub(crate) fn quantize(xs: &[f32], cols: usize) -> Self {
        let n_blocks = xs.len() / BLOCK;
        let mut a = Self {
            cols,
            q: vec![0i8; xs.len()],
            d: vec![0f32; n_blocks],
            dsum: vec![0f32; n_blocks],
        };
        quantize_simd(xs, &mut a.q, &mut a.d, &mut a.dsum);
        a
    }

    /// Row `i`: its codes, block scales and block `d * sum(q)`.
    pub(crate) fn row(&self, i: usize) -> (&[i8], &[f32], &[f32]) {
        let nb = self.cols / BLOCK;
        (
            &self.q[i * self.cols..(i + 1) * self.cols],
            &self.d[i * nb..(i + 1) * nb],
            &self.dsum[i * nb..(i + 1) * nb],
        )
    }
}

/// Per block of 32: `d = max|x| / 127`, `q = round(x / d)`, and `d * sum(q)`.
#[inline(always)]
fn quantize_impl<F: super::math::Fma>(xs: &[f32], q: &mut [i8], d: &mut [f32], dsum: &mut [f32]) {
    for (((xb, qb), d), s) in xs
        .chunks_exact(BLOCK)
        .zip(q.chunks_exact_mut(BLOCK))
        .zip(d.iter_mut())
        .zip(dsum.iter_mut())
    {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (qi, &v) in qb.iter_mut().zip(xb) {
            // Ties to even (one vector instruction) rather than away from zero (a libm call).
            let c = (v * inv).round_ties_even() as i32;
            *qi = c as i8;
            sum += c;
        }
        (*d, *s) = (scale, scale * sum as f32);
    }
}
simd_dispatch!(fn quantize_simd(xs: &[f32], q: &mut [i8], d: &mut [f32], dsum: &mut [f32]) = quantize_impl);

/// `x @ W^T`.
///
/// # Shapes
/// `x`: (..., cols) f32 on the CPU -> (..., rows).
pub(crate) fn forward(w: &impl QuantRows, x: &Tensor) -> Result<Tensor> {
    let (rows, cols) = w.dims();
    let dims = x.dims().to_vec();
    let Some((&width, lead)) = dims.split_last() else {
        candle_core::bail!("{} matmul of a scalar", w.name());
    };
    if width != cols {
        candle_core::bail!(
            "{} matmul: input width {width}, weights take {cols}",
            w.name()
        );
    }
    let xs: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let n = xs.len() / cols;
    let out = if n >= MIN_BATCH {
        forward_panels(w.dims(), |r, out| w.widen_rows(r, out), &xs, n)
    } else {
        forward_dots(w, &Activations::quantize(&xs, cols), n)
    };
    let mut shape = lead.to_vec();
    shape.push(rows);
    Tensor::from_vec(out, shape, x.device())
}

/// Rows `ids` of `W` widened to f32: an embedding lookup that leaves the table quantised
/// (SmolLM2's Q8_0 token embedding is 30 MB as it is and 113 MB as f32).
///
/// # Shapes
/// `ids`: (...) u32 -> (..., cols).
pub(crate) fn gather_rows(w: &impl QuantRows, ids: &Tensor) -> Result<Tensor> {
    let (rows, cols) = w.dims();
    let flat: Vec<u32> = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
    let mut out = vec![0f32; flat.len() * cols];
    for (&id, dst) in flat.iter().zip(out.chunks_exact_mut(cols)) {
        let r = id as usize;
        if r >= rows {
            candle_core::bail!(
                "{} lookup: id {r} is out of range for {rows} rows",
                w.name()
            );
        }
        w.widen_rows(r..r + 1, dst);
    }
    let mut shape = ids.dims().to_vec();
    shape.push(cols);
    Tensor::from_vec(out, shape, ids.device())
}

/// The block dots, output rows split over threads: (rows, n), then transposed to (n, rows).
fn forward_dots(w: &impl QuantRows, x: &Activations, n: usize) -> Vec<f32> {
    let (rows, _) = w.dims();
    let mut out_t = vec![0f32; rows * n];
    let per_task = (rows / (super::cpu::threads() * 4)).max(1);
    let tasks: Vec<_> = out_t.chunks_mut(per_task * n).enumerate().collect();
    run_tasks(tasks, |(task, chunk)| {
        for (k, out_r) in chunk.chunks_exact_mut(n).enumerate() {
            w.dots(task * per_task + k, x, out_r);
        }
    });
    if n == 1 {
        return out_t;
    }
    let mut out = vec![0f32; n * rows];
    for (r, row) in out_t.chunks_exact(n).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            out[i * rows + r] = v;
        }
    }
    out
}

/// `xs (n, cols) @ W^T -> (n, rows)` by f32 panels of widened weight rows: `widen(r0..r1,
/// out)` writes rows r0..r1 of `W` (at most [`PANEL_ROWS`], starting at a multiple of it).
pub(crate) fn forward_panels(
    (rows, cols): (usize, usize),
    widen: impl Fn(Range<usize>, &mut [f32]) + Sync,
    xs: &[f32],
    n: usize,
) -> Vec<f32> {
    assert_eq!(xs.len(), n * cols, "quantised matmul: input size");
    let mut out: Vec<f32> = Vec::with_capacity(n * rows);
    let dst = SendPtr(out.as_mut_ptr());
    let panels: Vec<usize> = (0..rows).step_by(PANEL_ROWS).collect();
    run_tasks(panels, |r0| {
        let r1 = (r0 + PANEL_ROWS).min(rows);
        let mut panel = vec![0f32; (r1 - r0) * cols];
        widen(r0..r1, &mut panel);
        // SAFETY: `xs` is (n, cols) and `panel` (r1 - r0, cols), both row-major and alive for
        // the call; read as x (n x cols) and panel^T (cols x (r1 - r0)). Each task writes only
        // columns r0..r1 of the (n, rows) output, which no other task touches, and every
        // output element lies in exactly one panel, so all are written before `set_len`.
        unsafe {
            gemm(
                n,
                r1 - r0,
                cols,
                dst.get().add(r0),
                rows as isize,
                1,
                false,
                Mat::view(xs, 0, (n, cols), cols, 1),
                Mat::view(&panel, 0, (cols, r1 - r0), 1, cols),
                1.0,
            )
        }
    });
    // SAFETY: the panels cover all `rows` columns of all `n` rows (see above).
    unsafe { out.set_len(n * rows) };
    out
}

/// `sum_b scale_b * products_b` over `nb` blocks, where `block(b)` gives block b's scale
/// (broadcast) and its 8 partial products, summed to one f32. Two accumulators, even and odd
/// blocks: one chain of dependent FMAs (4 cycles each) was the bound, not the loads.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `block` must be safe to call for every `b < nb`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn sum_scaled_blocks(
    nb: usize,
    block: impl Fn(usize) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256),
) -> f32 {
    use std::arch::x86_64::*;
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut b = 0;
    while b + 1 < nb {
        let (s0, p0) = block(b);
        let (s1, p1) = block(b + 1);
        acc0 = _mm256_fmadd_ps(s0, p0, acc0);
        acc1 = _mm256_fmadd_ps(s1, p1, acc1);
        b += 2;
    }
    if b < nb {
        let (s0, p0) = block(b);
        acc0 = _mm256_fmadd_ps(s0, p0, acc0);
    }
    let acc = _mm256_add_ps(acc0, acc1);
    let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    _mm_cvtss_f32(h)
}

/// [`sum_scaled_blocks`] for `R` activation rows at once: `block(b)` gives block b's scale
/// and partial products for each row. Each row keeps its own even and odd accumulators and is
/// reduced as there, so every sum equals the one-row kernel's bit for bit.
///
/// # Safety
/// As [`sum_scaled_blocks`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn sum_scaled_blocks_rows<const R: usize>(
    nb: usize,
    block: impl Fn(usize) -> [(std::arch::x86_64::__m256, std::arch::x86_64::__m256); R],
) -> [f32; R] {
    use std::arch::x86_64::*;
    let mut acc0 = [_mm256_setzero_ps(); R];
    let mut acc1 = [_mm256_setzero_ps(); R];
    let mut b = 0;
    while b + 1 < nb {
        let p0 = block(b);
        let p1 = block(b + 1);
        for k in 0..R {
            acc0[k] = _mm256_fmadd_ps(p0[k].0, p0[k].1, acc0[k]);
            acc1[k] = _mm256_fmadd_ps(p1[k].0, p1[k].1, acc1[k]);
        }
        b += 2;
    }
    if b < nb {
        let p0 = block(b);
        for k in 0..R {
            acc0[k] = _mm256_fmadd_ps(p0[k].0, p0[k].1, acc0[k]);
        }
    }
    let mut out = [0f32; R];
    for k in 0..R {
        let acc = _mm256_add_ps(acc0[k], acc1[k]);
        let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        out[k] = _mm_cvtss_f32(h);
    }
    out
}

/// Largest |a - b| over the largest |b|: how the kernels' tests compare products.
#[cfg(test)]
pub(crate) fn scaled_err(a: &Tensor, b: &Tensor) -> f32 {
    let max = |t: &Tensor| {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    max(&(a - b).unwrap()) / max(b)
}

/// The kernels' shared embedding test: the rows that `embedding` looks up in a (40, 64) matrix
/// quantised as `dtype` (given its GGML bytes) equal the rows of the dequantised matrix, and an
/// id past the end is an error.
#[cfg(test)]
pub(crate) fn check_embedding(
    dtype: candle_core::quantized::GgmlDType,
    embedding: impl Fn(&[u8], &Tensor) -> candle_core::Result<Tensor>,
) {
    use candle_core::Device;
    use candle_core::quantized::QTensor;
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (40, 64), &dev).unwrap();
    let q = QTensor::quantize(&w, dtype).unwrap();
    let bytes = q.data().unwrap();
    let ids = Tensor::new(&[[3u32, 39, 0], [3, 17, 8]], &dev).unwrap();
    let got = embedding(&bytes, &ids).unwrap();
    assert_eq!(got.dims(), &[2, 3, 64]);
    let want = q
        .dequantize(&dev)
        .unwrap()
        .index_select(&ids.flatten_all().unwrap(), 0)
        .unwrap()
        .reshape((2, 3, 64))
        .unwrap();
    let e = scaled_err(&got, &want);
    assert!(e < 1e-6, "{dtype:?} vs the dequantised rows: {e}");
    assert!(embedding(&bytes, &Tensor::new(&[40u32], &dev).unwrap()).is_err());
}
