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
use crate::train::cadence::{Cadence, EvalLog, StepLog, TrainingLoop, finish, run_steps};
use crate::train::checkpoint::TrainState;
use crate::train::image_run::{ImageRun, RunRecord};
use crate::train::images::{per_second, step_seed};
use crate::train::metrics::MetricsLog;
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
        (cfg.sample.n, cfg.model.latent_dim()),
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
    let cadence = Cadence {
        eval_every: r.eval_every,
        sample_every: t.sample_interval as u64,
        log_every: t.log_interval as u64,
        eval_first: false,
        sample_first: false,
    };
    let mut l = VaeLoop {
        r: &mut r,
        cfg: &cfg,
        train: &train,
        test: &test,
        sample_z: &sample_z,
        device: &job.device,
        last_loss: f64::NAN,
    };
    run_steps(&mut l, &cadence, start, total, &progress)?;
    let ev = finish(&mut l, start, total, &progress)?;
    l.sample(total)?;
    let last_loss = l.last_loss;
    write_reconstructions(
        &r.run,
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

/// The VAE's part of the shared cadence.
struct VaeLoop<'a> {
    r: &'a mut ImageRun<Vae>,
    cfg: &'a VaeRunConfig,
    train: &'a ImageDataset,
    test: &'a ImageDataset,
    /// The fixed latents of the progress grids.
    sample_z: &'a Tensor,
    device: &'a Device,
    last_loss: f64,
}

impl TrainingLoop for VaeLoop<'_> {
    type Eval = VaeEval;

    fn state(&mut self) -> &mut TrainState {
        &mut self.r.state
    }

    fn metrics(&mut self) -> &mut MetricsLog {
        &mut self.r.metrics
    }

    fn save(&mut self) -> Result<()> {
        self.r.save()
    }

    fn step(&mut self, step: u64) -> Result<StepLog> {
        let t0 = Instant::now();
        let r = &mut *self.r;
        let lr = r.schedule.at(step as usize);
        let idx = r.batches.indices(step);
        let (loss, bce, kl) = train_step(
            &r.model,
            &mut r.opt,
            self.train,
            &idx,
            self.cfg,
            step,
            lr,
            self.device,
        )?;
        crate::train::checkpoint::check_finite(step, "loss", loss)?;
        self.last_loss = loss;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let val = r
            .state
            .last_val_loss
            .map_or("-".to_string(), |v| format!("{v:.2}"));
        Ok(StepLog {
            examples: idx.len() as u64,
            status: format!("loss {loss:.2}"),
            line: format!(
                "step {step} | epoch {} | loss {loss:.2} (bce {bce:.2} + kl {kl:.2}) | test {val} \
                 | lr {lr:.1e} | {ms:.1} ms | {} img/s",
                step / r.steps_per_epoch,
                per_second(idx.len() as f64, ms)
            ),
            metrics: serde_json::json!({
                "step": step, "loss": loss, "bce": bce, "kl": kl, "lr": lr, "ms": ms,
            }),
        })
    }

    fn evaluate(&mut self, _step: u64) -> Result<VaeEval> {
        evaluate_vae(
            &self.r.frozen,
            self.test,
            500,
            self.cfg.train.seed,
            self.device,
        )
    }

    fn eval_log(&mut self, step: u64, ev: &VaeEval) -> Option<EvalLog> {
        Some(report::eval_log(step, self.r.steps_per_epoch, ev))
    }

    fn sample(&mut self, step: u64) -> Result<()> {
        report::write_samples(
            &self.r.run,
            &self.r.frozen,
            self.sample_z,
            self.cfg.sample.nrow,
            step,
        )
    }

    fn plot(&self) -> Result<()> {
        report::plot(&self.r.run)
    }
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
        (n, cfg.model.latent_dim()),
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
