//! `muse train FAMILY`: train a model into a run directory.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use muse_core::run_dir::{OnExisting, RunDir};
use muse_core::train::gpt::{GptRunConfig, GptTrainJob, train_gpt_from};

use super::common::{DeviceArgs, gpt_sample_fn};

/// Train a model. Every run writes one folder: config, weights, tokenizer, metrics, loss plot,
/// samples and a model card.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    family: Family,
}

#[derive(Subcommand)]
enum Family {
    /// A GPT-style decoder-only transformer language model.
    Gpt(GptArgs),
    /// The reference image classifier (small CNN) that judges generated images.
    Classifier(super::train_image::ClassifierArgs),
    /// A variational autoencoder (MLP or conv; --beta for a beta-VAE, --train-noise to denoise).
    Vae(super::train_image::VaeArgs),
    /// A DCGAN image generator (class-conditional with cgan-mnist; --loss wgan-gp).
    Gan(super::gan::TrainArgs),
    /// A DDPM diffusion model (U-Net; class-conditional with the -cond presets).
    Diffusion(super::diffusion::TrainArgs),
}

#[derive(clap::Args)]
struct GptArgs {
    /// Named configuration to start from: char-baby (nanoGPT's CPU baby GPT),
    /// char-shakespeare (nanoGPT's 6/6/384 GPU config) or gpt2-small (124M, GPT-2 BPE).
    /// [default: char-baby]
    #[arg(long)]
    preset: Option<String>,
    /// A TOML file whose keys override the preset (sections: model, train, data, sample).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one config key, e.g. `--set max_iters=500 --set train.lr=3e-4`. Bare keys
    /// work when unique; `muse train gpt --print-config` lists them all.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Training text: a dataset name from `muse data list` or a path to a UTF-8 text file
    /// (default: tinyshakespeare; on --resume, the run's own data).
    #[arg(long)]
    data: Option<String>,
    /// The run directory to write (default: runs/<preset>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (its stored config, plus any --set).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Delete an existing --out folder and start over.
    #[arg(long)]
    force: bool,
    /// Print the resolved configuration as TOML and exit without training.
    #[arg(long)]
    print_config: bool,
    /// Tokenizer override: char, bpe, gpt2 or a tokenizer.json path (same as --set tokenizer=...).
    #[arg(long)]
    tokenizer: Option<String>,
    /// Continue pretraining a model: start from the weights, architecture and tokenizer of this
    /// Muse GPT run or Hugging Face GPT-2 folder instead of random weights.
    #[arg(long, conflicts_with_all = ["resume", "tokenizer"])]
    init: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.family {
        Family::Gpt(a) => train_gpt_cmd(a),
        Family::Classifier(a) => super::train_image::train_classifier(a),
        Family::Vae(a) => super::train_image::train_vae(a),
        Family::Gan(a) => super::gan::train(a),
        Family::Diffusion(a) => super::diffusion::train(a),
    }
}

fn train_gpt_cmd(a: GptArgs) -> anyhow::Result<()> {
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(a.preset.as_deref().unwrap_or("char-baby")));
    let mut sets = a.sets.clone();
    if let Some(t) = &a.tokenizer {
        sets.push(format!("data.tokenizer={t}"));
    }
    let (config, preset, data) = if a.resume {
        if a.config.is_some() || a.preset.is_some() {
            anyhow::bail!(muse_core::Error::usage(
                "a resumed run keeps its preset and config; change single keys with --set"
            ));
        }
        let record = RunDir::open(&out)?.read_training()?;
        let stored: GptRunConfig = serde_json::from_value(record.config)
            .context("training.json of the run to resume is not a GPT config")?;
        let data = a.data.unwrap_or(record.dataset.path);
        (
            muse_core::config::resolve(&stored, None, &sets)?,
            record.preset,
            data,
        )
    } else {
        let name = a.preset.unwrap_or_else(|| "char-baby".into());
        let mut preset = GptRunConfig::preset(&name)?;
        let name = match &a.init {
            Some(init) => {
                preset.model = init_model(init)?;
                format!("{name} (init from {})", init.display())
            }
            None => name,
        };
        let config = muse_core::config::resolve(&preset, a.config.as_deref(), &sets)?;
        (
            config,
            name,
            a.data.unwrap_or_else(|| "tinyshakespeare".into()),
        )
    };
    if a.print_config {
        print!("{}", toml::to_string(&config)?);
        return Ok(());
    }
    config.validate()?;
    let on_existing = match (a.resume, a.force) {
        (true, _) => OnExisting::Resume,
        (_, true) => OnExisting::Overwrite,
        _ => OnExisting::Refuse,
    };
    eprintln!("run: {}  preset: {preset}  data: {data}", out.display());
    eprintln!("{}", toml::to_string(&config)?);
    let job = GptTrainJob {
        out,
        preset,
        config,
        data,
        on_existing,
        device: a.device.device()?,
    };
    let sampler = gpt_sample_fn();
    let report = train_gpt_from(job, a.init.as_deref(), Some(&sampler))?;
    eprintln!(
        "done: {} steps in {:.0} s | train {:.4} | val {:.4} | run in {}",
        report.steps,
        report.train_seconds,
        report.train_loss,
        report.val_loss,
        report.run_dir.display()
    );
    if let Some(text) = report.sample {
        println!("--- sample ({}) ---", muse_core::AI_GENERATED_NOTICE);
        println!("{text}");
    }
    eprintln!(
        "next: muse sample {} --prompt \"ROMEO:\"   |   muse eval {}",
        report.run_dir.display(),
        report.run_dir.display()
    );
    Ok(())
}

/// The architecture of an `--init` folder; only the GPT-2 family trains in this loop.
fn init_model(dir: &std::path::Path) -> anyhow::Result<muse_core::models::gpt::GptConfig> {
    use muse_core::models::pretrained::{ModelConfig, without_backtrace};
    if !dir.is_dir() {
        anyhow::bail!(muse_core::Error::input(format!(
            "--init {}: no such folder (give a Muse GPT run or a Hugging Face GPT-2 folder)",
            dir.display()
        )));
    }
    match ModelConfig::read(&dir.join("config.json")).map_err(without_backtrace) {
        Ok(ModelConfig::Gpt(c)) => Ok(c),
        Ok(other) => anyhow::bail!(muse_core::Error::usage(format!(
            "--init {}: continued pretraining with `muse train gpt` takes GPT-2-family models; \
             this is a {} model (it loads for sample, chat and export)",
            dir.display(),
            other.model_type()
        ))),
        Err(e) => anyhow::bail!(muse_core::Error::input(format!("--init: {e}"))),
    }
}
