//! `muse eval`: the figures each family is judged by, as lines for people and JSON for
//! scripts. An image run without a reference classifier still gets the figures that need none.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::family::{Family, detect};
use super::train::ClassifierChoice;
use crate::data::images::{ImageDataConfig, ImageOptions, Split};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::eval::image::{
    FID_SAMPLES, FloorFrom, ImageMetrics, classify_dataset, default_classifier_dir, fid_floor,
    frechet_distance, open_classifier, uniform_noise_like,
};
use crate::eval::vae::{evaluate_vae, iwae_nll, vae_image_metrics};
use crate::run_dir::RunDir;

/// What `muse eval MODEL` was asked.
#[derive(Clone, Debug)]
pub struct EvalRequest {
    pub model: PathBuf,
    /// Text: a file or dataset instead of the validation split. Images: `NAME[:split]`.
    pub data: Option<String>,
    /// Text: windows per batch.
    pub batch_size: usize,
    /// Images: the classifier for FID and coverage.
    pub classifier: ClassifierChoice,
    /// Images: generated samples for FID and coverage [default: 10,000]; for text-to-image,
    /// samples per prompt split [default: 400].
    pub samples: Option<usize>,
    /// Diffusion: DDIM steps [default: 50].
    pub steps: Option<usize>,
    /// Diffusion: guidance weight [default: 3 for labels, 4 for prompts].
    pub guidance: Option<f64>,
    /// VAE: importance samples per image for the NLL (0: skip) and images (0: all).
    pub iwae_k: usize,
    pub iwae_images: usize,
    /// Translation: sentences of the test split to translate (`None`: all).
    pub limit: Option<usize>,
    /// Translation: beam size of the second pass (1: greedy only).
    pub beam: usize,
    pub seed: u64,
    pub device: Device,
}

/// The figures, for people (`lines`) and for scripts (`json`).
pub struct EvalReport {
    pub lines: Vec<String>,
    pub json: Value,
}

/// Evaluates the model as its family is judged.
pub fn eval(req: &EvalRequest) -> Result<EvalReport> {
    match detect(&req.model)? {
        Family::Gpt => text(req),
        Family::Gguf => gguf_text(req),
        Family::Vae => vae(req),
        Family::Gan => gan(req),
        Family::Classifier => classifier(req),
        Family::Diffusion => super::eval_diffusion::diffusion(req),
        Family::Seq2seq => super::translate::eval_translation(req),
        other => Err(Error::usage(format!(
            "{} holds {}; `muse eval` measures GPT runs, gpt2 folders, GGUF files, VAEs, GANs, \
             diffusion models, translation models and classifiers (this one loads for sample and chat)",
            req.model.display(),
            other.describe()
        ))),
    }
}

fn text(req: &EvalRequest) -> Result<EvalReport> {
    if req.batch_size == 0 {
        return Err(Error::usage("--batch-size must be at least 1"));
    }
    let dir = &req.model;
    if req.data.is_none() && !RunDir::new(dir).training().is_file() {
        return Err(Error::usage(format!(
            "{} has no training.json, so no validation split to evaluate on: pass --data FILE \
             (a UTF-8 text file or a dataset name)",
            dir.display()
        )));
    }
    let r = crate::eval::eval_text(dir, req.data.as_deref(), req.batch_size, &req.device)?;
    Ok(text_report(dir, &r))
}

fn text_report(dir: &Path, r: &crate::eval::text::TextEval) -> EvalReport {
    let mut lines = vec![
        format!("{}: {} tokens", r.source, r.tokens),
        format!("loss        {:.4} nats/token", r.loss),
        format!("perplexity  {:.3}", r.perplexity),
        format!("bits/char   {:.4}", r.bits_per_char),
        format!("bits/byte   {:.4}", r.bits_per_byte),
    ];
    if !r.loss.is_finite() {
        lines.push(not_finite_warning(dir));
    }
    EvalReport {
        json: serde_json::to_value(r).unwrap_or_default(),
        lines,
    }
}

