//! `muse train classifier` and `muse train vae`: the image families' training commands.

use std::path::PathBuf;

use anyhow::Context;
use muse_core::run_dir::{OnExisting, RunDir};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::common::DeviceArgs;

/// Flags every image family takes.
#[derive(clap::Args)]
pub struct ImageTrainArgs {
    /// A TOML file whose keys override the preset (sections: model, train, data).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one config key, e.g. `--set epochs=1 --set train.lr=3e-4`. Bare keys work
    /// when unique; `--print-config` lists them all.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Training images: mnist, fashion-mnist, a folder of IDX files, or a folder of PNG/JPEG
    /// images (class subfolders give labels). Same as `--set data.dataset=...`.
    #[arg(long)]
    pub data: Option<String>,
    /// Resize images to this square size (same as `--set data.image_size=N`).
    #[arg(long)]
    image_size: Option<usize>,
    /// 1 (grey) or 3 (RGB) (same as `--set data.channels=N`).
    #[arg(long)]
    channels: Option<usize>,
    /// The run directory to write (default: runs/<family>-<preset>).
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
    #[command(flatten)]
    device: DeviceArgs,
}

/// A resolved image training command.
pub struct Resolved<C> {
    pub config: C,
    pub preset: String,
    pub out: PathBuf,
    pub on_existing: OnExisting,
    pub device: muse_core::device::Device,
}

impl ImageTrainArgs {
    /// Resolves preset -> --config -> --set (or the stored config on --resume). `None` when
    /// `--print-config` printed it.
    pub fn resolve<C: Serialize + DeserializeOwned>(
        &self,
        family: &str,
        preset: Option<&str>,
        default_preset: &str,
        make: impl Fn(&str) -> muse_core::Result<C>,
    ) -> anyhow::Result<Option<Resolved<C>>> {
        let name = preset.unwrap_or(default_preset);
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(format!("{family}-{name}")));
        let mut sets = self.sets.clone();
        if let Some(d) = &self.data {
            sets.push(format!("data.dataset={d}"));
        }
        if let Some(s) = self.image_size {
            sets.push(format!("data.image_size={s}"));
        }
        if let Some(c) = self.channels {
            sets.push(format!("data.channels={c}"));
        }
        let (config, preset) = if self.resume {
            if self.config.is_some() || preset.is_some() {
                anyhow::bail!(muse_core::Error::usage(
                    "a resumed run keeps its preset and config; change single keys with --set"
                ));
            }
            let record = RunDir::open(&out)?.read_training()?;
            if record.family != family {
                anyhow::bail!(muse_core::Error::usage(format!(
                    "{} holds a '{}' run, not a {family} run",
                    out.display(),
                    record.family
                )));
            }
            let stored: C = serde_json::from_value(record.config)
                .with_context(|| format!("training.json of {} is damaged", out.display()))?;
            (
                muse_core::config::resolve(&stored, None, &sets)?,
                record.preset,
            )
        } else {
            let base = make(name)?;
            (
                muse_core::config::resolve(&base, self.config.as_deref(), &sets)?,
                name.to_string(),
            )
        };
        if self.print_config {
            print!("{}", toml::to_string(&config)?);
            return Ok(None);
        }
        eprintln!("run: {}  preset: {preset}", out.display());
        eprintln!("{}", toml::to_string(&config)?);
        let on_existing = match (self.resume, self.force) {
            (true, _) => OnExisting::Resume,
            (_, true) => OnExisting::Overwrite,
            _ => OnExisting::Refuse,
        };
        Ok(Some(Resolved {
            config,
            preset,
            out,
            on_existing,
            device: self.device.device()?,
        }))
    }
}

/// `muse train classifier`.
#[derive(clap::Args)]
pub struct ClassifierArgs {
    /// Named configuration: mnist (8 epochs, random 2-pixel shifts) or fashion-mnist (the
    /// same small CNN, 10 epochs, no shifts) [default: fashion-mnist with --data
    /// fashion-mnist, else mnist].
    #[arg(long)]
    preset: Option<String>,
    #[command(flatten)]
    common: ImageTrainArgs,
}

