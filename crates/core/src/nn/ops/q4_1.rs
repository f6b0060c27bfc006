//! Matrix product with Q4_1 weights (ggml's format: per block of 32 weights a scale `d`, a
//! minimum `m` and 4-bit codes `q`, weight = d * q + m), as llama.cpp computes it: each
//! activation row is rounded to 8 bits per block of 32 (scale `dx`, codes `qx`), then
//! `sum_j w_j x_j = d * dx * sum_j q_j qx_j + m * dx * sum_j qx_j` per block.
//!
//! candle runs Q4_1 through its scalar fallback (`BlockQ4_1::vec_dot_unopt`): 75% of the time
//! of `muse sample` on SmolLM2-135M Q4_1 (perf, 2-core AMD EPYC). This kernel is the same maths
//! written to vectorise (AVX2 via [`super::math`]'s dispatch) and split over rayon threads.

use candle_core::{Result, Tensor};
use half::f16;

use super::math::simd_dispatch;
use super::quant_rows::{self, Activations, BLOCK, QuantRows};
/// Bytes per block in the file: f16 d, f16 m, 16 bytes of codes.
const BLOCK_BYTES: usize = 20;

/// A (rows, cols) Q4_1 matrix, split for the kernel into codes, scales and minima, all as the
/// file stores them. The scales stay f16 (F16C widens one per block in a single instruction):
/// f32 copies took 24 bytes a block instead of 20, 13 MB more resident for SmolLM2-135M.
#[derive(Clone, Debug)]
pub struct Q4_1Matrix {
    rows: usize,
    cols: usize,
    /// (rows, cols / 32, 16): two codes per byte, low nibble first half of the block.
    codes: Vec<u8>,
    /// (rows, cols / 32) each.
    d: Vec<f16>,
    m: Vec<f16>,
}

impl Q4_1Matrix {
    /// From ggml's Q4_1 bytes of a (rows, cols) matrix.
    pub fn from_ggml(bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        if !cols.is_multiple_of(BLOCK) || bytes.len() != rows * cols / BLOCK * BLOCK_BYTES {
            candle_core::bail!(
                "Q4_1 data of {} bytes does not fit a ({rows}, {cols}) matrix",
                bytes.len()
            );
        }
        let n = rows * cols / BLOCK;
        let mut codes = Vec::with_capacity(n * 16);
        let (mut d, mut m) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for b in bytes.chunks_exact(BLOCK_BYTES) {
            d.push(f16::from_le_bytes([b[0], b[1]]));
            m.push(f16::from_le_bytes([b[2], b[3]]));
            codes.extend_from_slice(&b[4..]);
        }
        Ok(Self {
            rows,
            cols,
            codes,
            d,
            m,
        })
    }

    /// `x @ W^T` (see [`super::quant_rows`] for how).
    ///
    /// # Shapes
    /// `x`: (..., cols) f32 on the CPU -> (..., rows).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        quant_rows::forward(self, x)
    }

    /// Rows `ids` as f32, for a token embedding kept in this format.
    ///
    /// # Shapes
    /// `ids`: (...) u32 -> (..., cols).
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        quant_rows::gather_rows(self, ids)
    }
}

impl QuantRows for Q4_1Matrix {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn widen_rows(&self, rows: std::ops::Range<usize>, out: &mut [f32]) {
        let nb = self.cols / BLOCK;
        let blocks = rows.start * nb..rows.end * nb;
        dequantize_simd(
            &self.codes[blocks.start * 16..blocks.end * 16],
            &self.d[blocks.clone()],
            &self.m[blocks],
            out,
        );
    }

    fn dot(&self, r: usize, x: &Activations, i: usize) -> f32 {
        let nb = self.cols / BLOCK;
        let (q, dx, sx) = x.row(i);
        row_dot(
            &self.codes[r * nb * 16..(r + 1) * nb * 16],
            &self.d[r * nb..(r + 1) * nb],
            &self.m[r * nb..(r + 1) * nb],
            q,
            dx,
            sx,
        )
    }

