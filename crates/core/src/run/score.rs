//! `muse score`: a VAE's negative ELBO per image as an anomaly score, and the AUROC that
//! separates out-of-distribution images from the run's own test images.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::data::images::ImageDataset;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::image::auroc;
use crate::eval::vae::anomaly_scores;
use crate::sample::vae::open_vae;

/// What `muse score RUN` was asked.
#[derive(Clone, Debug)]
pub struct ScoreRequest {
    /// The VAE run.
    pub model: PathBuf,
    /// In-distribution images (NAME[:split] or a folder) [default: the run's test split].
    pub data: Option<String>,
    /// Out-of-distribution images to separate from them.
    pub ood: Option<String>,
    /// The CSV to write.
    pub out: PathBuf,
    /// Posterior samples averaged per image.
    pub elbo_samples: usize,
    pub seed: u64,
    pub device: Device,
}

/// Scores the images, writes the CSV and returns the summary lines.
pub fn score(a: &ScoreRequest) -> Result<Vec<String>> {
    if a.elbo_samples == 0 {
        return Err(Error::usage("--elbo-samples must be at least 1"));
    }
    let device = &a.device;
    let vae = open_vae(&a.model, device)?;
    let inliers = vae.test_images(a.data.as_deref())?;
    let scores = anomaly_scores(&vae.model, &inliers, a.elbo_samples, a.seed, device)?;
    let mut csv = String::from("set,index,label,score\n");
    append(&mut csv, &inliers, &scores);
    let mut summary = vec![summary_line(&inliers, &scores)];
    if let Some(ood) = &a.ood {
        let outliers = vae.test_images(Some(ood))?;
        let ood_scores = anomaly_scores(&vae.model, &outliers, a.elbo_samples, a.seed, device)?;
        append(&mut csv, &outliers, &ood_scores);
        summary.push(summary_line(&outliers, &ood_scores));
        summary.push(format!(
            "AUROC       {:.4} (negative ELBO separating {} from {})",
            auroc(&ood_scores, &scores),
            label(&outliers),
            label(&inliers)
        ));
    }
    crate::io::write_atomic(&a.out, csv.as_bytes())?;
    Ok(summary)
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
