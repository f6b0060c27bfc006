//! `muse train diffusion`, `muse bench diffusion`, and the diffusion part of `muse sample`.

use std::path::{Path, PathBuf};

use muse_core::Error;
use muse_core::data::images::grid::{write_grid, write_strip};
use muse_core::eval::bench_diffusion::{DiffusionBenchOptions, bench_diffusion};
use muse_core::sample::diffusion::{
    SampleOptions, Sampler, Spacing, labels_for, open_diffusion, record_points, sample,
    trajectory_rows,
};
use muse_core::train::diffusion::{DiffusionRunConfig, DiffusionTrainJob, train_diffusion};

use super::common::DeviceArgs;
use super::train_image::ImageTrainArgs;

/// `muse train diffusion`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Named configuration: ddpm-mnist, ddpm-fashion (unconditional), ddpm-mnist-cond,
    /// ddpm-fashion-cond (class-conditional, for classifier-free guidance). All: the U-Net of
    /// ddpm_unet28.py, T = 1000, linear betas (`--set schedule=cosine`), AdamW 2e-4, batch 64,
    /// EMA 0.999, 2000 steps (about two hours on 2 cores). [default: ddpm-mnist]
    #[arg(long)]
    preset: Option<String>,
    #[command(flatten)]
    common: ImageTrainArgs,
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let Some(r) = a.common.resolve(
        "diffusion",
        a.preset.as_deref(),
        "ddpm-mnist",
        DiffusionRunConfig::preset,
    )?
    else {
        return Ok(());
    };
    r.config.validate()?;
    let report = train_diffusion(DiffusionTrainJob {
        out: r.out,
        preset: r.preset,
        config: r.config,
        on_existing: r.on_existing,
        device: r.device,
    })?;
    eprintln!(
        "done: {} steps in {:.0} s | loss {:.4} | test {:.4} | run in {}",
        report.steps,
        report.train_seconds,
        report.train_loss,
        report.test.loss,
        report.run_dir.display()
    );
    println!("samples: {}", report.grid.display());
    eprintln!(
        "next: muse sample {} --sampler ddim --steps 50 -o grid.png --trajectory strip.png",
        report.run_dir.display()
    );
    Ok(())
}

/// `muse bench diffusion`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// The preset to measure (ddpm-mnist, ddpm-fashion, ddpm-mnist-cond, ddpm-fashion-cond).
    #[arg(long, default_value = "ddpm-mnist")]
    preset: String,
    /// Override a config key, as for `muse train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Timed training steps.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Untimed warm-up steps first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// DDIM steps of the sampling measurement.
    #[arg(long, default_value_t = 50)]
    ddim_steps: usize,
    /// Images sampled at once.
    #[arg(long, default_value_t = 16)]
    sample_batch: usize,
    /// Timed sampling runs.
    #[arg(long, default_value_t = 3)]
    sample_reps: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    if a.steps == 0 || a.ddim_steps == 0 || a.sample_batch == 0 || a.sample_reps == 0 {
        anyhow::bail!(Error::usage(
            "--steps, --ddim-steps, --sample-batch and --sample-reps must be at least 1"
        ));
    }
    let base = DiffusionRunConfig::preset(&a.preset)?;
    let config = muse_core::config::resolve(&base, None, &a.sets)?;
    let opts = DiffusionBenchOptions {
        config,
        preset: a.preset,
        steps: a.steps,
        warmup: a.warmup,
        ddim_steps: a.ddim_steps,
        sample_batch: a.sample_batch,
        sample_reps: a.sample_reps,
        device: a.device.device()?,
    };
    println!("{}", serde_json::to_string(&bench_diffusion(&opts)?)?);
    Ok(())
}

/// The `muse sample` flags only diffusion models take (with --n, --steps, --label, -o from
/// the image flags).
#[derive(clap::Args)]
#[command(next_help_heading = "Diffusion models")]
pub struct SampleArgs {
    /// ddim (deterministic for a seed with --eta 0) or ddpm (ancestral, stochastic).
    #[arg(long, default_value = "ddim")]
    sampler: String,
    /// DDIM noise: 0 is deterministic, 1 is DDPM-like.
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// Also write this PNG: x_t (top) and the predicted x_0 (bottom) of the first images at
    /// 10 points of the chain, noise turning into an image from left to right.
    #[arg(long, value_name = "PNG")]
    trajectory: Option<PathBuf>,
    /// Classifier-free guidance weight for a conditional model: eps_u + w (eps_c - eps_u);
    /// 1 is the conditional model alone, 0 ignores the label [default: 3].
    #[arg(long)]
    guidance: Option<f64>,
}

