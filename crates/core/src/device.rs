//! Where tensors live: CPU by default, CUDA when built with the `cuda` feature.

pub use candle_core::Device;

use crate::error::{Error, Result};

/// Parses a device name: `cpu`, `cuda`, `cuda:N`, or `auto` (CUDA if built in and present,
/// else CPU).
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| bad_device(name))?,
                None => return Err(bad_device(name)),
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::usage(format!(
                    "device '{name}' asked for, but this build has no CUDA support: rebuild with \
                     `cargo build --release --features cuda` or use `--device cpu`"
                )));
            }
            Ok(Device::new_cuda(ordinal)?)
        }
    }
}

fn bad_device(name: &str) -> Error {
    Error::usage(format!(
        "unknown device '{name}': use cpu, cuda, cuda:N or auto"
    ))
}

/// Sets the number of CPU threads used by tensor kernels (`None`: all physical cores). Call
/// before the first tensor operation: the thread pools read this once.
///
/// The fused kernels and matmuls run on rayon's pool. candle's own element-wise ops use a
/// second, spinning barrier pool that stalls whenever one of its workers is descheduled; on
/// these small tensors they gain nothing from threads, so that pool gets one thread unless
/// `CANDLE_NUM_THREADS` says otherwise (measured on a loaded 2-core machine: step-time p90
/// 212-292 ms with it, 57-72 ms without).
pub fn set_cpu_threads(n: Option<usize>) {
    // SAFETY: called at start-up, before any other thread reads the environment.
    unsafe {
        if let Some(n) = n {
            std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
        }
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
    }
}

/// Stack of each kernel-pool worker: the command itself runs on one of them (see
/// [`on_kernel_pool`]), and candle's backward walks the graph recursively, so a long graph
/// needs more than the 2 MiB a spawned thread gets by default. Only touched pages cost memory.
const WORKER_STACK_BYTES: usize = 64 << 20;

/// Runs `f` on a worker of the kernels' thread pool (rayon's global pool) and returns its
/// result.
///
/// A parallel kernel called from outside the pool hands its work to the workers and puts the
/// calling thread to sleep until they finish: two thread wake-ups per kernel, hundreds per
/// training step. Called from a worker, the kernel runs its first part on the calling thread
/// and the idle worker, still spinning from the last kernel, takes the rest. Call once, from
/// `main`, after [`set_cpu_threads`]; `f` must not wait on other rayon work it started
/// outside the pool.
pub fn on_kernel_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    // Fails only when the pool already exists (a second call); then it is reused as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(WORKER_STACK_BYTES)
        .build_global();
    rayon::scope(|_| f())
}

/// As [`on_kernel_pool`], on a new pool of its own (threads as [`set_cpu_threads`] said), for
/// a long-lived loop such as the server's engine: it holds its worker for as long as it runs,
/// so it must not take one of the shared pool's.
pub fn on_own_kernel_pool<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R> {
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(WORKER_STACK_BYTES)
        .thread_name(|i| format!("muse-kernels-{i}"))
        .build()
        .map_err(|e| Error::input(format!("could not start the kernel threads: {e}")))?;
    Ok(pool.install(f))
}

/// The number of CPU threads the kernels use.
pub fn cpu_threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// A short name for logs and run files.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", cpu_threads()),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

/// Memory the system can still give this process, in bytes (`MemAvailable` of
/// `/proc/meminfo`); `None` where that is not known.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
