//! The rhythm every training loop shares, written once: stop and checkpoint on Ctrl-C,
//! evaluate (then checkpoint, flush the metrics and redraw the plots) every N steps, write
//! samples every M steps, take one step, move the progress bar, and every K steps print the
//! log line and append it to `metrics.jsonl`; at the end, the final evaluation and checkpoint.
//!
//! A family supplies what differs through [`TrainingLoop`]: its step, its evaluation, its
//! samples, its plots and where its state and checkpoint live. Everything a loop writes goes
//! through here in the same order, which is what makes resume exact in every family.

use serde_json::Value;

use super::checkpoint::TrainState;
use super::interrupt;
use super::metrics::MetricsLog;
use super::progress::Progress;
use crate::error::Result;

/// How often the shared points of a loop come (0: never).
#[derive(Clone, Copy, Debug)]
pub struct Cadence {
    pub eval_every: u64,
    pub sample_every: u64,
    pub log_every: u64,
    /// Evaluate before the first step of a new run too (the text loops report the loss they
    /// start from); a resumed run never repeats the evaluation of its first step.
    pub eval_first: bool,
    /// Write samples before the first step too (the GAN's grid of its untrained generator).
    pub sample_first: bool,
}

impl Cadence {
    fn eval_due(&self, step: u64, start: u64) -> bool {
        self.eval_every > 0
            && step.is_multiple_of(self.eval_every)
            && (step > start || (self.eval_first && step == 0))
    }

    fn sample_due(&self, step: u64) -> bool {
        self.sample_every > 0
            && step.is_multiple_of(self.sample_every)
            && (step > 0 || self.sample_first)
    }

    fn log_due(&self, step: u64) -> bool {
        self.log_every > 0 && step.is_multiple_of(self.log_every)
    }
}

/// One optimizer step, said for the progress bar, the log and `metrics.jsonl`.
pub struct StepLog {
    /// Examples (images, tokens, pairs) the step consumed.
    pub examples: u64,
    /// A few words beside the progress bar: "loss 1.234".
    pub status: String,
    pub line: String,
    pub metrics: Value,
}

/// An evaluation, said for the log and `metrics.jsonl`.
pub struct EvalLog {
    pub line: String,
    pub metrics: Value,
    /// The validation loss it measured, kept in the checkpoint state.
    pub val_loss: Option<f64>,
}

/// What a family's loop supplies to the shared cadence.
pub trait TrainingLoop {
    /// What an evaluation measures (kept by the family for its report and model card).
    type Eval;

    /// The run's counters, saved with each checkpoint.
    fn state(&mut self) -> &mut TrainState;
    fn metrics(&mut self) -> &mut MetricsLog;
    /// Writes a checkpoint: weights, optimizer moments and [`Self::state`].
    fn save(&mut self) -> Result<()>;
    /// One optimizer step (checking that its loss is finite).
    fn step(&mut self, step: u64) -> Result<StepLog>;
    /// Evaluates the model after `step` steps.
    fn evaluate(&mut self, step: u64) -> Result<Self::Eval>;
    /// The log line and metrics record of an evaluation (`None`: nothing to log, as for a
    /// GAN trained without a reference classifier).
    fn eval_log(&mut self, step: u64, eval: &Self::Eval) -> Option<EvalLog>;
    /// Samples after `step` steps (grids, text), into the run's `samples/`.
    fn sample(&mut self, step: u64) -> Result<()>;
    /// Redraws the run's plots from `metrics.jsonl`.
    fn plot(&self) -> Result<()>;
}

/// Runs steps `start..total` of `l` at cadence `c`.
pub fn run_steps<L: TrainingLoop>(
    l: &mut L,
    c: &Cadence,
    start: u64,
    total: u64,
    progress: &Progress,
) -> Result<()> {
    for step in start..total {
        interrupt::checkpoint_on_stop(step, progress, || {
            l.save()?;
            l.metrics().sync()
        })?;
        if c.eval_due(step, start) {
            let eval = l.evaluate(step)?;
            record_eval(l, step, &eval, progress)?;
            if step > start {
                l.save()?;
                l.metrics().sync()?;
            }
            l.plot()?;
        }
        if c.sample_due(step) {
            l.sample(step)?;
        }
        let log = l.step(step)?;
        let state = l.state();
        state.step = step + 1;
        state.examples_seen += log.examples;
        progress.set(step + 1);
        progress.message(log.status);
        if c.log_due(step) {
            progress.println(&log.line);
            l.metrics().log(&log.metrics)?;
        }
    }
    progress.finish();
    Ok(())
}

/// The end of a run: the final evaluation (logged only when this session trained, so a
/// resumed complete run changes nothing), checkpoint, metrics and plots. Returns the
/// evaluation for the report.
pub fn finish<L: TrainingLoop>(
    l: &mut L,
    start: u64,
    total: u64,
    progress: &Progress,
) -> Result<L::Eval> {
    let eval = l.evaluate(total)?;
    if start < total {
        record_eval(l, total, &eval, progress)?;
    }
    l.save()?;
    l.metrics().sync()?;
    l.plot()?;
    Ok(eval)
}

fn record_eval<L: TrainingLoop>(
    l: &mut L,
    step: u64,
    eval: &L::Eval,
    progress: &Progress,
) -> Result<()> {
    let Some(log) = l.eval_log(step, eval) else {
        return Ok(());
    };
    if let Some(v) = log.val_loss {
        l.state().record_val_loss(v);
    }
    progress.println(&log.line);
    l.metrics().log(&log.metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluations_come_every_n_steps_and_never_twice_at_a_resumed_step() {
        let c = Cadence {
            eval_every: 5,
            sample_every: 0,
            log_every: 1,
            eval_first: true,
            sample_first: false,
        };
        let due: Vec<u64> = (0..12).filter(|&s| c.eval_due(s, 0)).collect();
        assert_eq!(due, [0, 5, 10]);
        let resumed: Vec<u64> = (5..12).filter(|&s| c.eval_due(s, 5)).collect();
        assert_eq!(resumed, [10]);
        let image = Cadence {
            eval_first: false,
            ..c
        };
        assert!(!image.eval_due(0, 0) && image.eval_due(5, 0));
        assert!(!c.sample_due(0));
    }
}
