//! Opening an encoder-decoder model from a run folder: `config.json` (the serde form of
//! [`Seq2SeqConfig`]) and `model.safetensors`.

use std::path::Path;

use candle_core::{Device, Result};
use candle_nn::VarBuilder;

use super::config::Seq2SeqConfig;
use super::model::{DTYPE, Seq2Seq};

/// Reads `config.json` and `model.safetensors` from `dir` and builds the model on `device`.
pub fn load_seq2seq(dir: &Path, device: &Device) -> Result<Seq2Seq> {
    let cfg = read_config(&dir.join("config.json"))?;
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        candle_core::bail!(
            "{} is missing: the run has no checkpoint yet (train it further or resume it)",
            weights.display()
        );
    }
    // SAFETY: the file is memory-mapped read-only and not modified while the model lives.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DTYPE, device)? };
    Seq2Seq::new(&cfg, vb).map_err(|e| {
        candle_core::Error::msg(format!(
            "{} does not match {}: {e}. The weights and config.json come from different models",
            weights.display(),
            dir.join("config.json").display()
        ))
    })
}

/// Parses a seq2seq `config.json` and checks it.
pub fn read_config(path: &Path) -> Result<Seq2SeqConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))?;
    let cfg: Seq2SeqConfig = serde_json::from_str(&text).map_err(|e| {
        candle_core::Error::msg(format!(
            "{} is not a seq2seq config.json: {e}",
            path.display()
        ))
    })?;
    cfg.validate()
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))?;
    Ok(cfg)
}

/// Writes `config.json` for `cfg` into `dir`.
pub fn save_config(dir: &Path, cfg: &Seq2SeqConfig) -> crate::Result<()> {
    crate::io::write_json_atomic(&dir.join("config.json"), cfg)
}
