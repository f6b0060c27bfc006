//! Matrix-vector product for [`super::linear()`] with a single input row (token-by-token
//! decoding), in both weight layouts.
//!
//! With one row, a matmul is one pass over the weights at memory speed. `gemm` 0.19 runs it on
//! one thread whatever its `Parallelism`; here each thread streams its own block of output
//! columns. Measured (1 / 2 threads): 768x2304 0.244 / 0.110 ms against gemm's 0.238 / 0.237;
//! for the 154 MB 768x50257 head both stay at the ~16-19 GB/s this machine's memory gives.
//! Row bands for the (in, out) layout (GPT-2's Conv1D weights): GPT-2 124M tg128 after a
//! 512-token prompt, `muse bench generate`, AMD EPYC, two alternating rounds, 34.2 and 34.9 ->
//! 38.1 and 37.9 tokens/s at 1 thread; at 2 threads unchanged (50.3, 47.6 -> 50.3, 48.2).

use super::cpu::{rows_per_task, run_tasks};
use super::math::{Fma, LANES, simd_dispatch};

/// Output columns per cache block of the `(in, out)` kernel when the output is too wide for
/// row bands: 8 KiB of accumulators in L1.
const COL_BLOCK: usize = 2048;

/// Row bands of the `(in, out)` kernel. Each band streams its rows of `w` contiguously into
/// its own partial sum; a fixed count (not one per thread) keeps the order of the final sum,
/// and so the result, the same at any thread count.
const ROW_BANDS: usize = 8;

/// Widest output kept whole as one band's partial sum (16 KiB, in L1).
const BAND_MAX_COLS: usize = 4096;

/// `y[o] = b[o] + sum_i x[i] w[o, i]` for `w` stored (out, in): one dot product per row.
#[inline(always)]
fn dot_rows<F: Fma>(x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let k = x.len();
    let full = k - k % LANES;
    for (o, (yo, row)) in y.iter_mut().zip(w.chunks_exact(k)).enumerate() {
        let mut acc = [0f32; LANES];
        for (xc, wc) in x[..full]
            .chunks_exact(LANES)
            .zip(row[..full].chunks_exact(LANES))
        {
            for l in 0..LANES {
                acc[l] = F::fma(xc[l], wc[l], acc[l]);
            }
        }
        let mut s = b.map_or(0.0, |b| b[o]);
        for i in full..k {
            s += x[i] * row[i];
        }
        *yo = s + acc.iter().sum::<f32>();
    }
}
simd_dispatch!(fn dot_rows_simd(x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) = dot_rows);

/// `y[j] = b[c0 + j] + sum_i x[i] w[i, c0 + j]` for `w` stored (in, out) with row length `n`:
/// four weight rows per pass over the accumulators.
#[inline(always)]
fn axpy_rows<F: Fma>(x: &[f32], w: &[f32], n: usize, c0: usize, b: Option<&[f32]>, y: &mut [f32]) {
    let len = y.len();
    match b {
        Some(b) => y.copy_from_slice(&b[c0..c0 + len]),
        None => y.fill(0.0),
    }
    let k = x.len();
    let row = |i: usize| &w[i * n + c0..i * n + c0 + len];
    let mut i = 0;
    while i + 4 <= k {
        let (r0, r1, r2, r3) = (row(i), row(i + 1), row(i + 2), row(i + 3));
        let (x0, x1, x2, x3) = (x[i], x[i + 1], x[i + 2], x[i + 3]);
        for j in 0..len {
            y[j] = F::fma(
                x3,
                r3[j],
                F::fma(x2, r2[j], F::fma(x1, r1[j], F::fma(x0, r0[j], y[j]))),
            );
        }
        i += 4;
    }
    for (i, &xi) in x.iter().enumerate().take(k).skip(i) {
        let r = row(i);
        for j in 0..len {
            y[j] = F::fma(xi, r[j], y[j]);
        }
    }
}
simd_dispatch!(fn axpy_rows_simd(x: &[f32], w: &[f32], n: usize, c0: usize, b: Option<&[f32]>, y: &mut [f32]) = axpy_rows);

/// `x (in) @ w -> (out)`, `w` stored (out, in) when `out_in`, else (in, out).
pub(crate) fn gemv(x: &[f32], w: &[f32], b: Option<&[f32]>, out_in: bool, n: usize) -> Vec<f32> {
    let k = x.len();
    let mut y = vec![0f32; n];
    let cols = rows_per_task(n, 2 * k);
    if out_in {
        let tasks: Vec<_> = y
            .chunks_mut(cols)
            .zip(w.chunks(cols * k))
            .enumerate()
            .collect();
        run_tasks(tasks, |(t, (y, w))| {
            dot_rows_simd(x, w, b.map(|b| &b[t * cols..]), y)
        });
    } else if n <= BAND_MAX_COLS && k >= 4 * ROW_BANDS {
        // Blocks of columns would read each row in pieces (a 768-wide output on two threads:
        // 1.5 KiB a row, then a jump), which streams from memory more slowly than whole rows.
        // The first band sums straight into `y`, the others into partials added after.
        let band = k.div_ceil(ROW_BANDS).next_multiple_of(4);
        let mut partials = vec![0f32; (k.div_ceil(band) - 1) * n];
        let tasks: Vec<_> = std::iter::once(&mut y[..])
            .chain(partials.chunks_mut(n))
            .enumerate()
            .collect();
        run_tasks(tasks, |(t, p)| {
            let rows = t * band..k.min((t + 1) * band);
            let bias = if t == 0 { b } else { None };
            axpy_rows_simd(
                &x[rows.clone()],
                &w[rows.start * n..rows.end * n],
                n,
                0,
                bias,
                p,
            )
        });
        for p in partials.chunks_exact(n) {
            for (yo, po) in y.iter_mut().zip(p) {
                *yo += po;
            }
        }
    } else {
        let cols = cols.min(COL_BLOCK);
        let tasks: Vec<_> = y.chunks_mut(cols).enumerate().collect();
        run_tasks(tasks, |(t, y)| axpy_rows_simd(x, w, n, t * cols, b, y));
    }
    y
}
