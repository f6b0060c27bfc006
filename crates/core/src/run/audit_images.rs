//! `muse audit` for image generators (VAE, GAN, diffusion): each sample's nearest training
//! image by pixel L2 (and, with `--classifier`, by the classifier's features), against the
//! nearest-training distances of as many held-out test images.

use candle_core::{Device, Tensor};
use serde_json::json;

use super::audit::{AuditReport, AuditRequest};
use super::family::Family;
use crate::data::images::{ImageDataConfig, ImageDataset, Split};
use crate::error::{Error, Result};
use crate::eval::image::open_classifier;
use crate::eval::memorisation::{NearestAudit, judge, nearest};
use crate::models::classifier::Classifier;
use crate::run_dir::RunDir;

/// Images generated (and test images compared) per batch.
const BATCH: usize = 500;

pub(super) fn image_audit(req: &AuditRequest, family: Family) -> Result<AuditReport> {
    let n = req.samples.unwrap_or(1000);
    let device = &req.device;
    let run = RunDir::open(&req.model)?;
    if req.data.is_some() {
        return Err(Error::usage(
            "--data is for text models; an image run is audited against the training images \
             its training.json names",
        ));
    }
    let mut cfg = ImageDataConfig::of_run(&run)?;
    let train = cfg.load(Split::Train)?;
    cfg.test_limit = 0;
    let test = cfg.load(Split::Test)?.take(n);
    let (samples, how) = generate(req, family, n)?;
    let (_, c, h, w) = samples.dims4()?;
    if (c, h, w) != train.shape() {
        return Err(Error::input(format!(
            "{} generates {c}x{h}x{w} images but its training data {} holds {:?}: the run and \
             its data do not match",
            req.model.display(),
            cfg.dataset,
            train.shape()
        )));
    }
    let samples = samples.flatten_from(1)?.to_vec2::<f32>()?.concat();
    let mut audits = vec![pixel_audit(&train, &test, &samples, device)?];
    let mut classifier_dir = None;
    if let Some(dir) = &req.classifier {
        let (clf, path) = open_classifier(Some(dir), &cfg.dataset, device)?;
        audits.push(feature_audit(&clf, &train, &test, &samples, device)?);
        classifier_dir = Some(path.display().to_string());
    }
    let what = format!(
        "{n} samples ({how}, seed {}) and {} test images against {} training images of {}",
        req.seed,
        test.len(),
        train.len(),
        cfg.dataset
    );
    let mut lines = vec![what.clone()];
    for a in &audits {
        lines.extend(audit_lines(a));
    }
    if req.classifier.is_none() {
        lines.push(
            "(pass --classifier RUN for distances in the classifier's features as well)".into(),
        );
    }
    Ok(AuditReport {
        json: json!({"kind": "images", "family": family.as_str(),
                     "run": req.model.display().to_string(), "dataset": cfg.dataset,
                     "samples": n, "test_images": test.len(), "train_images": train.len(),
                     "seed": req.seed, "classifier": classifier_dir, "audits": audits}),
        card: image_card(&what, &audits),
        lines,
        card_path: None,
    })
}

/// `n` samples in [0, 1], (n, C, H, W), and how they were drawn.
fn generate(req: &AuditRequest, family: Family, n: usize) -> Result<(Tensor, String)> {
    let device = &req.device;
    let mut out = Vec::new();
    let how = match family {
        Family::Vae => {
            let vae = crate::sample::vae::open_vae(&req.model, device)?;
            for (i, start) in (0..n).step_by(BATCH).enumerate() {
                let m = BATCH.min(n - start);
                let seed = req.seed.wrapping_add(i as u64);
                out.push(crate::sample::vae::prior_samples(
                    &vae.model, m, seed, device,
                )?);
            }
            "VAE prior".to_string()
        }
        Family::Gan => {
            use crate::sample::gan::{Labels, generate_images, labels_for, open_gan};
            let gan = open_gan(&req.model, device)?;
            let labels = labels_for(&gan, n, Labels::Any)?;
            out.push(generate_images(
                &gan,
                n,
                labels.as_deref(),
                req.seed,
                device,
            )?);
            if labels.is_some() {
                "GAN, classes in turn".to_string()
            } else {
                "GAN".to_string()
            }
        }
        Family::Diffusion => return diffusion_samples(req, n),
        other => {
            return Err(Error::usage(format!(
                "{} generates no images",
                other.describe()
            )));
        }
    };
    Ok((Tensor::cat(&out, 0)?, how))
}

fn diffusion_samples(req: &AuditRequest, n: usize) -> Result<(Tensor, String)> {
    use crate::sample::diffusion::{
        Conditioning, SampleOptions, default_guidance, labels_for, open_diffusion, sample,
    };
    let device = &req.device;
    let run = open_diffusion(&req.model, device)?;
    let cfg = run.model.config().clone();
    if run.tint || cfg.text_conditional() {
        return Err(Error::usage(format!(
            "{} was trained on tinted, captioned images: the audit compares samples with the \
             plain training images, so it cannot judge this run",
            req.model.display()
        )));
    }
    let steps = req.steps.unwrap_or(50);
    if steps == 0 || steps > run.schedule.len() {
        return Err(Error::usage(format!(
            "--steps {steps}: must be in 1..={} (the model's diffusion steps)",
            run.schedule.len()
        )));
    }
    let guidance = default_guidance(&cfg);
    let labels = labels_for(&cfg, n, None)?;
    let mut out = Vec::new();
    for (i, start) in (0..n).step_by(100).enumerate() {
        let m = 100.min(n - start);
        let mut opts = SampleOptions::ddim(steps, req.seed.wrapping_add(i as u64));
        opts.condition =
            Conditioning::labels(labels.as_ref().map(|l| l[start..start + m].to_vec()));
        opts.guidance = guidance;
        out.push(sample(&run.model, &run.space, &run.schedule, m, &opts, device)?.images);
    }
    Ok((
        Tensor::cat(&out, 0)?,
        format!("DDIM {steps} steps, guidance {guidance}"),
    ))
}

