//! candle's quantised matmul for the block formats Muse has no kernel of its own for (Q4_0,
//! Q5_0, Q5_1 and the K-quants), run on Muse's kernel pool.
//!
//! candle parallelises these products on its own barrier pool, which Muse keeps to one thread
//! (see `device::set_cpu_threads`). So a Q4_0 or Q4_K_M file ran on one core whatever
//! `--threads` said: SmolLM2 as Q4_0 made 83.6 and 83.2 prompt tokens/s at 1 and 2 threads.
//! Here the matrix is split by rows into chunks, each its own `QMatMul`, multiplied side by side
//! by rayon's workers (candle's one-thread pool runs each on the calling worker), and the
//! outputs are joined. Every output is still one row's dot product by candle's kernels (which
//! pick their variant by the matrix size, so a chunk's sums may differ from the whole
//! matrix's in the last bits).
//!
//! A prompt (at least [`quant_rows::MIN_BATCH`] activation rows) instead widens panels of
//! weight rows to f32 and multiplies them with `gemm`, as Muse's Q4_1 and Q8_0 kernels do:
//! candle's product re-reads every block for each row. SmolLM2 as Q4_0, one thread: 83 prompt
//! tokens/s by candle's product.

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{D, DType, Device, Module, Result, Tensor};
use rayon::prelude::*;

use super::quant_rows::{self, PANEL_ROWS};

/// Rows per chunk come in multiples of this (a chunk is not worth a task for fewer), so that
/// no panel of the prompt path straddles two chunks.
const MIN_CHUNK_ROWS: usize = PANEL_ROWS;

/// A (rows, cols) quantised matrix as row chunks.
#[derive(Debug)]
pub struct RowChunks {
    rows: usize,
    cols: usize,
    /// The block format; `None` for F32, F16 and BF16, which candle widens to one f32 matrix.
    blocks: Option<GgmlDType>,
    /// Rows of every chunk but the last: chunk k starts at row k * per.
    per: usize,
    /// The chunks' matmuls, in row order.
    chunks: Vec<QMatMul>,
}