    fn dots(&self, r: usize, x: &Activations, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma_f16c() {
            let nb = self.cols / BLOCK;
            let (codes, d, m) = (
                &self.codes[r * nb * 16..(r + 1) * nb * 16],
                &self.d[r * nb..(r + 1) * nb],
                &self.m[r * nb..(r + 1) * nb],
            );
            let done = out.len() - out.len() % ROWS_AT_ONCE;
            for (g, outs) in out[..done].chunks_exact_mut(ROWS_AT_ONCE).enumerate() {
                let rows: [_; ROWS_AT_ONCE] = std::array::from_fn(|k| x.row(g * ROWS_AT_ONCE + k));
                // SAFETY: the CPU has AVX2, FMA and F16C; `row_dots_avx2` checks the lengths.
                let sums = unsafe { row_dots_avx2(codes, d, m, &rows) };
                outs.copy_from_slice(&sums);
            }
            for (i, o) in out.iter_mut().enumerate().skip(done) {
                *o = self.dot(r, x, i);
            }
            return;
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.dot(r, x, i);
        }
    }

    fn name(&self) -> &'static str {
        "q4_1"
    }
}

/// Activation rows [`row_dots_avx2`] takes at once: each block's codes are unpacked once for
/// all of them (a continuous batch of decode steps, a short prompt).
const ROWS_AT_ONCE: usize = 4;

/// True when the CPU has what the intrinsics kernels use: AVX2, FMA and F16C (every AVX2 CPU
/// made has F16C, but it is checked all the same).
fn has_avx2_fma_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::math::has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `w = d * q + m` for each block: codes (n, 16), d and m (n) -> w (n, 32).
#[inline(always)]
fn dequantize_impl<F: super::math::Fma>(codes: &[u8], d: &[f16], m: &[f16], out: &mut [f32]) {
    for (((w, c), d), m) in out
        .chunks_exact_mut(BLOCK)
        .zip(codes.chunks_exact(16))
        .zip(d)
        .zip(m)
    {
        let (d, m) = (d.to_f32(), m.to_f32());
        // Byte j holds weight j (low nibble) and weight j + 16 (high nibble).
        let (lo, hi) = w.split_at_mut(16);
        for ((l, h), &b) in lo.iter_mut().zip(hi.iter_mut()).zip(c) {
            *l = F::fma(d, (b & 15) as f32, m);
            *h = F::fma(d, (b >> 4) as f32, m);
        }
    }
}
simd_dispatch!(fn dequantize_simd(codes: &[u8], d: &[f16], m: &[f16], out: &mut [f32]) = dequantize_impl);

/// One output: the dot product of a weight row and an activation row, block by block.
#[inline(always)]
fn row_dot_impl<F: super::math::Fma>(
    codes: &[u8],
    d: &[f16],
    m: &[f16],
    qx: &[i8],
    dx: &[f32],
    sx: &[f32],
) -> f32 {
    let mut acc = 0f32;
    for b in 0..d.len() {
        let c = &codes[b * 16..b * 16 + 16];
        let q = &qx[b * BLOCK..b * BLOCK + BLOCK];
        let mut s = 0i32;
        for j in 0..16 {
            let lo = (c[j] & 15) as i16 * q[j] as i16;
            let hi = (c[j] >> 4) as i16 * q[j + 16] as i16;
            s += lo as i32 + hi as i32;
        }
        acc = F::fma(d[b].to_f32() * dx[b], s as f32, acc);
        acc = F::fma(m[b].to_f32(), sx[b], acc);
    }
    acc
}
simd_dispatch!(fn row_dot_portable(
    codes: &[u8],
    d: &[f16],
    m: &[f16],
    qx: &[i8],
    dx: &[f32],
    sx: &[f32],
) -> f32 = row_dot_impl);

/// [`row_dot_impl`] with AVX2 intrinsics where the CPU has them, else the portable loop.
/// LLVM does not find `maddubs` for the nibble products by itself: `muse sample` on SmolLM2
/// Q4_1 (60 tokens, greedy, 2-core AMD EPYC shared with other work) ran 8.1 tokens/s with candle's
/// kernel, 10.6 with the portable loop, 55.8 with this one.
fn row_dot(codes: &[u8], d: &[f16], m: &[f16], qx: &[i8], dx: &[f32], sx: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma_f16c() {
        // Slices hold d.len() blocks: checked once here, read unchecked below.
        let nb = d.len();
        assert!(codes.len() >= nb * 16 && qx.len() >= nb * BLOCK);
        assert!(m.len() >= nb && dx.len() >= nb && sx.len() >= nb);
        // SAFETY: the CPU has AVX2, FMA and F16C; every read is within the lengths checked
        // above.
        return unsafe { row_dot_avx2(codes, d, m, qx, dx, sx) };
    }
    row_dot_portable(codes, d, m, qx, dx, sx)
}

