//! `muse serve MODEL...`: an OpenAI-compatible HTTP server for the given models (text, chat,
//! embeddings, images) until Ctrl-C or SIGTERM. The server itself is `muse-server`.

use std::path::PathBuf;

use muse_server::serve::{DEFAULT_HOST, DEFAULT_MAX_BATCH, DEFAULT_PORT, DEFAULT_QUEUE};
use muse_server::{ServeConfig, ServeError};

use super::common::{DeviceArgs, WatermarkArgs};

/// Serve models over HTTP in the OpenAI wire format: /v1/completions, /v1/chat/completions,
/// /v1/embeddings, /v1/images/generations, /v1/models, /health, /metrics (see docs/serve.md).
/// Each model is named after its folder (or its file, without the extension). Everything it
/// generates is AI-generated.
#[derive(clap::Args)]
pub struct Args {
    /// Models to serve: run folders (`muse train --out`), Hugging Face folders (gpt2, llama),
    /// GGUF files, sentence-encoder folders (all-MiniLM-L6-v2) and image runs (GAN, VAE,
    /// diffusion).
    #[arg(required = true, value_name = "MODEL")]
    models: Vec<PathBuf>,
    /// Address to listen on; the default takes connections from this machine only (0.0.0.0
    /// opens it to the network: set an --api-key then).
    #[arg(long, default_value = DEFAULT_HOST)]
    host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health; repeat for several
    /// keys. MUSE_API_KEY holds keys separated by commas.
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "MUSE_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,
    /// Requests that may wait for the engine; more are answered 429 (busy).
    #[arg(long, default_value_t = DEFAULT_QUEUE)]
    queue: usize,
    /// Text choices generated together: requests that arrive while others are generating join
    /// them, and each token step runs one forward pass for all (continuous batching); more
    /// wait in the queue.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH)]
    max_batch: usize,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    watermark: WatermarkArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.queue == 0 {
        anyhow::bail!(muse_core::Error::usage("--queue must be at least 1"));
    }
    if a.max_batch == 0 {
        anyhow::bail!(muse_core::Error::usage("--max-batch must be at least 1"));
    }
    let api_keys: Vec<String> = a
        .api_keys
        .into_iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    let keyed = !api_keys.is_empty();
    let cfg = ServeConfig {
        models: a.models,
        host: a.host,
        port: a.port,
        api_keys,
        queue: a.queue,
        max_batch: a.max_batch,
        device: a.device.device()?,
        watermark: a.watermark.watermark()?,
    };
    let result = muse_server::run(cfg, |addr, models| {
        crate::return_freed_memory();
        for (name, kind) in models {
            eprintln!("serving {name} ({kind})");
        }
        eprintln!(
            "listening on http://{addr} ({}Ctrl-C stops); outputs are {}",
            if keyed { "API key required; " } else { "" },
            muse_core::AI_GENERATED_NOTICE
        );
    });
    match result {
        Ok(()) => Ok(()),
        // Core errors keep their type so that usage errors exit with code 2.
        Err(ServeError::Core(e)) => Err(e.into()),
        Err(e) => Err(e.into()),
    }
}
