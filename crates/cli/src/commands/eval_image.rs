//! `muse eval RUN` for image models: a classifier's test accuracy (and the FID sanity
//! figures), a VAE's test loss, importance-sampled NLL, and FID / class coverage of samples.

use std::path::{Path, PathBuf};

use muse_core::data::images::{ImageDataConfig, ImageOptions, Split};
use muse_core::device::Device;
use muse_core::eval::image::{
    FID_SAMPLES, ImageMetrics, fid_between, open_classifier, uniform_noise_like,
};
use muse_core::eval::vae::{evaluate_vae, iwae_nll, vae_image_metrics};
use muse_core::run_dir::RunDir;
use serde_json::json;

/// Flags for image models.
#[derive(clap::Args)]
#[command(next_help_heading = "Image models (vae, gan, classifier)")]
pub struct ImageEvalArgs {
    /// The reference classifier run for FID and class coverage
    /// [default: runs/classifier-<the run's dataset>].
    #[arg(long, conflicts_with = "no_classifier")]
    pub classifier: Option<PathBuf>,
    /// Skip FID and class coverage (no classifier needed).
    #[arg(long)]
    pub no_classifier: bool,
    /// Generated images for FID and coverage (compared with the whole test split).
    #[arg(long, default_value_t = FID_SAMPLES)]
    pub samples: usize,
    /// VAE: importance samples per test image for the NLL estimate (0: skip it).
    #[arg(long, default_value_t = 500)]
    pub iwae_k: usize,
    /// VAE: test images for the NLL estimate (0: all).
    #[arg(long, default_value_t = 0)]
    pub iwae_images: usize,
    /// Seed of the generated samples and the evaluation noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Evaluates `dir` when it holds an image model; `Ok(false)` for other families.
pub fn run(
    dir: &Path,
    data: Option<&str>,
    json: bool,
    a: &ImageEvalArgs,
    device: &Device,
) -> anyhow::Result<bool> {
    if dir.is_file() {
        return Ok(false);
    }
    let family = RunDir::open(dir)?.family()?;
    match family.as_str() {
        "vae" => eval_vae(dir, data, json, a, device)?,
        "classifier" => eval_classifier(dir, data, json, device)?,
        "gan" => super::gan::eval(dir, json, a, device)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn eval_vae(
    dir: &Path,
    data: Option<&str>,
    json_out: bool,
    a: &ImageEvalArgs,
    device: &Device,
) -> anyhow::Result<()> {
    let vae = muse_core::sample::vae::open_vae(dir, device)?;
    let test = vae.test_images(data)?;
    let ev = evaluate_vae(&vae.model, &test, 500, a.seed, device)?;
    let iwae = if a.iwae_k > 0 {
        let ds = if a.iwae_images > 0 {
            test.take(a.iwae_images)
        } else {
            test.clone()
        };
        Some(iwae_nll(&vae.model, &ds, a.iwae_k, a.seed, device)?)
    } else {
        None
    };
    let metrics = if a.no_classifier {
        None
    } else {
        let (classifier, cdir) =
            open_classifier(a.classifier.as_deref(), &vae.data.dataset, device)?;
        Some(vae_image_metrics(
            &vae.model,
            &classifier,
            &cdir,
            &test,
            a.samples,
            a.seed,
            device,
        )?)
    };
    if json_out {
        println!(
            "{}",
            json!({"family": "vae", "data": test.record.name, "split": test.split,
                   "test": ev, "iwae": iwae, "image_metrics": metrics, "seed": a.seed})
        );
        return Ok(());
    }
    println!(
        "{} {}: {} images",
        test.record.name,
        test.split.as_str(),
        test.len()
    );
    println!(
        "loss        {:.2} nats/image (BCE {:.2} + KL {:.2}; one posterior sample per image)",
        ev.loss, ev.bce, ev.kl
    );
    if let Some(i) = &iwae {
        println!(
            "IWAE NLL    {:.2} nats/image (k = {} importance samples, {} images)",
            i.nll, i.k, i.images
        );
    }
    if let Some(m) = &metrics {
        print_image_metrics(m, a.seed);
    }
    Ok(())
}

/// Prints FID and coverage lines (shared by every image family).
pub fn print_image_metrics(m: &ImageMetrics, seed: u64) {
    println!(
        "FID         {:.3} ({} samples, seed {seed}, vs {} test images; {}-d features of {})",
        m.fid, m.samples, m.reference_images, m.feature_dim, m.classifier
    );
    let c = &m.coverage;
    println!(
        "coverage    {}/{} classes, entropy {:.3} of {:.3} bits; histogram {:?}",
        c.classes_found, c.n_classes, c.entropy_bits, c.max_entropy_bits, c.histogram
    );
    if let Some(acc) = m.conditional_accuracy {
        println!(
            "label acc.  {:.2}% (classifier agrees with the requested label)",
            acc * 100.0
        );
    }
}

fn eval_classifier(
    dir: &Path,
    data: Option<&str>,
    json_out: bool,
    device: &Device,
) -> anyhow::Result<()> {
    let (model, _) = open_classifier(Some(dir), "", device)?;
    let run = RunDir::open(dir)?;
    let mut cfg = ImageDataConfig::of_run(&run)?;
    let mut split = Split::Test;
    if let Some(d) = data {
        let (name, s) = muse_core::data::images::parse_data_split(d);
        cfg.dataset = name;
        split = s.unwrap_or(Split::Test);
    }
    let m = model.config();
    let opts = ImageOptions {
        image_size: Some(m.image_size),
        channels: Some(m.channels),
    };
    let test = muse_core::data::images::load_images(&cfg.dataset, split, &opts)?;
    let ev = muse_core::train::classifier::evaluate_classifier(&model, &test, 500, device)?;
    // Sanity figures for FID with this classifier: real vs real is small, noise is large.
    let train =
        muse_core::data::images::load_images(&cfg.dataset, Split::Train, &opts)?.take(test.len());
    let noise = uniform_noise_like(&test, 0)?;
    let fid_train = fid_between(&model, &test, &train, device)?;
    let fid_noise = fid_between(&model, &test, &noise, device)?;
    if json_out {
        println!(
            "{}",
            json!({"family": "classifier", "data": test.record.name, "split": test.split,
                   "test": ev, "fid_test_vs_train": fid_train, "fid_test_vs_noise": fid_noise,
                   "fid_images": test.len()})
        );
        return Ok(());
    }
    println!(
        "{} {}: {} images",
        test.record.name,
        test.split.as_str(),
        test.len()
    );
    println!("accuracy    {:.2}%", ev.accuracy * 100.0);
    println!("loss        {:.4} nats (cross-entropy)", ev.loss);
    println!(
        "FID sanity  {:.3} ({} test vs {} training images); {:.1} (test vs uniform noise)",
        fid_train,
        test.len(),
        train.len(),
        fid_noise
    );
    Ok(())
}
