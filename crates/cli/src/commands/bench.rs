//! `muse bench FAMILY`: training-step and generation speed as one JSON line.

use clap::Subcommand;
use muse_core::eval::bench::{BenchOptions, bench_gpt};
use muse_core::train::gpt::GptRunConfig;

use super::common::DeviceArgs;

/// Measure speed. Prints one JSON line: median ms per training step, tokens/s, parameters,
/// peak memory and generation tokens/s. Set threads with the global `--threads`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    family: Family,
}

#[derive(Subcommand)]
enum Family {
    /// GPT training steps (AdamW, clipping) and greedy KV-cache decoding.
    Gpt(GptArgs),
    /// GAN training steps (D on a real and a fake batch, then G), as dcgan28.py.
    Gan(super::gan::BenchArgs),
    /// VAE training steps (forward, backward, Adam), as vae_mlp.py.
    Vae(super::train_image::VaeBenchArgs),
    /// DDPM U-Net training steps and DDIM-50 sampling of 16 images, as ddpm_unet28.py.
    Diffusion(super::diffusion::BenchArgs),
}

#[derive(clap::Args)]
struct GptArgs {
    /// The preset to measure (char-baby, char-shakespeare, gpt2-small).
    #[arg(long, default_value = "char-baby")]
    preset: String,
    /// Override a config key, as for `muse train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Timed training steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Untimed warm-up steps first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Only measure decoding: 16-token prompt, 128 greedy tokens (as the transformers
    /// reference), plus ms/token with 64 and 900 tokens in the cache.
    #[arg(long)]
    generate: bool,
    /// Training text for presets with a trained tokenizer.
    #[arg(long, default_value = "tinyshakespeare")]
    data: String,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let a = match args.family {
        Family::Gpt(a) => a,
        Family::Gan(a) => return super::gan::bench(a),
        Family::Vae(a) => return super::train_image::bench_vae(a),
        Family::Diffusion(a) => return super::diffusion::bench(a),
    };
    let config = muse_core::config::resolve(&GptRunConfig::preset(&a.preset)?, None, &a.sets)?;
    let opts = BenchOptions {
        config,
        preset: a.preset,
        steps: a.steps,
        warmup: a.warmup,
        generate_only: a.generate,
        data: a.data,
        device: a.device.device()?,
    };
    println!("{}", serde_json::to_string(&bench_gpt(&opts)?)?);
    Ok(())
}
