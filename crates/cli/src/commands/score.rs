//! `muse score RUN`: per-image anomaly scores (negative ELBO) of a VAE, as CSV, and the AUROC
//! of telling an out-of-distribution set apart.

use std::path::PathBuf;

use muse_core::run::ScoreRequest;

use super::common::DeviceArgs;

/// Score every image with a trained VAE: the negative ELBO (BCE + KL, nats) averaged over a
/// few posterior samples; higher means less like the training data. Writes a CSV
/// (set,index,label,score) and, with --ood, prints the AUROC of separating the two sets.
#[derive(clap::Args)]
pub struct Args {
    /// The VAE run directory.
    run: PathBuf,
    /// Images to score: NAME[:split] (mnist:test, fashion-mnist:train, ...) or a folder
    /// [default: the run's dataset, test split].
    #[arg(long)]
    data: Option<String>,
    /// Out-of-distribution images, also scored; prints the AUROC of the score separating
    /// them (positives) from --data (negatives).
    #[arg(long, value_name = "DATA")]
    ood: Option<String>,
    /// The CSV to write.
    #[arg(short = 'o', long = "out", default_value = "scores.csv")]
    out: PathBuf,
    /// Posterior samples averaged per image.
    #[arg(long, default_value_t = 8)]
    elbo_samples: usize,
    /// Seed of the posterior samples.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let req = ScoreRequest {
        model: a.run,
        data: a.data,
        ood: a.ood,
        out: a.out.clone(),
        elbo_samples: a.elbo_samples,
        seed: a.seed,
        device: a.device.device()?,
    };
    for line in muse_core::run::score(&req)? {
        println!("{line}");
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
