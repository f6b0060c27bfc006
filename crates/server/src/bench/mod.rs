//! Serving benchmarks. [`engine_load`] (`muse bench serve`) drives the engine directly, one
//! request at a time against batched, to isolate the batching; [`http_load`] (`muse bench
//! http`) drives a server over loopback with N streaming clients for a fixed time, as users
//! would, and can point the same clients at another OpenAI-compatible server.

mod engine_load;
mod http_load;
mod sse_client;

use std::path::Path;
use std::sync::Arc;

use crate::engine::{self, EngineConfig, EngineHandle, ModelInfo};
use crate::metrics::Metrics;

pub use engine_load::{LoadOptions, LoadReport, LoadRun, load_bench};
pub use http_load::{HttpLoadOptions, HttpLoadReport, HttpLoadRun, http_load_bench};

/// User messages the clients cycle through (short, so that decoding dominates, as in chat).
const PROMPTS: [&str; 8] = [
    "The capital of France is",
    "Here is a short story about a robot:",
    "The three most important inventions are",
    "Write a haiku about the sea.",
    "To make bread, you first",
    "The best way to learn a language is",
    "Once upon a time",
    "A good night's sleep helps because",
];

/// What a client saw of one reply.
#[derive(Debug)]
pub struct ReplyTiming {
    /// Completion tokens.
    pub tokens: usize,
    /// From sending the request to the first token.
    pub first_token: std::time::Duration,
    /// From sending the request to the end of the reply.
    pub total: std::time::Duration,
}

/// Milliseconds over the replies: end to end (median, p90), to the first token and per token
/// after it (median, p99).
struct Latencies {
    total_p50: f64,
    total_p90: f64,
    first_p50: f64,
    first_p99: f64,
    per_token_p50: f64,
    per_token_p99: f64,
}

impl Latencies {
    fn of<'a>(replies: impl Iterator<Item = &'a ReplyTiming> + Clone) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let mut total: Vec<f64> = replies.clone().map(|r| ms(r.total)).collect();
        let mut first: Vec<f64> = replies.clone().map(|r| ms(r.first_token)).collect();
        let mut per_token: Vec<f64> = replies
            .filter(|r| r.tokens > 1)
            .map(|r| ms(r.total - r.first_token) / (r.tokens - 1) as f64)
            .collect();
        Self {
            total_p50: quantile(&mut total, 0.5),
            total_p90: quantile(&mut total, 0.9),
            first_p50: quantile(&mut first, 0.5),
            first_p99: quantile(&mut first, 0.99),
            per_token_p50: quantile(&mut per_token, 0.5),
            per_token_p99: quantile(&mut per_token, 0.99),
        }
    }
}

/// The `q` quantile (nearest rank) of `xs`; 0 for none.
fn quantile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let i = ((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1;
    xs[i]
}

/// The engine on one text model (`named`, from [`crate::model_names`]); any other kind of
/// model is a usage error.
fn start_text_engine(
    named: Vec<(String, std::path::PathBuf)>,
    model: &Path,
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
) -> muse_core::Result<(EngineHandle, Vec<ModelInfo>)> {
    let (handle, infos) = engine::start(named, cfg, metrics)?;
    if infos[0].kind != muse_core::run::ServedKind::Text {
        return Err(muse_core::Error::usage(format!(
            "{}: this model serves {}; the serving benchmark needs a text model",
            model.display(),
            infos[0].kind.as_str()
        )));
    }
    Ok((handle, infos))
}
