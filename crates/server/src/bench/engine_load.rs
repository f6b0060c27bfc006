//! `muse bench serve`: the engine under load. `clients` concurrent clients each send
//! `requests` chat requests (one user message) back to back; the same load runs twice in one call, with batching
//! off (one choice per forward pass, requests in turn) and on (up to `max_batch` choices per
//! pass), so that the ratio of the two is the batching's own effect on this machine. The
//! clients talk to the engine directly, as the HTTP handlers do, so HTTP itself is not timed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use muse_core::device::Device;
use muse_core::run::ChatRole;
use muse_core::run::generation::SamplingParams;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::engine::{EngineConfig, EngineHandle, Job, Prompt, TextEvent, TextRequest};
use crate::metrics::Metrics;
use crate::wire::sampling::TextSettings;

use super::{Latencies, PROMPTS, ReplyTiming};

pub struct LoadOptions {
    /// A text model: GGUF file, model folder or run.
    pub model: PathBuf,
    pub device: Device,
    pub clients: usize,
    /// Chat requests each client sends, one after the other.
    pub requests: usize,
    /// Tokens per reply (fewer when the model ends its reply).
    pub max_tokens: usize,
    /// The batched run's limit (the other runs with 1).
    pub max_batch: usize,
}

/// One load run.
#[derive(Debug, Serialize)]
pub struct LoadRun {
    pub max_batch: usize,
    pub seconds: f64,
    pub completions: usize,
    pub tokens: usize,
    pub tokens_per_s: f64,
    /// Requests that failed (an engine error or a refusal); 0 on a healthy run.
    pub errors: usize,
    /// From sending a request to its last token.
    pub latency_ms_median: f64,
    pub latency_ms_p90: f64,
    /// From sending a request to its first token.
    pub first_token_ms_median: f64,
    pub first_token_ms_p99: f64,
    /// Between tokens of one reply (its decode time over its tokens after the first).
    pub per_token_ms_median: f64,
    pub per_token_ms_p99: f64,
    /// Choices per forward pass, averaged over the passes.
    pub mean_batch: f64,
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub bench: &'static str,
    pub model: String,
    pub clients: usize,
    pub requests_per_client: usize,
    pub max_tokens: usize,
    pub threads: usize,
    pub one_at_a_time: LoadRun,
    pub batched: LoadRun,
    /// Tokens per second batched over one at a time.
    pub throughput_ratio: f64,
    /// Peak resident memory of the process over both runs.
    pub peak_rss_mb: Option<f64>,
}

/// Runs the load with batching off, then on.
pub fn load_bench(opts: &LoadOptions) -> muse_core::Result<LoadReport> {
    if opts.clients == 0 || opts.requests == 0 || opts.max_tokens == 0 || opts.max_batch == 0 {
        return Err(muse_core::Error::usage(
            "--clients, --requests, --max-tokens and --max-batch must each be at least 1",
        ));
    }
    let one_at_a_time = load_run(opts, 1)?;
    let batched = load_run(opts, opts.max_batch)?;
    Ok(LoadReport {
        bench: "serve",
        model: opts.model.display().to_string(),
        clients: opts.clients,
        requests_per_client: opts.requests,
        max_tokens: opts.max_tokens,
        threads: muse_core::device::cpu_threads(),
        throughput_ratio: batched.tokens_per_s / one_at_a_time.tokens_per_s,
        one_at_a_time,
        batched,
        peak_rss_mb: muse_core::bench::peak_rss_mb(),
    })
}

fn load_run(opts: &LoadOptions, max_batch: usize) -> muse_core::Result<LoadRun> {
    let named = crate::model_names(std::slice::from_ref(&opts.model))?;
    let metrics = Arc::new(Metrics::default());
    let cfg = EngineConfig {
        queue: opts.clients + 1,
        max_batch,
        ..EngineConfig::new(opts.device.clone())
    };
    let (handle, _) = super::start_text_engine(named, &opts.model, cfg, metrics.clone())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(muse_core::Error::io("the benchmark's runtime"))?;
    let start = Instant::now();
    let outcomes: Vec<Option<ReplyTiming>> = runtime.block_on(async {
        let clients: Vec<_> = (0..opts.clients)
            .map(|c| tokio::spawn(client(handle.clone(), c, opts.requests, opts.max_tokens)))
            .collect();
        let mut all = Vec::new();
        for c in clients {
            all.extend(
                c.await
                    .map_err(|e| muse_core::Error::input(e.to_string()))?,
            );
        }
        Ok::<_, muse_core::Error>(all)
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let answered = outcomes.iter().flatten();
    let tokens: usize = answered.clone().map(|a| a.tokens).sum();
    let times = Latencies::of(answered.clone());
    Ok(LoadRun {
        max_batch,
        seconds,
        completions: answered.count(),
        tokens,
        tokens_per_s: tokens as f64 / seconds,
        errors: outcomes.iter().filter(|o| o.is_none()).count(),
        latency_ms_median: times.total_p50,
        latency_ms_p90: times.total_p90,
        first_token_ms_median: times.first_p50,
        first_token_ms_p99: times.first_p99,
        per_token_ms_median: times.per_token_p50,
        per_token_ms_p99: times.per_token_p99,
        mean_batch: metrics.mean_batch(),
    })
}

/// One client: `requests` chat requests, each sent when the last has ended; `None` for a
/// request that failed.
async fn client(
    engine: EngineHandle,
    index: usize,
    requests: usize,
    max_tokens: usize,
) -> Vec<Option<ReplyTiming>> {
    let mut out = Vec::with_capacity(requests);
    for r in 0..requests {
        let k = index * requests + r;
        let (tx, mut events) = mpsc::unbounded_channel();
        let sent = Instant::now();
        let req = TextRequest {
            received: sent,
            model: 0,
            prompt: Prompt::Chat(vec![(
                ChatRole::User,
                PROMPTS[k % PROMPTS.len()].to_string(),
            )]),
            settings: TextSettings {
                params: SamplingParams {
                    temperature: 0.8,
                    ..Default::default()
                },
                seed: k as u64,
                n: 1,
                max_tokens: Some(max_tokens),
                stop: Vec::new(),
                top_logprobs: None,
                stream: true,
                include_usage: false,
            },
        };
        if let Err(e) = engine.submit(Job::Text { req, events: tx }) {
            tracing::warn!("the engine refused a request: {e}");
            out.push(None);
            continue;
        }
        let (mut tokens, mut first_token, mut failed) = (0, None, false);
        while let Some(event) = events.recv().await {
            match event {
                TextEvent::Token { .. } => {
                    first_token.get_or_insert_with(|| sent.elapsed());
                }
                // A reply that is only its end-of-text token sends no text.
                TextEvent::Done {
                    completion_tokens, ..
                } => {
                    first_token.get_or_insert_with(|| sent.elapsed());
                    tokens = completion_tokens;
                }
                TextEvent::Failed(e) => {
                    tracing::warn!("a request failed: {e}");
                    failed = true;
                }
                TextEvent::Started { .. } => {}
            }
        }
        let total = sent.elapsed();
        out.push((!failed).then(|| ReplyTiming {
            tokens,
            first_token: first_token.unwrap_or(total),
            total,
        }));
    }
    out
}
