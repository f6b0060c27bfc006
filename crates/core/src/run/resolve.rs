//! Resolving what `muse train` should run, for every family in one way: preset -> `--config`
//! TOML -> flags -> `--set`, or, on `--resume`, the run's stored configuration checked against
//! the command.
//!
//! Resuming is what a person does after a crash: the same command again with `--resume`. So
//! the preset, the TOML file and the flags may be repeated; they must describe the stored run,
//! and a real change is refused with the key that changed. `--set` is the way to change a key
//! on resume (`--set max_iters=3000`), except the model, the data, the seed and what a family
//! names as fixed at the start (a diffusion run's noise schedule, say), which a checkpoint
//! cannot change.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::run_dir::{OnExisting, RunDir, TrainingRecord};

/// A `--set` that another flag stands for, with the flag's name for messages.
#[derive(Clone, Debug)]
pub struct FlagSet {
    /// `--data`, `--beta`, ...
    pub flag: String,
    /// `data.dataset=mnist`.
    pub set: String,
}

impl FlagSet {
    pub fn new(flag: &str, key: &str, value: impl std::fmt::Display) -> Self {
        Self {
            flag: flag.into(),
            set: format!("{key}={value}"),
        }
    }
}

/// What the command line says about the configuration of a run.
#[derive(Clone, Debug, Default)]
pub struct ConfigRequest {
    /// `--preset`.
    pub preset: Option<String>,
    /// `--config FILE.toml`.
    pub file: Option<PathBuf>,
    /// Overrides other flags stand for (`--data`, `--seed`, `--max-steps`, ...).
    pub flags: Vec<FlagSet>,
    /// `--set KEY=VALUE`, in order.
    pub sets: Vec<String>,
}

/// How the run folder is to be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartMode {
    /// A new run: the folder must be missing or empty.
    #[default]
    New,
    /// `--resume`: continue the run there (or start it, when it has no checkpoint yet).
    Resume,
    /// `--force`: delete what is there and start over.
    Force,
}

/// A configuration resolved for one run folder.
#[derive(Debug)]
pub struct Resolved<C> {
    pub config: C,
    /// The preset name recorded in `training.json`.
    pub preset: String,
    /// What the training loop does with the folder.
    pub on_existing: OnExisting,
    /// The stored record of a resumed run.
    pub record: Option<TrainingRecord>,
    /// Lines for the user: keys changed on resume, a resume that starts from step 0.
    pub notes: Vec<String>,
}

/// Keys that every family's checkpoint fixes, with everything under them (and any `.seed`).
const ALWAYS_START_ONLY: &[&str] = &["model", "data"];

