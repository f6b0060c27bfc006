//! Strided f32 matrix products for the fused ops: the `gemm` crate called directly (operands
//! read in place through their strides, so packed q|k|v rows or transposed weights need no
//! copy), split into row or column blocks across the kernels' thread pool.

use super::cpu::{SendPtr, run_tasks, threads};

/// A strided f32 matrix operand: element (i, j) is at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

// SAFETY: a `Mat` is only read through, and `gemm`'s callers keep the data alive and unchanged.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

impl Mat {
    /// A (rows x cols) view of `s` from `offset` with strides `rs`, `cs`, asserted to stay
    /// inside `s`.
    pub(crate) fn view(
        s: &[f32],
        offset: usize,
        shape: (usize, usize),
        rs: usize,
        cs: usize,
    ) -> Mat {
        assert!(
            offset + extent(shape.0, shape.1, rs, cs) <= s.len(),
            "matrix view out of bounds"
        );
        Mat {
            ptr: s.as_ptr().wrapping_add(offset),
            rs: rs as isize,
            cs: cs as isize,
        }
    }

    /// The view starting `rows` rows and `cols` columns further in.
    ///
    /// # Safety
    /// The new start must lie inside the same allocation.
    unsafe fn shifted(self, rows: isize, cols: isize) -> Mat {
        // SAFETY: the caller's contract.
        Mat {
            ptr: unsafe { self.ptr.offset(rows * self.rs + cols * self.cs) },
            ..self
        }
    }
}

/// `dst (m x n) = scale * lhs (m x k) @ rhs (k x n)`, plus the old `dst` when `accumulate`,
/// on the calling thread.
///
/// # Safety
/// Every operand must be valid for the elements its strides reach over its shape, `dst` must
/// not overlap `lhs` or `rhs`, and no other thread may touch those `dst` elements meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    dst_cs: isize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    scale: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// An output buffer of `len` elements that tasks write disjoint blocks of.
#[derive(Clone, Copy)]
pub(crate) struct Out {
    ptr: SendPtr,
    len: usize,
}

impl Out {
    /// The buffer of `v`'s allocation, `len` elements (written by tasks, then `set_len`).
    pub(crate) fn new(v: &mut Vec<f32>, len: usize) -> Self {
        assert!(v.capacity() >= len);
        Self {
            ptr: SendPtr(v.as_mut_ptr()),
            len,
        }
    }

    /// Start of the (rows x cols) block at `offset` with row stride `rs`, asserted in bounds.
    pub(crate) fn block(self, offset: usize, rows: usize, cols: usize, rs: usize) -> *mut f32 {
        assert!(
            offset + extent(rows, cols, rs, 1) <= self.len,
            "output block out of bounds"
        );
        self.ptr.get().wrapping_add(offset)
    }
}

/// `dst (m x n, row stride dst.1) = scale * lhs (m x k) @ rhs (k x n)`, `(m, n, k) = dims`.
///
/// # Safety
/// As for [`gemm()`] (with `dst` row-major from `dst.0`).
pub(crate) unsafe fn mm(
    dims: (usize, usize, usize),
    dst: (*mut f32, usize),
    lhs: Mat,
    rhs: Mat,
    scale: f32,
) {
    let (m, n, k) = dims;
    // SAFETY: the caller's contract.
    unsafe { gemm(m, n, k, dst.0, dst.1 as isize, 1, false, lhs, rhs, scale) }
}

/// [`gemm()`] split across the pool: into one block of rows (or of columns, whichever dimension
/// is longer) per thread, each multiplied single-threaded. Small products run inline.
///
/// # Safety
/// As for [`gemm()`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn par_gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    dst_cs: isize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    scale: f32,
) {
    // Below ~1 MFLOP the hand-off and the repeated packing cost more than they save.
    const MIN_PAR_WORK: usize = 512 * 1024;
    let parts = threads().min((m * n * k) / MIN_PAR_WORK).max(1);
    if parts == 1 {
        // SAFETY: the caller's contract.
        return unsafe { gemm(m, n, k, dst, dst_rs, dst_cs, accumulate, lhs, rhs, scale) };
    }
    let (split_rows, len) = if m >= n { (true, m) } else { (false, n) };
    // Blocks in multiples of 16 keep every part on whole micro-kernel tiles.
    let block = len.div_ceil(parts).next_multiple_of(16);
    let dst = SendPtr(dst);
    let blocks: Vec<usize> = (0..len).step_by(block).collect();
    run_tasks(blocks, |start| {
        let size = block.min(len - start);
        let off = start as isize;
        // SAFETY: each block reads a sub-view of lhs or rhs and writes its own rows (columns)
        // of dst; blocks do not overlap, and the caller guarantees the whole views are valid.
        unsafe {
            if split_rows {
                let d = dst.get().offset(off * dst_rs);
                gemm(
                    size,
                    n,
                    k,
                    d,
                    dst_rs,
                    dst_cs,
                    accumulate,
                    lhs.shifted(off, 0),
                    rhs,
                    scale,
                )
            } else {
                let d = dst.get().offset(off * dst_cs);
                gemm(
                    m,
                    size,
                    k,
                    d,
                    dst_rs,
                    dst_cs,
                    accumulate,
                    lhs,
                    rhs.shifted(0, off),
                    scale,
                )
            }
        }
    });
}

/// Index one past the last element a (rows x cols) view with non-negative strides touches.
pub(crate) fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}