/// One f16 widened to f32 by F16C.
///
/// # Safety
/// The CPU must have F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "f16c")]
#[inline]
unsafe fn widen(h: f16) -> f32 {
    use std::arch::x86_64::*;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

/// `sum_b m_b * s_b` over f16 `m` and f32 `s` (the minima's share of a row's dot), eight lanes
/// at a time.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `s` must be at least as long as `m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_f32(m: &[f16], s: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = m.len();
    let mut acc = _mm256_setzero_ps();
    let mut b = 0;
    while b + 8 <= n {
        // SAFETY: lanes b..b + 8 lie within both slices.
        let (mv, sv) = unsafe {
            (
                _mm256_cvtph_ps(_mm_loadu_si128(m.as_ptr().add(b) as *const __m128i)),
                _mm256_loadu_ps(s.as_ptr().add(b)),
            )
        };
        acc = _mm256_fmadd_ps(mv, sv, acc);
        b += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds eight f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut sum = lanes.iter().sum::<f32>();
    for j in b..n {
        sum += m[j].to_f32() * s[j];
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_dot_avx2(
    codes: &[u8],
    d: &[f16],
    m: &[f16],
    qx: &[i8],
    dx: &[f32],
    sx: &[f32],
) -> f32 {
    use std::arch::x86_64::*;
    let nb = d.len();
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    // The 8 i32 partial sums of block b's code products, scaled by d * dx.
    let block = |b: usize| {
        // SAFETY (all loads): block b lies within the slices (checked by the caller).
        let c = unsafe { _mm_loadu_si128(codes.as_ptr().add(b * 16) as *const __m128i) };
        // Lanes 0..16: low nibbles (weights 0..16); lanes 16..32: high nibbles (16..32).
        let c = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(c, 4), c), low);
        let q = unsafe { _mm256_loadu_si256(qx.as_ptr().add(b * BLOCK) as *const __m256i) };
        // u8 x i8 pairs summed to i16 (at most 2 * 15 * 127), then pairs to i32.
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(c, q), ones);
        let scale = unsafe { widen(*d.get_unchecked(b)) * *dx.get_unchecked(b) };
        (_mm256_set1_ps(scale), _mm256_cvtepi32_ps(p))
    };
    // SAFETY: the caller checked the CPU features and the slice lengths.
    let sum = unsafe { quant_rows::sum_scaled_blocks(nb, block) };
    // The minima's share, sum_b m_b * sx_b, as one vectorised dot product.
    sum + unsafe { dot_f16_f32(&m[..nb], &sx[..nb]) }
}

