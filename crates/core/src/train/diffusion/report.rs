//! What a diffusion run reports: the test noise-prediction loss, the loss plot, progress grids
//! and the model card.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use serde::Serialize;

use super::{Clean, Conditioner, DiffusionRunConfig, noised};
use crate::data::images::grid::write_grid;
use crate::data::images::provenance::Provenance;
use crate::data::images::{ImageDataset, chunks};
use crate::error::Result;
use crate::models::diffusion::UNet;
use crate::run_dir::RunDir;
use crate::sample::diffusion::{
    Conditioning, ImageSpace, NoiseSchedule, SampleOptions, sample_from,
};
use crate::train::cadence::EvalLog;
use crate::train::card::{ModelCard, Outputs};
use crate::train::checkpoint::TrainState;
use crate::train::images::step_seed;
use crate::train::metrics::{read_metrics, series};
use crate::train::plot::{Series, line_chart};

/// Random stream of the evaluation timesteps and noise, apart from training.
const EVAL_STREAM: u64 = 0xE7A1;

/// The test split's noise-prediction MSE (unconditional, the same timesteps and noise at every
/// evaluation).
#[derive(Clone, Debug, Serialize)]
pub struct DiffusionEval {
    pub loss: f64,
    pub images: usize,
}

/// The noise-prediction MSE of `model` over all of `ds` (images, or their posterior means),
/// unconditioned (no label, the empty prompt).
pub fn evaluate_diffusion(
    model: &UNet,
    schedule: &NoiseSchedule,
    ds: &Clean,
    conditioner: &Conditioner,
    seed: u64,
    device: &Device,
) -> Result<DiffusionEval> {
    let mut sum = 0f64;
    for (i, idx) in chunks(ds.len(), 64).enumerate() {
        let x0 = ds.eval_batch(&idx, device)?;
        let s = step_seed(seed, i as u64, EVAL_STREAM);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s);
        let (xt, t, eps) = noised(schedule, &x0, s, i as u64, &mut rng)?;
        let null = conditioner.null(idx.len())?;
        let pred = model.forward_with(&xt, &t, null.condition())?;
        let se = (pred - eps)?.sqr()?.sum_all()?.to_dtype(DType::F64)?;
        sum += se.to_scalar::<f64>()?;
    }
    let per_image = ds.values_per_example().max(1) as f64;
    Ok(DiffusionEval {
        loss: sum / (ds.len().max(1) as f64 * per_image),
        images: ds.len(),
    })
}

/// The log line and metrics record of a test evaluation after `step` steps.
pub(super) fn eval_log(step: u64, ev: &DiffusionEval) -> EvalLog {
    EvalLog {
        line: format!(
            "step {step} | test noise MSE {:.4} (EMA weights, {} images)",
            ev.loss, ev.images
        ),
        metrics: serde_json::json!({ "step": step, "val_loss": ev.loss }),
        val_loss: Some(ev.loss),
    }
}

/// Redraws `loss.svg` from `metrics.jsonl`.
pub(super) fn plot(run: &RunDir) -> Result<()> {
    let records = read_metrics(&run.metrics())?;
    line_chart(
        &run.loss_plot(),
        "DDPM noise-prediction MSE",
        "step",
        "loss",
        &[
            Series {
                name: "train (batch)",
                points: series(&records, "loss"),
            },
            Series {
                name: "test (EMA)",
                points: series(&records, "val_loss"),
            },
        ],
    )
}

