//! `muse train FAMILY`: parse the flags into a [`TrainRequest`], call `run::train`, print.

use std::path::PathBuf;

use clap::Subcommand;
use muse_core::run::{ClassifierChoice, ConfigRequest, Family, FlagSet, StartMode, TrainRequest};

use super::common::{DeviceArgs, print_outcome};

/// Train a model. Every run writes one folder: config, weights, tokenizer, metrics, loss plot,
/// samples and a model card.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    family: FamilyArgs,
}

#[derive(Subcommand)]
enum FamilyArgs {
    /// A GPT-style decoder-only transformer language model.
    Gpt(GptArgs),
    /// The reference image classifier (small CNN) that judges generated images.
    Classifier(ClassifierArgs),
    /// A variational autoencoder (MLP or conv; --beta for a beta-VAE, --train-noise to denoise).
    Vae(VaeArgs),
    /// A DCGAN image generator (class-conditional with cgan-mnist; --loss wgan-gp).
    Gan(GanArgs),
    /// A DDPM diffusion model (U-Net; class-conditional with the -cond presets).
    Diffusion(DiffusionArgs),
    /// An encoder-decoder transformer for translation (Vaswani et al. 2017).
    Seq2seq(Seq2seqArgs),
}

/// Flags every family takes.
#[derive(clap::Args)]
pub struct RunArgs {
    /// A TOML file whose keys override the preset (sections: model, train, data, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one config key, e.g. `--set train.lr=3e-4`. Bare keys work when unique;
    /// `--print-config` lists them all. On --resume, loop keys may change (max_iters, epochs,
    /// lr, intervals); the model, data and seed may not, nor a diffusion run's noise schedule,
    /// initialisation, tint and text encoder.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Seed of weights, data order, dropout and samples (same as `--set train.seed=N`).
    #[arg(long)]
    seed: Option<u64>,
    /// Train exactly N optimizer steps, whatever the preset counts in (a quick try, a smoke
    /// test); `--resume` with a larger N continues.
    #[arg(long, value_name = "N")]
    max_steps: Option<u64>,
    /// The run directory to write (default: runs/<preset> for gpt, runs/<family>-<preset>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint: repeat the command that started it
    /// and add --resume (a run stopped before its first checkpoint starts again from step 0).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Delete an existing --out folder and start over.
    #[arg(long)]
    force: bool,
    /// Print the resolved configuration as TOML and exit without training.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

impl RunArgs {
    /// The request every family starts from.
    fn request(
        &self,
        family: Family,
        preset: Option<String>,
        flags: Vec<FlagSet>,
    ) -> anyhow::Result<TrainRequest> {
        let mut req = TrainRequest::new(family, self.device.device()?);
        req.config = ConfigRequest {
            preset,
            file: self.config.clone(),
            flags,
            sets: self.sets.clone(),
        };
        req.seed = self.seed;
        req.max_steps = self.max_steps;
        req.out = self.out.clone();
        req.mode = match (self.resume, self.force) {
            (true, _) => StartMode::Resume,
            (_, true) => StartMode::Force,
            _ => StartMode::New,
        };
        req.print_config = self.print_config;
        Ok(req)
    }
}

#[derive(clap::Args)]
struct GptArgs {
    /// Named configuration to start from: char-baby (nanoGPT's CPU baby GPT),
    /// char-shakespeare (nanoGPT's 6/6/384 GPU config) or gpt2-small (124M, GPT-2 BPE).
    /// [default: char-baby]
    #[arg(long)]
    preset: Option<String>,
    /// Training text: a dataset name from `muse data list` or a path to a UTF-8 text file
    /// (default: tinyshakespeare; on --resume, the run's own data).
    #[arg(long)]
    data: Option<String>,
    /// Tokenizer: char, bpe, gpt2, a tokenizer.json, or a folder holding one (same as
    /// `--set tokenizer=...`).
    #[arg(long)]
    tokenizer: Option<String>,
    /// Continue pretraining a model: start from the weights, architecture and tokenizer of this
    /// Muse GPT run or Hugging Face GPT-2 folder instead of random weights.
    #[arg(long, conflicts_with = "tokenizer")]
    init: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// Flags of the image families' data.
#[derive(clap::Args)]
struct ImageDataArgs {
    /// Training images: mnist, fashion-mnist, a folder of IDX files, or a folder of PNG/JPEG
    /// images (class subfolders give labels). Same as `--set data.dataset=...`.
    #[arg(long)]
    data: Option<String>,
    /// Resize images to this square size (same as `--set data.image_size=N`).
    #[arg(long)]
    image_size: Option<usize>,
    /// 1 (grey) or 3 (RGB) (same as `--set data.channels=N`).
    #[arg(long)]
    channels: Option<usize>,
}

impl ImageDataArgs {
    fn flags(&self) -> Vec<FlagSet> {
        let mut f = Vec::new();
        if let Some(d) = &self.data {
            f.push(FlagSet::new("--data", "data.dataset", d));
        }
        if let Some(s) = self.image_size {
            f.push(FlagSet::new("--image-size", "data.image_size", s));
        }
        if let Some(c) = self.channels {
            f.push(FlagSet::new("--channels", "data.channels", c));
        }
        f
    }
}

#[derive(clap::Args)]
struct ClassifierArgs {
    /// Named configuration: mnist (8 epochs, random 2-pixel shifts) or fashion-mnist (the
    /// same small CNN, 10 epochs, no shifts) [default: fashion-mnist with --data
    /// fashion-mnist, else mnist].
    #[arg(long)]
    preset: Option<String>,
    #[command(flatten)]
    data: ImageDataArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct VaeArgs {
    /// Named configuration: mnist-mlp (the PyTorch examples VAE: 784-400-20, Adam 1e-3,
    /// batch 128, 10 epochs), mnist-mlp-cosine (the same with Adam 5e-3 decayed to 0 on a
    /// cosine), mnist-conv (convolutional encoder and decoder) or mnist-latent (a 4 x 8 x 8
    /// latent grid and KL weight 0.1: the autoencoder of `train diffusion --preset ldm-*`).
    /// [default: mnist-mlp]
    #[arg(long)]
    preset: Option<String>,
    /// Weight of the KL term: 1 is the VAE, larger values a beta-VAE (same as
    /// `--set objective.beta=B`).
    #[arg(long, value_name = "B")]
    beta: Option<f64>,
    /// Train a denoising VAE: corrupt inputs with Gaussian noise of this standard deviation
    /// and reconstruct the clean image (same as `--set objective.train_noise=SIGMA`).
    #[arg(long, value_name = "SIGMA")]
    train_noise: Option<f64>,
    #[command(flatten)]
    data: ImageDataArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct GanArgs {
    /// Named configuration: dcgan-mnist (DCGAN, non-saturating loss), cgan-mnist (conditioned
    /// on the digit) or wgan-gp-mnist. [default: dcgan-mnist]
    #[arg(long)]
    preset: Option<String>,
    /// Objective: bce (non-saturating, DCGAN) or wgan-gp (Wasserstein loss with gradient
    /// penalty: critic without batch norm, 5 critic steps per G step, Adam 1e-4 (0.5, 0.9)).
    #[arg(long)]
    loss: Option<String>,
    /// Reference classifier run for the class-coverage check while training
    /// [default: runs/classifier-<dataset>, skipped with a note when missing].
    #[arg(long, conflicts_with = "no_classifier")]
    classifier: Option<PathBuf>,
    /// Train without the class-coverage check.
    #[arg(long)]
    no_classifier: bool,
    #[command(flatten)]
    data: ImageDataArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct DiffusionArgs {
    /// Named configuration: ddpm-mnist, ddpm-fashion (unconditional), ddpm-mnist-cond,
    /// ddpm-fashion-cond (class-conditional, for classifier-free guidance), t2i-fashion,
    /// t2i-mnist (text-to-image: images tinted in eight colours, captioned, read by the frozen
    /// all-MiniLM-L6-v2 encoder through cross-attention), ldm-mnist, ldm-fashion,
    /// ldm-mnist-cond, ldm-fashion-cond (latent diffusion: the U-Net denoises the 4 x 8 x 8
    /// latents of a VAE run, `--set vae=RUN` from `muse train vae --preset mnist-latent`,
    /// 64/128/256 channels; about a third of a pixel step). All: T = 1000,
    /// linear betas (`--set schedule=cosine`), AdamW 2e-4, batch 64, EMA 0.999, 2000 steps
    /// (4000 for the ldm -cond presets); the pixel presets use the U-Net of ddpm_unet28.py
    /// (about two hours on 2 cores).
    /// `--set tint=true` on a -cond preset trains the label-only baseline on the tinted
    /// images. [default: ddpm-mnist]
    #[arg(long)]
    preset: Option<String>,
    #[command(flatten)]
    data: ImageDataArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
struct Seq2seqArgs {
    /// Named configuration: tatoeba-en-fr (3 + 3 layers, width 256, 4 heads, joint BPE of
    /// 8000 tokens, label smoothing 0.1, inverse square-root schedule) or tiny (for tests).
    /// [default: tatoeba-en-fr]
    #[arg(long)]
    preset: Option<String>,
    /// Sentence pairs: eng-fra, or a TSV (`source TAB target`) or JSONL file (same as `--set
    /// data.dataset=...`).
    #[arg(long)]
    data: Option<String>,
    /// Translate the second column into the first (French to English for eng-fra); same as
    /// `--set data.reverse=true`.
    #[arg(long)]
    reverse: bool,
    #[command(flatten)]
    run: RunArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let req = match args.family {
        FamilyArgs::Gpt(a) => {
            let mut flags = Vec::new();
            if let Some(t) = &a.tokenizer {
                flags.push(FlagSet::new("--tokenizer", "data.tokenizer", t));
            }
            let mut req = a.run.request(Family::Gpt, a.preset, flags)?;
            req.text_data = a.data;
            req.init = a.init;
            req
        }
        FamilyArgs::Classifier(a) => a
            .run
            .request(Family::Classifier, a.preset, a.data.flags())?,
        FamilyArgs::Vae(a) => {
            let mut flags = a.data.flags();
            if let Some(b) = a.beta {
                flags.push(FlagSet::new("--beta", "objective.beta", b));
            }
            if let Some(s) = a.train_noise {
                flags.push(FlagSet::new("--train-noise", "objective.train_noise", s));
            }
            a.run.request(Family::Vae, a.preset, flags)?
        }
        FamilyArgs::Gan(a) => {
            let mut req = a.run.request(Family::Gan, a.preset, a.data.flags())?;
            req.gan_loss = a.loss;
            req.classifier = match (a.classifier, a.no_classifier) {
                (_, true) => ClassifierChoice::Off,
                (Some(dir), _) => ClassifierChoice::At(dir),
                _ => ClassifierChoice::Default,
            };
            req
        }
        FamilyArgs::Diffusion(a) => a.run.request(Family::Diffusion, a.preset, a.data.flags())?,
        FamilyArgs::Seq2seq(a) => {
            let mut flags = Vec::new();
            if let Some(d) = &a.data {
                flags.push(FlagSet::new("--data", "data.dataset", d));
            }
            if a.reverse {
                flags.push(FlagSet::new("--reverse", "data.reverse", true));
            }
            a.run.request(Family::Seq2seq, a.preset, flags)?
        }
    };
    print_outcome(muse_core::run::train(req)?);
    Ok(())
}
