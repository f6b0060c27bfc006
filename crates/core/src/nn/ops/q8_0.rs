//! Matrix product with Q8_0 weights (ggml's format: per block of 32 weights an f16 scale `d`
//! and 32 signed 8-bit codes, weight = d * q), as llama.cpp computes it: each activation row is
//! rounded to 8 bits per block (scale `dx`, codes `qx`), then `sum_j w_j x_j = d * dx * sum_j
//! q_j qx_j` per block.
//!
//! Llama-family GGUF files often keep the token embedding, and with it the tied output head,
//! in Q8_0: on SmolLM2-135M that head is 28M weights, read once per generated token. candle's
//! Q8_0 matmul took 26% of a 1-thread decoding step there (perf, AMD EPYC), converting each
//! block's f16 scale on every use; here scales are widened once at load and the dot keeps two
//! accumulators in flight.

use candle_core::{DType, Device, Result, Tensor};

use super::math::simd_dispatch;
use super::quant_rows::{self, Activations, BLOCK, QuantRows};

/// Bytes per block in the file: f16 d, 32 codes.
const BLOCK_BYTES: usize = 34;

/// A (rows, cols) Q8_0 matrix: codes as in the file, scales widened to f32.
#[derive(Clone, Debug)]
pub struct Q8_0Matrix {
    rows: usize,
    cols: usize,
    /// (rows, cols) codes.
    codes: Vec<i8>,
    /// (rows, cols / 32) scales.
    d: Vec<f32>,
}

