//! `muse sample` for diffusion runs: the sampler, steps, labels and guidance checked against
//! the model, the grid written as PNG, and the denoising trajectory as a strip.

use std::path::{Path, PathBuf};

use super::sample::{SampleRequest, image_count, nrow, warn_not_finite};
use crate::data::captions::CaptionSet;
use crate::data::images::grid::{write_grid, write_strip};
use crate::data::images::provenance::Provenance;
use crate::embed::{SentenceEncoder, encoder_dir};
use crate::error::{Error, Result};
use crate::sample::diffusion::DiffusionRun;
use crate::sample::diffusion::{
    Conditioning, ImageGuide, PromptStates, SampleOptions, Sampler, Spacing, default_guidance,
    labels_for, open_diffusion, read_init, read_mask, record_points, sample, trajectory_rows,
};
use crate::train::diffusion::grid_prompts;

/// Generates `--n` images (and the trajectory strip when asked) into `out`; returns the PNG
/// and what it shows.
pub fn sample_images(req: &SampleRequest, out: &Path) -> Result<(PathBuf, String)> {
    let (a, d) = (&req.image, &req.diffusion);
    if a.reconstruct || a.interpolate.is_some() || a.denoise.is_some() || a.denoise_test.is_some() {
        return Err(Error::usage(
            "--reconstruct, --interpolate and --denoise need a VAE run; a diffusion model \
             samples from noise (--n, --sampler, --steps, --label, --guidance, --seed)",
        ));
    }
    if a.data.is_some() {
        return Err(Error::usage(
            "--data is for VAE reconstructions; a diffusion model samples from noise",
        ));
    }
    let device = &req.device;
    let run = open_diffusion(&req.model, device)?;
    let cfg = run.model.config();
    let n = image_count(a, cfg.image_size * cfg.image_size * cfg.image_channels)?;
    let (sampler, steps) = sampler_and_steps(d, a.steps, run.schedule.len())?;
    let prompt = req.text.prompt.as_deref();
    let guidance = guidance_for(cfg, a.label, prompt, d.guidance)?;
    let seed = req.seed;
    let guide = image_guide(req, &run)?;
    let condition = condition_for(&run, n, a.label, prompt, device)?;
    let mut opts = SampleOptions {
        sampler,
        steps,
        spacing: Spacing::Leading,
        clip: true,
        condition,
        guidance,
        seed,
        record: Vec::new(),
        guide,
    };
    if d.trajectory.is_some() {
        // The points are spread over the part of the chain that runs.
        let skip = opts.skipped_steps();
        let run_steps = steps - skip;
        opts.record = record_points(run_steps, 10.min(run_steps))
            .into_iter()
            .map(|i| i + skip)
            .collect();
    }
    let samples = sample(&run.model, &run.space, &run.schedule, n, &opts, device)?;
    warn_not_finite(&samples.images, &req.model)?;
    let sampler_name = match sampler {
        Sampler::Ddpm => format!("DDPM {steps} steps"),
        Sampler::Ddim { eta } => format!("DDIM {steps} steps, eta {eta}"),
    };
    let mut what = match (a.label, prompt, &opts.condition) {
        (Some(l), _, _) => format!("{n} samples of class {l}, guidance {guidance}"),
        (_, Some(p), _) => format!("{n} samples of \"{p}\", guidance {guidance}"),
        (_, _, Conditioning::Text(p)) => format!(
            "{n} samples of \"{}\" ... (a column per class, a row per colour), guidance \
             {guidance}",
            p.prompts.first().map_or("", String::as_str)
        ),
        (_, _, Conditioning::Labels(_)) => {
            format!("{n} samples, classes in turn, guidance {guidance}")
        }
        (_, _, Conditioning::None) => format!("{n} samples"),
    };
    let rows = match (a.label, prompt) {
        (None, None) if a.nrow.is_none() && cfg.conditional() => cfg.n_classes,
        (None, None) if a.nrow.is_none() && cfg.text_conditional() => 10,
        _ => nrow(a, n)?,
    };
    let family = if cfg.text_conditional() {
        "text-to-image"
    } else {
        "diffusion"
    };
    let prov = Provenance {
        seed: Some(seed),
        prompt: prompt.map(String::from),
        label: a.label,
        sampler: Some(match sampler {
            Sampler::Ddpm => "ddpm".to_string(),
            Sampler::Ddim { eta: 0.0 } => "ddim".to_string(),
            Sampler::Ddim { eta } => format!("ddim eta {eta}"),
        }),
        steps: Some(steps),
        guidance: (cfg.conditional() || cfg.text_conditional()).then_some(guidance),
        ..Provenance::of(&req.model, family)
    };
    write_grid(
        out,
        &samples.images,
        rows,
        &prov
            .clone()
            .caption(format!("diffusion {what} ({sampler_name}), seed {seed}")),
    )?;
    if let Some(strip) = &d.trajectory {
        let strip_rows = trajectory_rows(&samples, n.min(4))?;
        let ts: Vec<String> = samples.trajectory.iter().map(|p| p.t.to_string()).collect();
        write_strip(
            strip,
            &strip_rows,
            &prov.clone().caption(format!(
                "diffusion denoising trajectory ({sampler_name}), seed {seed}: for each image, \
                 x_t (upper row) and the predicted x_0 (lower row) after t = {}",
                ts.join(", ")
            )),
        )?;
        what.push_str(&format!(
            "; the chain at t = {} in {}",
            ts.join(", "),
            strip.display()
        ));
    }
    if let Some(g) = &opts.guide {
        let kind = if g.keep.is_some() {
            "inpainted"
        } else {
            "redrawn"
        };
        what.push_str(&format!(
            "; {kind} from {} at strength {}",
            d.init.as_deref().unwrap_or(Path::new("")).display(),
            g.strength
        ));
    }
    Ok((out.to_path_buf(), format!("{what}; {sampler_name}")))
}

