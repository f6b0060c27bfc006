//! The GAN training loop (`muse train gan`): its own two-optimizer loop, top to bottom like
//! PyTorch's DCGAN example: learning rate, evaluate class coverage and checkpoint every N
//! steps, a progress grid every M, then `n_critic` discriminator steps and one generator step,
//! one log line.

mod config;
mod report;
mod step;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;

pub use config::{AdversarialConfig, GanLoss, GanRunConfig, PRESETS};
pub use report::{fixed_batch, plot_losses};
pub use step::{GanTrainer, StepStats, bce_with_logits, gradient_penalty, noise, split_vars};

use crate::data::images::{EpochBatches, ImageDataset, Split};
use crate::error::{Error, Result};
use crate::models::classifier::Classifier;
use crate::models::gan::{GanConfig, save_config};
use crate::run_dir::{OnExisting, RunDir};
use crate::train::cadence::{Cadence, EvalLog, StepLog, TrainingLoop, finish, run_steps};
use crate::train::checkpoint::{self, TrainClock, TrainState};
use crate::train::images::check_same_data;
use crate::train::metrics::MetricsLog;
use crate::train::progress::Progress;
use crate::train::schedule::LrSchedule;

/// What a reference classifier says about generated images, for the coverage check.
#[derive(Clone, Debug, PartialEq)]
pub struct GanQuality {
    /// Classes holding at least a tenth of their uniform share of the samples.
    pub classes_found: usize,
    pub n_classes: usize,
    /// Entropy of the predicted-class histogram, bits.
    pub entropy_bits: f64,
    /// Conditional models: fraction classified as the label they were generated for.
    pub label_accuracy: Option<f64>,
}

/// What to train and where.
pub struct GanTrainJob {
    pub out: PathBuf,
    pub preset: String,
    pub config: GanRunConfig,
    pub on_existing: OnExisting,
    pub device: Device,
}

/// The outcome of a finished run.
pub struct GanReport {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub last: StepStats,
    pub quality: Option<GanQuality>,
    pub train_seconds: f64,
    /// The last progress grid.
    pub grid: PathBuf,
}

/// Trains a GAN as `job` says; with the reference `classifier`, class coverage (and label
/// accuracy) of samples is measured at every evaluation. Returns [`Error::Interrupted`] after
/// saving a checkpoint when Ctrl-C was pressed.
pub fn train_gan(job: GanTrainJob, classifier: Option<&Classifier>) -> Result<GanReport> {
    let mut cfg = job.config.clone();
    cfg.validate()?;
    RunDir::check(&job.out, job.on_existing)?;
    let data = cfg.data.load(Split::Train)?;
    fit_model_to_data(&mut cfg.model, &data)?;
    let run = RunDir::prepare(&job.out, job.on_existing)?;
    let resuming = job.on_existing == OnExisting::Resume;

    let batches =
        EpochBatches::new(data.len(), cfg.train.batch_size, cfg.train.seed)?.drop_last(true)?;
    let d_steps_per_epoch = batches.steps_per_epoch();
    let steps_per_epoch = (d_steps_per_epoch / cfg.gan.n_critic as u64).max(1);
    let total = cfg.train.total_steps(steps_per_epoch);
    let t = cfg.train.optimizer_config(total);
    let eval_every = cfg.train.eval_every(steps_per_epoch);

    let mut tr = GanTrainer::new(&cfg.model, &t, &job.device)?;
    let state = if resuming {
        let state = checkpoint::load(
            &run,
            &mut tr.varmap,
            &mut [("g.", &mut tr.opt_g), ("d.", &mut tr.opt_d)],
        )?;
        check_same_data(&run, &data.record)?;
        run.record_resumed_config(&cfg)?;
        state
    } else {
        save_config(run.root(), &cfg.model)?;
        run.write_training("gan", &job.preset, &cfg, t.seed, &data.record)?;
        TrainState::default()
    };
    let fixed = fixed_batch(&cfg, &job.device)?;
    let schedule = LrSchedule::from_config(&t);
    // Records up to the last completed step survive a resume; the evaluation at the resumed
    // step runs again (it is a function of the weights, so it logs the same numbers).
    let keep = resuming.then(|| state.step.checked_sub(1)).flatten();
    let metrics = MetricsLog::open(&run.metrics(), keep.map(|k| (k, state.metrics_bytes)))?;
    let start = state.step;
    let (pg, pd) = crate::models::gan::parameter_counts(&cfg.model);
    tracing::info!(
        "training G ({pg} parameters) and D ({pd}) with {} loss on {} images, {total} steps \
         ({steps_per_epoch} per epoch) from step {start}",
        cfg.gan.loss.as_str(),
        data.len(),
    );
    let progress = Progress::new("train", start, total);
    let cadence = Cadence {
        eval_every,
        sample_every: cfg.train.sample_interval as u64,
        log_every: cfg.train.log_interval as u64,
        eval_first: true,
        sample_first: true,
    };
    let mut l = GanLoop {
        clock: TrainClock::start(&state),
        run: &run,
        tr,
        state,
        metrics,
        cfg: &cfg,
        data: &data,
        batches,
        schedule,
        fixed: &fixed,
        classifier,
        best_coverage: 0,
        last: StepStats::default(),
    };
    run_steps(&mut l, &cadence, start, total, &progress)?;
    let last_quality = finish(&mut l, start, total, &progress)?;
    let GanLoop {
        tr, state, last, ..
    } = l;
    let grid = report::write_grid(&run, &tr, &cfg, &fixed, total)?;
    report::write_model_card(
        &run,
        &job,
        &cfg,
        &data,
        &state,
        &last,
        last_quality.as_ref(),
    )?;
    Ok(GanReport {
        run_dir: run.root().to_path_buf(),
        steps: state.step,
        last,
        quality: last_quality,
        train_seconds: state.train_seconds,
        grid,
    })
}

