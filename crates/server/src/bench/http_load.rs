//! `muse bench http`: a server under load over loopback, as users meet it. For each client
//! count N, N clients each send streaming chat requests back to back for a fixed time (a
//! request running at the deadline finishes and counts), and the run reports total tokens/s,
//! time to first text and per-token latency (median and p99), errors and, for Muse's own
//! server, the mean decode batch and the process's peak memory. Muse's server is started
//! fresh in this process for each N; with `url`, the same clients load another
//! OpenAI-compatible server instead (llama.cpp's `llama-server`, say), so the two compare
//! side by side.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use muse_core::device::Device;
use serde::Serialize;

use super::sse_client::stream_chat;
use super::{Latencies, PROMPTS, ReplyTiming};
use crate::app::{AppState, router};
use crate::engine::EngineConfig;
use crate::metrics::Metrics;

pub struct HttpLoadOptions {
    /// The text model: served by Muse in this process, or only named in the requests to `url`.
    pub model: PathBuf,
    /// `host:port` of a running OpenAI-compatible server to load instead of Muse's own.
    pub url: Option<String>,
    pub api_key: Option<String>,
    pub device: Device,
    /// The client counts to run, one after the other.
    pub clients: Vec<usize>,
    /// How long each run keeps starting requests.
    pub seconds: f64,
    pub max_tokens: usize,
    /// `--max-batch` of Muse's server.
    pub max_batch: usize,
    /// `--queue` of Muse's server: jobs that may wait; more are answered 429 (and count as
    /// errors here).
    pub queue: usize,
}

/// One client count's run.
#[derive(Debug, Serialize)]
pub struct HttpLoadRun {
    pub clients: usize,
    /// From the first request to the last reply's end.
    pub seconds: f64,
    pub completions: usize,
    pub tokens: usize,
    pub tokens_per_s: f64,
    /// This run's tokens/s over the first run's (N = 1 when the list starts with 1).
    pub throughput_vs_first: f64,
    /// Requests that failed (refused, cut off or malformed); must be 0.
    pub errors: usize,
    /// From sending a request to its first text.
    pub first_token_ms_median: f64,
    pub first_token_ms_p99: f64,
    /// Between tokens of one reply (its time after the first text over its other tokens).
    pub per_token_ms_median: f64,
    pub per_token_ms_p99: f64,
    /// Choices per forward pass, averaged over the passes (Muse's own server only).
    pub mean_batch: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct HttpLoadReport {
    pub bench: &'static str,
    pub model: String,
    /// "muse" (started here) or the address of the server loaded.
    pub server: String,
    pub max_tokens: usize,
    pub max_batch: Option<usize>,
    pub queue: Option<usize>,
    /// Muse's kernel threads (the server at `url` has its own setting).
    pub threads: Option<usize>,
    pub runs: Vec<HttpLoadRun>,
    /// Peak resident memory of this process (Muse's server and the clients) over all runs.
    pub peak_rss_mb: Option<f64>,
}

/// Runs the load at each client count.
pub fn http_load_bench(opts: &HttpLoadOptions) -> muse_core::Result<HttpLoadReport> {
    if opts.clients.is_empty() || opts.clients.contains(&0) {
        return Err(muse_core::Error::usage(
            "--clients takes client counts of at least 1, e.g. --clients 1,8,32,64",
        ));
    }
    if !(opts.seconds.is_finite() && opts.seconds > 0.0) || opts.max_tokens == 0 {
        return Err(muse_core::Error::usage(
            "--seconds must be above 0 and --max-tokens at least 1",
        ));
    }
    if opts.max_batch == 0 || opts.queue == 0 {
        return Err(muse_core::Error::usage(
            "--max-batch and --queue must each be at least 1",
        ));
    }
    let named = crate::model_names(std::slice::from_ref(&opts.model))?;
    let model_name = named[0].0.clone();
    let clients_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(muse_core::Error::io("the benchmark's runtime"))?;
    let mut runs: Vec<HttpLoadRun> = Vec::new();
    for &n in &opts.clients {
        let first = runs.first().map(|r| r.tokens_per_s);
        let run = match &opts.url {
            Some(url) => {
                let load = Load::new(url, &model_name, opts, n);
                summarise(n, clients_runtime.block_on(load.run()), None, first)
            }
            None => {
                let server = MuseServer::start(named.clone(), opts)?;
                let load = Load::new(&server.addr.to_string(), &model_name, opts, n);
                let outcome = clients_runtime.block_on(load.run());
                let mean_batch = server.metrics.mean_batch();
                server.stop();
                summarise(n, outcome, Some(mean_batch), first)
            }
        };
        tracing::info!(
            "{n} clients: {:.1} tokens/s, {} errors",
            run.tokens_per_s,
            run.errors
        );
        runs.push(run);
    }
    Ok(HttpLoadReport {
        bench: "http",
        model: opts.model.display().to_string(),
        server: opts.url.clone().unwrap_or_else(|| "muse".into()),
        max_tokens: opts.max_tokens,
        max_batch: opts.url.is_none().then_some(opts.max_batch),
        queue: opts.url.is_none().then_some(opts.queue),
        threads: opts.url.is_none().then(muse_core::device::cpu_threads),
        runs,
        peak_rss_mb: opts
            .url
            .is_none()
            .then(muse_core::bench::peak_rss_mb)
            .flatten(),
    })
}

/// Muse's server on a loopback port, as `muse serve` runs it (two runtime workers, the
/// engine on its own thread).
struct MuseServer {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: tokio::sync::oneshot::Sender<()>,
    runtime: tokio::runtime::Runtime,
}

impl MuseServer {
    fn start(named: Vec<(String, PathBuf)>, opts: &HttpLoadOptions) -> muse_core::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let cfg = EngineConfig {
            queue: opts.queue,
            max_batch: opts.max_batch,
            ..EngineConfig::new(opts.device.clone())
        };
        let (engine, infos) = super::start_text_engine(named, &opts.model, cfg, metrics.clone())?;
        let state = AppState::new(infos, engine, Vec::new(), metrics.clone());
        let io = |e| muse_core::Error::io("the benchmark's server")(e);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(io)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(io)?;
        let addr = listener.local_addr().map_err(io)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, router(state))
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!("the benchmark's server failed: {e}");
            }
        });
        Ok(Self {
            addr,
            metrics,
            stop,
            runtime,
        })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