/// Pixels of a dataset in [0, 1], row-major (n, C*H*W).
fn pixels(ds: &ImageDataset) -> Vec<f32> {
    ds.images.iter().map(|&p| p as f32 / 255.0).collect()
}

/// Nearest training images in pixel space of `samples` ((n, C*H*W) in [0, 1]) and of the test
/// images.
pub fn pixel_audit(
    train: &ImageDataset,
    test: &ImageDataset,
    samples: &[f32],
    device: &Device,
) -> Result<NearestAudit> {
    let d = train.pixels_per_image();
    let reference = pixels(train);
    let s = nearest(samples, &reference, d, device)?;
    let t = nearest(&pixels(test), &reference, d, device)?;
    if s.is_empty() || t.is_empty() {
        return Err(Error::input(
            "the audit needs at least one sample, one test image and one training image",
        ));
    }
    Ok(judge("pixels", &s, &t))
}

fn features(
    clf: &Classifier,
    pixels: &[f32],
    shape: (usize, usize, usize),
    device: &Device,
) -> Result<Vec<f32>> {
    let (c, h, w) = shape;
    let cc = clf.config();
    if (c, h, w) != (cc.channels, cc.image_size, cc.image_size) {
        return Err(Error::input(format!(
            "the classifier takes {}x{}x{} images but these are {c}x{h}x{w}: use a classifier \
             trained on the same data (--classifier RUN)",
            cc.channels, cc.image_size, cc.image_size
        )));
    }
    let per = c * h * w;
    let mut out = Vec::new();
    for chunk in pixels.chunks(BATCH * per) {
        let x = Tensor::from_slice(chunk, (chunk.len() / per, c, h, w), device)?;
        out.extend(clf.features(&x)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

fn feature_audit(
    clf: &Classifier,
    train: &ImageDataset,
    test: &ImageDataset,
    samples: &[f32],
    device: &Device,
) -> Result<NearestAudit> {
    let shape = train.shape();
    let reference = features(clf, &pixels(train), shape, device)?;
    let dim = clf.config().hidden;
    let s = nearest(
        &features(clf, samples, shape, device)?,
        &reference,
        dim,
        device,
    )?;
    let t = nearest(
        &features(clf, &pixels(test), shape, device)?,
        &reference,
        dim,
        device,
    )?;
    Ok(judge("features", &s, &t))
}

fn audit_lines(a: &NearestAudit) -> Vec<String> {
    let mut lines = vec![
        format!(
            "{:<9} nearest training image, median {:.3} (samples) vs {:.3} (test); 5th \
             percentile {:.3} vs {:.3}",
            a.space, a.samples.median, a.test.median, a.samples.p05, a.test.p05
        ),
        format!(
            "{:<9} {:.1}% of samples are closer than the test images' 1st percentile ({:.3}); \
             about 1% when nothing is copied",
            "",
            100.0 * a.share_below,
            a.threshold
        ),
    ];
    if let Some((s, t, d)) = a.closest.first() {
        lines.push(format!(
            "{:<9} closest: sample {s} to training image {t}, distance {d:.3}",
            ""
        ));
    }
    lines
}

fn image_card(what: &str, audits: &[NearestAudit]) -> String {
    let mut out = format!(
        "Each sample's distance to its nearest training image (L2), next to the same distance \
         for held-out test images the model never saw: a model that gives back training images \
         puts samples much closer to the training set than unseen real images are. {what}.\n\n\
         | space | samples: median | test: median | samples: 5th pct | test: 5th pct | test: 1st pct | samples closer than that |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for a in audits {
        out += &format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1}% |\n",
            a.space,
            a.samples.median,
            a.test.median,
            a.samples.p05,
            a.test.p05,
            a.threshold,
            100.0 * a.share_below
        );
    }
    out += "\nAbout 1% of samples fall below the test images' 1st percentile when the model \
            copies nothing; many more is a copying signal.\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::DatasetRecord;

    fn random_set(n: usize, seed: u64) -> ImageDataset {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let images = (0..n * 64).map(|_| rng.random::<u8>()).collect();
        let record = DatasetRecord {
            name: "random".into(),
            path: "-".into(),
            sha256: "-".into(),
        };
        ImageDataset::from_parts(images, None, (1, 8, 8), record, Split::Train).unwrap()
    }

    #[test]
    fn a_planted_duplicate_is_flagged() {
        let train = random_set(300, 1);
        let test = random_set(100, 2);
        let mut samples = pixels(&random_set(20, 3));
        samples.extend(pixels(&train.take(8)).split_off(7 * 64));
        let a = pixel_audit(&train, &test, &samples, &Device::Cpu).unwrap();
        assert_eq!(a.closest[0], (20, 7, 0.0));
        assert!(a.share_below >= 1.0 / 21.0, "{a:?}");
        assert!(a.closest[1].2 > a.threshold, "{a:?}");
        assert!(a.samples.median > a.threshold);
    }
}