/// [`row_dot_avx2`] for [`ROWS_AT_ONCE`] activation rows (codes, scales, `d * sum(q)`): the
/// nibbles of each block are unpacked once, and each row's sum is the one-row kernel's, bit
/// for bit.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_dots_avx2(
    codes: &[u8],
    d: &[f16],
    m: &[f16],
    rows: &[(&[i8], &[f32], &[f32]); ROWS_AT_ONCE],
) -> [f32; ROWS_AT_ONCE] {
    use std::arch::x86_64::*;
    let nb = d.len();
    assert!(codes.len() >= nb * 16 && m.len() >= nb);
    for (qx, dx, sx) in rows {
        assert!(qx.len() >= nb * BLOCK && dx.len() >= nb && sx.len() >= nb);
    }
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let block = |b: usize| {
        // SAFETY (all loads): block b lies within the slices (checked above).
        let c = unsafe { _mm_loadu_si128(codes.as_ptr().add(b * 16) as *const __m128i) };
        let c = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(c, 4), c), low);
        let db = unsafe { widen(*d.get_unchecked(b)) };
        std::array::from_fn(|k| {
            let (qx, dx, _) = rows[k];
            let q = unsafe { _mm256_loadu_si256(qx.as_ptr().add(b * BLOCK) as *const __m256i) };
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(c, q), ones);
            let scale = db * unsafe { *dx.get_unchecked(b) };
            (_mm256_set1_ps(scale), _mm256_cvtepi32_ps(p))
        })
    };
    // SAFETY: the CPU features are the caller's; the lengths are checked above.
    let sums = unsafe { quant_rows::sum_scaled_blocks_rows::<ROWS_AT_ONCE>(nb, block) };
    std::array::from_fn(|k| {
        let sx = rows[k].2;
        sums[k] + unsafe { dot_f16_f32(&m[..nb], &sx[..nb]) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::quant_rows::scaled_err;
    use candle_core::Device;
    use candle_core::Module;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};

    /// The kernel agrees with candle's own Q4_1 matmul (the same maths, except that candle
    /// stores the activation scales as f16: a relative error of up to 2^-11 each), and with
    /// the f32 product by the dequantised weights (activations rounded to 8 bits per block).
    #[test]
    fn matches_candle_q4_1_and_the_dequantised_product() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (48, 96), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 96), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let bytes = q.data().unwrap().to_vec();
        let exact = x
            .broadcast_matmul(&q.dequantize(&dev).unwrap().t().unwrap())
            .unwrap();
        let candle = QMatMul::from_qtensor(q).unwrap().forward(&x).unwrap();
        let got = Q4_1Matrix::from_ggml(&bytes, 48, 96)
            .unwrap()
            .forward(&x)
            .unwrap();
        let e = scaled_err(&got, &candle);
        assert!(e < 2e-3, "vs candle: {e}");
        let e = scaled_err(&got, &exact);
        assert!(e < 1e-2, "vs the dequantised product: {e}");
    }

    /// A batch of activations (a prompt) takes the f32 panel path: the product by the
    /// dequantised weights, to f32 rounding, with rows spanning several panels.
    #[test]
    fn batched_product_equals_the_dequantised_product() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (150, 96), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 20, 96), &dev).unwrap();
        const { assert!(40 >= quant_rows::MIN_BATCH) };
        let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let bytes = q.data().unwrap().to_vec();
        let exact = x
            .broadcast_matmul(&q.dequantize(&dev).unwrap().t().unwrap())
            .unwrap();
        let got = Q4_1Matrix::from_ggml(&bytes, 150, 96)
            .unwrap()
            .forward(&x)
            .unwrap();
        assert_eq!(got.dims(), &[2, 20, 150]);
        let e = scaled_err(&got, &exact);
        assert!(e < 1e-5, "vs the dequantised product: {e}");
    }

    /// A row lookup (the token embedding) equals the rows of the dequantised matrix; an id
    /// past the end is an error.
    #[test]
    fn embedding_equals_the_dequantised_rows() {
        crate::nn::ops::quant_rows::check_embedding(GgmlDType::Q4_1, |bytes, ids| {
            Q4_1Matrix::from_ggml(bytes, 40, 64)?.embedding(ids)
        });
    }

    /// The portable loop and the AVX2 one give the same sums.
    #[test]
    fn portable_and_simd_dots_agree() {
        // 5 blocks: the minima's lanes all in the tail; 13: eight at once, then the tail.
        for nb in [5, 13] {
            portable_and_simd_agree_over(nb);
        }
    }

    fn portable_and_simd_agree_over(nb: usize) {
        let codes: Vec<u8> = (0..nb * 16).map(|i| (i * 37 % 256) as u8).collect();
        let qx: Vec<i8> = (0..nb * BLOCK)
            .map(|i| ((i * 53 % 255) as i32 - 127) as i8)
            .collect();
        let d: Vec<f16> = (0..nb)
            .map(|i| f16::from_f32(0.01 * (i + 1) as f32))
            .collect();
        let m: Vec<f16> = (0..nb).map(|i| f16::from_f32(-0.02 * i as f32)).collect();
        let (dx, sx) = (vec![0.5f32; nb], vec![3.0f32; nb]);
        let a = row_dot(&codes, &d, &m, &qx, &dx, &sx);
        let b = row_dot_portable(&codes, &d, &m, &qx, &dx, &sx);
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }

    /// Several activation rows at once give each row's one-row sum exactly, whatever the
    /// count (groups of four and a remainder), with odd and even block counts.
    #[test]
    fn dots_of_several_rows_equal_each_row_bit_for_bit() {
        let dev = Device::Cpu;
        for cols in [96, 128] {
            let w = Tensor::randn(0f32, 1.0, (3, cols), &dev).unwrap();
            let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
            let m = Q4_1Matrix::from_ggml(&q.data().unwrap(), 3, cols).unwrap();
            for n in 1..=9 {
                let xs: Vec<f32> = Tensor::randn(0f32, 1.0, (n, cols), &dev)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let x = Activations::quantize(&xs, cols);
                for r in 0..3 {
                    let mut got = vec![0f32; n];
                    m.dots(r, &x, &mut got);
                    let want: Vec<f32> = (0..n).map(|i| m.dot(r, &x, i)).collect();
                    assert_eq!(got, want, "cols {cols}, {n} rows, weight row {r}");
                }
            }
        }
    }
}