/// `--sampler`, `--eta` and `--steps`, checked against the model's T.
fn sampler_and_steps(
    d: &super::sample::DiffusionRequest,
    steps: Option<usize>,
    t_total: usize,
) -> Result<(Sampler, usize)> {
    let eta = d.eta.unwrap_or(0.0);
    let sampler = match d.sampler.as_deref().unwrap_or("ddim") {
        "ddpm" => Sampler::Ddpm,
        "ddim" => Sampler::Ddim { eta },
        other => {
            return Err(Error::usage(format!(
                "unknown --sampler '{other}': choose ddim or ddpm"
            )));
        }
    };
    if !(eta.is_finite() && eta >= 0.0) {
        return Err(Error::usage("--eta must be a number >= 0"));
    }
    if eta != 0.0 && sampler == Sampler::Ddpm {
        return Err(Error::usage(
            "--eta is a DDIM setting; drop it with --sampler ddpm",
        ));
    }
    let steps = steps.unwrap_or(match sampler {
        Sampler::Ddpm => t_total,
        Sampler::Ddim { .. } => 50,
    });
    if steps == 0 || steps > t_total {
        return Err(Error::usage(format!(
            "--steps {steps}: must be in 1..={t_total} (the model was trained with T = {t_total})"
        )));
    }
    Ok((sampler, steps))
}