/// The GAN's part of the shared cadence: its step trains D (`n_critic` times) then G, each
/// with its own optimizer; its evaluation is the reference classifier's view of samples.
struct GanLoop<'a> {
    run: &'a RunDir,
    tr: GanTrainer,
    state: TrainState,
    metrics: MetricsLog,
    clock: TrainClock,
    cfg: &'a GanRunConfig,
    data: &'a ImageDataset,
    batches: EpochBatches,
    schedule: LrSchedule,
    /// The fixed noise (and labels) of the progress grids.
    fixed: &'a (candle_core::Tensor, Option<candle_core::Tensor>),
    classifier: Option<&'a Classifier>,
    /// The most classes seen at an evaluation, for the mode-collapse warning.
    best_coverage: usize,
    last: StepStats,
}

impl TrainingLoop for GanLoop<'_> {
    type Eval = Option<GanQuality>;

    fn state(&mut self) -> &mut TrainState {
        &mut self.state
    }

    fn metrics(&mut self) -> &mut MetricsLog {
        &mut self.metrics
    }

    fn save(&mut self) -> Result<()> {
        self.clock.stamp(&mut self.state);
        checkpoint::save(
            self.run,
            &self.tr.weights(),
            &[("g.", &self.tr.opt_g), ("d.", &self.tr.opt_d)],
            &self.state,
        )
    }

    fn step(&mut self, step: u64) -> Result<StepLog> {
        let (t0, cfg) = (Instant::now(), self.cfg);
        let lr = self.schedule.at(step as usize);
        let last = self.tr.step(cfg, self.data, &mut self.batches, step, lr)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if !(last.loss_d.is_finite() && last.loss_g.is_finite()) {
            return Err(Error::input(format!(
                "training diverged at step {step} (D loss {}, G loss {}); lower train.lr{}",
                last.loss_d,
                last.loss_g,
                match cfg.gan.loss {
                    GanLoss::Bce => " or try --loss wgan-gp",
                    GanLoss::WganGp => "",
                }
            )));
        }
        let images = (cfg.train.batch_size * cfg.gan.n_critic) as f64;
        self.last = last;
        let last = &self.last;
        Ok(StepLog {
            examples: images as u64,
            status: format!("D {:.3} G {:.3}", last.loss_d, last.loss_g),
            line: report::log_line(cfg, step, last, lr, ms, images),
            metrics: serde_json::json!({
                "step": step, "loss_d": last.loss_d, "loss_g": last.loss_g,
                "d_real": last.d_real, "d_fake": last.d_fake, "gp": last.gp, "lr": lr, "ms": ms,
                "img_per_s": images / (ms / 1e3),
            }),
        })
    }

    fn evaluate(&mut self, step: u64) -> Result<Option<GanQuality>> {
        self.classifier
            .map(|q| report::measure(&self.tr, self.cfg, q, step))
            .transpose()
    }

    fn eval_log(&mut self, step: u64, q: &Option<GanQuality>) -> Option<EvalLog> {
        let q = q.as_ref()?;
        let acc = q.label_accuracy.map_or(String::new(), |a| {
            format!(" | label accuracy {:.1}%", 100.0 * a)
        });
        let mut line = format!(
            "step {step} | coverage {}/{} classes | entropy {:.2} bits{acc}",
            q.classes_found, q.n_classes, q.entropy_bits
        );
        // Printed once, above the progress bar (not also as a log line).
        if let Some(warning) =
            coverage_warning(self.best_coverage, q.classes_found, self.cfg.gan.loss)
        {
            line = format!("{line}\n{warning}");
        }
        self.best_coverage = self.best_coverage.max(q.classes_found);
        Some(EvalLog {
            line,
            metrics: serde_json::json!({
                "step": step, "coverage": q.classes_found, "n_classes": q.n_classes,
                "entropy_bits": q.entropy_bits, "label_accuracy": q.label_accuracy,
            }),
            val_loss: None,
        })
    }

    fn sample(&mut self, step: u64) -> Result<()> {
        report::write_grid(self.run, &self.tr, self.cfg, self.fixed, step).map(|_| ())
    }

    fn plot(&self) -> Result<()> {
        plot_losses(self.run)
    }
}