/// N clients against one address.
struct Load {
    addr: String,
    model: String,
    api_key: Option<String>,
    clients: usize,
    duration: Duration,
    max_tokens: usize,
}

/// Every request's outcome, and how long the whole run took.
struct Outcome {
    replies: Vec<Result<ReplyTiming, String>>,
    seconds: f64,
}

impl Load {
    fn new(addr: &str, model: &str, opts: &HttpLoadOptions, clients: usize) -> Self {
        Self {
            addr: addr
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .into(),
            model: model.into(),
            api_key: opts.api_key.clone(),
            clients,
            duration: Duration::from_secs_f64(opts.seconds),
            max_tokens: opts.max_tokens,
        }
    }

    async fn run(self) -> Outcome {
        let load = Arc::new(self);
        let start = Instant::now();
        let deadline = start + load.duration;
        let tasks: Vec<_> = (0..load.clients)
            .map(|c| tokio::spawn(load.clone().client(c, deadline)))
            .collect();
        let mut replies = Vec::new();
        for t in tasks {
            match t.await {
                Ok(r) => replies.extend(r),
                Err(e) => replies.push(Err(format!("a client stopped: {e}"))),
            }
        }
        Outcome {
            replies,
            seconds: start.elapsed().as_secs_f64(),
        }
    }

    /// One client's requests, back to back until the deadline.
    async fn client(
        self: Arc<Self>,
        index: usize,
        deadline: Instant,
    ) -> Vec<Result<ReplyTiming, String>> {
        let mut out = Vec::new();
        let mut k = index;
        while Instant::now() < deadline {
            let body = serde_json::json!({
                "model": self.model,
                "messages": [{"role": "user", "content": PROMPTS[k % PROMPTS.len()]}],
                "max_tokens": self.max_tokens,
                "temperature": 0.8,
                "seed": k,
                "stream": true,
                "stream_options": {"include_usage": true},
            })
            .to_string();
            k += self.clients;
            let reply = stream_chat(
                &self.addr,
                "/v1/chat/completions",
                self.api_key.as_deref(),
                &body,
            )
            .await;
            if let Err(e) = &reply {
                tracing::warn!("client {index}: {e}");
                // A server that refuses at once should not be hammered in a tight loop.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            out.push(reply);
        }
        out
    }
}

/// One count's figures; `first` is the first count's tokens/s (`None` for the first itself).
fn summarise(
    clients: usize,
    outcome: Outcome,
    mean_batch: Option<f64>,
    first: Option<f64>,
) -> HttpLoadRun {
    let ok = outcome.replies.iter().flatten();
    let tokens: usize = ok.clone().map(|r| r.tokens).sum();
    let times = Latencies::of(ok.clone());
    let tokens_per_s = tokens as f64 / outcome.seconds;
    HttpLoadRun {
        clients,
        seconds: outcome.seconds,
        completions: ok.count(),
        tokens,
        tokens_per_s,
        throughput_vs_first: first.map_or(1.0, |f| tokens_per_s / f),
        errors: outcome.replies.iter().filter(|r| r.is_err()).count(),
        first_token_ms_median: times.first_p50,
        first_token_ms_p99: times.first_p99,
        per_token_ms_median: times.per_token_p50,
        per_token_ms_p99: times.per_token_p99,
        mean_batch,
    }
}
