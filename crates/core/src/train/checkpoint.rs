//! Checkpoints: `model.safetensors`, `optimizer.safetensors` and `state.json`, written so that
//! a run killed at any moment can be resumed exactly.
//!
//! Each file is replaced atomically, and all three carry the step they belong to. Before a new
//! checkpoint is written, the current trio is hard-linked into `.prev/` (no copy); if a kill
//! lands between two of the three renames, loading finds the steps disagree and falls back to
//! that previous, complete trio.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::optimizer::AdamW;
use crate::error::{Error, Result};
use crate::run_dir::RunDir;

/// Where a run stands: what `--resume` needs besides weights and moments. Batches and dropout
/// masks are functions of (seed, step), so the step is the data cursor and RNG state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Best validation loss seen at an evaluation.
    pub best_val_loss: Option<f64>,
    /// Last validation loss.
    pub last_val_loss: Option<f64>,
    /// Training examples (tokens for text) consumed.
    pub examples_seen: u64,
    /// Seconds spent training, over all sessions.
    pub train_seconds: f64,
    /// Bytes of `metrics.jsonl` when the checkpoint was taken: a resumed run cuts the log
    /// there, so lines written after the checkpoint are not repeated. Absent in checkpoints
    /// written before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_bytes: Option<u64>,
}

impl TrainState {
    /// Notes a validation loss as the last and, when lower, the best.
    pub fn record_val_loss(&mut self, loss: f64) {
        self.last_val_loss = Some(loss);
        self.best_val_loss = Some(self.best_val_loss.map_or(loss, |b| b.min(loss)));
    }
}

/// Training time over sessions: what the checkpoint held when this session began, plus the
/// time since.
pub struct TrainClock {
    before: f64,
    session: std::time::Instant,
}

impl TrainClock {
    /// Starts this session's clock on top of `state`'s time.
    pub fn start(state: &TrainState) -> Self {
        Self {
            before: state.train_seconds,
            session: std::time::Instant::now(),
        }
    }

    /// Writes the total so far into `state` (before it is saved or reported).
    pub fn stamp(&self, state: &mut TrainState) {
        state.train_seconds = self.before + self.session.elapsed().as_secs_f64();
    }
}

const STEP_KEY: &str = "muse.step";

/// Serialises named tensors with the step in the safetensors metadata and writes atomically.
pub fn write_safetensors(path: &Path, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    // Tensors on an accelerator are copied to the host once here.
    let host: Vec<(String, Tensor)> = sorted
        .into_iter()
        .map(|(k, t)| {
            Ok((
                k.clone(),
                t.to_device(&candle_core::Device::Cpu)?.contiguous()?,
            ))
        })
        .collect::<Result<_>>()?;
    let metadata: HashMap<String, String> = [
        (STEP_KEY.to_string(), step.to_string()),
        ("format".to_string(), "pt".to_string()),
    ]
    .into();
    let bytes =
        safetensors::tensor::serialize(host.iter().map(|(k, t)| (k.as_str(), t)), Some(metadata))
            .map_err(|e| Error::input(format!("cannot serialise {}: {e}", path.display())))?;
    crate::io::write_atomic(path, &bytes)
}

/// The step recorded in a safetensors file written by [`write_safetensors`].
fn recorded_step(path: &Path) -> Option<u64> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: read-only mapping; only the header is parsed.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    meta.metadata().as_ref()?.get(STEP_KEY)?.parse().ok()
}