impl RowChunks {
    /// Splits `t` (rows, cols) into about `parts` chunks of whole rows (fewer for a small
    /// matrix). A block format on the CPU is split; F32, F16 and BF16 (one f32 matrix, which
    /// candle's matmul already splits) and other devices stay whole.
    pub fn new(t: QTensor, parts: usize) -> Result<Self> {
        let (rows, cols) = t.shape().dims2()?;
        let dtype = t.dtype();
        let float = matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        let blocks = (!float && t.device().is_cpu()).then_some(dtype);
        let parts = match blocks {
            Some(_) => parts.clamp(1, rows.div_ceil(MIN_CHUNK_ROWS).max(1)),
            None => 1,
        };
        if parts == 1 {
            let m = QMatMul::from_qtensor(t)?;
            return Ok(Self {
                rows,
                cols,
                blocks,
                per: rows,
                chunks: vec![m],
            });
        }
        // Each row is cols / block_size whole blocks, stored one row after the other.
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        let data = t.data()?;
        if data.len() != rows * row_bytes {
            candle_core::bail!(
                "{dtype:?} data of {} bytes does not fit a ({rows}, {cols}) matrix",
                data.len()
            );
        }
        let per = rows.div_ceil(parts).next_multiple_of(MIN_CHUNK_ROWS);
        let chunks = (0..rows)
            .step_by(per)
            .map(|first| {
                let n = per.min(rows - first);
                let bytes = &data[first * row_bytes..(first + n) * row_bytes];
                let storage = QStorage::from_data(bytes.into(), &Device::Cpu, dtype)?;
                QMatMul::from_qtensor(QTensor::new(storage, (n, cols))?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            rows,
            cols,
            blocks,
            per,
            chunks,
        })
    }

    /// `x @ W^T`.
    ///
    /// # Shapes
    /// `x`: (..., cols) -> (..., rows).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(dtype) = self.blocks
            && x.elem_count() / self.cols >= quant_rows::MIN_BATCH
        {
            return self.forward_panels(x, dtype);
        }
        if let [m] = self.chunks.as_slice() {
            return m.forward(x);
        }
        let parts = self
            .chunks
            .par_iter()
            .map(|m| m.forward(x))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, D::Minus1)
    }

    /// [`RowChunks::forward`] for a prompt: panels of rows widened to f32, then `gemm`.
    fn forward_panels(&self, x: &Tensor, dtype: GgmlDType) -> Result<Tensor> {
        let data = self
            .chunks
            .iter()
            .map(|m| match m {
                QMatMul::QTensor(t) => t.data(),
                _ => candle_core::bail!("a {dtype:?} chunk was widened at load"),
            })
            .collect::<Result<Vec<_>>>()?;
        let row_bytes = self.cols / dtype.block_size() * dtype.type_size();
        let widen = |r: std::ops::Range<usize>, out: &mut [f32]| {
            // Panels start at multiples of PANEL_ROWS, and so do chunks: one chunk holds r.
            let (k, local) = (r.start / self.per, r.start % self.per);
            let bytes = &data[k][local * row_bytes..(local + r.len()) * row_bytes];
            let rows = QStorage::from_data(bytes.into(), &Device::Cpu, dtype)
                .and_then(|s| QTensor::new(s, (r.len(), self.cols)))
                .and_then(|t| t.dequantize(&Device::Cpu))
                .and_then(|t| t.flatten_all()?.to_vec1::<f32>());
            // The bytes were checked to be whole rows at load: widening them cannot fail.
            out.copy_from_slice(&rows.expect("whole rows of blocks widen"));
        };
        let mut dims = x.dims().to_vec();
        let xs: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let n = xs.len() / self.cols;
        let out = quant_rows::forward_panels((self.rows, self.cols), widen, &xs, n);
        *dims.last_mut().expect("a matrix input") = self.rows;
        Tensor::from_vec(out, dims, x.device())
    }

    /// Rows `ids` as f32 (the matrix as a token embedding, left quantised).
    ///
    /// # Shapes
    /// `ids`: (...) u32 -> (..., cols).
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        if let [m] = self.chunks.as_slice() {
            return m.embedding(ids);
        }
        let mut dims = ids.dims().to_vec();
        let flat = ids.flatten_all()?.to_vec1::<u32>()?;
        if let Some(bad) = flat.iter().find(|&&i| i as usize >= self.rows) {
            candle_core::bail!("token id {bad} is past the table's {} rows", self.rows);
        }
        // Each chunk looks up its own ids (positions asked, rows within the chunk); rows go
        // back to the order asked.
        let mut asks: Vec<(Vec<usize>, Vec<u32>)> = vec![Default::default(); self.chunks.len()];
        for (p, &i) in flat.iter().enumerate() {
            let k = i as usize / self.per;
            asks[k].0.push(p);
            asks[k].1.push(i - (k * self.per) as u32);
        }
        let mut out = vec![0f32; flat.len() * self.cols];
        for (m, (at, local)) in self.chunks.iter().zip(asks) {
            if at.is_empty() {
                continue;
            }
            let n = local.len();
            let rows = m.embedding(&Tensor::from_vec(local, n, &Device::Cpu)?)?;
            let rows = rows.flatten_all()?.to_vec1::<f32>()?;
            for (r, p) in at.into_iter().enumerate() {
                out[p * self.cols..(p + 1) * self.cols]
                    .copy_from_slice(&rows[r * self.cols..(r + 1) * self.cols]);
            }
        }
        dims.push(self.cols);
        Tensor::from_vec(out, dims, &Device::Cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::quant_rows::scaled_err;
    use candle_core::quantized::GgmlDType;

    /// Chunked, the product equals the whole matrix's to f32 rounding (candle picks its kernel
    /// by the matrix size) and the row lookup bit for bit, for a block format of 32 and one of
    /// 256.
    #[test]
    fn chunks_give_the_whole_matrix_results() {
        let dev = Device::Cpu;
        for (dtype, cols) in [(GgmlDType::Q4_0, 96), (GgmlDType::Q4K, 256)] {
            let w = Tensor::randn(0f32, 1.0, (300, cols), &dev).unwrap();
            let x = Tensor::randn(0f32, 1.0, (2, 5, cols), &dev).unwrap();
            let ids = Tensor::new(&[[0u32, 299, 64], [128, 5, 200]], &dev).unwrap();
            let whole = QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap();
            let chunked = RowChunks::new(QTensor::quantize(&w, dtype).unwrap(), 4).unwrap();
            // Four parts of 300 rows in whole panels of 64: 128, 128 and 44.
            assert_eq!(chunked.chunks.len(), 3, "{dtype:?}");
            let (a, b) = (whole.forward(&x).unwrap(), chunked.forward(&x).unwrap());
            assert_eq!(b.dims(), &[2, 5, 300]);
            let e = scaled_err(&b, &a);
            assert!(e < 1e-6, "{dtype:?} product: {e}");
            let (a, b) = (
                whole.embedding(&ids).unwrap(),
                chunked.embedding(&ids).unwrap(),
            );
            assert_eq!(b.dims(), &[2, 3, cols]);
            assert_eq!(scaled_err(&a, &b), 0.0, "{dtype:?} rows");
            // A prompt's worth of rows takes the panels: the product by the widened weights.
            let x = Tensor::randn(0f32, 1.0, (2, 20, cols), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let exact = x
                .broadcast_matmul(&q.dequantize(&dev).unwrap().t().unwrap())
                .unwrap();
            let got = chunked.forward(&x).unwrap();
            assert_eq!(got.dims(), &[2, 20, 300]);
            let e = scaled_err(&got, &exact);
            assert!(e < 1e-5, "{dtype:?} panels vs the widened product: {e}");
            let past = Tensor::new(&[300u32], &dev).unwrap();
            let err = chunked.embedding(&past).unwrap_err().to_string();
            assert!(err.contains("past the table"), "{err}");
        }
    }
}
