//! `muse sample`: what a request may ask of each family, checked once, and the images or text
//! session it yields. Flags of another family are refused by name, not ignored.

use std::path::{Path, PathBuf};

use super::family::{Family, detect};
use crate::data::images::grid::{read_image, write_grid, write_strip};
use crate::data::images::provenance::Provenance;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::sample::open::{TextModel, open_text_model_adapted};
use crate::sample::{GenerateOptions, SamplingParams, unescape};

/// Text flags; `None` where the user gave none.
#[derive(Clone, Debug, Default)]
pub struct TextRequest {
    pub prompt: Option<String>,
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// Stop strings as typed (`\n` escapes are interpreted).
    pub stop: Vec<String>,
    pub num_samples: Option<usize>,
    pub show_probs: bool,
    pub tokenizer: Option<PathBuf>,
    pub adapter: Option<PathBuf>,
    /// `--beam N`: the most likely continuation by beam search instead of a sample.
    pub beam: Option<usize>,
    /// GNMT length-penalty exponent of `--beam` [default: 0.6].
    pub length_penalty: Option<f64>,
}

/// Image flags; `None` where the user gave none.
#[derive(Clone, Debug, Default)]
pub struct ImageRequest {
    pub n: Option<usize>,
    pub out: Option<PathBuf>,
    pub nrow: Option<usize>,
    pub reconstruct: bool,
    pub interpolate: Option<(usize, usize)>,
    pub steps: Option<usize>,
    pub denoise: Option<PathBuf>,
    pub denoise_test: Option<f64>,
    pub data: Option<String>,
    pub label: Option<usize>,
}

/// Diffusion flags; `None` where the user gave none.
#[derive(Clone, Debug, Default)]
pub struct DiffusionRequest {
    /// `ddim` [default] or `ddpm`.
    pub sampler: Option<String>,
    /// DDIM noise (0: deterministic).
    pub eta: Option<f64>,
    /// Also write the chain (x_t and predicted x_0 at 10 points) to this PNG.
    pub trajectory: Option<PathBuf>,
    /// Classifier-free guidance weight [default: 3 for conditional models].
    pub guidance: Option<f64>,
    /// Image-to-image: the PNG the chain starts from.
    pub init: Option<PathBuf>,
    /// Share of the chain run from the init image [default: 0.6, 1 with a mask].
    pub strength: Option<f64>,
    /// Inpainting: black pixels are kept from the init image, white ones painted.
    pub mask: Option<PathBuf>,
}

/// What `muse sample MODEL` was asked.
#[derive(Clone, Debug)]
pub struct SampleRequest {
    pub model: PathBuf,
    pub seed: u64,
    pub text: TextRequest,
    pub image: ImageRequest,
    pub diffusion: DiffusionRequest,
    pub device: Device,
}

/// A sampling job, ready to run.
pub enum SamplePlan {
    Text(Box<TextSession>),
    /// Images were written: the PNG and what it shows.
    Images {
        path: PathBuf,
        what: String,
    },
}

/// A loaded language model with the settings to generate from it.
pub struct TextSession {
    /// `--beam`: (beam size, length penalty); `None`: sampling.
    pub beam: Option<(usize, f64)>,
    pub model: TextModel,
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub params: SamplingParams,
    pub options: GenerateOptions,
    pub num_samples: usize,
    pub seed: u64,
}

