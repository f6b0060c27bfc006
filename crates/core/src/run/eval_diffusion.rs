//! `muse eval` for diffusion runs: FID and coverage of DDIM samples, or for a model trained on
//! tinted, captioned images, class and colour accuracy per prompt split next to chance.

use serde_json::json;

use super::eval::{EvalReport, EvalRequest, image_metric_lines};
use super::train::ClassifierChoice;
use crate::data::captions::{COLOURS, CaptionSet};
use crate::data::images::{ImageDataConfig, Split};
use crate::embed::{SentenceEncoder, encoder_dir};
use crate::error::{Error, Result};
use crate::eval::diffusion::{
    Asking, DiffusionEvalOptions, PromptSplit, diffusion_image_metrics, prompt_accuracy,
};
use crate::eval::image::{FID_SAMPLES, default_classifier_dir, open_classifier};
use crate::run_dir::RunDir;
use crate::sample::diffusion::{default_guidance, open_diffusion};

/// Samples per prompt split unless `--samples` says otherwise.
const PROMPT_SAMPLES: usize = 400;

pub(super) fn diffusion(req: &EvalRequest) -> Result<EvalReport> {
    let device = &req.device;
    let run = open_diffusion(&req.model, device)?;
    let cfg = run.model.config().clone();
    let steps = req.steps.unwrap_or(50);
    if steps == 0 || steps > run.schedule.len() {
        return Err(Error::usage(format!(
            "--steps {steps}: must be in 1..={} (the model's diffusion steps)",
            run.schedule.len()
        )));
    }
    let conditional = cfg.conditional() || cfg.text_conditional();
    if !conditional && req.guidance.is_some() {
        return Err(Error::usage(
            "--guidance: this diffusion model is unconditional, there is nothing to guide towards",
        ));
    }
    let guidance = req.guidance.unwrap_or(default_guidance(&cfg));
    if !(guidance.is_finite() && guidance >= 0.0) {
        return Err(Error::usage("--guidance must be a number >= 0"));
    }
    let data = ImageDataConfig::of_run(&RunDir::open(&req.model)?)?;
    let mut lines = vec![format!(
        "{} ({} preset) on {}: DDIM {steps} steps, guidance {guidance}, seed {}",
        req.model.display(),
        run.preset,
        data.dataset,
        req.seed
    )];
    let (clf, clf_dir) = match &req.classifier {
        ClassifierChoice::Off => {
            return Err(Error::usage(
                "a diffusion model is judged through the reference classifier (FID, coverage, \
                 class and colour accuracy); drop --no-classifier",
            ));
        }
        ClassifierChoice::At(dir) => open_classifier(Some(dir), &data.dataset, device)?,
        ClassifierChoice::Default => {
            let dir = default_classifier_dir(&data.dataset);
            if !dir.join("model.safetensors").is_file() {
                return Err(Error::input(format!(
                    "a diffusion model is judged through the reference classifier and there is \
                     none at {}: train it with `muse train classifier --data {} --out {}` or \
                     pass --classifier RUN",
                    dir.display(),
                    data.dataset,
                    dir.display()
                )));
            }
            open_classifier(None, &data.dataset, device)?
        }
    };
    let mut opts = DiffusionEvalOptions {
        samples: req.samples.unwrap_or(FID_SAMPLES),
        steps,
        guidance,
        seed: req.seed,
        batch: 100,
    };
    if !run.tint {
        // FID's reference is the whole test split (the protocol of docs/images.md), not the
        // part the training loop scores its test loss on (`test_limit`).
        let whole = ImageDataConfig {
            test_limit: 0,
            ..data.clone()
        };
        let reference = whole.load(Split::Test)?;
        let train = ImageDataConfig {
            train_limit: 0,
            ..data.clone()
        }
        .load(Split::Train)?;
        let m = diffusion_image_metrics(&run, &clf, &clf_dir, &reference, &train, &opts, device)?;
        lines.extend(image_metric_lines(&m, req.seed));
        return Ok(EvalReport {
            json: json!({"family": "diffusion", "preset": run.preset, "steps": steps,
                         "guidance": guidance, "seed": req.seed, "image_metrics": m}),
            lines,
        });
    }
    let set = CaptionSet::for_dataset(&data.dataset)
        .ok_or_else(|| Error::input(format!("no captions for the dataset '{}'", data.dataset)))?;
    let encoder;
    let asking = if cfg.text_conditional() {
        let name = run.text_encoder.as_deref().unwrap_or_default();
        encoder = SentenceEncoder::open(&encoder_dir(name)?, device)?;
        Asking::Prompt(&encoder)
    } else if cfg.conditional() {
        Asking::Label
    } else {
        return Err(Error::usage(
            "an unconditional model of tinted images cannot be asked for a class or colour",
        ));
    };
    opts.samples = req.samples.unwrap_or(PROMPT_SAMPLES);
    let (chance_class, chance_colour) = (1.0 / set.classes() as f64, 1.0 / COLOURS.len() as f64);
    lines.push(format!(
        "{:<36} {:>8} {:>8}   (chance: class {:.1}%, colour {:.1}%; {} asks by {})",
        "split",
        "class",
        "colour",
        chance_class * 100.0,
        chance_colour * 100.0,
        opts.samples,
        if cfg.text_conditional() {
            "prompt"
        } else {
            "label only: the colour is not asked"
        }
    ));
    let mut splits = Vec::new();
    for split in PromptSplit::ALL {
        let a = prompt_accuracy(&run, set, &asking, &clf, split, &opts, device)?;
        lines.push(format!(
            "{:<36} {:>7.1}% {:>7.1}%   e.g. \"{}\"",
            split.describe(),
            a.class_accuracy * 100.0,
            a.colour_accuracy * 100.0,
            a.examples.first().map_or("", String::as_str)
        ));
        splits.push(a);
    }
    Ok(EvalReport {
        json: json!({"family": "diffusion", "preset": run.preset, "steps": steps,
                     "guidance": guidance, "seed": req.seed, "classifier": clf_dir,
                     "chance": {"class": chance_class, "colour": chance_colour},
                     "asked_by": if cfg.text_conditional() { "prompt" } else { "label" },
                     "splits": splits}),
        lines,
    })
}