impl Q8_0Matrix {
    /// From ggml's Q8_0 bytes of a (rows, cols) matrix.
    pub fn from_ggml(bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        if !cols.is_multiple_of(BLOCK) || bytes.len() != rows * cols / BLOCK * BLOCK_BYTES {
            candle_core::bail!(
                "Q8_0 data of {} bytes does not fit a ({rows}, {cols}) matrix",
                bytes.len()
            );
        }
        let n = rows * cols / BLOCK;
        let mut codes = Vec::with_capacity(n * BLOCK);
        let mut d = Vec::with_capacity(n * 2);
        for b in bytes.chunks_exact(BLOCK_BYTES) {
            d.extend_from_slice(&b[..2]);
            codes.extend(b[2..].iter().map(|&c| c as i8));
        }
        let d = Tensor::from_raw_buffer(&d, DType::F16, &[n], &Device::Cpu)?
            .to_dtype(DType::F32)?
            .to_vec1()?;
        Ok(Self {
            rows,
            cols,
            codes,
            d,
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

impl QuantRows for Q8_0Matrix {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn widen_rows(&self, rows: std::ops::Range<usize>, out: &mut [f32]) {
        let nb = self.cols / BLOCK;
        widen_simd(
            &self.codes[rows.start * self.cols..rows.end * self.cols],
            &self.d[rows.start * nb..rows.end * nb],
            out,
        );
    }

    fn dot(&self, r: usize, x: &Activations, i: usize) -> f32 {
        let nb = self.cols / BLOCK;
        let (q, dx, _) = x.row(i);
        row_dot(
            &self.codes[r * self.cols..(r + 1) * self.cols],
            &self.d[r * nb..(r + 1) * nb],
            q,
            dx,
        )
    }

    fn name(&self) -> &'static str {
        "q8_0"
    }
}

/// `w = d * q` for each block: codes (n, 32), d (n) -> w (n, 32).
#[inline(always)]
fn widen_impl<F: super::math::Fma>(codes: &[i8], d: &[f32], out: &mut [f32]) {
    for ((w, c), &d) in out
        .chunks_exact_mut(BLOCK)
        .zip(codes.chunks_exact(BLOCK))
        .zip(d)
    {
        for (w, &c) in w.iter_mut().zip(c) {
            *w = d * c as f32;
        }
    }
}
simd_dispatch!(fn widen_simd(codes: &[i8], d: &[f32], out: &mut [f32]) = widen_impl);

/// One output: a weight row dotted with an activation row, block by block.
#[inline(always)]
fn row_dot_impl<F: super::math::Fma>(codes: &[i8], d: &[f32], qx: &[i8], dx: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (b, (&db, &dxb)) in d.iter().zip(dx).enumerate() {
        let (c, q) = (&codes[b * BLOCK..][..BLOCK], &qx[b * BLOCK..][..BLOCK]);
        let s: i32 = c.iter().zip(q).map(|(&w, &x)| w as i32 * x as i32).sum();
        acc = F::fma(db * dxb, s as f32, acc);
    }
    acc
}
simd_dispatch!(fn row_dot_portable(codes: &[i8], d: &[f32], qx: &[i8], dx: &[f32]) -> f32 = row_dot_impl);

/// [`row_dot_impl`] with AVX2 intrinsics where the CPU has them, else the portable loop.
fn row_dot(codes: &[i8], d: &[f32], qx: &[i8], dx: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::math::has_avx2_fma() {
        let nb = d.len();
        assert!(codes.len() >= nb * BLOCK && qx.len() >= nb * BLOCK && dx.len() >= nb);
        // SAFETY: the CPU has AVX2 and FMA; every read is within the lengths checked above.
        return unsafe { row_dot_avx2(codes, d, qx, dx) };
    }
    row_dot_portable(codes, d, qx, dx)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_dot_avx2(codes: &[i8], d: &[f32], qx: &[i8], dx: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let nb = d.len();
    let ones = _mm256_set1_epi16(1);
    // The 8 i32 partial sums of block b's products, and its scale d * dx.
    let block = |b: usize| {
        // SAFETY (all loads): block b lies within the slices (checked by the caller).
        let w = unsafe { _mm256_loadu_si256(codes.as_ptr().add(b * BLOCK) as *const __m256i) };
        let x = unsafe { _mm256_loadu_si256(qx.as_ptr().add(b * BLOCK) as *const __m256i) };
        // maddubs multiplies unsigned by signed bytes: |w| times x with w's sign moved onto x.
        // |w| <= 128 and |x| <= 127, so each pair sum stays within i16.
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
        let p = _mm256_madd_epi16(p, ones);
        let scale = unsafe { *d.get_unchecked(b) * *dx.get_unchecked(b) };
        (_mm256_set1_ps(scale), _mm256_cvtepi32_ps(p))
    };
    // SAFETY: the caller checked the CPU features and the slice lengths.
    unsafe { quant_rows::sum_scaled_blocks(nb, block) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::quant_rows::scaled_err;
    use candle_core::Module;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};

    /// Decoding-sized and prompt-sized inputs agree with candle's own Q8_0 matmul and with the
    /// f32 product by the dequantised weights.
    #[test]
    fn matches_candle_q8_0_and_the_dequantised_product() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (150, 96), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let bytes = q.data().unwrap().to_vec();
        let ours = Q8_0Matrix::from_ggml(&bytes, 150, 96).unwrap();
        let dequantised = q.dequantize(&dev).unwrap().t().unwrap();
        let candle = QMatMul::from_qtensor(q).unwrap();
        // (1, 1, 96) takes the 8-bit dots, (2, 20, 96) the f32 panels.
        for (shape, tol) in [((1, 1, 96), 1e-2), ((2, 20, 96), 1e-5)] {
            let x = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
            let got = ours.forward(&x).unwrap();
            assert_eq!(got.dims(), &[shape.0, shape.1, 150]);
            let exact = x.broadcast_matmul(&dequantised).unwrap();
            let e = scaled_err(&got, &exact);
            assert!(e < tol, "{shape:?} vs the dequantised product: {e}");
            let e = scaled_err(&got, &candle.forward(&x).unwrap());
            assert!(e < 1e-2, "{shape:?} vs candle: {e}");
        }
    }

    /// A row lookup (the token embedding) equals the rows of the dequantised matrix; an id
    /// past the end is an error.
    #[test]
    fn embedding_equals_the_dequantised_rows() {
        crate::nn::ops::quant_rows::check_embedding(GgmlDType::Q8_0, |bytes, ids| {
            Q8_0Matrix::from_ggml(bytes, 40, 64)?.embedding(ids)
        });
    }

    /// The portable loop and the AVX2 one give the same sums, codes of -128 included.
    #[test]
    fn portable_and_simd_dots_agree() {
        let nb = 5;
        let codes: Vec<i8> = (0..nb * BLOCK)
            .map(|i| ((i * 37 % 256) as i32 - 128) as i8)
            .collect();
        let qx: Vec<i8> = (0..nb * BLOCK)
            .map(|i| ((i * 53 % 255) as i32 - 127) as i8)
            .collect();
        let d: Vec<f32> = (0..nb).map(|i| 0.01 * (i + 1) as f32).collect();
        let dx = vec![0.5f32; nb];
        let a = row_dot(&codes, &d, &qx, &dx);
        let b = row_dot_portable(&codes, &d, &qx, &dx);
        // The integer sums are exact; only the order of the scaled float additions differs.
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{a} vs {b}");
    }
}
