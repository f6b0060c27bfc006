//! Training the reference image classifier (`muse train classifier`): the PyTorch examples
//! MNIST recipe (cross-entropy, Adam, batch 128, dropout) with a cosine decay, evaluated on
//! the test split every epoch. The loop reads like the GPT one: lr for this step, evaluate and
//! checkpoint, one step, one log line.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use super::cadence::{Cadence, EvalLog, StepLog, TrainingLoop, finish, run_steps};
use super::image_run::{ImageRun, RunRecord};
use super::images::{EpochConfig, ImageDataConfig, per_second, step_seed};
use crate::data::images::{ImageDataset, Scale, Split, chunks};
use crate::error::{Error, Result};
use crate::models::classifier::{Classifier, ClassifierConfig};
use crate::nn::Dropout;
use crate::run_dir::{OnExisting, RunDir};
use crate::train::card::{ModelCard, Outputs};
use crate::train::checkpoint::TrainState;
use crate::train::config::ScheduleKind;
use crate::train::metrics::{MetricsLog, read_metrics, series};
use crate::train::plot::{Series, line_chart};
use crate::train::progress::Progress;

/// Everything `muse train classifier` can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierRunConfig {
    /// The network (channels, image size and classes are taken from the data).
    pub model: ClassifierConfig,
    pub train: EpochConfig,
    pub data: ImageDataConfig,
    pub augment: Augment,
}

/// Data augmentation while training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Translate each training image by up to this many pixels along each axis (0: off).
    pub max_shift: usize,
}

/// The preset names `--preset` accepts.
pub const PRESETS: &[&str] = &["mnist", "fashion-mnist"];

impl ClassifierRunConfig {
    /// A named preset: `mnist` (8 epochs of Adam 1e-3 with a cosine decay, batch 128, random
    /// shifts of up to 2 pixels) or `fashion-mnist` (the same network, 10 epochs, no shifts).
    pub fn preset(name: &str) -> Result<Self> {
        let mut train = EpochConfig::adam_mnist(8);
        (train.schedule, train.min_lr) = (ScheduleKind::Cosine, 0.0);
        let mut cfg = Self {
            model: ClassifierConfig::mnist(),
            train,
            data: ImageDataConfig::mnist(),
            augment: Augment { max_shift: 2 },
        };
        match name {
            "mnist" => {}
            // Shifts cost Fashion-MNIST accuracy (its items are centred and fill the frame);
            // more epochs instead.
            "fashion-mnist" => {
                cfg.data.dataset = "fashion-mnist".into();
                cfg.augment.max_shift = 0;
                cfg.train.epochs = 10;
            }
            _ => {
                return Err(Error::usage(format!(
                    "unknown classifier preset '{name}'; choose one of: {}",
                    PRESETS.join(", ")
                )));
            }
        }
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        let mut m = self.model.clone();
        m.n_classes = m.n_classes.max(2);
        m.validate()
            .map_err(|e| Error::usage(format!("model: {e}")))
    }
}

/// What to train and where.
pub struct ClassifierTrainJob {
    pub out: PathBuf,
    pub preset: String,
    pub config: ClassifierRunConfig,
    pub on_existing: OnExisting,
    pub device: Device,
}

/// Test-split figures of a classifier.
#[derive(Clone, Debug, Serialize)]
pub struct ClassifierEval {
    /// Mean cross-entropy (nats).
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Images evaluated.
    pub images: usize,
}

/// The outcome of a finished run.
pub struct ClassifierReport {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub test: ClassifierEval,
    pub train_seconds: f64,
}

