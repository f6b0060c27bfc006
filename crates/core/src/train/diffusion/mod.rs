//! The DDPM training loop (`muse train diffusion`), top to bottom like the other image loops:
//! learning rate, evaluate and checkpoint every N steps, a progress grid every N steps, one
//! step (Ho et al. 2020, Algorithm 1: x_0 from the data, t ~ U{0..T-1}, eps ~ N(0, I),
//! loss = |eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t)|^2), the EMA update,
//! one log line. Every random draw is a function of (seed, step), so a resumed run repeats
//! the uninterrupted one bit for bit.
//!
//! The EMA of the weights lives in the same `VarMap` under `ema.` (no gradient reaches it),
//! so checkpoints save and restore it with the weights.

mod condition;
mod config;
mod latents;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use condition::{CondBatch, Conditioner};
pub use config::{
    DEFAULT_STEPS, DiffusionRunConfig, DiffusionSampleConfig, LATENT_COND_STEPS, LatentConfig,
    PRESETS, START_ONLY_KEYS, TextConditioning,
};
pub use latents::{Clean, Encoded, LATENT_STREAM, copy_vae};
pub use report::{DiffusionEval, evaluate_diffusion};

use crate::data::captions::{COLOURS, CaptionSet, TintedDataset, Wording, caption};
use crate::data::images::{ImageDataset, Split};
use crate::error::Result;
use crate::models::diffusion::{EMA_PREFIX, UNet, UNetInit, unet_init};
use crate::nn::init_varmap;
use crate::nn::noise::standard_normal;
use crate::run_dir::{OnExisting, RunDir};
use crate::sample::diffusion::{Conditioning, ImageSpace, NoiseSchedule, PromptStates, labels_for};
use crate::train::AdamW;
use crate::train::cadence::{Cadence, EvalLog, StepLog, TrainingLoop, finish, run_steps};
use crate::train::checkpoint::TrainState;
use crate::train::image_run::{ImageRun, RunRecord};
use crate::train::images::{per_second, step_seed};
use crate::train::metrics::MetricsLog;
use crate::train::progress::Progress;

/// Random streams: timesteps and label dropout, the noise, the fixed sample noise.
pub const T_STREAM: u64 = 1;
pub const NOISE_STREAM: u64 = 2;
pub const SAMPLE_STREAM: u64 = 3;

/// What to train and where.
pub struct DiffusionTrainJob {
    pub out: PathBuf,
    pub preset: String,
    pub config: DiffusionRunConfig,
    pub on_existing: OnExisting,
    pub device: Device,
}

/// The outcome of a finished run.
pub struct DiffusionReport {
    pub run_dir: PathBuf,
    pub steps: u64,
    /// Noise-prediction MSE of the last training batch.
    pub train_loss: f64,
    pub test: DiffusionEval,
    pub train_seconds: f64,
    /// The last progress grid.
    pub grid: PathBuf,
}

/// The trained network and its moving average, both in one `VarMap`.
pub struct Nets {
    pub net: UNet,
    pub ema: UNet,
}

impl Nets {
    pub fn new(cfg: &crate::models::diffusion::UNetConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            net: UNet::new(cfg, vb.clone())?,
            ema: UNet::new(cfg, vb.pp(EMA_PREFIX))?,
        })
    }
}