/// Checks the request against the model's family and runs it: images are generated and
/// written; a text model is opened for the caller to stream.
pub fn sample(req: SampleRequest) -> Result<SamplePlan> {
    let family = detect(&req.model)?;
    if family != Family::Diffusion {
        refuse_flags(family, &diffusion_flags(&req.diffusion))?;
    }
    if family.is_text() {
        refuse_flags(family, &image_flags(&req.image))?;
        return text_session(&req.model, &req.text, req.seed, &req.device)
            .map(|s| SamplePlan::Text(Box::new(s)));
    }
    if family == Family::Seq2seq {
        return Err(Error::usage(format!(
            "{} holds {}: translate with `muse translate {} \"a sentence\"` (or --file)",
            req.model.display(),
            family.describe(),
            req.model.display()
        )));
    }
    let mut text = text_flags(&req.text);
    if family == Family::Diffusion {
        // A text-to-image model takes a prompt; run::diffusion checks the model does.
        text.retain(|f| *f != "--prompt");
    }
    refuse_flags(family, &text)?;
    let (path, what) = match family {
        Family::Vae => vae_images(&req)?,
        Family::Gan => gan_images(&req)?,
        Family::Diffusion => super::diffusion::sample_images(&req, &png_path(&req.image)?)?,
        _ => {
            return Err(Error::usage(format!(
                "{} holds {}, which does not generate: sample a text, VAE or GAN run",
                req.model.display(),
                family.describe()
            )));
        }
    };
    Ok(SamplePlan::Images { path, what })
}

/// The text flags that were given, by name.
fn text_flags(t: &TextRequest) -> Vec<&'static str> {
    let given = [
        ("--prompt", t.prompt.is_some()),
        ("--max-tokens", t.max_tokens.is_some()),
        ("--temperature", t.temperature.is_some()),
        ("--top-k", t.top_k.is_some()),
        ("--top-p", t.top_p.is_some()),
        ("--repetition-penalty", t.repetition_penalty.is_some()),
        ("--stop", !t.stop.is_empty()),
        ("--num-samples", t.num_samples.is_some()),
        ("--show-probs", t.show_probs),
        ("--tokenizer", t.tokenizer.is_some()),
        ("--adapter", t.adapter.is_some()),
        ("--beam", t.beam.is_some()),
        ("--length-penalty", t.length_penalty.is_some()),
    ];
    given.iter().filter(|(_, g)| *g).map(|(f, _)| *f).collect()
}

/// The image flags that were given, by name.
fn image_flags(i: &ImageRequest) -> Vec<&'static str> {
    let given = [
        ("--n", i.n.is_some()),
        ("--out", i.out.is_some()),
        ("--nrow", i.nrow.is_some()),
        ("--reconstruct", i.reconstruct),
        ("--interpolate", i.interpolate.is_some()),
        ("--steps", i.steps.is_some()),
        ("--denoise", i.denoise.is_some()),
        ("--denoise-test", i.denoise_test.is_some()),
        ("--data", i.data.is_some()),
        ("--label", i.label.is_some()),
    ];
    given.iter().filter(|(_, g)| *g).map(|(f, _)| *f).collect()
}

/// The diffusion flags that were given, by name.
fn diffusion_flags(d: &DiffusionRequest) -> Vec<&'static str> {
    let given = [
        ("--sampler", d.sampler.is_some()),
        ("--eta", d.eta.is_some()),
        ("--trajectory", d.trajectory.is_some()),
        ("--guidance", d.guidance.is_some()),
        ("--init", d.init.is_some()),
        ("--strength", d.strength.is_some()),
        ("--mask", d.mask.is_some()),
    ];
    given.iter().filter(|(_, g)| *g).map(|(f, _)| *f).collect()
}

fn refuse_flags(family: Family, flags: &[&str]) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    if flags.iter().all(|f| diffusion_flags_named(f)) {
        return Err(Error::usage(format!(
            "{} {} for diffusion models, but this folder holds {}",
            flags.join(", "),
            if flags.len() == 1 { "is" } else { "are" },
            family.describe()
        )));
    }
    let (kind, takes) = if family.is_text() {
        (
            "image",
            "--prompt, --max-tokens, --temperature, --top-k, --top-p, --stop",
        )
    } else {
        (
            "text",
            "--n, -o, --nrow, --label (GAN), --reconstruct (VAE)",
        )
    };
    Err(Error::usage(format!(
        "{} {} for {kind} models, but this folder holds {}; it takes {takes}",
        flags.join(", "),
        if flags.len() == 1 { "is" } else { "are" },
        family.describe()
    )))
}

