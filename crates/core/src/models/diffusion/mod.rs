//! The diffusion family: the DDPM noise-prediction U-Net (optionally class-conditional), its
//! configuration, and loading one from a run folder.

mod config;
mod latent;
mod unet;

use std::path::Path;

use candle_core::{Device, Result};
use candle_nn::VarBuilder;

pub use config::{TextPooling, UNetConfig};
pub use latent::{LatentCodec, VAE_DIR, unit_variance_scale};
pub use unet::{Condition, DTYPE, ResBlock, UNet, UNetInit, parameter_count, unet_init};

/// Prefix of the exponential moving average of the weights in a run's `model.safetensors`
/// (`ema.inp.weight`, ...), next to the trained weights; sampling uses it.
pub const EMA_PREFIX: &str = "ema";

/// Reads `config.json` and builds the U-Net from `model.safetensors` in `dir`: the EMA
/// weights when `ema` (what sampling uses), else the trained ones.
pub fn load_unet(dir: &Path, ema: bool, device: &Device) -> Result<UNet> {
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
    let vb = if ema { vb.pp(EMA_PREFIX) } else { vb };
    UNet::new(&cfg, vb).map_err(|e| {
        candle_core::Error::msg(format!(
            "{} does not match {}: {e}. The weights and config.json come from different models",
            weights.display(),
            dir.join("config.json").display()
        ))
    })
}

/// Parses a U-Net `config.json`.
pub fn read_config(path: &Path) -> Result<UNetConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))?;
    let cfg: UNetConfig = serde_json::from_str(&text).map_err(|e| {
        candle_core::Error::msg(format!("{} is not a U-Net config: {e}", path.display()))
    })?;
    cfg.validate()
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))?;
    Ok(cfg)
}
