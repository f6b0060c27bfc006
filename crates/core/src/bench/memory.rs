//! The machine's memory read bandwidth, the ceiling of batch-1 decoding: each generated token
//! reads every weight once, so a memory-bound decoder runs at (weight bytes per token) / (time
//! per token) GB/s, and this measures how close that is to what the memory can deliver.

use std::time::Instant;

use rayon::prelude::*;

/// A buffer far larger than any last-level cache (32 MiB on the machines we measure on).
const BUFFER_BYTES: usize = 256 << 20;
const PASSES: usize = 5;

/// The best of a few passes that sum a 256 MiB buffer on the kernel threads, in GB/s
/// (10^9 bytes a second), as STREAM reports its best pass.
pub fn read_bandwidth_gb_per_s() -> f64 {
    let data = vec![1.0f32; BUFFER_BYTES / 4];
    let chunk = data.len().div_ceil(rayon::current_num_threads().max(1));
    let mut best = 0f64;
    for _ in 0..PASSES {
        let t0 = Instant::now();
        let total: f32 = data.par_chunks(chunk).map(sum_lanes).sum();
        let secs = t0.elapsed().as_secs_f64();
        // Keeps the sum live so the passes cannot be optimised away.
        std::hint::black_box(total);
        best = best.max(BUFFER_BYTES as f64 / secs / 1e9);
    }
    best
}

/// Sum in 16 independent lanes, so the loop vectorises and is limited by loads, not by the
/// latency of one running sum.
fn sum_lanes(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}
