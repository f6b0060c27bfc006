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
use crate::train::checkpoint::{self, TrainClock, TrainState};
use crate::train::images::check_same_data;
use crate::train::interrupt;
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

    let mut batches =
        EpochBatches::new(data.len(), cfg.train.batch_size, cfg.train.seed)?.drop_last(true)?;
    let d_steps_per_epoch = batches.steps_per_epoch();
    let steps_per_epoch = (d_steps_per_epoch / cfg.gan.n_critic as u64).max(1);
    let total = cfg.train.total_steps(steps_per_epoch);
    let t = cfg.train.optimizer_config(total);
    let eval_every = cfg.train.eval_every(steps_per_epoch);

    let mut tr = GanTrainer::new(&cfg.model, &t, &job.device)?;
    let mut state = if resuming {
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
    let mut metrics = MetricsLog::open(&run.metrics(), keep.map(|k| (k, state.metrics_bytes)))?;
    let start = state.step;
    let (pg, pd) = crate::models::gan::parameter_counts(&cfg.model);
    tracing::info!(
        "training G ({pg} parameters) and D ({pd}) with {} loss on {} images, {total} steps \
         ({steps_per_epoch} per epoch) from step {start}",
        cfg.gan.loss.as_str(),
        data.len(),
    );
    let progress = Progress::new("train", start, total);
    let clock = TrainClock::start(&state);
    let mut best_coverage = 0usize;
    let mut last = StepStats::default();
    let mut last_quality = None;
    let save = |tr: &GanTrainer, state: &mut TrainState| {
        clock.stamp(state);
        checkpoint::save(
            &run,
            &tr.weights(),
            &[("g.", &tr.opt_g), ("d.", &tr.opt_d)],
            state,
        )
    };

    for step in start..total {
        interrupt::checkpoint_on_stop(step, &progress, || {
            save(&tr, &mut state)?;
            metrics.sync()
        })?;
        // Evaluate and checkpoint (a resumed run measured its first step before the
        // checkpoint it continues from).
        if step % eval_every == 0 && !(resuming && step == start) {
            if let Some(q) = classifier {
                let qs = report::measure(&tr, &cfg, q, step)?;
                log_quality(
                    &progress,
                    &mut metrics,
                    &qs,
                    (step, cfg.gan.loss),
                    &mut best_coverage,
                )?;
                last_quality = Some(qs);
            }
            if step > start {
                save(&tr, &mut state)?;
                metrics.sync()?;
            }
            plot_losses(&run)?;
        }
        if cfg.train.sample_interval > 0 && step % cfg.train.sample_interval as u64 == 0 {
            report::write_grid(&run, &tr, &cfg, &fixed, step)?;
        }

        let t0 = Instant::now();
        let lr = schedule.at(step as usize);
        last = tr.step(&cfg, &data, &mut batches, step, lr)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        state.step = step + 1;
        state.examples_seen += (cfg.train.batch_size * cfg.gan.n_critic) as u64;
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
        progress.set(state.step);
        progress.message(format!("D {:.3} G {:.3}", last.loss_d, last.loss_g));
        if step % cfg.train.log_interval as u64 == 0 {
            let images = (cfg.train.batch_size * cfg.gan.n_critic) as f64;
            progress.println(&report::log_line(&cfg, step, &last, lr, ms, images));
            metrics.log(&serde_json::json!({
                "step": step, "loss_d": last.loss_d, "loss_g": last.loss_g,
                "d_real": last.d_real, "d_fake": last.d_fake, "gp": last.gp, "lr": lr, "ms": ms,
                "img_per_s": images / (ms / 1e3),
            }))?;
        }
    }
    progress.finish();

    // Final coverage, checkpoint, grid and model card.
    if let Some(q) = classifier
        && start < total
    {
        let qs = report::measure(&tr, &cfg, q, total)?;
        log_quality(
            &progress,
            &mut metrics,
            &qs,
            (total, cfg.gan.loss),
            &mut best_coverage,
        )?;
        last_quality = Some(qs);
    }
    save(&tr, &mut state)?;
    metrics.sync()?;
    plot_losses(&run)?;
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

fn log_quality(
    progress: &Progress,
    metrics: &mut MetricsLog,
    q: &GanQuality,
    (step, loss): (u64, GanLoss),
    best: &mut usize,
) -> Result<()> {
    let acc = q.label_accuracy.map_or(String::new(), |a| {
        format!(" | label accuracy {:.1}%", 100.0 * a)
    });
    progress.println(&format!(
        "step {step} | coverage {}/{} classes | entropy {:.2} bits{acc}",
        q.classes_found, q.n_classes, q.entropy_bits
    ));
    if let Some(warning) = coverage_warning(*best, q.classes_found, loss) {
        // Printed once, above the progress bar (not also as a log line).
        progress.println(&warning);
    }
    *best = (*best).max(q.classes_found);
    metrics.log(&serde_json::json!({
        "step": step, "coverage": q.classes_found, "n_classes": q.n_classes,
        "entropy_bits": q.entropy_bits, "label_accuracy": q.label_accuracy,
    }))
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
