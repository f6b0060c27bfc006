//! CPU plumbing shared by the fused ops: f32 slices out of candle storages, splitting work
//! into parallel tasks on candle's (or rayon's) thread pool, and strided calls into `gemm`.

use std::ops::Range;
use std::sync::Mutex;

use candle_core::{CpuStorage, Device, Layout, Result, Shape, Storage, StorageRef, Tensor, bail};
use rayon::prelude::*;

/// The f32 elements covered by a contiguous layout.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: expected a contiguous f32 input"),
    }
}

/// The f32 elements covered by a contiguous layout, for in-place ops.
pub(crate) fn f32_slice_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((a, b))) => Ok(&mut data[a..b]),
        _ => bail!("{op}: expected a contiguous f32 tensor to update in place"),
    }
}

/// Read access to the elements of a contiguous CPU f32 tensor, for backward passes (which get
/// `Tensor`s rather than storages). Holds the storage's read lock while alive.
pub(crate) struct CpuRead<'a> {
    guard: StorageRef<'a>,
    range: Range<usize>,
}

impl<'a> CpuRead<'a> {
    pub(crate) fn new(t: &'a Tensor, op: &str) -> Result<Self> {
        let (guard, layout) = t.storage_and_layout();
        let Some((a, b)) = layout.contiguous_offsets() else {
            bail!("{op}: expected a contiguous tensor in backward")
        };
        if !matches!(&*guard, Storage::Cpu(CpuStorage::F32(_))) {
            bail!("{op}: expected an f32 cpu tensor in backward")
        }
        Ok(Self { guard, range: a..b })
    }

    pub(crate) fn slice(&self) -> &[f32] {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.range.clone()],
            _ => &[], // excluded by `new`
        }
    }
}

/// A CPU f32 tensor owning `data`.
pub(crate) fn tensor<S: Into<Shape>>(data: Vec<f32>, shape: S) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}

/// Which thread pool runs the parallel parts of the kernels.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pool {
    /// candle's barrier pool (`candle_core::utils::barrier_pool`, sized by `RAYON_NUM_THREADS`
    /// or `CANDLE_NUM_THREADS`), which candle's own elementwise ops and backprop use.
    Candle,
    /// rayon's global pool: work-stealing, so a core taken by another process only slows the
    /// tasks it holds, where the barrier pool waits for every worker at every split.
    Rayon,
}

/// The pool, from `MUSE_OPS_POOL` (`candle`, the default, or `rayon`), read once.
///
/// Measured on 2 cores with gpt_char shapes (minimum of many runs, forward+backward): linear
/// 768x128->384 1.44-1.52 ms on candle's pool vs 1.84-1.98 on rayon, attention 0.77-0.81 vs
/// 1.22-1.83, the AdamW step 0.51 vs 1.30. With both pools in play, candle's workers spin after
/// each of candle's own ops while rayon's try to run ours. With one core busy elsewhere the
/// barrier pool degrades much worse (a layer-norm forward 6x slower), hence the switch.
fn pool() -> Pool {
    static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();
    *POOL.get_or_init(|| match std::env::var("MUSE_OPS_POOL").as_deref() {
        Ok("rayon") => Pool::Rayon,
        _ => Pool::Candle,
    })
}

/// Threads the kernels split work across.
pub(crate) fn threads() -> usize {
    match pool() {
        Pool::Rayon => rayon::current_num_threads().max(1),
        Pool::Candle => candle_core::utils::barrier_pool().n_workers() + 1,
    }
}

/// Rows per task when `n_rows` rows, each costing about `row_cost` flops, are split across
/// the threads. Smaller tasks cost more in hand-off than they save (a spinning barrier-pool
/// worker starts in ~1 us, a sleeping rayon worker in ~5-20 us).
pub(crate) fn rows_per_task(n_rows: usize, row_cost: usize) -> usize {
    let min_task_cost: usize = if pool() == Pool::Candle {
        32 * 1024
    } else {
        128 * 1024
    };
    let min_rows = min_task_cost.div_ceil(row_cost.max(1)).max(1);
    n_rows.div_ceil(threads()).max(min_rows).max(1)
}

/// Runs `f` on each task, spread over the pool; a lone task runs inline (entering a pool costs
/// a wake-up even for one job).
pub(crate) fn run_tasks<T: Send, F: Fn(T) + Sync + Send>(tasks: Vec<T>, f: F) {
    if tasks.len() <= 1 || threads() == 1 {
        return tasks.into_iter().for_each(f);
    }
    match pool() {
        Pool::Rayon => tasks.into_par_iter().for_each(f),
        Pool::Candle => {
            // Handed out through the pool's shared cursor, so a slow worker's share is taken.
            let slots: Vec<Mutex<Option<T>>> =
                tasks.into_iter().map(|t| Mutex::new(Some(t))).collect();
            candle_core::utils::barrier_pool().execute_chunked(slots.len(), |range| {
                for slot in &slots[range] {
                    let task = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(task) = task {
                        f(task)
                    }
                }
            });
        }
    }
}

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

/// A raw pointer that tasks writing disjoint elements may share.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: users only write through it to regions no other task touches (see call sites).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper rather than the field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// [`gemm`] split across the pool: into one block of rows (or of columns, whichever dimension
/// is longer) per thread, each multiplied single-threaded. Small products run inline.
///
/// # Safety
/// As for [`gemm`].
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

/// Safe `dst (m x n, row-major, row stride n) = lhs @ rhs (+ dst)` on slices with bounds
/// checked against the strides (`(slice, rs, cs)` per operand).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) {
    assert!(dst.len() >= m * n, "matmul: dst too small");
    assert!(
        lhs.0.len() >= extent(m, k, lhs.1, lhs.2),
        "matmul: lhs too small"
    );
    assert!(
        rhs.0.len() >= extent(k, n, rhs.1, rhs.2),
        "matmul: rhs too small"
    );
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let mat = |(s, rs, cs): (&[f32], usize, usize)| Mat {
        ptr: s.as_ptr(),
        rs: rs as isize,
        cs: cs as isize,
    };
    // SAFETY: bounds asserted above; `dst` is a unique borrow so it overlaps neither input.
    unsafe {
        par_gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            n as isize,
            1,
            accumulate,
            mat(lhs),
            mat(rhs),
            1.0,
        )
    }
}
