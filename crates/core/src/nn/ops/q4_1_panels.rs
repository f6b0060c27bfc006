//! Q4_1 weights times a batch of activations (a prompt, not one decoded token): panels of
//! weight rows are widened to f32 and multiplied with `gemm`'s tuned kernels.
//!
//! The 8-bit dot products of [`super::q4_1`] suit decoding, where each weight is used once and
//! memory is the bound. A prompt of hundreds of tokens uses each weight hundreds of times:
//! widening it once per panel costs little next to the multiply, and the f32 micro-kernels
//! keep every register busy where the block-by-block dots re-unpack each block per token
//! (`muse bench generate` pp512 on SmolLM2 Q4_1, 2 threads, AMD EPYC: 232 tokens/s before).

use super::cpu::{SendPtr, run_tasks};
use super::matmul::{Mat, gemm};
use super::q4_1::Q4_1Matrix;

/// Rows of activations from which the panel path beats the 8-bit dots.
pub(crate) const MIN_BATCH: usize = 8;

/// Weight rows per panel: 64 rows of 1536 f32 are 384 KiB, inside a core's L2.
const PANEL_ROWS: usize = 64;

/// `xs (n, cols) @ W^T -> (n, rows)`, row-major.
pub(crate) fn forward(w: &Q4_1Matrix, xs: &[f32], n: usize) -> Vec<f32> {
    let (rows, cols) = w.dims();
    assert_eq!(xs.len(), n * cols, "q4_1 panels: input size");
    let mut out: Vec<f32> = Vec::with_capacity(n * rows);
    let dst = SendPtr(out.as_mut_ptr());
    let panels: Vec<usize> = (0..rows).step_by(PANEL_ROWS).collect();
    run_tasks(panels, |r0| {
        let r1 = (r0 + PANEL_ROWS).min(rows);
        let mut panel = vec![0f32; (r1 - r0) * cols];
        w.dequantize_rows(r0..r1, &mut panel);
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
