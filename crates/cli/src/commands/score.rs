//! `muse score RUN`: per-image anomaly scores (negative ELBO) of a VAE, as CSV, and the AUROC
//! of telling an out-of-distribution set apart.

use std::fmt::Write as _;
use std::path::PathBuf;

use muse_core::Error;
use muse_core::data::images::ImageDataset;
use muse_core::eval::image::auroc;
use muse_core::eval::vae::anomaly_scores;
use muse_core::sample::vae::open_vae;

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
    if a.elbo_samples == 0 {
        anyhow::bail!(Error::usage("--elbo-samples must be at least 1"));
    }
    let device = a.device.device()?;
    let vae = open_vae(&a.run, &device)?;
    let inliers = vae.test_images(a.data.as_deref())?;
    let scores = anomaly_scores(&vae.model, &inliers, a.elbo_samples, a.seed, &device)?;
    let mut csv = String::from("set,index,label,score\n");
    append(&mut csv, &inliers, &scores);
    let mut summary = vec![summary_line(&inliers, &scores)];
    if let Some(ood) = &a.ood {
        let outliers = vae.test_images(Some(ood))?;
        let ood_scores = anomaly_scores(&vae.model, &outliers, a.elbo_samples, a.seed, &device)?;
        append(&mut csv, &outliers, &ood_scores);
        summary.push(summary_line(&outliers, &ood_scores));
        let area = auroc(&ood_scores, &scores);
        muse_core::io::write_atomic(&a.out, csv.as_bytes())?;
        for line in summary {
            println!("{line}");
        }
        println!(
            "AUROC       {area:.4} (negative ELBO separating {} from {})",
            label(&outliers),
            label(&inliers)
        );
    } else {
        muse_core::io::write_atomic(&a.out, csv.as_bytes())?;
        for line in summary {
            println!("{line}");
        }
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

fn label(ds: &ImageDataset) -> String {
    format!("{}:{}", ds.record.name, ds.split.as_str())
}

fn append(csv: &mut String, ds: &ImageDataset, scores: &[f64]) {
    let set = label(ds);
    for (i, s) in scores.iter().enumerate() {
        let y = ds
            .labels
            .as_ref()
            .map_or(String::new(), |l| l[i].to_string());
        let _ = writeln!(csv, "{set},{i},{y},{s:.4}");
    }
}

fn summary_line(ds: &ImageDataset, scores: &[f64]) -> String {
    let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    format!(
        "{:<11} {} images, mean score {mean:.2}, median {median:.2} nats",
        label(ds),
        scores.len()
    )
}