/// Trains the classifier as `job` says; [`Error::Interrupted`] after a checkpoint on Ctrl-C.
pub fn train_classifier(job: ClassifierTrainJob) -> Result<ClassifierReport> {
    let mut cfg = job.config.clone();
    cfg.validate()?;
    RunDir::check(&job.out, job.on_existing)?;
    let train = cfg.data.load(Split::Train)?;
    let test = cfg.data.load(Split::Test)?;
    if train.labels.is_none() || train.n_classes < 2 {
        return Err(Error::input(format!(
            "{} has no labels (or one class): a classifier needs images in class subfolders, \
             or mnist / fashion-mnist",
            train.record.path
        )));
    }
    (cfg.model.channels, cfg.model.image_size) = (train.channels, train.height);
    cfg.model.n_classes = train.n_classes;
    cfg.model
        .validate()
        .map_err(|e| Error::usage(format!("model: {e}")))?;
    let t = &cfg.train;
    let record = RunRecord {
        family: "classifier",
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
        |vb| Classifier::new(&cfg.model, vb),
    )?;
    let (spe, total, start) = (r.steps_per_epoch, r.total, r.state.step);
    tracing::info!(
        "classifier: {} parameters, {} train / {} test images, {total} steps ({spe} per epoch)",
        cfg.model.parameter_count(),
        train.len(),
        test.len()
    );
    let progress = Progress::new("train", start, total);
    let cadence = Cadence {
        eval_every: r.eval_every,
        sample_every: 0,
        log_every: t.log_interval as u64,
        eval_first: false,
        sample_first: false,
    };
    let mut l = ClassifierLoop {
        r: &mut r,
        cfg: &cfg,
        train: &train,
        test: &test,
        device: &job.device,
    };
    run_steps(&mut l, &cadence, start, total, &progress)?;
    let ev = finish(&mut l, start, total, &progress)?;
    write_model_card(&r.run, &job.preset, &cfg, &train, &test, &r.state, &ev)?;
    Ok(ClassifierReport {
        run_dir: r.run.root().to_path_buf(),
        steps: r.state.step,
        test: ev,
        train_seconds: r.state.train_seconds,
    })
}

/// The classifier's part of the shared cadence.
struct ClassifierLoop<'a> {
    r: &'a mut ImageRun<Classifier>,
    cfg: &'a ClassifierRunConfig,
    train: &'a ImageDataset,
    test: &'a ImageDataset,
    device: &'a Device,
}

impl TrainingLoop for ClassifierLoop<'_> {
    type Eval = ClassifierEval;

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
        let (t0, r, cfg, device) = (Instant::now(), &mut *self.r, self.cfg, self.device);
        let t = &cfg.train;
        let lr = r.schedule.at(step as usize);
        let idx = r.batches.indices(step);
        let x = self.train.shifted_batch(
            &idx,
            Scale::Unit,
            cfg.augment.max_shift,
            step_seed(t.seed, step, 2),
            device,
        )?;
        let y = self
            .train
            .labels_at(&idx, device)?
            .expect("checked labelled above");
        let mut dropout = Dropout::train(cfg.model.dropout, step_seed(t.seed, step, 1));
        let loss = r.model.loss(&x, &y, &mut dropout)?;
        let mut grads = r.opt.grads(&loss.backward()?);
        if t.grad_clip > 0.0 {
            grads.clip(t.grad_clip)?;
        }
        r.opt.step(&grads, lr)?;
        let loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        super::checkpoint::check_finite(step, "loss", loss)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        Ok(StepLog {
            examples: idx.len() as u64,
            status: format!("loss {loss:.4}"),
            line: format!(
                "step {step} | epoch {} | loss {loss:.4} | lr {lr:.1e} | {ms:.0} ms | {} img/s",
                step / r.steps_per_epoch,
                per_second(idx.len() as f64, ms)
            ),
            metrics: serde_json::json!({ "step": step, "loss": loss, "lr": lr, "ms": ms }),
        })
    }

    fn evaluate(&mut self, _step: u64) -> Result<ClassifierEval> {
        evaluate_classifier(&self.r.frozen, self.test, 500, self.device)
    }

    fn eval_log(&mut self, step: u64, ev: &ClassifierEval) -> Option<EvalLog> {
        Some(EvalLog {
            line: format!(
                "step {step} | epoch {:.2} | test loss {:.4} | test accuracy {:.2}%",
                step as f64 / self.r.steps_per_epoch as f64,
                ev.loss,
                ev.accuracy * 100.0
            ),
            metrics: serde_json::json!({
                "step": step, "val_loss": ev.loss, "val_accuracy": ev.accuracy,
            }),
            val_loss: Some(ev.loss),
        })
    }

    fn sample(&mut self, _step: u64) -> Result<()> {
        Ok(())
    }

    fn plot(&self) -> Result<()> {
        plot(&self.r.run)
    }
}