/// True when `--set key=...` cannot change a resumed run: `key` is, or lies under, one of
/// [`ALWAYS_START_ONLY`] or the family's `start_only` keys, or names a seed.
fn is_start_only(key: &str, start_only: &[&str]) -> bool {
    key.ends_with(".seed")
        || ALWAYS_START_ONLY.iter().chain(start_only).any(|k| {
            key.strip_prefix(k)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
}

/// Resolves the configuration of family `family` for the folder `out` (an empty `family`
/// checks no family: fine-tuning runs record their base model's). `preset` makes a named
/// preset; `default_preset` is used when none is given. `start_only` names the family's keys,
/// beyond the model, the data and the seeds, that only a new run may set.
pub fn resolve_config<C: Serialize + DeserializeOwned>(
    family: &str,
    out: &Path,
    mode: StartMode,
    req: &ConfigRequest,
    default_preset: &str,
    start_only: &[&str],
    preset: impl Fn(&str) -> Result<C>,
) -> Result<Resolved<C>> {
    let mut notes = Vec::new();
    let on_existing = match mode {
        StartMode::New => OnExisting::Refuse,
        StartMode::Force => OnExisting::Overwrite,
        StartMode::Resume => match resumable(out)? {
            Resumable::Checkpoint => OnExisting::Resume,
            Resumable::Nothing => {
                notes.push(format!(
                    "{} has no run yet: starting it from step 0",
                    out.display()
                ));
                OnExisting::Refuse
            }
            Resumable::BeforeFirstCheckpoint => {
                notes.push(format!(
                    "{} was stopped before its first checkpoint: starting it again from step 0",
                    out.display()
                ));
                OnExisting::Overwrite
            }
        },
    };
    if on_existing != OnExisting::Resume {
        let name = req.preset.as_deref().unwrap_or(default_preset);
        let base = preset(name)?;
        let sets: Vec<String> = req
            .flags
            .iter()
            .map(|f| f.set.clone())
            .chain(req.sets.iter().cloned())
            .collect();
        let config = crate::config::resolve(&base, req.file.as_deref(), &sets)?;
        return Ok(Resolved {
            config,
            preset: name.to_string(),
            on_existing,
            record: None,
            notes,
        });
    }

    let record = RunDir::open(out)?.read_training()?;
    if !family.is_empty() && record.family != family {
        return Err(Error::usage(format!(
            "{} holds a '{}' run, not a {family} run: resume it with `muse train {}`",
            out.display(),
            record.family,
            record.family
        )));
    }
    let stored_preset = record.preset.split(" (").next().unwrap_or_default();
    if let Some(p) = &req.preset
        && p != stored_preset
    {
        return Err(Error::usage(format!(
            "--preset {p}: {} was started from preset '{stored_preset}'; a resumed run keeps \
             its preset (drop --preset, or start a new run in another --out)",
            out.display()
        )));
    }
    let mut stored: Value = record.config.clone();
    // Fine-tuning runs record their base model's path beside the config.
    if let Some(o) = stored.as_object_mut() {
        o.remove("base");
    }
    // The TOML file and the other flags must describe the stored run.
    if let Some(file) = &req.file {
        let with_file = overlay(&stored, Some(file), &[])?;
        refuse_changes(&stored, &with_file, &file.display().to_string())?;
    }
    for f in &req.flags {
        let with_flag = overlay(&stored, None, std::slice::from_ref(&f.set))?;
        refuse_changes(&stored, &with_flag, &f.flag)?;
    }
    // `--set` may change the loop, not what the checkpoint holds.
    let changed = overlay(&stored, None, &req.sets)?;
    for (key, old, new) in differences(&stored, &changed) {
        if is_start_only(&key, start_only) {
            return Err(Error::usage(format!(
                "--set {key}={new}: {key} is fixed when a run starts (this run has {old}), and a \
                 resumed run keeps it; start a new run in another --out to change it"
            )));
        }
        notes.push(format!("resume: {key} {old} -> {new}"));
    }
    let config: C = serde_json::from_value(changed).map_err(|e| {
        Error::input(format!(
            "{}: training.json does not hold a {family} configuration this Muse reads ({e})",
            out.display()
        ))
    })?;
    Ok(Resolved {
        config,
        preset: record.preset.clone(),
        on_existing,
        record: Some(record),
        notes,
    })
}

/// What `--resume` finds in a folder.
enum Resumable {
    /// A checkpoint (`state.json`) to continue from.
    Checkpoint,
    /// An empty folder.
    Nothing,
    /// A folder a run started to write and was stopped in before its first checkpoint.
    BeforeFirstCheckpoint,
}

fn resumable(out: &Path) -> Result<Resumable> {
    let dir = RunDir::new(out);
    if dir.state().is_file() {
        return Ok(Resumable::Checkpoint);
    }
    if !out.exists() {
        return Err(Error::input(format!(
            "cannot resume: there is no run at {} (check --out, or start the run without \
             --resume)",
            out.display()
        )));
    }
    if !out.is_dir() {
        return Err(Error::usage(format!(
            "--out {} is a file, not a run folder",
            out.display()
        )));
    }
    let empty = std::fs::read_dir(out)
        .map_err(Error::io(out))?
        .next()
        .is_none();
    if empty {
        return Ok(Resumable::Nothing);
    }
    if dir.training().is_file() {
        return Ok(Resumable::BeforeFirstCheckpoint);
    }
    Err(Error::usage(format!(
        "cannot resume: {} holds files but no Muse run (no training.json, no state.json); \
         choose another --out",
        out.display()
    )))
}

fn overlay(base: &Value, file: Option<&Path>, sets: &[String]) -> Result<Value> {
    crate::config::resolve(base, file, sets)
}

fn refuse_changes(stored: &Value, asked: &Value, source: &str) -> Result<()> {
    match differences(stored, asked).into_iter().next() {
        None => Ok(()),
        Some((key, old, new)) => Err(Error::usage(format!(
            "{source} sets {key} = {new}, but the run being resumed has {key} = {old}; a \
             resumed run keeps its configuration (change loop keys with --set, or start a new \
             run in another --out)"
        ))),
    }
}

/// The leaves that differ between two configs, as (dotted key, old, new).
pub fn differences(old: &Value, new: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    diff_into(old, new, "", &mut out);
    out
}

fn diff_into(old: &Value, new: &Value, prefix: &str, out: &mut Vec<(String, String, String)>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match b.get(k) {
                    Some(vb) => diff_into(va, vb, &key, out),
                    None => out.push((key, va.to_string(), "nothing".into())),
                }
            }
        }
        (a, b) if !same_value(a, b) => out.push((prefix.to_string(), a.to_string(), b.to_string())),
        _ => {}
    }
}

/// Numbers compare by value, to f32 precision: `1000` and `1000.0` are the same step count,
/// and a stored f32 `0.10000000149011612` is the `0.1` the command says.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_the_changed_leaves() {
        let a = json!({"model": {"n_layer": 4}, "train": {"lr": 1e-3, "max_iters": 100}});
        let b = json!({"model": {"n_layer": 4}, "train": {"lr": 1e-3, "max_iters": 300.0}});
        assert_eq!(
            differences(&a, &b),
            vec![("train.max_iters".into(), "100".into(), "300.0".into())]
        );
        assert!(differences(&a, &a).is_empty());
    }

    #[test]
    fn start_only_keys_cover_their_sections_and_nothing_beside() {
        let family = ["schedule", "text"];
        for key in [
            "model.n_layer",
            "data.dataset",
            "train.seed",
            "schedule",
            "text.encoder",
        ] {
            assert!(is_start_only(key, &family), "{key}");
        }
        for key in [
            "train.max_steps",
            "train.lr",
            "schedules",
            "textual",
            "sample.n",
        ] {
            assert!(!is_start_only(key, &family), "{key}");
        }
    }
}