/// Takes image size, channels and classes from the data, checking them against an explicit
/// model config.
fn fit_model_to_data(model: &mut GanConfig, data: &ImageDataset) -> Result<()> {
    let (c, h, w) = data.shape();
    if h != w {
        return Err(Error::input(format!(
            "the images are {h}x{w}; a GAN needs square images"
        )));
    }
    (model.image_channels, model.image_size) = (c, h);
    if model.conditional() {
        if data.labels.is_none() || data.n_classes < 2 {
            return Err(Error::input(format!(
                "{} has no labels: a conditional GAN needs labelled images (mnist, \
                 fashion-mnist, or class subfolders); use --preset dcgan-mnist",
                data.record.path
            )));
        }
        model.n_classes = data.n_classes;
    }
    model
        .validate()
        .map_err(|e| Error::usage(format!("model: {e} (the data's images are {c}x{h}x{w})")))
}

/// The warning when class coverage fell from `best` to `found`, with advice that fits the
/// run's objective (WGAN-GP is the usual cure, unless it is already used).
fn coverage_warning(best: usize, found: usize, loss: GanLoss) -> Option<String> {
    if found >= best {
        return None;
    }
    let advice = match loss {
        GanLoss::Bce => "try --loss wgan-gp, or a lower learning rate",
        GanLoss::WganGp => {
            "a lower learning rate or more critic steps (--set n_critic=...) may help; early in \
             training coverage also moves by itself"
        }
    };
    Some(format!(
        "warning: class coverage fell from {best} to {found} classes: the generator may be \
         collapsing onto a few modes ({advice})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coverage_warning_fits_the_objective() {
        assert_eq!(coverage_warning(9, 9, GanLoss::Bce), None);
        let bce = coverage_warning(10, 7, GanLoss::Bce).unwrap();
        assert!(
            bce.contains("from 10 to 7") && bce.contains("--loss wgan-gp"),
            "{bce}"
        );
        let wgan = coverage_warning(10, 7, GanLoss::WganGp).unwrap();
        assert!(
            !wgan.contains("--loss wgan-gp") && wgan.contains("n_critic"),
            "{wgan}"
        );
    }
}