/// Trains a diffusion model as `job` says; [`crate::Error::Interrupted`] after a checkpoint
/// on Ctrl-C.
pub fn train_diffusion(job: DiffusionTrainJob) -> Result<DiffusionReport> {
    let mut cfg = job.config.clone();
    RunDir::check(&job.out, job.on_existing)?;
    // Before the data loads: the sections must agree (text needs tint, ...).
    cfg.validate()?;
    let mut train = cfg.data.load(Split::Train)?;
    let mut test = cfg.data.load(Split::Test)?;
    let mut colours = Vec::new();
    if cfg.tint {
        let tinted = Tinted::of(&cfg, &train, &test)?;
        (train, test, colours) = (
            tinted.train.images,
            tinted.test.images,
            tinted.train.colours,
        );
    }
    (cfg.model.image_channels, cfg.model.image_size) = (train.channels, train.height);
    if cfg.model.conditional() {
        if train.labels.is_none() {
            return Err(crate::Error::usage(format!(
                "a conditional model needs labelled images; {} has none (use an unconditional \
                 preset)",
                train.record.name
            )));
        }
        cfg.model.n_classes = train.n_classes;
    }
    let resuming = job.on_existing == OnExisting::Resume;
    let encoded = match cfg.latent {
        Some(_) => Some(Encoded::prepare(
            &mut cfg,
            &job.out,
            resuming,
            &train,
            &test,
            &job.device,
        )?),
        None => None,
    };
    let (clean_train, clean_test, space) = match &encoded {
        Some(e) => (Clean::Latents(&e.train), Clean::Latents(&e.test), e.space()),
        None => (
            Clean::Pixels(&train),
            Clean::Pixels(&test),
            ImageSpace::Pixels,
        ),
    };
    let conditioner = Conditioner::new(&cfg, colours, &job.device)?;
    if let Conditioner::Text { encoder, .. } = &conditioner {
        cfg.model.context_dim = encoder.dim();
    }
    cfg.validate()?;
    let t = &cfg.train;
    let record = RunRecord {
        family: "diffusion",
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
        |vb| Nets::new(&cfg.model, vb),
    )?;
    if !resuming {
        fresh_weights(&r.varmap, t.seed, cfg.init())?;
        if let Some(l) = &cfg.latent {
            copy_vae(std::path::Path::new(&l.vae), r.run.root())?;
        }
    }
    let schedule = NoiseSchedule::new(&cfg.noise())?;
    let (spe, total) = (r.steps_per_epoch, r.total);
    let m = &cfg.model;
    let sample_noise = standard_normal(
        (cfg.sample.n, m.image_channels, m.image_size, m.image_size),
        t.seed,
        SAMPLE_STREAM,
        &job.device,
    )?;
    let start = r.state.step;
    tracing::info!(
        "diffusion: {} parameters, {} train / {} test images, {total} steps ({spe} per epoch), \
         T {} ({:?}), EMA {}",
        crate::models::diffusion::parameter_count(m)?,
        train.len(),
        test.len(),
        cfg.timesteps,
        cfg.schedule,
        cfg.ema_decay
    );
    let grid_condition = grid_condition(&cfg, &conditioner, cfg.sample.n)?;
    let progress = Progress::new("train", start, total);
    let cadence = Cadence {
        eval_every: r.eval_every,
        sample_every: t.sample_interval as u64,
        log_every: t.log_interval as u64,
        eval_first: false,
        sample_first: false,
    };
    let mut l = DiffusionLoop {
        r: &mut r,
        cfg: &cfg,
        schedule: &schedule,
        train: &train,
        clean_train: &clean_train,
        clean_test: &clean_test,
        space: &space,
        sample_noise: &sample_noise,
        conditioner: &conditioner,
        grid_condition: &grid_condition,
        device: &job.device,
        last_loss: f64::NAN,
        grid: None,
    };
    run_steps(&mut l, &cadence, start, total, &progress)?;
    let ev = finish(&mut l, start, total, &progress)?;
    let final_grid = l.r.run.samples().join(format!("step_{total:06}.png"));
    if start < total || !final_grid.is_file() {
        l.sample(total)?;
    }
    let (last_loss, grid) = (l.last_loss, l.grid.unwrap_or(final_grid));
    report::write_model_card(&r.run, &job.preset, &cfg, &train, &test, &r.state, &ev)?;
    drop(encoded);
    Ok(DiffusionReport {
        run_dir: r.run.root().to_path_buf(),
        steps: r.state.step,
        train_loss: last_loss,
        test: ev,
        train_seconds: r.state.train_seconds,
        grid,
    })
}

/// The diffusion model's part of the shared cadence.
struct DiffusionLoop<'a> {
    r: &'a mut ImageRun<Nets>,
    cfg: &'a DiffusionRunConfig,
    schedule: &'a NoiseSchedule,
    /// The images (for their labels and captions).
    train: &'a ImageDataset,
    /// What the U-Net denoises: the images, or their latents.
    clean_train: &'a Clean<'a>,
    clean_test: &'a Clean<'a>,
    space: &'a ImageSpace,
    /// The fixed noise of the progress grids.
    sample_noise: &'a Tensor,
    conditioner: &'a Conditioner,
    /// The labels or prompts of the progress grids.
    grid_condition: &'a Conditioning,
    device: &'a Device,
    last_loss: f64,
    /// The last grid written.
    grid: Option<PathBuf>,
}