/// Test loss and accuracy over all of `ds`, in batches of `batch` (no dropout).
pub fn evaluate_classifier(
    model: &Classifier,
    ds: &ImageDataset,
    batch: usize,
    device: &Device,
) -> Result<ClassifierEval> {
    let labels = ds.labels.as_ref().ok_or_else(|| {
        Error::input(format!(
            "{} has no labels to measure accuracy against",
            ds.record.path
        ))
    })?;
    let (mut loss, mut correct) = (0.0, 0usize);
    for idx in chunks(ds.len(), batch) {
        let x = ds.batch(&idx, Scale::Unit, device)?;
        let y = ds.labels_at(&idx, device)?.expect("labelled");
        let logits = model.forward(&x, &mut Dropout::eval())?;
        let l = crate::nn::ops::cross_entropy(&logits, &y)?;
        loss += l.to_dtype(DType::F64)?.to_scalar::<f64>()? * idx.len() as f64;
        let pred: Vec<u32> = logits.argmax(1)?.to_vec1()?;
        correct += idx
            .iter()
            .zip(&pred)
            .filter(|(i, p)| labels[**i] as u32 == **p)
            .count();
    }
    let n = ds.len().max(1) as f64;
    Ok(ClassifierEval {
        loss: loss / n,
        accuracy: correct as f64 / n,
        images: ds.len(),
    })
}

fn plot(run: &RunDir) -> Result<()> {
    let records = read_metrics(&run.metrics())?;
    line_chart(
        &run.loss_plot(),
        "Classifier training loss (cross-entropy, nats)",
        "step",
        "loss",
        &[
            Series {
                name: "train (batch)",
                points: series(&records, "loss"),
            },
            Series {
                name: "test",
                points: series(&records, "val_loss"),
            },
        ],
    )
}

fn write_model_card(
    run: &RunDir,
    preset: &str,
    cfg: &ClassifierRunConfig,
    train: &ImageDataset,
    test: &ImageDataset,
    state: &TrainState,
    ev: &ClassifierEval,
) -> Result<()> {
    let m = &cfg.model;
    let model = format!(
        "- {params} parameters: conv 3x3 ({c1}) -> ReLU -> maxpool -> conv 3x3 ({c2}) -> ReLU \
         -> maxpool -> linear ({hidden}) -> ReLU -> dropout {drop} -> linear ({k})\n\
         - input {ch}x{size}x{size} in [0, 1]; PyTorch tensor names in `model.safetensors`",
        params = m.parameter_count(),
        c1 = m.conv1,
        c2 = m.conv2,
        hidden = m.hidden,
        drop = m.dropout,
        k = m.n_classes,
        ch = m.channels,
        size = m.image_size,
    );
    ModelCard::new(
        run,
        format!(
            "A small convolutional image classifier trained with Muse (preset `{preset}`). \
             Muse uses it as the yardstick of generated images: FID on its {}-wide penultimate \
             features, class coverage and conditional accuracy (`muse eval RUN --classifier \
             {dir}`), and feature distances in `muse audit RUN --classifier {dir}`.",
            m.hidden,
            dir = run.root().display()
        ),
        Outputs::Judge,
        preset,
    )
    .section("Model", model)
    .data(
        &train.record,
        &format!(
            "{} training and {} test images, {} classes",
            train.len(),
            test.len(),
            m.n_classes
        ),
    )
    .config(cfg)
    .section(
        "Training",
        format!(
            "- {} steps of batch {}, Adam lr {:e} ({:?} decay), seed {}, {:.0} s",
            state.step,
            cfg.train.batch_size,
            cfg.train.lr,
            cfg.train.schedule,
            cfg.train.seed,
            state.train_seconds
        ),
    )
    .section(
        "Metrics",
        format!(
            "Test split:\n\n| loss (nats) | accuracy |\n|---|---|\n| {:.4} | {:.2}% |",
            ev.loss,
            ev.accuracy * 100.0
        ),
    )
    .limits(format!(
        "Trained on one small dataset; it only knows its {} classes and assigns one of them to \
         any input, however unlike the training images.",
        m.n_classes
    ))
    .write(run)
}
