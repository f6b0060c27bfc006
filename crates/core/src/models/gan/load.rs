//! A generator and discriminator pair, and opening one from a run folder.

use std::path::Path;

use candle_core::{Device, Result};
use candle_nn::VarBuilder;

use super::config::GanConfig;
use super::model::{DTYPE, Discriminator, Generator};

/// Both networks of a GAN, `g.*` and `d.*` under one VarBuilder.
#[derive(Clone, Debug)]
pub struct Gan {
    pub cfg: GanConfig,
    pub g: Generator,
    pub d: Discriminator,
}

impl Gan {
    pub fn new(cfg: &GanConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            g: Generator::new(cfg, vb.pp("g"))?,
            d: Discriminator::new(cfg, vb.pp("d"))?,
        })
    }
}

/// Reads `config.json` and `model.safetensors` from `dir` and builds the GAN on `device`.
pub fn load_gan(dir: &Path, device: &Device) -> Result<Gan> {
    let cfg = read_config(&dir.join("config.json"))?;
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        candle_core::bail!(
            "{} is missing: the run has no checkpoint yet (train it first)",
            weights.display()
        )
    }
    // SAFETY: the file is memory-mapped read-only and not modified while the model lives.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DTYPE, device)? };
    Gan::new(&cfg, vb).map_err(|e| {
        candle_core::Error::msg(format!(
            "{} does not match {}: {e}. The weights and config.json come from different models",
            weights.display(),
            dir.join("config.json").display()
        ))
    })
}

/// Parses a GAN `config.json`.
pub fn read_config(path: &Path) -> Result<GanConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))?;
    let cfg: GanConfig = serde_json::from_str(&text).map_err(|e| {
        candle_core::Error::msg(format!("{} is not a GAN config: {e}", path.display()))
    })?;
    cfg.validate()
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))?;
    Ok(cfg)
}

/// Writes `config.json` for `cfg` into `dir`.
pub fn save_config(dir: &Path, cfg: &GanConfig) -> crate::Result<()> {
    crate::io::write_json_atomic(&dir.join("config.json"), cfg)
}
