//! Speed: training steps and generation of each family, measured as the PyTorch reference
//! workloads in `shared/bench/` measure them, printed as one JSON line (`muse bench`).

pub mod diffusion;
pub mod gan;
pub mod generate;
pub mod gpt;
pub mod memory;
pub mod seq2seq;
pub mod vae;
pub mod watermark;

pub use diffusion::{DiffusionBenchOptions, bench_diffusion};
pub use gan::{GanBenchOptions, bench_gan};
pub use generate::{GenerateBenchOptions, bench_generate};
pub use gpt::{BenchOptions, bench_gpt, peak_rss_mb};
pub use seq2seq::{Seq2SeqBenchOptions, bench_seq2seq};
pub use vae::{VaeBenchOptions, bench_vae};
pub use watermark::{WatermarkBenchOptions, bench_watermark};
