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
