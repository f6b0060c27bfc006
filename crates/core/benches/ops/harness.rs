//! A tiny timing harness: warm-up, then timed runs until a time budget, reporting the median.

use std::time::{Duration, Instant};

/// Median wall time of `f` in milliseconds: a few warm-up calls, then at least 5 and at most
/// `max_iters` timed calls, stopping once ~`budget` has been spent. `MUSE_BENCH_STAT=min`
/// reports the minimum instead (steadier for A/B runs on a machine with other load).
pub fn median_ms<F: FnMut()>(mut f: F, max_iters: usize, budget: Duration) -> f64 {
    let start = Instant::now();
    f();
    let first = start.elapsed();
    let warmup = if first < budget / 50 { 3 } else { 1 };
    for _ in 0..warmup {
        f();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < max_iters.max(5) && (times.len() < 5 || start.elapsed() < budget) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    if std::env::var("MUSE_BENCH_STAT").is_ok_and(|s| s == "min") {
        times[0]
    } else {
        times[times.len() / 2]
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
