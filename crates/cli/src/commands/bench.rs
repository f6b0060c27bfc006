//! `muse bench FAMILY`: parse, call `run::bench`, print one JSON line.

use clap::Subcommand;
use std::path::PathBuf;

use muse_core::run::{BenchRequest, Family, GenerateBenchOptions, WatermarkBenchOptions};

use super::common::{DeviceArgs, WatermarkArgs};

/// Measure speed. Prints one JSON line: median ms per training step, throughput, parameters,
/// peak memory (and generation speed for text). Set threads with the global `--threads`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    family: FamilyArgs,
}

#[derive(Subcommand)]
enum FamilyArgs {
    /// GPT training steps (AdamW, clipping) and greedy KV-cache decoding.
    Gpt {
        /// Only measure decoding: 16-token prompt, 128 greedy tokens (as the transformers
        /// reference), plus ms/token with 64 and 900 tokens in the cache.
        #[arg(long)]
        generate: bool,
        /// Training text for presets with a trained tokenizer [default: tinyshakespeare].
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// GAN training steps (D on a real and a fake batch, then G), as dcgan28.py.
    Gan {
        /// Objective override, as for `muse train gan --loss`.
        #[arg(long)]
        loss: Option<String>,
        /// Use candle's own convolutions instead of Muse's fused kernels (for comparison).
        #[arg(long)]
        candle_conv: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// VAE training steps (forward, backward, Adam), as vae_mlp.py.
    Vae {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// DDPM U-Net training steps and DDIM sampling of 16 images, as ddpm_unet28.py.
    Diffusion {
        /// DDIM steps of the sampling measurement [default: 50].
        #[arg(long)]
        ddim_steps: Option<usize>,
        /// Images sampled at once [default: 16].
        #[arg(long)]
        sample_batch: Option<usize>,
        /// Timed sampling runs [default: 3].
        #[arg(long)]
        sample_reps: Option<usize>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Encoder-decoder training steps on eng-fra pairs (batch, forward, backward, clip, Adam),
    /// as scripts/bench/seq2seq_ref.py, on batches spread over the length distribution.
    Seq2seq {
        /// Use this joint tokenizer (a translation run's tokenizer.json) instead of training
        /// one on the training pairs first.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Prompt processing and generation speed of any text model (GGUF file, model folder,
    /// run), as llama.cpp's llama-bench measures them: `pp` runs --prompt-tokens random tokens
    /// as one batch, `tg` decodes --gen-tokens tokens one at a time, each from an empty cache
    /// and timed alone; prints tokens/s of each (median of --reps) and peak memory.
    Generate(GenerateBench),
    /// The text watermark on a real model: each prompt answered with and without it, human
    /// text of the same length, all scored as `muse detect` would; prints detection rates,
    /// the perplexity cost and robustness to random token replacement.
    Watermark(WatermarkBench),
    /// `muse serve` under load: --clients concurrent clients each send --requests chat
    /// requests (one user message) back to back, first one request at a time, then continuously batched (up
    /// to --max-batch choices per forward pass); prints tokens/s, latency and the mean batch
    /// of both, and their throughput ratio.
    Serve(ServeBench),
    /// `muse serve` over loopback HTTP, as users meet it: for each count in --clients, that
    /// many clients stream chat requests back to back for --seconds; prints total tokens/s
    /// (and its ratio to the first count), time to first token and per-token latency (median,
    /// p99), errors, the mean decode batch and peak memory. --url loads another
    /// OpenAI-compatible server (llama.cpp's llama-server, say) with the same clients.
    Http(HttpBench),
}

/// Flags of `muse bench serve`.
#[derive(clap::Args)]
struct ServeBench {
    /// A text model: a GGUF file, a model folder or a run.
    model: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Chat requests each client sends, one after the other.
    #[arg(long, default_value_t = 2)]
    requests: usize,
    /// Tokens per reply at most (fewer where the model ends its reply).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Choices per forward pass in the batched run, as `muse serve --max-batch`.
    #[arg(long, default_value_t = muse_server::serve::DEFAULT_MAX_BATCH)]
    max_batch: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

impl ServeBench {
    fn run(self) -> anyhow::Result<()> {
        let report = muse_server::bench::load_bench(&muse_server::bench::LoadOptions {
            model: self.model,
            device: self.device.device()?,
            clients: self.clients,
            requests: self.requests,
            max_tokens: self.max_tokens,
            max_batch: self.max_batch,
        })?;
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }
}

/// Flags of `muse bench http`.
#[derive(clap::Args)]
struct HttpBench {
    /// A text model: a GGUF file, a model folder or a run. With --url it is only named in the
    /// requests (by its file or folder name, as `muse serve` names it).
    model: PathBuf,
    /// Client counts to run, one after the other, each against a freshly started server.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    clients: Vec<usize>,
    /// Seconds each count keeps starting requests (a request running at the end finishes).
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Tokens per reply at most (fewer where the model ends its reply).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Choices per forward pass of Muse's server, as `muse serve --max-batch`.
    #[arg(long, default_value_t = muse_server::serve::DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// Requests that may wait for Muse's server, as `muse serve --queue`; more are refused
    /// (429) and count as errors.
    #[arg(long, default_value_t = muse_server::serve::DEFAULT_QUEUE)]
    queue: usize,
    /// Load the OpenAI-compatible server at this address (HOST:PORT) instead of starting
    /// Muse's own.
    #[arg(long)]
    url: Option<String>,
    /// Bearer key for the server at --url.
    #[arg(long, env = "MUSE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
}

impl HttpBench {
    fn run(self) -> anyhow::Result<()> {
        let report = muse_server::bench::http_load_bench(&muse_server::bench::HttpLoadOptions {
            model: self.model,
            url: self.url,
            api_key: self.api_key,
            device: self.device.device()?,
            clients: self.clients,
            seconds: self.seconds,
            max_tokens: self.max_tokens,
            max_batch: self.max_batch,
            queue: self.queue,
        })?;
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }
}

/// Flags of `muse bench generate`.
#[derive(clap::Args)]
struct GenerateBench {
    /// The model: a GGUF file, a model folder or a run.
    model: PathBuf,
    /// Tokens of the prompt-processing test (llama-bench's pp512); 0 skips it.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens of the generation test (llama-bench's tg128); 0 skips it.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Timed repetitions of each test, after one untimed warm-up.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Sequences the generation test decodes together, one batched step per token, as
    /// `muse serve` does with concurrent requests; tokens/s counts all of them.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

impl GenerateBench {
    fn run(self) -> anyhow::Result<()> {
        let report = muse_core::run::bench_generate(&GenerateBenchOptions {
            model: self.model,
            prompt_tokens: self.prompt_tokens,
            gen_tokens: self.gen_tokens,
            reps: self.reps,
            batch: self.batch,
            device: self.device.device()?,
        })?;
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }
}

/// Flags of `muse bench watermark`.
#[derive(clap::Args)]
struct WatermarkBench {
    /// The model: a GGUF file, a model folder or a run.
    model: PathBuf,
    /// Prompts from the instruction data, each answered twice (with and without the mark).
    #[arg(long, default_value_t = 200)]
    prompts: usize,
    /// Take the prompts from this file instead (one request a line, the first --prompts).
    #[arg(long)]
    prompts_file: Option<PathBuf>,
    /// Tokens per answer at most (an answer may end sooner).
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Tiny Shakespeare passages scored as human text (the human-written seed answers too).
    #[arg(long, default_value_t = 200)]
    human: usize,
    /// z above which a text counts as watermarked.
    #[arg(long, default_value_t = 4.0)]
    threshold: f64,
    /// Sampling temperature of both answers.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Seed of the prompt order, the sampling and the replacements.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write one JSON line per scored text here.
    #[arg(long)]
    rows: Option<PathBuf>,
    /// The watermark (a key is required here; `--watermark-key` or MUSE_WATERMARK_KEY).
    #[command(flatten)]
    watermark: WatermarkArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

impl WatermarkBench {
    fn run(self) -> anyhow::Result<()> {
        let Some(watermark) = self.watermark.watermark()? else {
            anyhow::bail!(muse_core::Error::usage(
                "give the watermark's key with --watermark-key (any secret string)"
            ));
        };
        let report = muse_core::run::bench_watermark(&WatermarkBenchOptions {
            model: self.model,
            prompts: self.prompts,
            prompts_file: self.prompts_file,
            tokens: self.tokens,
            watermark,
            threshold: self.threshold,
            temperature: self.temperature,
            human: self.human,
            seed: self.seed,
            rows: self.rows,
            device: self.device.device()?,
        })?;
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }
}

/// Flags every workload takes.
#[derive(clap::Args)]
struct CommonArgs {
    /// The preset to measure [default: the family's default preset: char-baby, dcgan-mnist,
    /// mnist-mlp, ddpm-mnist, tatoeba-en-fr].
    #[arg(long)]
    preset: Option<String>,
    /// Override a config key, as for `muse train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Timed steps [default: gpt 50, gan 100, vae 200, diffusion 30, seq2seq 30].
    #[arg(long)]
    steps: Option<usize>,
    /// Untimed warm-up steps first [default: gpt 10, gan 10, vae 20, diffusion 5, seq2seq 5].
    #[arg(long)]
    warmup: Option<usize>,
    #[command(flatten)]
    device: DeviceArgs,
}

impl CommonArgs {
    fn request(self, family: Family) -> anyhow::Result<BenchRequest> {
        let mut req = BenchRequest::new(family, self.device.device()?);
        req.preset = self.preset;
        req.sets = self.sets;
        req.steps = self.steps;
        req.warmup = self.warmup;
        Ok(req)
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let req = match args.family {
        FamilyArgs::Gpt {
            generate,
            data,
            common,
        } => {
            let mut req = common.request(Family::Gpt)?;
            req.generate_only = generate;
            req.text_data = data;
            req
        }
        FamilyArgs::Gan {
            loss,
            candle_conv,
            common,
        } => {
            let mut req = common.request(Family::Gan)?;
            req.gan_loss = loss;
            req.candle_conv = candle_conv;
            req
        }
        FamilyArgs::Vae { common } => common.request(Family::Vae)?,
        FamilyArgs::Diffusion {
            ddim_steps,
            sample_batch,
            sample_reps,
            common,
        } => {
            let mut req = common.request(Family::Diffusion)?;
            (req.ddim_steps, req.sample_batch, req.sample_reps) =
                (ddim_steps, sample_batch, sample_reps);
            req
        }
        FamilyArgs::Seq2seq { tokenizer, common } => {
            let mut req = common.request(Family::Seq2seq)?;
            req.tokenizer = tokenizer;
            req
        }
        FamilyArgs::Generate(g) => return g.run(),
        FamilyArgs::Watermark(w) => return w.run(),
        FamilyArgs::Serve(s) => return s.run(),
        FamilyArgs::Http(h) => return h.run(),
    };
    println!("{}", serde_json::to_string(&muse_core::run::bench(req)?)?);
    Ok(())
}
