//! `muse bench FAMILY`: parse, call `run::bench`, print one JSON line.

use clap::Subcommand;
use muse_core::run::{BenchRequest, Family};

use super::common::DeviceArgs;

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
}

/// Flags every workload takes.
#[derive(clap::Args)]
struct CommonArgs {
    /// The preset to measure [default: the family's default preset: char-baby, dcgan-mnist,
    /// mnist-mlp, ddpm-mnist].
    #[arg(long)]
    preset: Option<String>,
    /// Override a config key, as for `muse train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Timed steps [default: gpt 50, gan 100, vae 200, diffusion 30].
    #[arg(long)]
    steps: Option<usize>,
    /// Untimed warm-up steps first [default: gpt 10, gan 10, vae 20, diffusion 5].
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
    };
    println!("{}", serde_json::to_string(&muse_core::run::bench(req)?)?);
    Ok(())
}
