//! The single-threaded `gemm` calls of the convolution kernels and the parallel fill of an
//! output by chunks of samples.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::super::cpu::{SendPtr, new_filled, run_tasks};

/// Index one past the last element an (rows x cols) view with these strides touches.
pub(super) fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst (m x n, row stride n) = lhs (m x k) @ rhs (k x n)` on the calling thread, operands as
/// `(slice, row stride, column stride)`, bounds checked.
pub(super) fn mm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) {
    product(m, n, k, dst, lhs, rhs, false)
}

/// `dst (m x n) += lhs (m x k) @ rhs (k x n)` on the calling thread, operands as in [`mm`].
pub(super) fn mm_add(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) {
    product(m, n, k, dst, lhs, rhs, true)
}

/// [`mm`] (`add` false) or [`mm_add`] (`add` true).
fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    add: bool,
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
        if !add {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the bounds are asserted above and `dst` is a unique borrow (so it overlaps
    // neither operand). With read_dst false and alpha = 0 `gemm` writes `dst` without reading
    // it; with read_dst true and alpha = 1 it adds the product to `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            add,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            if add { 1.0 } else { 0.0 },
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
pub(super) fn filled_by_chunks<F>(
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
