//! Sentence-encoding speed of Muse's BERT encoder on all-MiniLM-L6-v2, to compare with
//! sentence-transformers (`scripts/bench/embed_minilm.py`) at the same threads in one run.
//!
//! The workload: the first N non-blank lines of Tiny Shakespeare (short sentences, 3-40
//! tokens), encoded in batches of B (sorted by length, as sentence-transformers does), timed
//! after one warm-up pass. Prints one JSON line.
//!
//! ```text
//! MUSE_DATA_DIR=../shared/data cargo run --release -p muse-core --example embed_speed -- \
//!     --threads 2 --n 256 --batch 32 --reps 5
//! ```

use std::time::Instant;

use candle_core::Device;
use muse_core::embed::SentenceEncoder;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> muse_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads = arg(&args, "--threads", 2);
    let n = arg(&args, "--n", 256);
    let batch = arg(&args, "--batch", 32);
    let reps = arg(&args, "--reps", 5).max(1);
    muse_core::device::set_cpu_threads(Some(threads));
    let data = std::env::var("MUSE_DATA_DIR").unwrap_or_else(|_| "../shared/data".into());
    let data = std::path::Path::new(&data);
    let corpus = std::fs::read_to_string(data.join("tinyshakespeare/input.txt"))
        .map_err(muse_core::Error::io(data.join("tinyshakespeare/input.txt")))?;
    let texts: Vec<&str> = corpus
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect();
    let enc = SentenceEncoder::open(&data.join("all-minilm-l6-v2"), &Device::Cpu)?;
    enc.encode_batched(&texts, batch)?; // warm-up
    let mut ms: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            enc.encode_batched(&texts, batch)
                .map(|_| t0.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<muse_core::Result<_>>()?;
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "impl": "muse",
            "threads": threads,
            "sentences": texts.len(),
            "batch": batch,
            "ms_median": (median * 10.0).round() / 10.0,
            "sentences_per_s_median": (texts.len() as f64 / median * 1e4).round() / 10.0,
        })
    );
    Ok(())
}
