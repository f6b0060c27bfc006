//! `muse train gan`, `muse bench gan`, and the GAN parts of `muse sample` / `muse eval`.

use std::path::{Path, PathBuf};

use muse_core::Error;
use muse_core::eval::bench_gan::{GanBenchOptions, bench_gan};
use muse_core::run_dir::OnExisting;
use muse_core::train::gan::{GanLoss, GanRunConfig, GanTrainJob, train_gan};

use super::common::DeviceArgs;
use super::train_image::ImageTrainArgs;

/// `muse train gan`.
#[derive(clap::Args)]
pub struct TrainArgs {
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
    common: ImageTrainArgs,
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let loss = a.loss.as_deref().map(GanLoss::parse).transpose()?;
    let make = |name: &str| -> muse_core::Result<GanRunConfig> {
        let cfg = GanRunConfig::preset(name)?;
        Ok(match loss {
            Some(l) => cfg.with_loss(l),
            None => cfg,
        })
    };
    let Some(r) = a
        .common
        .resolve("gan", a.preset.as_deref(), "dcgan-mnist", make)?
    else {
        return Ok(());
    };
    if loss.is_some() && r.on_existing == OnExisting::Resume {
        anyhow::bail!(Error::usage(
            "--loss changes the model; a resumed run keeps its own (start a new run instead)"
        ));
    }
    r.config.validate()?;
    let classifier = if a.no_classifier {
        None
    } else {
        open_classifier(a.classifier.as_deref(), &r.config.data.dataset, &r.device)?
    };
    let quality = classifier.as_ref().map(muse_core::eval::gan::quality_fn);
    let report = train_gan(
        GanTrainJob {
            out: r.out,
            preset: r.preset,
            config: r.config,
            on_existing: r.on_existing,
            device: r.device,
        },
        quality.as_ref().map(|f| f as _),
    )?;
    let cov = report.quality.as_ref().map_or(String::new(), |q| {
        let acc = q.label_accuracy.map_or(String::new(), |a| {
            format!(" | label accuracy {:.1}%", 100.0 * a)
        });
        format!(" | coverage {}/{}{acc}", q.classes_found, q.n_classes)
    });
    eprintln!(
        "done: {} steps in {:.0} s | D {:.4} | G {:.4}{cov} | run in {}",
        report.steps,
        report.train_seconds,
        report.last.loss_d,
        report.last.loss_g,
        report.run_dir.display()
    );
    println!("samples: {}", report.grid.display());
    eprintln!(
        "next: muse sample {} --n 64 -o grid.png   |   muse eval {}",
        report.run_dir.display(),
        report.run_dir.display()
    );
    Ok(())
}

/// The classifier for the coverage check: the one asked for (an error if missing), else the
/// default one when it exists.
fn open_classifier(
    dir: Option<&Path>,
    dataset: &str,
    device: &muse_core::device::Device,
) -> anyhow::Result<Option<muse_core::models::classifier::Classifier>> {
    use muse_core::eval::image::{default_classifier_dir, open_classifier};
    let default = default_classifier_dir(dataset);
    if dir.is_none() && !default.join("model.safetensors").is_file() {
        eprintln!(
            "note: no classifier at {}, so no class-coverage check while training (train one \
             with `muse train classifier --data {dataset}`, or pass --classifier RUN)",
            default.display()
        );
        return Ok(None);
    }
    Ok(Some(open_classifier(dir, dataset, device)?.0))
}

/// `muse bench gan`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// The preset to measure (dcgan-mnist, cgan-mnist, wgan-gp-mnist).
    #[arg(long, default_value = "dcgan-mnist")]
    preset: String,
    /// Objective override, as for `muse train gan --loss`.
    #[arg(long)]
    loss: Option<String>,
    /// Override a config key, as for `muse train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Timed steps (one step: D update on a real and a fake batch, then G update).
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Untimed warm-up steps first.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Use candle's own convolutions instead of Muse's fused kernels (for comparison).
    #[arg(long)]
    candle_conv: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let mut base = GanRunConfig::preset(&a.preset)?;
    if let Some(l) = a.loss.as_deref() {
        base = base.with_loss(GanLoss::parse(l)?);
    }
    let config = muse_core::config::resolve(&base, None, &a.sets)?;
    let opts = GanBenchOptions {
        config,
        preset: a.preset,
        steps: a.steps,
        warmup: a.warmup,
        candle_conv: a.candle_conv,
        device: a.device.device()?,
    };
    println!("{}", serde_json::to_string(&bench_gan(&opts)?)?);
    Ok(())
}

/// `muse sample RUN` for a GAN: a PNG grid of `--n` images (all of class `--label` for a
/// conditional model, else the classes in turn).
pub fn sample(
    dir: &Path,
    a: super::sample_image::ImageArgs,
    seed: u64,
    device: &muse_core::device::Device,
) -> anyhow::Result<()> {
    use muse_core::sample::gan::{Labels, generate_images, labels_for, open_gan};
    if a.reconstruct || a.interpolate.is_some() || a.denoise.is_some() || a.denoise_test.is_some() {
        anyhow::bail!(Error::usage(
            "--reconstruct, --interpolate and --denoise need a VAE run; a GAN samples from noise \
             (--n, --label, --seed)"
        ));
    }
    if a.n == 0 {
        anyhow::bail!(Error::usage("--n must be at least 1"));
    }
    let gan = open_gan(dir, device)?;
    let wanted = a.label.map_or(Labels::Any, Labels::Class);
    let labels = labels_for(&gan, a.n, wanted)?;
    let images = generate_images(&gan, a.n, labels.as_deref(), seed, device)?;
    let out = a.out_path();
    let what = match (a.label, gan.cfg.conditional()) {
        (Some(l), _) => format!("{} samples of class {l}", a.n),
        (None, true) => format!("{} samples, classes in turn", a.n),
        (None, false) => format!("{} samples", a.n),
    };
    let nrow = match (a.label, gan.cfg.conditional()) {
        (None, true) if a.nrow.is_none() => gan.cfg.n_classes,
        _ => a.nrow_for(a.n),
    };
    muse_core::data::images::grid::write_grid(
        &out,
        &images,
        nrow,
        Some(&format!("GAN {what}, seed {seed}")),
    )?;
    println!(
        "wrote {} ({what}; {})",
        out.display(),
        muse_core::AI_GENERATED_NOTICE
    );
    Ok(())
}

/// `muse eval RUN` for a GAN: FID, class coverage and (conditional) label accuracy.
pub fn eval(
    dir: &Path,
    json: bool,
    a: &super::eval_image::ImageEvalArgs,
    device: &muse_core::device::Device,
) -> anyhow::Result<()> {
    if a.no_classifier {
        anyhow::bail!(Error::usage(
            "a GAN is evaluated through the reference classifier (FID, coverage): drop \
             --no-classifier"
        ));
    }
    let ev =
        muse_core::eval::gan::eval_gan(dir, a.classifier.as_deref(), a.samples, a.seed, device)?;
    if json {
        println!("{}", serde_json::to_string(&ev)?);
        return Ok(());
    }
    println!(
        "{} ({} preset, {} loss) on {}",
        ev.run, ev.preset, ev.loss, ev.dataset
    );
    super::eval_image::print_image_metrics(&ev.metrics, ev.seed);
    Ok(())
}
