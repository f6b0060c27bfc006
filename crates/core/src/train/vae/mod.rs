//! The VAE training loop (`muse train vae`), top to bottom like the PyTorch examples
//! `vae/main.py` and the GPT loop: learning rate, evaluate and checkpoint each epoch, one step
//! (reparameterisation noise and input corruption drawn from seeded streams), one log line,
//! a sample grid from a fixed batch of latents every N steps.

mod config;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};

pub use config::{PRESETS, VaeObjective, VaeRunConfig, VaeSampleConfig};
pub use report::{VaeEval, evaluate_vae, write_reconstructions};

use crate::data::images::{ImageDataset, Scale, Split};
use crate::error::Result;
use crate::models::vae::Vae;
use crate::nn::noise::standard_normal;
use crate::run_dir::{OnExisting, RunDir};
use crate::train::AdamW;
use crate::train::image_run::{ImageRun, RunRecord};
use crate::train::images::{per_second, step_seed};
use crate::train::progress::Progress;

/// Random streams: reparameterisation noise, input corruption, the fixed sample latents.
pub const EPS_STREAM: u64 = 1;
pub const CORRUPT_STREAM: u64 = 2;
pub const SAMPLE_STREAM: u64 = 3;

/// What to train and where.
pub struct VaeTrainJob {
    pub out: PathBuf,
    pub preset: String,
    pub config: VaeRunConfig,
    pub on_existing: OnExisting,
    pub device: Device,
}

/// The outcome of a finished run.
pub struct VaeReport {
    pub run_dir: PathBuf,
    pub steps: u64,
    /// Per-image training loss of the last step.
    pub train_loss: f64,
    pub test: VaeEval,
    pub train_seconds: f64,
}

/// Trains a VAE as `job` says; [`Error::Interrupted`] after a checkpoint on Ctrl-C.
pub fn train_vae(job: VaeTrainJob) -> Result<VaeReport> {
    let mut cfg = job.config.clone();
    RunDir::check(&job.out, job.on_existing)?;
    let train = cfg.data.load(Split::Train)?;
    let test = cfg.data.load(Split::Test)?;
    (cfg.model.channels, cfg.model.image_size) = (train.channels, train.height);
    cfg.validate()?;
    let t = &cfg.train;
    let record = RunRecord {
        family: "vae",
        preset: &job.preset,
        model: &cfg.model,
        config: &cfg,
    };
    let mut r = ImageRun::open(
        &job.out,
        job.on_existing,
        t,
        &train,
        record,
        &job.device,
        |vb| Vae::new(&cfg.model, vb),
    )?;
    let (spe, total) = (r.steps_per_epoch, r.total);
    let sample_z = standard_normal(
        (cfg.sample.n, cfg.model.latent),
        t.seed,
        SAMPLE_STREAM,
        &job.device,
    )?;
    let start = r.state.step;
    tracing::info!(
        "vae ({:?}): {} parameters, {} train / {} test images, {total} steps ({spe} per epoch), \
         beta {}, train noise {}",
        cfg.model.arch,
        cfg.model.parameter_count(),
        train.len(),
        test.len(),
        cfg.objective.beta,
        cfg.objective.train_noise
    );
    let progress = Progress::new("train", start, total);
    let mut last_loss = f64::NAN;

    for step in start..total {
        r.stop_if_requested(step, &progress)?;
        if step > start && step % r.eval_every == 0 {
            let ev = evaluate_vae(&r.frozen, &test, 500, t.seed, &job.device)?;
            report::log_eval(&progress, &mut r.metrics, step, spe, &ev, &mut r.state)?;
            r.save()?;
            r.metrics.sync()?;
            report::plot(&r.run)?;
        }
        if cfg.train.sample_interval > 0 && step > 0 && step % cfg.train.sample_interval as u64 == 0
        {
            report::write_samples(&r.run, &r.frozen, &sample_z, cfg.sample.nrow, step)?;
        }
        let t0 = Instant::now();
        let lr = r.schedule.at(step as usize);
        let idx = r.batches.indices(step);
        let (loss, bce, kl) = train_step(
            &r.model,
            &mut r.opt,
            &train,
            &idx,
            &cfg,
            step,
            lr,
            &job.device,
        )?;
        crate::train::checkpoint::check_finite(step, "loss", loss)?;
        last_loss = loss;
        r.state.step = step + 1;
        r.state.examples_seen += idx.len() as u64;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        progress.set(r.state.step);
        progress.message(format!("loss {loss:.2}"));
        if step % t.log_interval as u64 == 0 {
            let val = r
                .state
                .last_val_loss
                .map_or("-".to_string(), |v| format!("{v:.2}"));
            progress.println(&format!(
                "step {step} | epoch {} | loss {loss:.2} (bce {bce:.2} + kl {kl:.2}) | test {val} \
                 | lr {lr:.1e} | {ms:.1} ms | {} img/s",
                step / spe,
                per_second(idx.len() as f64, ms)
            ));
            r.metrics.log(&serde_json::json!({
                "step": step, "loss": loss, "bce": bce, "kl": kl, "lr": lr, "ms": ms,
            }))?;
        }
    }
    progress.finish();
    let ev = evaluate_vae(&r.frozen, &test, 500, t.seed, &job.device)?;
    if start < total {
        report::log_eval(&progress, &mut r.metrics, total, spe, &ev, &mut r.state)?;
    }
    r.save()?;
    r.metrics.sync()?;
    report::plot(&r.run)?;
    report::write_samples(&r.run, &r.frozen, &sample_z, cfg.sample.nrow, total)?;
    write_reconstructions(
        &r.run.samples().join("reconstructions.png"),
        &r.frozen,
        &test,
        cfg.sample.nrow.min(test.len()),
        &job.device,
    )?;
    report::write_model_card(&r.run, &job.preset, &cfg, &train, &test, &r.state, &ev)?;
    Ok(VaeReport {
        run_dir: r.run.root().to_path_buf(),
        steps: r.state.step,
        train_loss: last_loss,
        test: ev,
        train_seconds: r.state.train_seconds,
    })
}

