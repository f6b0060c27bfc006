//! CPU plumbing shared by the fused ops: f32 slices out of candle storages, output buffers,
//! splitting work into parallel tasks on rayon's (or candle's) thread pool, and the safe,
//! bounds-checked matmul entry points over [`super::matmul`].

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Mutex;

use candle_core::{CpuStorage, Device, Layout, Result, Shape, Storage, StorageRef, Tensor, bail};
use rayon::prelude::*;

use super::matmul::{Mat, extent, par_gemm};

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
    /// rayon's global pool (`RAYON_NUM_THREADS` threads): work-stealing, so a core taken by
    /// another process only slows the tasks it holds.
    Rayon,
    /// candle's barrier pool (`candle_core::utils::barrier_pool`), which candle's own elementwise
    /// ops use: a faster hand-off, but every split waits for every worker, so one descheduled
    /// worker stalls the whole op.
    Candle,
}

/// The pool, from `MUSE_OPS_POOL` (`rayon`, the default, or `candle`), read once.
///
/// Measured on 2 cores under other load, gpt_char training step (`muse bench gpt`, 2 threads,
/// median / p10 / p90 ms): rayon 54-153 / 52 / 212-292, rayon with `CANDLE_NUM_THREADS=1` (so
/// candle's own ops never wait on a barrier) 53-57 / 46-53 / 62-72, candle's pool 116-239 /
/// 100-157 / 256-386. Op by op with the minimum of many runs the barrier pool was up to 30%
/// faster, but a whole step mixes both pools and pays for it.
fn pool() -> Pool {
    static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();
    *POOL.get_or_init(|| match std::env::var("MUSE_OPS_POOL").as_deref() {
        Ok("candle") => Pool::Candle,
        _ => Pool::Rayon,
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

/// A vector of `n` elements written by `fill`, without zeroing it first (`vec![0.0; n]` spent
/// ~5% of a gpt_char training step in the allocator's memset).
///
/// # Safety
/// `fill` must write every one of the `n` elements.
pub(crate) unsafe fn new_filled(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the caller's contract: all `n` elements are initialised.
    unsafe { v.set_len(n) };
    v
}

/// A new vector the length of `x`, computed chunk by chunk in parallel: `f(i, x_i, y_i)` for
/// the `i`-th `chunk` elements of `x` and of the output.
///
/// # Safety
/// `f` must write every element of its output chunk.
pub(crate) unsafe fn map_chunks(
    x: &[f32],
    chunk: usize,
    f: impl Fn(usize, &[f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    // SAFETY: passed on to the caller.
    unsafe { map_chunks_to(x, chunk, x.len(), chunk, f) }
}

/// [`map_chunks`] into a new vector of `out_len` elements, the `i`-th `chunk` elements of `x`
/// giving the `i`-th `out_chunk` of the output (an op whose output is a fixed multiple of its
/// input, say).
///
/// # Safety
/// `f` must write every element of its output chunk.
pub(crate) unsafe fn map_chunks_to(
    x: &[f32],
    chunk: usize,
    out_len: usize,
    out_chunk: usize,
    f: impl Fn(usize, &[f32], &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    // SAFETY: the chunks cover the output, and the caller's `f` writes each of them in full.
    unsafe {
        new_filled(out_len, |y| {
            let tasks: Vec<_> = x
                .chunks(chunk.max(1))
                .zip(y.chunks_mut(out_chunk.max(1)))
                .enumerate()
                .collect();
            run_tasks(tasks, |(i, (x, y))| f(i, x, y));
        })
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

/// `lhs (m x k) @ rhs (k x n)` into a new row-major vector, bounds checked like [`matmul`].
///
/// The result is allocated without zeroing (see [`super::cpu::new_filled`]): `gemm`
/// overwrites it anyway.
pub(crate) fn matmul_new(
    m: usize,
    n: usize,
    k: usize,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) -> Vec<f32> {
    if k == 0 || m == 0 || n == 0 {
        return vec![0f32; m * n];
    }
    assert!(
        lhs.0.len() >= extent(m, k, lhs.1, lhs.2),
        "matmul: lhs too small"
    );
    assert!(
        rhs.0.len() >= extent(k, n, rhs.1, rhs.2),
        "matmul: rhs too small"
    );
    let mut dst = Vec::with_capacity(m * n);
    let mat = |(s, rs, cs): (&[f32], usize, usize)| Mat {
        ptr: s.as_ptr(),
        rs: rs as isize,
        cs: cs as isize,
    };
    // SAFETY: bounds asserted above; `dst` is a fresh allocation of m * n elements that `gemm`
    // fills without reading (accumulate = false: its first pass over k stores, never loads),
    // so every element is initialised before `set_len`.
    unsafe {
        par_gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            n as isize,
            1,
            false,
            mat(lhs),
            mat(rhs),
            1.0,
        );
        dst.set_len(m * n);
    }
    dst
}
