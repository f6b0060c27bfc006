//! Starting the server: name the models, open them on the engine thread, bind, serve until
//! Ctrl-C or SIGTERM, then stop taking connections and let the requests in flight finish.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use muse_core::device::Device;

use crate::app::{AppState, router};
use crate::metrics::Metrics;

/// Default address: loopback only, so nothing is exposed unless asked for with `--host`.
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 8080;
/// Jobs that may wait for the engine before requests are answered 429. A waiting job holds
/// only its request, so the bound is there against floods, not memory: at 32, `muse bench
/// http` with 64 streaming chat clients had 480 of 4121 requests refused.
pub const DEFAULT_QUEUE: usize = 128;
/// Text choices generated together (`--max-batch`).
pub const DEFAULT_MAX_BATCH: usize = 8;

/// What `muse serve` was asked.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub models: Vec<PathBuf>,
    pub host: String,
    pub port: u16,
    pub api_keys: Vec<String>,
    pub queue: usize,
    /// Text choices generated together (continuous batching).
    pub max_batch: usize,
    pub device: Device,
    /// Watermark every generated text with this key (Kirchenbauer et al. 2023).
    pub watermark: Option<muse_core::run::generation::Watermark>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Core(#[from] muse_core::Error),
    #[error("cannot listen on {addr}: {source} (is another server using the port? try --port)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Each model's name: its folder name, or its file name without the extension. Two paths
/// with the same name are refused (a request could not tell them apart).
pub fn model_names(paths: &[PathBuf]) -> muse_core::Result<Vec<(String, PathBuf)>> {
    if paths.is_empty() {
        return Err(muse_core::Error::usage(
            "give at least one model: `muse serve runs/gpt` (run folders, Hugging Face folders, \
             GGUF files, encoder folders)",
        ));
    }
    let mut named: Vec<(String, PathBuf)> = Vec::new();
    for path in paths {
        let name = name_of(path)?;
        if let Some((_, other)) = named.iter().find(|(n, _)| *n == name) {
            return Err(muse_core::Error::usage(format!(
                "{} and {} would both be served as '{name}': models are named after their \
                 folder or file, so rename or copy one",
                other.display(),
                path.display()
            )));
        }
        named.push((name, path.clone()));
    }
    Ok(named)
}

fn name_of(path: &Path) -> muse_core::Result<String> {
    if !path.exists() {
        return Err(muse_core::Error::input(format!(
            "{}: no such file or folder; give a run folder, a Hugging Face folder, a GGUF file \
             or an encoder folder",
            path.display()
        )));
    }
    let full = path.canonicalize().map_err(muse_core::Error::io(path))?;
    let name = if full.is_file() {
        full.file_stem()
    } else {
        full.file_name()
    };
    name.map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            muse_core::Error::usage(format!(
                "{}: cannot name a model after this path; give its folder or file",
                path.display()
            ))
        })
}

/// Opens the models, binds and serves until a shutdown signal. `on_ready` gets the address
/// and the model names once the server is listening.
pub fn run(
    cfg: ServeConfig,
    on_ready: impl FnOnce(SocketAddr, &[(String, &'static str)]),
) -> Result<(), ServeError> {
    let named = model_names(&cfg.models)?;
    let metrics = Arc::new(Metrics::default());
    let engine_cfg = crate::engine::EngineConfig {
        device: cfg.device.clone(),
        queue: cfg.queue,
        max_batch: cfg.max_batch,
        watermark: cfg.watermark.clone(),
    };
    let (engine, infos) = crate::engine::start(named, engine_cfg, metrics.clone())?;
    let listing: Vec<(String, &'static str)> = infos
        .iter()
        .map(|m| (m.name.clone(), m.kind.as_str()))
        .collect();
    let state = AppState::new(infos, engine, cfg.api_keys.clone(), metrics);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.clone(),
                source,
            })?;
        on_ready(listener.local_addr()?, &listing);
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        Ok(())
    })
}

/// Resolves at the first Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
