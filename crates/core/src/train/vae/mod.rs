//! The VAE training loop (`muse train vae`), top to bottom like the PyTorch examples
//! `vae/main.py` and the GPT loop: learning rate, evaluate and checkpoint each epoch, one step
//! (reparameterisation noise and input corruption drawn from seeded streams), one log line,
//! a sample grid from a fixed batch of latents every N steps.

mod config;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

pub use config::{PRESETS, VaeObjective, VaeRunConfig, VaeSampleConfig};
pub use report::{VaeEval, evaluate_vae, write_reconstructions};

use crate::data::images::{EpochBatches, ImageDataset, Scale, Split};
use crate::error::{Error, Result};
use crate::models::conv::torch_default_init;
use crate::models::vae::Vae;
use crate::nn::init_varmap;
use crate::nn::noise::standard_normal;
use crate::run_dir::{OnExisting, RunDir};
use crate::train::checkpoint::{self, TrainState};
use crate::train::images::{check_same_data, per_second, step_seed, write_training_record};
use crate::train::metrics::MetricsLog;
use crate::train::progress::Progress;
use crate::train::{AdamW, LrSchedule, interrupt};

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
    let run = RunDir::prepare(&job.out, job.on_existing)?;
    let resuming = job.on_existing == OnExisting::Resume;
    let t = &cfg.train;

    let mut varmap = VarMap::new();
    let model = Vae::new(
        &cfg.model,
        VarBuilder::from_varmap(&varmap, DType::F32, &job.device),
    )?;
    init_varmap(&varmap, t.seed, torch_default_init(&varmap))?;
    let mut batches = EpochBatches::new(train.len(), t.batch_size, t.seed)?;
    let spe = batches.steps_per_epoch();
    let total = t.total_steps(spe);
    let opt_cfg = t.optimizer_config(total);
    let mut opt = AdamW::new(&varmap, &opt_cfg)?;
    let mut state = if resuming {
        let s = checkpoint::load(&run, &mut varmap, &mut [("", &mut opt)])?;
        check_same_data(&run, &train.record)?;
        s
    } else {
        crate::io::write_json_atomic(&run.config(), &cfg.model)?;
        write_training_record(&run, "vae", &job.preset, &cfg, t.seed, &train.record)?;
        TrainState::default()
    };
    let frozen = Vae::new(
        &cfg.model,
        crate::train::gpt::detached(&varmap, &job.device)?,
    )?;
    let schedule = LrSchedule::from_config(&opt_cfg);
    let mut metrics = MetricsLog::open(&run.metrics(), resuming.then_some(state.step))?;
    let eval_every = t.eval_every(spe);
    let sample_z = standard_normal(
        (cfg.sample.n, cfg.model.latent),
        t.seed,
        SAMPLE_STREAM,
        &job.device,
    )?;
    let start = state.step;
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
    let session = Instant::now();
    let before = state.train_seconds;
    let save = |state: &mut TrainState, opt: &AdamW| -> Result<()> {
        state.train_seconds = before + session.elapsed().as_secs_f64();
        checkpoint::save(
            &run,
            &checkpoint::varmap_tensors(&varmap),
            &[("", opt)],
            state,
        )
    };
    let mut last_loss = f64::NAN;

    for step in start..total {
        if interrupt::stop_requested() {
            save(&mut state, &opt)?;
            progress.println(&format!(
                "interrupted: checkpoint saved at step {step}; continue with --resume"
            ));
            return Err(Error::Interrupted);
        }
        if step > start && step % eval_every == 0 {
            let ev = evaluate_vae(&frozen, &test, 500, t.seed, &job.device)?;
            report::log_eval(&progress, &mut metrics, step, spe, &ev, &mut state)?;
            save(&mut state, &opt)?;
            metrics.sync()?;
            report::plot(&run)?;
        }
        if cfg.train.sample_interval > 0 && step > 0 && step % cfg.train.sample_interval as u64 == 0
        {
            report::write_samples(&run, &frozen, &sample_z, cfg.sample.nrow, step)?;
        }
        let t0 = Instant::now();
        let lr = schedule.at(step as usize);
        let idx = batches.indices(step);
        let (loss, bce, kl) =
            train_step(&model, &mut opt, &train, &idx, &cfg, step, lr, &job.device)?;
        last_loss = loss;
        state.step = step + 1;
        state.examples_seen += idx.len() as u64;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        progress.set(state.step);
        progress.message(format!("loss {loss:.2}"));
        if step % t.log_interval as u64 == 0 {
            let val = state
                .last_val_loss
                .map_or("-".to_string(), |v| format!("{v:.2}"));
            progress.println(&format!(
                "step {step} | epoch {} | loss {loss:.2} (bce {bce:.2} + kl {kl:.2}) | test {val} \
                 | lr {lr:.1e} | {ms:.1} ms | {} img/s",
                step / spe,
                per_second(idx.len() as f64, ms)
            ));
            metrics.log(&serde_json::json!({
                "step": step, "loss": loss, "bce": bce, "kl": kl, "lr": lr, "ms": ms,
            }))?;
        }
    }
    progress.finish();
    let ev = evaluate_vae(&frozen, &test, 500, t.seed, &job.device)?;
    if start < total {
        report::log_eval(&progress, &mut metrics, total, spe, &ev, &mut state)?;
    }
    save(&mut state, &opt)?;
    metrics.sync()?;
    report::plot(&run)?;
    report::write_samples(&run, &frozen, &sample_z, cfg.sample.nrow, total)?;
    write_reconstructions(
        &run.samples().join("reconstructions.png"),
        &frozen,
        &test,
        cfg.sample.nrow.min(test.len()),
        &job.device,
    )?;
    report::write_model_card(&run, &job.preset, &cfg, &train, &test, &state, &ev)?;
    Ok(VaeReport {
        run_dir: run.root().to_path_buf(),
        steps: state.step,
        train_loss: last_loss,
        test: ev,
        train_seconds: state.train_seconds,
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