/// The model weights of a `VarMap` as named tensors.
pub fn varmap_tensors(varmap: &VarMap) -> HashMap<String, Tensor> {
    let data = varmap.data().lock().expect("varmap lock is never poisoned");
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

/// Saves weights, the moments of each optimizer (named: `[("", &opt)]`, or
/// `[("g.", &opt_g), ("d.", &opt_d)]` for a GAN) and the state.
pub fn save(
    run: &RunDir,
    weights: &HashMap<String, Tensor>,
    optimizers: &[(&str, &AdamW)],
    state: &TrainState,
) -> Result<()> {
    save_to(run, &run.weights(), weights, optimizers, state)
}

/// [`save`] with the trained weights in `weights_file` instead of `model.safetensors` (a
/// LoRA run trains `adapter.safetensors` and leaves the base weights alone).
pub fn save_to(
    run: &RunDir,
    weights_file: &Path,
    weights: &HashMap<String, Tensor>,
    optimizers: &[(&str, &AdamW)],
    state: &TrainState,
) -> Result<()> {
    write_checkpoint(run, weights_file, weights, optimizers, state).map_err(|e| match e {
        // Every file is written aside and renamed, so a failed write leaves the last
        // checkpoint as it was.
        Error::Io { path, source } => Error::input(format!(
            "cannot write the checkpoint at step {} ({}: {source}); the last good checkpoint \
             in {} is kept: make room or fix the folder's permissions, then run the same \
             command with --resume",
            state.step,
            path.display(),
            run.root().display()
        )),
        other => other,
    })
}

fn write_checkpoint(
    run: &RunDir,
    weights_file: &Path,
    weights: &HashMap<String, Tensor>,
    optimizers: &[(&str, &AdamW)],
    state: &TrainState,
) -> Result<()> {
    keep_previous(run, weights_file)?;
    let mut moments = HashMap::new();
    for (prefix, opt) in optimizers {
        opt.state_tensors(prefix, &mut moments)?;
    }
    write_safetensors(&run.optimizer(), &moments, state.step)?;
    write_safetensors(weights_file, weights, state.step)?;
    // Log lines reach the file as they are written (unbuffered), so its length now is what
    // the log held at this checkpoint.
    let mut state = state.clone();
    state.metrics_bytes = std::fs::metadata(run.metrics()).ok().map(|m| m.len());
    crate::io::write_json_atomic(&run.state(), &state)
}

/// Restores weights into `varmap`, moments into each named optimizer (as given to [`save`]),
/// and returns the state.
pub fn load(
    run: &RunDir,
    varmap: &mut VarMap,
    optimizers: &mut [(&str, &mut AdamW)],
) -> Result<TrainState> {
    load_from(run, &run.weights(), varmap, optimizers)
}

/// [`load`] for a checkpoint saved with [`save_to`] into `weights_file`.
pub fn load_from(
    run: &RunDir,
    weights_file: &Path,
    varmap: &mut VarMap,
    optimizers: &mut [(&str, &mut AdamW)],
) -> Result<TrainState> {
    let prev = run.root().join(".prev");
    let current = (weights_file.to_path_buf(), run.optimizer(), run.state());
    let backup = (
        prev.join(weights_file.file_name().expect("weight files have names")),
        prev.join("optimizer.safetensors"),
        prev.join("state.json"),
    );
    let (w, o, s) = if consistent(&current.0, &current.1, &current.2) {
        current
    } else if consistent(&backup.0, &backup.1, &backup.2) {
        tracing::warn!("the last checkpoint was cut short; resuming from the one before it");
        backup
    } else {
        return Err(Error::input(format!(
            "the checkpoint in {} is incomplete or damaged (model, optimizer and state.json \
             disagree); start a new run with --force",
            run.root().display()
        )));
    };
    varmap.load(&w).map_err(|e| {
        Error::input(format!(
            "{} cannot be loaded into this model: {e}",
            w.display()
        ))
    })?;
    let saved = candle_core::safetensors::load(&o, &candle_core::Device::Cpu).map_err(|e| {
        Error::input(format!(
            "{} cannot be read ({e}); the checkpoint is damaged",
            o.display()
        ))
    })?;
    for (prefix, opt) in optimizers.iter_mut() {
        opt.load_state(&saved, prefix, &o)?;
    }
    crate::io::read_json(&s)
}

/// True when all three files exist and record the same step.
fn consistent(weights: &Path, optimizer: &Path, state: &Path) -> bool {
    let Ok(st) = crate::io::read_json::<TrainState>(state) else {
        return false;
    };
    recorded_step(weights) == Some(st.step) && recorded_step(optimizer) == Some(st.step)
}

/// Hard-links the current checkpoint files into `.prev/` before they are replaced.
///
/// Only a complete trio is kept. After a resume from `.prev/` (the save before the kill was cut
/// short), the current files disagree until this run's first save is complete; linking them
/// then would replace the only complete checkpoint with a mixed one, and a kill during that
/// save left nothing to resume from (seen as a random failure of the CLI's crash-safety test).
fn keep_previous(run: &RunDir, weights_file: &Path) -> Result<()> {
    if !run.state().is_file() || !consistent(weights_file, &run.optimizer(), &run.state()) {
        return Ok(());
    }
    let prev = run.root().join(".prev");
    std::fs::create_dir_all(&prev).map_err(Error::io(&prev))?;
    for src in [weights_file.to_path_buf(), run.optimizer(), run.state()] {
        let name = src.file_name().expect("checkpoint files have names");
        let dst = prev.join(name);
        let _ = std::fs::remove_file(&dst);
        if src.is_file() {
            std::fs::hard_link(&src, &dst)
                .or_else(|_| std::fs::copy(&src, &dst).map(|_| ()))
                .map_err(Error::io(&dst))?;
        }
    }
    Ok(())
}

/// Stops a run whose loss (or gradient norm) stopped being a number, before anything is
/// saved from that state: the last checkpoint on disk stays the last finite one.
pub fn check_finite(step: u64, what: &str, value: f64) -> Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    Err(crate::error::Error::input(format!(
        "training diverged at step {step}: the {what} is {value}; nothing was saved from this \
         state, so the last checkpoint is the last finite one. Lower the learning rate (for \
         example `--resume --set lr=...` with a tenth of it) or start again"
    )))
}