/// `samples/step_NNNNNN.png`: DDIM from the fixed noise with the EMA weights (classes in turn
/// for a conditional model, a prompt per colour and class for text-to-image).
#[allow(clippy::too_many_arguments)]
pub(super) fn write_samples(
    run: &RunDir,
    model: &UNet,
    space: &ImageSpace,
    schedule: &NoiseSchedule,
    noise: &Tensor,
    condition: &Conditioning,
    cfg: &DiffusionRunConfig,
    step: u64,
) -> Result<std::path::PathBuf> {
    let s = &cfg.sample;
    let mut opts = SampleOptions::ddim(s.steps, cfg.train.seed);
    opts.condition = condition.clone();
    opts.guidance = s.guidance;
    let out = sample_from(model, space, schedule, noise.clone(), &opts)?;
    let path = run.samples().join(format!("step_{step:06}.png"));
    let what = match condition {
        Conditioning::Labels(_) => format!(", classes in turn, guidance {}", s.guidance),
        Conditioning::Text(p) => format!(
            ", prompts \"{}\" ... \"{}\" (a row per colour, a column per class), guidance {}",
            p.prompts.first().map_or("", String::as_str),
            p.prompts.last().map_or("", String::as_str),
            s.guidance
        ),
        Conditioning::None => String::new(),
    };
    let family = if cfg.model.text_conditional() {
        "text-to-image"
    } else {
        "diffusion"
    };
    let prov = Provenance {
        seed: Some(cfg.train.seed),
        sampler: Some("ddim".into()),
        steps: Some(s.steps),
        guidance: (!matches!(condition, Conditioning::None)).then_some(s.guidance),
        training_step: Some(step),
        ..Provenance::of(run.root(), family).caption(format!(
            "DDPM samples (DDIM {} steps, EMA weights{what}), training step {step}",
            s.steps
        ))
    };
    write_grid(&path, &out.images, s.nrow, &prov)?;
    Ok(path)
}

pub(super) fn write_model_card(
    run: &RunDir,
    preset: &str,
    cfg: &DiffusionRunConfig,
    train: &ImageDataset,
    test: &ImageDataset,
    state: &TrainState,
    ev: &DiffusionEval,
) -> Result<()> {
    let m = &cfg.model;
    let cond = if m.conditional() {
        format!(
            "conditioned on {} classes (a label embedding added to the time embedding, labels \
             dropped with p = {} for classifier-free guidance, Ho & Salimans 2022)",
            m.n_classes, cfg.label_dropout
        )
    } else {
        "unconditional".to_string()
    };
    let space = match &cfg.latent {
        Some(l) => format!(
            "\n- latent diffusion (Rombach et al. 2022): the U-Net denoises the {}x{s}x{s} latent \
             grids of a frozen VAE (a copy in `vae/`, from {}), scaled by {:.5} to unit \
             variance, and the VAE decodes the result",
            m.image_channels,
            l.vae,
            l.scale,
            s = m.image_size
        ),
        None => String::new(),
    };
    let model = format!(
        "- U-Net with {c0}/{c1}/{c2} channels at {s}/{s2}/{s4}, two residual blocks per level, \
         GroupNorm({g}), SiLU, self-attention ({h} heads) at the lowest resolution and in the \
         middle; {params} parameters\n\
         - T = {tt} steps, {sched:?} noise schedule, epsilon prediction, MSE\n\
         - sampling uses an exponential moving average of the weights (decay {ema}){space}",
        c0 = m.channels[0],
        c1 = m.channels[1],
        c2 = m.channels[2],
        s = m.image_size,
        s2 = m.image_size / 2,
        s4 = m.image_size / 4,
        g = m.groups,
        h = m.heads,
        params = crate::models::diffusion::parameter_count(m)?,
        tt = cfg.timesteps,
        sched = cfg.schedule,
        ema = cfg.ema_decay,
    );
    let metrics = format!(
        "| test noise-prediction MSE (EMA weights) |\n|---|\n| {:.4} |\n\n\
         Sample with `muse sample {dir} --sampler ddim --steps 50 -o grid.png` (or \
         `--sampler ddpm` for the full ancestral chain, `--trajectory strip.png` to see the \
         denoising steps); `muse audit {dir}` compares samples with their nearest training \
         images.",
        ev.loss,
        dir = run.root().display(),
    );
    ModelCard::new(
        run,
        format!(
            "A denoising diffusion probabilistic model (DDPM, Ho, Jain & Abbeel 2020), {cond}, \
             trained with Muse (preset `{preset}`)."
        ),
        Outputs::Images,
        preset,
    )
    .section("Model", model)
    .data(
        &train.record,
        &format!(
            "{} training images, {} test images for the test loss; images scaled to [-1, 1]",
            train.len(),
            test.len()
        ),
    )
    .config(cfg)
    .section(
        "Training",
        format!(
            "- {} steps of batch {}, AdamW lr {:e} (weight decay {}), seed {}, {:.0} s",
            state.step,
            cfg.train.batch_size,
            cfg.train.lr,
            cfg.train.weight_decay,
            cfg.train.seed,
            state.train_seconds
        ),
    )
    .section("Metrics", metrics)
    .limits(
        "Trained on one small dataset of small images; samples can reproduce features of \
         training images. Do not present its output as real images.",
    )
    .write(run)
}