fn gguf_text(req: &EvalRequest) -> Result<EvalReport> {
    if req.batch_size == 0 {
        return Err(Error::usage("--batch-size must be at least 1"));
    }
    let Some(data) = req.data.as_deref() else {
        return Err(Error::usage(format!(
            "{} is a GGUF file, which carries no validation split: pass --data FILE (a UTF-8 \
             text file or a dataset name)",
            req.model.display()
        )));
    };
    let r = crate::eval::text::eval_gguf_text(&req.model, data, req.batch_size, &req.device)?;
    Ok(text_report(&req.model, &r))
}

fn not_finite_warning(dir: &Path) -> String {
    format!(
        "warning: the loss is not finite: {} has damaged weights or a run that diverged (see \
         its metrics.jsonl)",
        dir.display()
    )
}

/// The classifier to use, `None` (with a note) when the default one is missing.
fn classifier_for(
    req: &EvalRequest,
    dataset: &str,
    lines: &mut Vec<String>,
) -> Result<Option<(crate::models::classifier::Classifier, PathBuf)>> {
    match &req.classifier {
        ClassifierChoice::Off => Ok(None),
        ClassifierChoice::At(dir) => open_classifier(Some(dir), dataset, &req.device).map(Some),
        ClassifierChoice::Default => {
            let dir = default_classifier_dir(dataset);
            if dir.join("model.safetensors").is_file() {
                return open_classifier(None, dataset, &req.device).map(Some);
            }
            lines.push(format!(
                "FID and class coverage need the reference classifier, and there is none at {}: \
                 train it with `muse train classifier --data {dataset}` (or pass --classifier \
                 RUN)",
                dir.display()
            ));
            Ok(None)
        }
    }
}

fn vae(req: &EvalRequest) -> Result<EvalReport> {
    let device = &req.device;
    let vae = crate::sample::vae::open_vae(&req.model, device)?;
    let test = vae.test_images(req.data.as_deref())?;
    let ev = evaluate_vae(&vae.model, &test, 500, req.seed, device)?;
    let iwae = if req.iwae_k > 0 {
        let ds = if req.iwae_images > 0 {
            test.take(req.iwae_images)
        } else {
            test.clone()
        };
        Some(iwae_nll(&vae.model, &ds, req.iwae_k, req.seed, device)?)
    } else {
        None
    };
    let mut notes = Vec::new();
    let metrics = match classifier_for(req, &vae.data.dataset, &mut notes)? {
        Some((clf, cdir)) => Some(vae_image_metrics(
            &vae.model,
            &clf,
            &cdir,
            &test,
            &vae.train_images()?,
            req.samples.unwrap_or(FID_SAMPLES),
            req.seed,
            device,
        )?),
        None => None,
    };
    let mut lines = vec![
        format!(
            "{} {}: {} images",
            test.record.name,
            test.split.as_str(),
            test.len()
        ),
        format!(
            "loss        {:.2} nats/image (BCE {:.2} + KL {:.2}; one posterior sample per image)",
            ev.loss, ev.bce, ev.kl
        ),
    ];
    if let Some(i) = &iwae {
        lines.push(format!(
            "IWAE NLL    {:.2} nats/image (k = {} importance samples, {} images)",
            i.nll, i.k, i.images
        ));
    }
    if let Some(m) = &metrics {
        lines.extend(image_metric_lines(m, req.seed));
    }
    if !ev.loss.is_finite() {
        lines.push(not_finite_warning(&req.model));
    }
    lines.extend(notes);
    Ok(EvalReport {
        json: json!({"family": "vae", "data": test.record.name, "split": test.split,
                     "test": ev, "iwae": iwae, "image_metrics": metrics, "seed": req.seed}),
        lines,
    })
}

