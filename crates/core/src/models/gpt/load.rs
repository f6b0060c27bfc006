//! Opening a GPT from disk: Muse run folders and Hugging Face GPT-2 folders.

use std::path::Path;

use candle_core::{Device, Result};
use candle_nn::VarBuilder;

use super::config::GptConfig;
use super::model::{DTYPE, Gpt};

/// Reads `config.json` and `model.safetensors` from `dir` and builds the model on `device`.
///
/// Accepts both Muse's tensor names (`transformer.h.0...`, as `GPT2LMHeadModel` saves them)
/// and the bare names of the original GPT-2 upload (`h.0...`).
pub fn load_gpt(dir: &Path, device: &Device) -> Result<Gpt> {
    let cfg = read_config(&dir.join("config.json"))?;
    let weights = dir.join("model.safetensors");
    let names = tensor_names(&weights)?;
    // SAFETY: the file is memory-mapped read-only and not modified while the model lives.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DTYPE, device)? };
    let vb = if names.iter().any(|n| n.starts_with("transformer.")) {
        vb
    } else {
        vb.rename_f(|name: &str| {
            name.strip_prefix("transformer.")
                .unwrap_or(name)
                .to_string()
        })
    };
    Gpt::new(&cfg, vb).map_err(|e| {
        candle_core::Error::msg(format!(
            "{} does not match {}: {e}. The weights and config.json come from different models",
            weights.display(),
            dir.join("config.json").display()
        ))
    })
}

/// Parses a GPT-2 `config.json`.
pub fn read_config(path: &Path) -> Result<GptConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        candle_core::Error::msg(format!("{} is not valid JSON: {e}", path.display()))
    })?;
    GptConfig::from_hf_json(&value)
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))
}

/// Writes `config.json` for `cfg` into `dir`.
pub fn save_config(dir: &Path, cfg: &GptConfig) -> crate::Result<()> {
    crate::io::write_json_atomic(&dir.join("config.json"), &cfg.to_hf_json())
}

/// The tensor names in a safetensors file, with a clear error for a damaged file.
fn tensor_names(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path)
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))?;
    // SAFETY: read-only mapping of a file we do not modify.
    let mmap = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| candle_core::Error::msg(format!("{}: {e}", path.display())))?;
    let st = safetensors::SafeTensors::deserialize(&mmap).map_err(|e| {
        candle_core::Error::msg(format!(
            "{} is damaged or truncated ({e}); re-run training or restore the file",
            path.display()
        ))
    })?;
    Ok(st.names().into_iter().map(str::to_string).collect())
}