/// The labels or prompts of `n` images: `--label`, `--prompt`, or (a conditional model
/// without either) the classes in turn, or for text one prompt per class and colour.
fn condition_for(
    run: &DiffusionRun,
    n: usize,
    label: Option<usize>,
    prompt: Option<&str>,
    device: &crate::device::Device,
) -> Result<Conditioning> {
    let cfg = run.model.config();
    if !cfg.text_conditional() {
        return Ok(Conditioning::labels(labels_for(cfg, n, label)?));
    }
    let prompts = match prompt {
        Some(p) => vec![p.to_string(); n],
        None => {
            let set = CaptionSet::for_dataset(&run.dataset).unwrap_or(CaptionSet::Fashion);
            grid_prompts(set, n)
        }
    };
    let name = run.text_encoder.as_deref().unwrap_or_default();
    let encoder = SentenceEncoder::open(&encoder_dir(name)?, device).map_err(|e| {
        Error::input(format!(
            "this model reads prompts with the text encoder '{name}', which does not open: {e}"
        ))
    })?;
    Ok(Conditioning::Text(PromptStates::encode(
        &encoder, &prompts,
    )?))
}

/// `--label`, `--prompt` and `--guidance` checked against the model; the guidance weight.
fn guidance_for(
    cfg: &crate::models::diffusion::UNetConfig,
    label: Option<usize>,
    prompt: Option<&str>,
    guidance: Option<f64>,
) -> Result<f64> {
    if let Some(p) = prompt {
        if !cfg.text_conditional() {
            return Err(Error::usage(if cfg.conditional() {
                "--prompt: this model is conditioned on class labels, not text; choose the \
                 class with --label"
            } else {
                "--prompt: this diffusion model was not trained on text; train a text-to-image \
                 preset (t2i-fashion, t2i-mnist) to draw from a prompt"
            }));
        }
        if p.trim().is_empty() {
            return Err(Error::usage(
                "--prompt is empty: describe the image (\"a green ankle boot\")",
            ));
        }
    }
    if cfg.text_conditional() {
        if label.is_some() {
            return Err(Error::usage(
                "--label: this model is conditioned on text; describe the image with --prompt \
                 (\"a red t-shirt\")",
            ));
        }
        let guidance = guidance.unwrap_or(default_guidance(cfg));
        if !guidance.is_finite() {
            return Err(Error::usage("--guidance must be a number"));
        }
        return Ok(guidance);
    }
    if !cfg.conditional() {
        if label.is_some() {
            return Err(Error::usage(
                "--label: this diffusion model is unconditional; train a -cond preset \
                 (ddpm-mnist-cond) to choose the class",
            ));
        }
        if guidance.is_some() {
            return Err(Error::usage(
                "--guidance: this diffusion model is unconditional, there is nothing to guide \
                 towards; train a -cond preset",
            ));
        }
    }
    if let Some(l) = label
        && l >= cfg.n_classes
    {
        return Err(Error::usage(format!(
            "--label {l}: unknown label; this model knows 0..={}",
            cfg.n_classes - 1
        )));
    }
    let guidance = guidance.unwrap_or(default_guidance(cfg));
    if !guidance.is_finite() {
        return Err(Error::usage("--guidance must be a number"));
    }
    Ok(guidance)
}

/// `--init`, `--strength` and `--mask`, checked and read.
fn image_guide(req: &SampleRequest, run: &DiffusionRun) -> Result<Option<ImageGuide>> {
    let d = &req.diffusion;
    let Some(init) = &d.init else {
        if d.mask.is_some() {
            return Err(Error::usage(
                "--mask needs --init: the image whose black-masked pixels are kept",
            ));
        }
        if d.strength.is_some() {
            return Err(Error::usage(
                "--strength needs --init: the image the chain starts from",
            ));
        }
        return Ok(None);
    };
    run.space.refuse_init_image()?;
    let strength = d
        .strength
        .unwrap_or(if d.mask.is_some() { 1.0 } else { 0.6 });
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(Error::usage(format!(
            "--strength {strength}: must be in (0, 1] (1 starts from noise, small values keep \
             more of the image)"
        )));
    }
    let cfg = run.model.config();
    let x0 = read_init(init, cfg.image_size, cfg.image_channels, &req.device)?;
    let keep = d
        .mask
        .as_deref()
        .map(|m| read_mask(m, cfg.image_size, &req.device))
        .transpose()?;
    Ok(Some(ImageGuide { x0, strength, keep }))
}
