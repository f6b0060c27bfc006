//! The run directory: the folder every `muse train` writes and every other command reads.
//!
//! ```text
//! runs/NAME/
//!   config.json  model.safetensors  tokenizer.json  training.json
//!   state.json  optimizer.safetensors  metrics.jsonl  loss.svg  samples/  MODEL_CARD.md
//! ```
//! This module knows the file names and the `training.json` record; what goes inside the
//! weights belongs to each model family.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Paths inside one run directory. A handle from [`RunDir::prepare`] also holds the folder's
/// write lock until its last clone is dropped.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
    lock: Option<Arc<RunLock>>,
}

/// `.lock` in a run folder: the process id of the one training that writes it. Removed when
/// dropped; a lock whose process is gone is taken over.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `root` (which must exist), or says which process holds it.
    fn take(root: &Path) -> Result<Self> {
        let path = root.join(".lock");
        if let Some(pid) = Self::holder(root) {
            return Err(Self::held(root, pid));
        }
        if path.is_file() {
            tracing::info!(
                "{}: taking over a lock left by a process that no longer runs",
                root.display()
            );
        }
        std::fs::write(&path, std::process::id().to_string()).map_err(Error::io(&path))?;
        Ok(Self { path })
    }

    /// The id of another live process that holds the lock of `root`.
    pub fn holder(root: &Path) -> Option<u32> {
        let text = std::fs::read_to_string(root.join(".lock")).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        (pid != std::process::id() && process_alive(pid)).then_some(pid)
    }

    fn held(root: &Path, pid: u32) -> Error {
        Error::usage(format!(
            "{} is being written by another Muse process (pid {pid}): wait for it to finish, \
             stop it, or choose another --out",
            root.display()
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` still runs (Linux: its `/proc` entry, not a zombie; elsewhere
/// assumed alive, so a stale lock there needs removing by hand).
fn process_alive(pid: u32) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

/// What `training.json` records: enough to reproduce the run and to reopen it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// Model family: `gpt`, `vae`, `gan`, ...
    pub family: String,
    /// The preset the run started from.
    pub preset: String,
    /// The resolved configuration (family-specific), exactly as trained.
    pub config: serde_json::Value,
    /// The seed of weights, data order, dropout and sampling.
    pub seed: u64,
    /// Dataset name (registry name or file path) and the sha256 of its main file.
    pub dataset: DatasetRecord,
    /// Muse version that wrote the run.
    pub muse_version: String,
}

/// The data a run was trained on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub name: String,
    pub path: String,
    pub sha256: String,
}

/// How to treat an existing output folder when starting a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExisting {
    /// Refuse: the folder must not exist or be empty.
    Refuse,
    /// Continue the run found there.
    Resume,
    /// Delete what is there and start over.
    Overwrite,
}

/// For a folder that holds GGUF files instead: the files to pass (a GGUF model is a file,
/// not a folder).
fn gguf_hint(dir: &Path) -> String {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
        })
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    match files.as_slice() {
        [] => String::new(),
        [one] => format!("; it holds a GGUF model: pass the file, {one}"),
        many => format!("; it holds GGUF models: pass one file, e.g. {}", many[0]),
    }
}

impl RunDir {
    /// A handle on `root`; nothing is checked or created.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            lock: None,
        }
    }

    /// Opens an existing run for reading: the folder and its `training.json` or `config.json`
    /// must exist.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let dir = Self::new(root);
        if !dir.root.is_dir() {
            return Err(Error::input(format!(
                "no run directory at {}: pass the folder that `muse train --out` wrote",
                dir.root.display()
            )));
        }
        if !dir.config().is_file() && !dir.training().is_file() {
            return Err(Error::input(format!(
                "{} is not a Muse run or model folder: it has neither config.json nor \
                 training.json{}",
                dir.root.display(),
                gguf_hint(&dir.root)
            )));
        }
        Ok(dir)
    }

    /// Checks, without touching anything, that `root` may be used as `mode` says: a new run
    /// needs a missing or empty folder, a resumed one needs a checkpoint.
    pub fn check(root: &Path, mode: OnExisting) -> Result<()> {
        let dir = Self::new(root);
        if let Some(pid) = RunLock::holder(root) {
            return Err(RunLock::held(root, pid));
        }
        let occupied = dir.root.is_dir()
            && std::fs::read_dir(&dir.root)
                .map_err(Error::io(&dir.root))?
                .next()
                .is_some();
        match mode {
            OnExisting::Refuse if occupied => Err(Error::usage(format!(
                "{} already exists and is not empty: pass --resume to continue that run, \
                 --force to overwrite it, or choose another --out",
                dir.root.display()
            ))),
            OnExisting::Resume if !dir.state().is_file() => Err(Error::usage(format!(
                "cannot resume: {} has no checkpoint (state.json); start a new run without \
                 --resume",
                dir.state().display()
            ))),
            _ => Ok(()),
        }
    }

    /// Prepares the folder for a new or resumed run: checks it ([`RunDir::check`]), empties it
    /// for `Overwrite`, creates it and takes its write lock (held by the returned handle and
    /// its clones). Call once the inputs are known to be good, so a failed start leaves
    /// nothing behind.
    pub fn prepare(root: impl Into<PathBuf>, mode: OnExisting) -> Result<Self> {
        let mut dir = Self::new(root);
        Self::check(&dir.root, mode)?;
        if mode == OnExisting::Overwrite && dir.root.is_dir() {
            std::fs::remove_dir_all(&dir.root).map_err(Error::io(&dir.root))?;
        }
        std::fs::create_dir_all(dir.samples()).map_err(Error::io(dir.samples()))?;
        dir.lock = Some(Arc::new(RunLock::take(&dir.root)?));
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `config.json`: model architecture (Hugging Face field names where they exist).
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// `model.safetensors`: the weights.
    pub fn weights(&self) -> PathBuf {
        self.root.join("model.safetensors")
    }
    /// `tokenizer.json`: the HF tokenizer of a text model.
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }
    /// `training.json`: family, preset, resolved config, seed, dataset.
    pub fn training(&self) -> PathBuf {
        self.root.join("training.json")
    }
    /// `state.json`: step, best validation loss, timing: where `--resume` continues.
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// `optimizer.safetensors`: optimizer moments.
    pub fn optimizer(&self) -> PathBuf {
        self.root.join("optimizer.safetensors")
    }
    /// `metrics.jsonl`: one JSON object per log line.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// `loss.svg`: the loss curves.
    pub fn loss_plot(&self) -> PathBuf {
        self.root.join("loss.svg")
    }
    /// `samples/`: what the model generated while training.
    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }
    /// `MODEL_CARD.md`.
    pub fn model_card(&self) -> PathBuf {
        self.root.join("MODEL_CARD.md")
    }

    /// Writes `training.json` of a new run: its family, preset, resolved config, seed and
    /// data, with this Muse version.
    pub fn write_training<C: Serialize>(
        &self,
        family: &str,
        preset: &str,
        config: &C,
        seed: u64,
        dataset: &DatasetRecord,
    ) -> Result<()> {
        let record = TrainingRecord {
            family: family.into(),
            preset: preset.into(),
            config: serde_json::to_value(config).map_err(|e| Error::usage(e.to_string()))?,
            seed,
            dataset: dataset.clone(),
            muse_version: env!("CARGO_PKG_VERSION").into(),
        };
        crate::io::write_json_atomic(&self.training(), &record)
    }

    /// Records the configuration a resumed run continues with (keys changed by `--set` on
    /// resume) in `training.json`, keeping the rest of the record (and a fine-tuning run's
    /// `base`).
    pub fn record_resumed_config<C: Serialize>(&self, config: &C) -> Result<()> {
        let mut record = self.read_training()?;
        let mut value = serde_json::to_value(config).map_err(|e| Error::usage(e.to_string()))?;
        if let (Some(new), Some(base)) = (value.as_object_mut(), record.config.get("base")) {
            new.insert("base".into(), base.clone());
        }
        if value == record.config {
            return Ok(());
        }
        record.config = value;
        crate::io::write_json_atomic(&self.training(), &record)
    }

    /// Reads `training.json`.
    pub fn read_training(&self) -> Result<TrainingRecord> {
        crate::io::read_json(&self.training())
    }

    /// The model family of this run, from `training.json`, else from `config.json`'s
    /// `model_type` (a Hugging Face folder).
    pub fn family(&self) -> Result<String> {
        if self.training().is_file() {
            return Ok(self.read_training()?.family);
        }
        let config: serde_json::Value = crate::io::read_json(&self.config())?;
        match config.get("model_type").and_then(|v| v.as_str()) {
            Some(t) => Ok(t.to_string()),
            None => Err(Error::input(format!(
                "{} has no model_type: cannot tell which model family it holds; set \
                 \"model_type\" (gpt2 or llama for a text model) or pass the folder `muse \
                 train` wrote",
                self.config().display()
            ))),
        }
    }
}