/// Opens a text model and checks the sampling settings (the same checks `chat` makes).
pub fn text_session(
    model: &Path,
    t: &TextRequest,
    seed: u64,
    device: &Device,
) -> Result<TextSession> {
    let max_tokens = t.max_tokens.unwrap_or(500);
    if max_tokens == 0 {
        return Err(Error::usage("--max-tokens must be at least 1"));
    }
    let num_samples = t.num_samples.unwrap_or(1);
    if num_samples == 0 {
        return Err(Error::usage("--num-samples must be at least 1"));
    }
    let params = SamplingParams {
        temperature: t.temperature.unwrap_or(0.8),
        top_k: t.top_k.unwrap_or(200),
        top_p: t.top_p.unwrap_or(1.0),
        repetition_penalty: t.repetition_penalty.unwrap_or(1.0),
    };
    params.validate()?;
    let prompt = t.prompt.clone().unwrap_or_else(|| "\n".into());
    if prompt.is_empty() {
        return Err(Error::usage(
            "--prompt is empty: give some text to continue (the default is a newline)",
        ));
    }
    let beam = match t.beam {
        None => None,
        Some(0) => {
            return Err(Error::usage(
                "--beam must be at least 1 (1 is greedy decoding; leave it out to sample)",
            ));
        }
        Some(_) if t.show_probs || num_samples > 1 => {
            return Err(Error::usage(
                "--beam finds the one most likely continuation: drop --show-probs and \
                 --num-samples",
            ));
        }
        Some(b) => Some((b, t.length_penalty.unwrap_or(0.6))),
    };
    let tm = open_text_model_adapted(model, t.tokenizer.as_deref(), t.adapter.as_deref(), device)?;
    let prompt_ids = tm.encode_prompt(&prompt)?;
    Ok(TextSession {
        beam,
        model: tm,
        prompt,
        prompt_ids,
        params,
        options: GenerateOptions {
            max_tokens,
            stop: t.stop.iter().map(|s| unescape(s)).collect(),
            stop_at_eos: true,
            candidates: if t.show_probs { 5 } else { 0 },
        },
        num_samples,
        seed,
    })
}

fn diffusion_flags_named(flag: &str) -> bool {
    matches!(
        flag,
        "--sampler" | "--eta" | "--trajectory" | "--guidance" | "--init" | "--strength" | "--mask"
    )
}

/// The PNG path: `--out`, else `samples.png`; other extensions are refused.
pub(super) fn png_path(i: &ImageRequest) -> Result<PathBuf> {
    let out = i
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("samples.png"));
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if ext != "png" {
        return Err(Error::usage(format!(
            "-o {}: Muse writes PNG images (they carry the AI-generated label); name the file \
             .png",
            out.display()
        )));
    }
    if out.is_dir() {
        return Err(Error::usage(format!(
            "-o {}: is a folder; give a file name such as {}/samples.png",
            out.display(),
            out.display()
        )));
    }
    Ok(out)
}

/// `--n` (default 64), checked against the memory it needs.
pub(super) fn image_count(i: &ImageRequest, pixels_per_image: usize) -> Result<usize> {
    let n = i.n.unwrap_or(64);
    if n == 0 {
        return Err(Error::usage("--n must be at least 1"));
    }
    // Generation holds every image and a few activations of about its size at once; the grid
    // is one more copy. 64 floats per pixel is a generous bound for the small models here.
    let need = n as u64 * pixels_per_image as u64 * 64 * 4;
    if let Some(avail) = crate::device::available_memory()
        && need > avail / 2
    {
        return Err(Error::usage(format!(
            "--n {n} needs about {:.1} GB of memory and this machine has {:.1} GB available: \
             ask for fewer images (a grid of a few hundred is already large)",
            need as f64 / 1e9,
            avail as f64 / 1e9
        )));
    }
    Ok(n)
}