/// One optimizer step on the images `idx` of `data`: seeded noise, loss summed over the batch
/// (as the PyTorch example), backward, Adam. Returns the per-image (loss, bce, kl).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: &Vae,
    opt: &mut AdamW,
    data: &ImageDataset,
    idx: &[usize],
    cfg: &VaeRunConfig,
    step: u64,
    lr: f64,
    device: &Device,
) -> Result<(f64, f64, f64)> {
    let x = data.batch(idx, Scale::Unit, device)?;
    let (n, seed) = (idx.len(), cfg.train.seed);
    let eps = standard_normal(
        (n, cfg.model.latent),
        step_seed(seed, step, EPS_STREAM),
        0,
        device,
    )?;
    let x_in = corrupt(
        &x,
        cfg.objective.train_noise,
        step_seed(seed, step, CORRUPT_STREAM),
    )?;
    let (bce, kl, store) = model.loss_and_grads(&x_in, &x, &eps, cfg.objective.beta)?;
    let mut grads = opt.grads(&store);
    if cfg.train.grad_clip > 0.0 {
        grads.clip(cfg.train.grad_clip)?;
    }
    opt.step(&grads, lr)?;
    let per = n as f64;
    let total = bce + cfg.objective.beta * kl;
    Ok((total / per, bce / per, kl / per))
}

/// `clamp(x + sigma * N(0, I), 0, 1)` from the stream `seed` (x itself when sigma is 0).
pub fn corrupt(x: &Tensor, sigma: f64, seed: u64) -> Result<Tensor> {
    if sigma == 0.0 {
        return Ok(x.clone());
    }
    let noise = standard_normal(x.shape(), seed, 0, x.device())?;
    Ok((x + (noise * sigma)?)?.clamp(0f32, 1f32)?)
}