/// FID and coverage lines, shared by every image family.
pub(super) fn image_metric_lines(m: &ImageMetrics, seed: u64) -> Vec<String> {
    let c = &m.coverage;
    let mut lines = vec![
        format!(
            "FID         {:.3} ({} samples, seed {seed}, vs {} test images; {}-d features of {})",
            m.fid, m.samples, m.reference_images, m.feature_dim, m.classifier
        ),
        format!(
            "coverage    {}/{} classes, entropy {:.3} of {:.3} bits; histogram {:?}",
            c.classes_found, c.n_classes, c.entropy_bits, c.max_entropy_bits, c.histogram
        ),
    ];
    if let Some(f) = &m.floor {
        let rebuilt = f.reconstructed.map_or(String::new(), |r| {
            format!("; {r:.3} for them through the run's VAE (the best its decoder allows)")
        });
        lines.push(format!(
            "FID floor   {:.3} for {} real training images (what perfect samples score at this \
             count){rebuilt}",
            f.real, f.images
        ));
    }
    if let Some(acc) = m.conditional_accuracy {
        lines.push(format!(
            "label acc.  {:.2}% (classifier agrees with the requested label)",
            acc * 100.0
        ));
    }
    lines
}

fn gan(req: &EvalRequest) -> Result<EvalReport> {
    let classifier = match &req.classifier {
        ClassifierChoice::Off => {
            return Err(Error::usage(
                "a GAN has no likelihood: it is judged through the reference classifier (FID, \
                 coverage); drop --no-classifier",
            ));
        }
        ClassifierChoice::At(dir) => Some(dir.as_path()),
        ClassifierChoice::Default => None,
    };
    let ev = crate::eval::gan::eval_gan(
        &req.model,
        classifier,
        req.samples.unwrap_or(FID_SAMPLES),
        req.seed,
        &req.device,
    )?;
    let mut lines = vec![format!(
        "{} ({} preset, {} loss) on {}",
        ev.run, ev.preset, ev.loss, ev.dataset
    )];
    lines.extend(image_metric_lines(&ev.metrics, ev.seed));
    Ok(EvalReport {
        json: serde_json::to_value(&ev).unwrap_or_default(),
        lines,
    })
}

fn classifier(req: &EvalRequest) -> Result<EvalReport> {
    let device = &req.device;
    let dir = &req.model;
    let (model, _) = open_classifier(Some(dir), "", device)?;
    let run = RunDir::open(dir)?;
    let mut cfg = ImageDataConfig::of_run(&run)?;
    let mut split = Split::Test;
    if let Some(d) = &req.data {
        let (name, s) = crate::data::images::parse_data_split(d);
        cfg.dataset = name;
        split = s.unwrap_or(Split::Test);
    }
    let m = model.config();
    let opts = ImageOptions {
        image_size: Some(m.image_size),
        channels: Some(m.channels),
    };
    let test = crate::data::images::load_images(&cfg.dataset, split, &opts)?;
    let ev = crate::train::classifier::evaluate_classifier(&model, &test, 500, device)?;
    // Sanity figures for FID with this classifier: real vs real is small (and is the floor of
    // a generator's FID at that many samples), noise is large.
    let train = crate::data::images::load_images(&cfg.dataset, Split::Train, &opts)?;
    let n = req.samples.unwrap_or(test.len());
    let test_features = classify_dataset(&model, &test, 500, device)?.gaussian();
    let from = FloorFrom {
        train: &train,
        reconstruct: None,
    };
    let floor = fid_floor(&model, from, &test_features, n, req.seed, device)?;
    let noise = classify_dataset(&model, &uniform_noise_like(&test, 0)?, 500, device)?;
    let fid_noise = frechet_distance(&noise.gaussian(), &test_features);
    Ok(EvalReport {
        json: json!({"family": "classifier", "data": test.record.name, "split": test.split,
                     "test": ev, "fid_test_vs_train": floor.real, "train_images": floor.images,
                     "fid_test_vs_noise": fid_noise,
                     "fid_images": test.len()}),
        lines: vec![
            format!(
                "{} {}: {} images",
                test.record.name,
                test.split.as_str(),
                test.len()
            ),
            format!("accuracy    {:.2}%", ev.accuracy * 100.0),
            format!("loss        {:.4} nats (cross-entropy)", ev.loss),
            format!(
                "FID sanity  {:.3} ({} test vs {} training images, seed {}); {:.1} (test vs \
                 uniform noise)",
                floor.real,
                test.len(),
                floor.images,
                req.seed,
                fid_noise
            ),
        ],
    })
}
