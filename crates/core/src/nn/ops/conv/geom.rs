//! The shapes of one convolution and how a batch is cut into cache-sized chunks of samples.

use std::ops::Range;
use std::sync::Mutex;

use super::super::cpu::threads;

/// The shapes of one convolution, seen from the image side (where the windows lie) and the
/// grid side (one value per window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geom {
    pub(super) n: usize,
    /// Image channels and size.
    pub(super) ci: usize,
    pub(super) hi: usize,
    pub(super) wi: usize,
    /// Grid channels and size.
    pub(super) co: usize,
    pub(super) hg: usize,
    pub(super) wg: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
}

impl Geom {
    /// Rows of the column matrix: one per (image channel, ky, kx).
    pub(super) fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }
    /// Window positions per sample.
    pub(super) fn p(&self) -> usize {
        self.hg * self.wg
    }
    pub(super) fn image_len(&self) -> usize {
        self.n * self.ci * self.hi * self.wi
    }
    pub(super) fn grid_len(&self) -> usize {
        self.n * self.co * self.p()
    }
    pub(super) fn empty(&self) -> bool {
        self.image_len() == 0 || self.grid_len() == 0 || self.k() == 0
    }
}

/// Column matrices of about this many floats (512 KiB) stay in a core's L2 cache between
/// im2col, the product and col2im, beside the other operand. Measured on the DCGAN step
/// (`muse bench gan`, 2 threads, AVX-512 machine): 128 Ki floats 40.1 ms, 256 Ki 43.4 ms,
/// 64 Ki 42.7 ms.
pub(super) const CHUNK_FLOATS: usize = 128 * 1024;

/// Samples per chunk: each chunk's column matrix is about [`CHUNK_FLOATS`], with at least two
/// chunks per thread. A chunk runs start to end (im2col, products, col2im) on one thread.
pub(super) fn chunk_len(g: &Geom) -> usize {
    samples_per_chunk(g.n, g.k() * g.p(), CHUNK_FLOATS)
}

/// Samples per chunk when each sample's scratch is `per_sample` floats: about `budget` floats
/// a chunk, and at least two chunks per thread.
pub(super) fn samples_per_chunk(n: usize, per_sample: usize, budget: usize) -> usize {
    let by_cache = (budget / per_sample.max(1)).max(1);
    let by_threads = n.div_ceil(2 * threads()).max(1);
    by_cache.min(by_threads)
}

/// `0..n` cut into ranges of `per` samples (the last one shorter).
pub(super) fn split_samples(n: usize, per: usize) -> Vec<Range<usize>> {
    (0..n).step_by(per).map(|a| a..(a + per).min(n)).collect()
}

/// The sample ranges the batch is cut into, one chunk each.
pub(super) fn chunks(g: &Geom) -> Vec<Range<usize>> {
    split_samples(g.n, chunk_len(g))
}

/// The backward pass's tasks: runs of whole chunks, two per thread, so that per-task weight
/// gradient sums stay few.
pub(super) fn task_ranges(g: &Geom) -> Vec<Range<usize>> {
    chunk_runs(g.n, chunk_len(g))
}

/// Per-run partial sums (a weight gradient each), added in sample order at the end so that
/// the total does not depend on which thread finishes first (exact resume needs it).
pub(super) struct RunSums(Mutex<Vec<(usize, Vec<f32>)>>);

impl RunSums {
    pub(super) fn new() -> Self {
        RunSums(Mutex::new(Vec::new()))
    }

    /// The sum of the run that starts at sample `start`.
    pub(super) fn add(&self, start: usize, part: Vec<f32>) {
        let mut parts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        parts.push((start, part));
    }

    /// The runs' sums added in sample order; `len` zeros when there were none.
    pub(super) fn total(self, len: usize) -> Vec<f32> {
        let mut parts = self.0.into_inner().unwrap_or_else(|e| e.into_inner());
        parts.sort_by_key(|(start, _)| *start);
        let mut parts = parts.into_iter().map(|(_, part)| part);
        let mut total = parts.next().unwrap_or_else(|| vec![0f32; len]);
        for part in parts {
            total.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
        total
    }
}

/// `0..n` cut into runs of whole chunks of `per_chunk` samples, two runs per thread.
pub(super) fn chunk_runs(n: usize, per_chunk: usize) -> Vec<Range<usize>> {
    let n_chunks = n.div_ceil(per_chunk);
    split_samples(n, n_chunks.div_ceil(2 * threads()).max(1) * per_chunk)
}