/// `muse sample RUN` for a diffusion run: a PNG grid of `--n` images.
pub fn sample_run(
    dir: &Path,
    a: super::sample_image::ImageArgs,
    d: SampleArgs,
    seed: u64,
    device: &muse_core::device::Device,
) -> anyhow::Result<()> {
    if a.reconstruct || a.interpolate.is_some() || a.denoise.is_some() || a.denoise_test.is_some() {
        anyhow::bail!(Error::usage(
            "--reconstruct, --interpolate and --denoise need a VAE run; a diffusion model \
             samples from noise (--n, --sampler, --steps, --label, --guidance, --seed)"
        ));
    }
    if a.n == 0 {
        anyhow::bail!(Error::usage("--n must be at least 1"));
    }
    let sampler = match d.sampler.as_str() {
        "ddpm" => Sampler::Ddpm,
        "ddim" => Sampler::Ddim { eta: d.eta },
        other => anyhow::bail!(Error::usage(format!(
            "unknown --sampler '{other}': choose ddim or ddpm"
        ))),
    };
    if !(d.eta.is_finite() && d.eta >= 0.0) {
        anyhow::bail!(Error::usage("--eta must be a number >= 0"));
    }
    if d.eta != 0.0 && sampler == Sampler::Ddpm {
        anyhow::bail!(Error::usage(
            "--eta is a DDIM setting; drop it with --sampler ddpm"
        ));
    }
    let run = open_diffusion(dir, device)?;
    let cfg = run.model.config();
    let t_total = run.schedule.len();
    let steps = a.steps.unwrap_or(match sampler {
        Sampler::Ddpm => t_total,
        Sampler::Ddim { .. } => 50,
    });
    if steps == 0 || steps > t_total {
        anyhow::bail!(Error::usage(format!(
            "--steps {steps}: must be in 1..={t_total} (the model was trained with T = {t_total})"
        )));
    }
    if !cfg.conditional() {
        if a.label.is_some() {
            anyhow::bail!(Error::usage(
                "--label: this diffusion model is unconditional; train a -cond preset \
                 (ddpm-mnist-cond) to choose the class"
            ));
        }
        if d.guidance.is_some() {
            anyhow::bail!(Error::usage(
                "--guidance: this diffusion model is unconditional, there is nothing to guide \
                 towards; train a -cond preset"
            ));
        }
    }
    if let Some(l) = a.label
        && l >= cfg.n_classes
    {
        anyhow::bail!(Error::usage(format!(
            "--label {l}: unknown label; this model knows 0..={}",
            cfg.n_classes - 1
        )));
    }
    let guidance = d
        .guidance
        .unwrap_or(if cfg.conditional() { 3.0 } else { 1.0 });
    let n_points = 10.min(steps);
    let opts = SampleOptions {
        sampler,
        steps,
        spacing: Spacing::Leading,
        clip: true,
        labels: labels_for(cfg, a.n, a.label)?,
        guidance,
        seed,
        record: if d.trajectory.is_some() {
            record_points(steps, n_points)
        } else {
            Vec::new()
        },
    };
    let out = sample(&run.model, &run.schedule, a.n, &opts, device)?;
    let sampler_name = match sampler {
        Sampler::Ddpm => format!("DDPM {steps} steps"),
        Sampler::Ddim { eta } => format!("DDIM {steps} steps, eta {eta}"),
    };
    let what = match (a.label, cfg.conditional()) {
        (Some(l), _) => format!("{} samples of class {l}, guidance {guidance}", a.n),
        (None, true) => format!("{} samples, classes in turn, guidance {guidance}", a.n),
        (None, false) => format!("{} samples", a.n),
    };
    let path = a.out_path();
    let nrow = match (a.label, cfg.conditional()) {
        (None, true) if a.nrow.is_none() => cfg.n_classes,
        _ => a.nrow_for(a.n),
    };
    write_grid(
        &path,
        &out.images,
        nrow,
        Some(&format!("diffusion {what} ({sampler_name}), seed {seed}")),
    )?;
    println!(
        "wrote {} ({what}; {sampler_name}; {})",
        path.display(),
        muse_core::AI_GENERATED_NOTICE
    );
    if let Some(strip) = &d.trajectory {
        let rows = trajectory_rows(&out, a.n.min(4))?;
        let ts: Vec<String> = out.trajectory.iter().map(|p| p.t.to_string()).collect();
        write_strip(
            strip,
            &rows,
            Some(&format!(
                "diffusion denoising trajectory ({sampler_name}), seed {seed}: for each image, \
                 x_t (upper row) and the predicted x_0 (lower row) after t = {}",
                ts.join(", ")
            )),
        )?;
        println!(
            "wrote {} (the chain at t = {}; {})",
            strip.display(),
            ts.join(", "),
            muse_core::AI_GENERATED_NOTICE
        );
    }
    Ok(())
}