pub(super) fn nrow(i: &ImageRequest, n: usize) -> Result<usize> {
    match i.nrow {
        Some(0) => Err(Error::usage("--nrow must be at least 1")),
        Some(r) => Ok(r),
        None => Ok((n as f64).sqrt().ceil().max(1.0) as usize),
    }
}

fn vae_images(req: &SampleRequest) -> Result<(PathBuf, String)> {
    use crate::sample::vae::{
        add_noise, interpolate, open_vae, pick, prior_samples, reconstruct, with_reconstruction,
    };
    let a = &req.image;
    if a.label.is_some() {
        return Err(Error::usage(
            "--label needs a class-conditional GAN run; a VAE is not conditioned on labels",
        ));
    }
    let modes = [
        a.reconstruct,
        a.interpolate.is_some(),
        a.denoise.is_some(),
        a.denoise_test.is_some(),
    ];
    if modes.iter().filter(|&&m| m).count() > 1 {
        return Err(Error::usage(
            "choose one of --reconstruct, --interpolate, --denoise, --denoise-test",
        ));
    }
    let out = png_path(a)?;
    let device = &req.device;
    let vae = open_vae(&req.model, device)?;
    let cfg = vae.model.config();
    let n = image_count(a, cfg.image_size * cfg.image_size * cfg.channels)?;
    let seed = req.seed;
    let prov = Provenance::of(&req.model, "vae");
    let what = if a.reconstruct {
        let test = vae.test_images(a.data.as_deref())?;
        let idx: Vec<usize> = (0..n.min(test.len())).collect();
        let x = pick(&test, &idx, device)?;
        let r = reconstruct(&vae.model, &x)?;
        write_strip(
            &out,
            &[x, r],
            &prov.caption("top: test images; bottom: VAE reconstructions"),
        )?;
        format!("{} test images and their reconstructions", idx.len())
    } else if let Some((i, j)) = a.interpolate {
        let test = vae.test_images(a.data.as_deref())?;
        for k in [i, j] {
            if k >= test.len() {
                return Err(Error::usage(format!(
                    "--interpolate {k} is out of range: the test split has images 0 to {}",
                    test.len() - 1
                )));
            }
        }
        let steps = a.steps.unwrap_or(10);
        if steps < 2 {
            return Err(Error::usage(
                "--steps must be at least 2 (both ends included)",
            ));
        }
        let path = interpolate(
            &vae.model,
            &pick(&test, &[i], device)?,
            &pick(&test, &[j], device)?,
            steps,
        )?;
        write_grid(
            &out,
            &path,
            steps,
            &Provenance {
                steps: Some(steps),
                ..prov.caption(format!(
                    "VAE latent interpolation between test images {i} and {j}"
                ))
            },
        )?;
        format!("a {steps}-step latent walk from test image {i} to {j}")
    } else if let Some(file) = &a.denoise {
        let x = read_image(file, cfg.image_size, cfg.channels)?.to_device(device)?;
        write_grid(
            &out,
            &with_reconstruction(&vae.model, &x)?,
            2,
            &prov.caption(format!(
                "left: {}; right: VAE reconstruction",
                file.display()
            )),
        )?;
        format!("{} and its reconstruction", file.display())
    } else if let Some(sigma) = a.denoise_test {
        if !(sigma >= 0.0 && sigma.is_finite()) {
            return Err(Error::usage("--denoise-test SIGMA must be a number >= 0"));
        }
        let test = vae.test_images(a.data.as_deref())?;
        let idx: Vec<usize> = (0..n.min(test.len())).collect();
        let clean = pick(&test, &idx, device)?;
        let noisy = add_noise(&clean, sigma, seed)?;
        let denoised = reconstruct(&vae.model, &noisy)?;
        write_strip(
            &out,
            &[clean, noisy, denoised],
            &Provenance {
                seed: Some(seed),
                ..prov.caption(format!(
                    "rows: test images, with noise sigma {sigma}, VAE reconstructions"
                ))
            },
        )?;
        format!("{} test images with noise {sigma}, denoised", idx.len())
    } else {
        let images = prior_samples(&vae.model, n, seed, device)?;
        warn_not_finite(&images, &req.model)?;
        write_grid(
            &out,
            &images,
            nrow(a, n)?,
            &Provenance {
                seed: Some(seed),
                ..prov.caption(format!("VAE samples from the prior, seed {seed}"))
            },
        )?;
        format!("{n} samples from the prior")
    };
    Ok((out, what))
}