impl TrainingLoop for DiffusionLoop<'_> {
    type Eval = DiffusionEval;

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
        let loss = train_step(
            &r.model.net,
            &mut r.opt,
            self.schedule,
            self.train,
            self.clean_train,
            &idx,
            self.conditioner,
            self.cfg,
            step,
            lr,
            self.device,
        )?;
        ema_update(&r.varmap, ema_decay_at(self.cfg.ema_decay, step))?;
        self.last_loss = loss;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let val = r
            .state
            .last_val_loss
            .map_or("-".to_string(), |v| format!("{v:.4}"));
        Ok(StepLog {
            examples: idx.len() as u64,
            status: format!("loss {loss:.4}"),
            line: format!(
                "step {step} | epoch {} | loss {loss:.4} | test {val} | lr {lr:.1e} | {ms:.1} ms \
                 | {} img/s",
                step / r.steps_per_epoch,
                per_second(idx.len() as f64, ms)
            ),
            metrics: serde_json::json!({ "step": step, "loss": loss, "lr": lr, "ms": ms }),
        })
    }

    fn evaluate(&mut self, _step: u64) -> Result<DiffusionEval> {
        evaluate_diffusion(
            &self.r.frozen.ema,
            self.schedule,
            self.clean_test,
            self.conditioner,
            self.cfg.train.seed,
            self.device,
        )
    }

    fn eval_log(&mut self, step: u64, ev: &DiffusionEval) -> Option<EvalLog> {
        Some(report::eval_log(step, ev))
    }

    fn sample(&mut self, step: u64) -> Result<()> {
        let r = &self.r;
        let grid = report::write_samples(
            &r.run,
            &r.frozen.ema,
            self.space,
            self.schedule,
            self.sample_noise,
            self.grid_condition,
            self.cfg,
            step,
        )?;
        self.grid = Some(grid);
        Ok(())
    }

    fn plot(&self) -> Result<()> {
        report::plot(&self.r.run)
    }
}

/// PyTorch's initialisation of the U-Net (the class embedding N(0, `class_std`)), and the EMA
/// starting equal to it.
pub fn fresh_weights(varmap: &VarMap, seed: u64, init: UNetInit) -> Result<()> {
    init_varmap(varmap, seed, unet_init(varmap, init))?;
    ema_update(varmap, 0.0)
}

/// The EMA decay at `step`: `min(decay, (1 + step) / (10 + step))` (diffusers' `EMAModel`
/// warm-up), so the average does not remember the random start for long.
pub fn ema_decay_at(decay: f64, step: u64) -> f64 {
    decay.min((1.0 + step as f64) / (10.0 + step as f64))
}

/// `ema = decay * ema + (1 - decay) * w` for every trained weight `w` of `varmap`.
pub fn ema_update(varmap: &VarMap, decay: f64) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock is never poisoned");
    let prefix = format!("{EMA_PREFIX}.");
    let pairs: Vec<(&Var, &Var)> = data
        .iter()
        .filter(|(k, _)| !k.starts_with(&prefix))
        .filter_map(|(k, w)| Some((w, data.get(&format!("{prefix}{k}"))?)))
        .collect();
    for (w, ema) in pairs {
        let next = if decay == 0.0 {
            w.as_tensor().copy()?
        } else {
            ((ema.as_tensor() * decay)? + (w.as_tensor() * (1.0 - decay))?)?
        };
        ema.set(&next)?;
    }
    Ok(())
}

