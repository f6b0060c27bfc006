//! How the one-optimizer image loops (classifier, VAE) open a run and keep it: weights under
//! PyTorch's default initialisation or from the checkpoint, Adam(W), epoch batches, schedule,
//! metrics log, checkpoints that add up training time, and the stop on Ctrl-C.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;

use super::checkpoint::{self, TrainClock, TrainState};
use super::images::{EpochConfig, check_same_data};
use super::metrics::MetricsLog;
use super::progress::Progress;
use super::{AdamW, LrSchedule, interrupt};
use crate::data::images::{EpochBatches, ImageDataset};
use crate::error::{Error, Result};
use crate::nn::conv::torch_default_init;
use crate::nn::init_varmap;
use crate::run_dir::{OnExisting, RunDir};

/// What a new run writes before its first step: the model config and `training.json`.
pub struct RunRecord<'a, M: Serialize, C: Serialize> {
    /// `classifier`, `vae`.
    pub family: &'a str,
    pub preset: &'a str,
    pub model: &'a M,
    /// The whole run config.
    pub config: &'a C,
}

/// An image run in progress, at step `state.step` of `total`.
pub struct ImageRun<M> {
    pub run: RunDir,
    /// The model whose forward records a graph for the variables.
    pub model: M,
    /// The same weights without autograd tracking, for evaluation and samples.
    pub frozen: M,
    pub varmap: VarMap,
    pub opt: AdamW,
    pub batches: EpochBatches,
    pub steps_per_epoch: u64,
    pub total: u64,
    /// Evaluate and checkpoint every this many steps.
    pub eval_every: u64,
    pub schedule: LrSchedule,
    pub metrics: MetricsLog,
    pub state: TrainState,
    clock: TrainClock,
}

impl<M> ImageRun<M> {
    /// Prepares the run folder `out` and the model `build` makes: fresh weights and run files,
    /// or (resuming) the checkpoint's weights, moments and state, which must have been trained
    /// on `train`.
    #[allow(clippy::too_many_arguments)]
    pub fn open<MC: Serialize, C: Serialize, E>(
        out: &std::path::Path,
        on_existing: OnExisting,
        t: &EpochConfig,
        train: &ImageDataset,
        record: RunRecord<MC, C>,
        device: &Device,
        build: impl Fn(VarBuilder<'static>) -> std::result::Result<M, E>,
    ) -> Result<Self>
    where
        Error: From<E>,
    {
        let run = RunDir::prepare(out, on_existing)?;
        let mut varmap = VarMap::new();
        let model = build(VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        init_varmap(&varmap, t.seed, torch_default_init(&varmap))?;
        let batches = EpochBatches::new(train.len(), t.batch_size, t.seed)?;
        let steps_per_epoch = batches.steps_per_epoch();
        let total = t.total_steps(steps_per_epoch);
        let opt_cfg = t.optimizer_config(total);
        let mut opt = AdamW::new(&varmap, &opt_cfg)?;
        let resuming = on_existing == OnExisting::Resume;
        let state = if resuming {
            let s = checkpoint::load(&run, &mut varmap, &mut [("", &mut opt)])?;
            check_same_data(&run, &train.record)?;
            run.record_resumed_config(record.config)?;
            s
        } else {
            crate::io::write_json_atomic(&run.config(), record.model)?;
            run.write_training(
                record.family,
                record.preset,
                record.config,
                t.seed,
                &train.record,
            )?;
            TrainState::default()
        };
        let frozen = build(crate::train::gpt::detached(&varmap, device)?)?;
        let metrics = MetricsLog::open(
            &run.metrics(),
            resuming.then_some((state.step, state.metrics_bytes)),
        )?;
        Ok(Self {
            run,
            model,
            frozen,
            varmap,
            opt,
            batches,
            steps_per_epoch,
            total,
            eval_every: t.eval_every(steps_per_epoch),
            schedule: LrSchedule::from_config(&opt_cfg),
            metrics,
            clock: TrainClock::start(&state),
            state,
        })
    }

    /// Writes a checkpoint (weights, moments, state with the training time so far).
    pub fn save(&mut self) -> Result<()> {
        self.clock.stamp(&mut self.state);
        checkpoint::save(
            &self.run,
            &checkpoint::varmap_tensors(&self.varmap),
            &[("", &self.opt)],
            &self.state,
        )
    }

    /// On Ctrl-C: saves a checkpoint, says so, and returns [`Error::Interrupted`].
    pub fn stop_if_requested(&mut self, step: u64, progress: &Progress) -> Result<()> {
        interrupt::checkpoint_on_stop(step, progress, || self.save())
    }
}