fn gan_images(req: &SampleRequest) -> Result<(PathBuf, String)> {
    use crate::sample::gan::{Labels, generate_images, labels_for, open_gan};
    let a = &req.image;
    if a.reconstruct || a.interpolate.is_some() || a.denoise.is_some() || a.denoise_test.is_some() {
        return Err(Error::usage(
            "--reconstruct, --interpolate and --denoise need a VAE run; a GAN samples from noise \
             (--n, --label, --seed)",
        ));
    }
    if a.data.is_some() || a.steps.is_some() {
        return Err(Error::usage(
            "--data and --steps are for VAE reconstructions and walks; a GAN samples from noise \
             (--n, --label, --seed)",
        ));
    }
    let out = png_path(a)?;
    let gan = open_gan(&req.model, &req.device)?;
    let c = &gan.cfg;
    let n = image_count(a, c.image_size * c.image_size * c.image_channels)?;
    let wanted = a.label.map_or(Labels::Any, Labels::Class);
    let labels = labels_for(&gan, n, wanted)?;
    let images = generate_images(&gan, n, labels.as_deref(), req.seed, &req.device)?;
    warn_not_finite(&images, &req.model)?;
    let what = match (a.label, gan.cfg.conditional()) {
        (Some(l), _) => format!("{n} samples of class {l}"),
        (None, true) => format!("{n} samples, classes in turn"),
        (None, false) => format!("{n} samples"),
    };
    let rows = match (a.label, gan.cfg.conditional()) {
        (None, true) if a.nrow.is_none() => gan.cfg.n_classes,
        _ => nrow(a, n)?,
    };
    write_grid(
        &out,
        &images,
        rows,
        &Provenance {
            seed: Some(req.seed),
            label: a.label,
            ..Provenance::of(&req.model, "gan").caption(format!("GAN {what}, seed {}", req.seed))
        },
    )?;
    Ok((out, what))
}

/// A model whose outputs are NaN or infinite is damaged (or diverged in training): say so
/// instead of writing a picture of garbage.
pub(super) fn warn_not_finite(images: &candle_core::Tensor, model: &Path) -> Result<()> {
    let sum = images
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    if !sum.is_finite() {
        return Err(Error::input(format!(
            "{} generated NaN or infinite pixels: its weights are damaged or its training \
             diverged (look at metrics.jsonl); retrain or resume from a good checkpoint",
            model.display()
        )));
    }
    Ok(())
}

/// The continuation a `--beam` session asks for: the most likely one by beam search (stop
/// strings cut it as they cut a sample).
pub fn beam_text(s: &TextSession) -> Result<String> {
    let Some((beam, alpha)) = s.beam else {
        return Err(Error::usage("this session samples; it has no --beam"));
    };
    let tok = &s.model.tokenizer;
    let eos = if s.options.stop_at_eos {
        tok.eos_id()
    } else {
        None
    };
    let ids = crate::sample::beam_lm::beam_continue(
        s.model.model.as_ref(),
        &s.prompt_ids,
        beam,
        alpha,
        s.options.max_tokens,
        eos,
    )?;
    let mut text = tok.decode(&ids)?;
    if let Some(cut) = s
        .options
        .stop
        .iter()
        .filter_map(|stop| text.find(stop.as_str()))
        .min()
    {
        text.truncate(cut);
    }
    Ok(text)
}