/// `(x_t, t, eps)` for clean images `x0`: timesteps uniform in [0, T) and Gaussian noise, both
/// from the streams of (seed, step).
///
/// # Shapes
/// `x0`: (N, C, S, S) -> x_t (N, C, S, S), t (N) f32, eps (N, C, S, S).
pub fn noised(
    schedule: &NoiseSchedule,
    x0: &Tensor,
    seed: u64,
    step: u64,
    rng: &mut ChaCha8Rng,
) -> Result<(Tensor, Tensor, Tensor)> {
    let n = x0.dim(0)?;
    let dev = x0.device();
    let ts: Vec<usize> = (0..n)
        .map(|_| rng.random_range(0..schedule.len()))
        .collect();
    let eps = standard_normal(x0.shape(), step_seed(seed, step, NOISE_STREAM), 0, dev)?;
    let coef = |f: &dyn Fn(f64) -> f64| -> Result<Tensor> {
        let v: Vec<f32> = ts
            .iter()
            .map(|&t| f(schedule.alphas_cumprod[t]) as f32)
            .collect();
        Ok(Tensor::from_vec(v, (n, 1, 1, 1), dev)?)
    };
    let xt = (x0.broadcast_mul(&coef(&|a| a.sqrt())?)?
        + eps.broadcast_mul(&coef(&|a| (1.0 - a).sqrt())?)?)?; // (N, C, S, S)
    let t = Tensor::from_vec(ts.iter().map(|&t| t as f32).collect(), n, dev)?;
    Ok((xt, t, eps))
}

/// One optimizer step on the examples `idx` of `clean` (the images of `data`, or their
/// latents): noise them at random timesteps, predict the noise given their condition (labels
/// or captions of `data`, dropped with the configured probability), MSE, backward, AdamW.
/// Returns the loss.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    net: &UNet,
    opt: &mut AdamW,
    schedule: &NoiseSchedule,
    data: &ImageDataset,
    clean: &Clean,
    idx: &[usize],
    conditioner: &Conditioner,
    cfg: &DiffusionRunConfig,
    step: u64,
    lr: f64,
    device: &Device,
) -> Result<f64> {
    let seed = cfg.train.seed;
    let x0 = clean.train_batch(idx, seed, step, device)?; // (N, C, S, S)
    let mut rng = ChaCha8Rng::seed_from_u64(step_seed(seed, step, T_STREAM));
    let (xt, t, eps) = noised(schedule, &x0, seed, step, &mut rng)?;
    let cond = conditioner.batch(data, idx, &mut rng, device)?;
    let pred = net.forward_with(&xt, &t, cond.condition())?;
    let loss = (pred - &eps)?.sqr()?.mean_all()?;
    let store = loss.backward()?;
    let mut grads = opt.grads(&store);
    if cfg.train.grad_clip > 0.0 {
        grads.clip(cfg.train.grad_clip)?;
    }
    opt.step(&grads, lr)?;
    Ok(loss.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// The train and test splits tinted (test with every (class, colour) pair).
struct Tinted {
    train: TintedDataset,
    test: TintedDataset,
}

impl Tinted {
    fn of(cfg: &DiffusionRunConfig, train: &ImageDataset, test: &ImageDataset) -> Result<Self> {
        let set = CaptionSet::for_dataset(&cfg.data.dataset).ok_or_else(|| {
            crate::Error::usage(format!(
                "tint: captions exist for mnist and fashion-mnist, not '{}'",
                cfg.data.dataset
            ))
        })?;
        let seed = cfg.train.seed;
        Ok(Self {
            train: TintedDataset::new(train, set, seed, false)?,
            test: TintedDataset::new(test, set, seed, true)?,
        })
    }
}

/// The progress grids' condition: classes in turn, or one prompt per (colour, class) cell
/// ("a red t-shirt", ...: a row per colour, a column per class), held-out pairs included.
pub fn grid_condition(
    cfg: &DiffusionRunConfig,
    conditioner: &Conditioner,
    n: usize,
) -> Result<Conditioning> {
    match conditioner {
        Conditioner::Text { encoder, set, .. } => {
            let prompts = grid_prompts(*set, n);
            Ok(Conditioning::Text(PromptStates::encode(encoder, &prompts)?))
        }
        _ => Ok(Conditioning::labels(labels_for(&cfg.model, n, None)?)),
    }
}

/// `n` prompts in the first training wording, class fastest, then colour.
pub fn grid_prompts(set: CaptionSet, n: usize) -> Vec<String> {
    let classes = set.classes();
    let first = Wording {
        template: 0,
        item: 0,
        colour: 0,
    };
    (0..n)
        .map(|i| caption(set, i % classes, (i / classes) % COLOURS.len(), first))
        .collect()
}
