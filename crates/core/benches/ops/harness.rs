//! A tiny timing harness: warm-up, then timed runs until a time budget, reporting the median.
//!
//! `MUSE_BENCH_STAT` picks the statistic: `median` (default) or `min` of wall time per call, or
//! `cpu`, the mean CPU time of the calling thread per call over the whole timed run (Linux;
//! its clock may tick in milliseconds, hence the mean), which other processes on a busy machine
//! cannot inflate; it only means something with `RAYON_NUM_THREADS=1`.

use std::time::{Duration, Instant};

/// The statistic chosen by `MUSE_BENCH_STAT`.
#[derive(Clone, Copy, PartialEq)]
enum Stat {
    Median,
    Min,
    Cpu,
}

fn stat() -> Stat {
    match std::env::var("MUSE_BENCH_STAT").as_deref() {
        Ok("min") => Stat::Min,
        Ok("cpu") => Stat::Cpu,
        _ => Stat::Median,
    }
}

/// Nanoseconds the calling thread has run on a CPU (first field of its `schedstat`).
fn thread_cpu_ns() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// Time of `f` per call in milliseconds: a few warm-up calls, then at least 5 and at most
/// `max_iters` timed samples, stopping once ~`budget` has been spent.
pub fn median_ms<F: FnMut()>(f: F, max_iters: usize, budget: Duration) -> f64 {
    measure(f, max_iters, budget, stat())
}

/// Median wall time per call, whatever `MUSE_BENCH_STAT` says (for work that runs on other
/// threads than the caller's).
pub fn wall_median_ms<F: FnMut()>(f: F, max_iters: usize, budget: Duration) -> f64 {
    measure(f, max_iters, budget, Stat::Median)
}

fn measure<F: FnMut()>(mut f: F, max_iters: usize, budget: Duration, stat: Stat) -> f64 {
    let start = Instant::now();
    f();
    let first = start.elapsed();
    let warmup = if first < budget / 50 { 3 } else { 1 };
    for _ in 0..warmup {
        f();
    }
    let mut times = Vec::new();
    let (start, cpu_start) = (Instant::now(), thread_cpu_ns());
    while times.len() < max_iters.max(5) && (times.len() < 5 || start.elapsed() < budget) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if stat == Stat::Cpu {
        return (thread_cpu_ns() - cpu_start) / 1e6 / times.len() as f64;
    }
    times.sort_by(f64::total_cmp);
    match stat {
        Stat::Min => times[0],
        _ => times[times.len() / 2],
    }
}

/// Formats milliseconds with sensible precision.
pub fn ms(x: f64) -> String {
    if x < 0.1 {
        format!("{:.4}", x)
    } else if x < 10.0 {
        format!("{:.3}", x)
    } else {
        format!("{:.1}", x)
    }
}