pub fn train_classifier(a: ClassifierArgs) -> anyhow::Result<()> {
    use muse_core::train::classifier::{ClassifierRunConfig, ClassifierTrainJob};
    let default = match a.common.data.as_deref() {
        Some("fashion-mnist") => "fashion-mnist",
        _ => "mnist",
    };
    let Some(r) = a.common.resolve(
        "classifier",
        a.preset.as_deref(),
        default,
        ClassifierRunConfig::preset,
    )?
    else {
        return Ok(());
    };
    r.config.validate()?;
    let report = muse_core::train::classifier::train_classifier(ClassifierTrainJob {
        out: r.out,
        preset: r.preset,
        config: r.config,
        on_existing: r.on_existing,
        device: r.device,
    })?;
    eprintln!(
        "done: {} steps in {:.0} s | test loss {:.4} | test accuracy {:.2}% | run in {}",
        report.steps,
        report.train_seconds,
        report.test.loss,
        report.test.accuracy * 100.0,
        report.run_dir.display()
    );
    println!("test accuracy {:.2}%", report.test.accuracy * 100.0);
    eprintln!(
        "next: muse eval {}   |   muse eval RUN --classifier {}",
        report.run_dir.display(),
        report.run_dir.display()
    );
    Ok(())
}

/// `muse train vae`.
#[derive(clap::Args)]
pub struct VaeArgs {
    /// Named configuration: mnist-mlp (the PyTorch examples VAE: 784-400-20, Adam 1e-3,
    /// batch 128, 10 epochs), mnist-mlp-cosine (the same with Adam 5e-3 decayed to 0 on a
    /// cosine) or mnist-conv (convolutional encoder and decoder). [default: mnist-mlp]
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
    common: ImageTrainArgs,
}

pub fn train_vae(mut a: VaeArgs) -> anyhow::Result<()> {
    use muse_core::train::vae::{VaeRunConfig, VaeTrainJob};
    if let Some(b) = a.beta {
        a.common.sets.push(format!("objective.beta={b}"));
    }
    if let Some(s) = a.train_noise {
        a.common.sets.push(format!("objective.train_noise={s}"));
    }
    let Some(r) = a.common.resolve(
        "vae",
        a.preset.as_deref(),
        "mnist-mlp",
        VaeRunConfig::preset,
    )?
    else {
        return Ok(());
    };
    r.config.validate()?;
    let report = muse_core::train::vae::train_vae(VaeTrainJob {
        out: r.out,
        preset: r.preset,
        config: r.config,
        on_existing: r.on_existing,
        device: r.device,
    })?;
    let dir = report.run_dir.display();
    eprintln!(
        "done: {} steps in {:.0} s | train {:.2} | test loss {:.2} (bce {:.2} + kl {:.2}) per \
         image | run in {dir}",
        report.steps,
        report.train_seconds,
        report.train_loss,
        report.test.loss,
        report.test.bce,
        report.test.kl,
    );
    println!("test loss {:.2} nats per image", report.test.loss);
    println!(
        "samples: {}/samples/ ({})",
        dir,
        muse_core::AI_GENERATED_NOTICE
    );
    eprintln!("next: muse sample {dir} --n 64 -o grid.png   |   muse eval {dir}");
    Ok(())
}

/// `muse bench vae`.
#[derive(clap::Args)]
pub struct VaeBenchArgs {
    /// The preset to measure (mnist-mlp, mnist-mlp-cosine, mnist-conv).
    #[arg(long, default_value = "mnist-mlp")]
    preset: String,
    /// Override a config key, as for `muse train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Timed training steps.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Untimed warm-up steps first.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn bench_vae(a: VaeBenchArgs) -> anyhow::Result<()> {
    use muse_core::eval::bench_vae::{VaeBenchOptions, bench_vae};
    use muse_core::train::vae::VaeRunConfig;
    let config = muse_core::config::resolve(&VaeRunConfig::preset(&a.preset)?, None, &a.sets)?;
    let opts = VaeBenchOptions {
        config,
        preset: a.preset,
        steps: a.steps,
        warmup: a.warmup,
        device: a.device.device()?,
    };
    println!("{}", serde_json::to_string(&bench_vae(&opts)?)?);
    Ok(())
}
