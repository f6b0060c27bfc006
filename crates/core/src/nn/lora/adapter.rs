//! Adapters on disk: PEFT's `adapter_config.json` and `adapter.safetensors`, read, written and
//! merged into base weights.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::super::ops::WeightLayout;
use super::{
    ADAPTER_CONFIG_FILE, ADAPTER_FILE, LoraConfig, LoraReport, PEFT_ADAPTER_FILE, PEFT_PREFIX,
    delta,
};

/// PEFT's `adapter_config.json` (the fields Muse writes; PEFT fills the rest with defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub peft_type: String,
    #[serde(default)]
    pub task_type: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f32,
    #[serde(default)]
    pub target_modules: serde_json::Value,
    #[serde(default = "bias_none")]
    pub bias: String,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub inference_mode: bool,
    #[serde(default)]
    pub init_lora_weights: serde_json::Value,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub modules_to_save: serde_json::Value,
}

fn bias_none() -> String {
    "none".into()
}

impl AdapterConfig {
    /// The config of adapters trained with `cfg` on the layers in `report`.
    pub fn new(cfg: &LoraConfig, report: &LoraReport, base: &str) -> Self {
        Self {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            r: cfg.r,
            lora_alpha: cfg.alpha,
            lora_dropout: cfg.dropout,
            target_modules: serde_json::json!(report.target_modules()),
            bias: "none".into(),
            fan_in_fan_out: report.fan_in_fan_out(),
            base_model_name_or_path: Some(base.to_string()),
            inference_mode: true,
            init_lora_weights: serde_json::json!(true),
            use_rslora: false,
            use_dora: false,
            modules_to_save: serde_json::Value::Null,
        }
    }

    /// The update scale: `alpha / r` (`alpha / sqrt(r)` with rsLoRA).
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }
}

/// A LoRA adapter read from disk: its config and, per module path, `(A, B)`.
#[derive(Clone, Debug)]
pub struct Adapter {
    pub config: AdapterConfig,
    pub modules: BTreeMap<String, (Tensor, Tensor)>,
    /// The folder it came from.
    pub dir: PathBuf,
}

impl Adapter {
    /// True when `dir` holds an adapter (config and weights).
    pub fn exists(dir: &Path) -> bool {
        dir.is_dir()
            && dir.join(ADAPTER_CONFIG_FILE).is_file()
            && (dir.join(ADAPTER_FILE).is_file() || dir.join(PEFT_ADAPTER_FILE).is_file())
    }

    /// Reads the adapter in `dir` (`adapter_config.json` and `adapter.safetensors`, or PEFT's
    /// `adapter_model.safetensors`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let msg = |m: String| candle_core::Error::Msg(m);
        let cfg_path = dir.join(ADAPTER_CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| msg(format!("{}: {e}", cfg_path.display())))?;
        let config: AdapterConfig = serde_json::from_str(&text).map_err(|e| {
            msg(format!(
                "{} is not a PEFT adapter config: {e}",
                cfg_path.display()
            ))
        })?;
        if config.peft_type != "LORA" {
            return Err(msg(format!(
                "{}: peft_type '{}' is not supported (only LORA)",
                cfg_path.display(),
                config.peft_type
            )));
        }
        if config.use_dora {
            return Err(msg(format!(
                "{}: DoRA adapters (use_dora: true) are not supported",
                cfg_path.display()
            )));
        }
        let weights = [ADAPTER_FILE, PEFT_ADAPTER_FILE]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                msg(format!(
                    "{} has adapter_config.json but no {ADAPTER_FILE}",
                    dir.display()
                ))
            })?;
        let tensors = candle_core::safetensors::load(&weights, device).map_err(|e| {
            msg(format!(
                "{} is damaged or not safetensors ({}); restore the file",
                weights.display(),
                without_backtrace(e)
            ))
        })?;
        let modules =
            group_modules(tensors).map_err(|e| msg(format!("{}: {e}", weights.display())))?;
        if modules.is_empty() {
            return Err(msg(format!("{} holds no LoRA tensors", weights.display())));
        }
        Ok(Self {
            config,
            modules,
            dir: dir.to_path_buf(),
        })
    }

    /// Folds the adapter into base weights named like the model's (`<module>.weight`):
    /// `W += scale * B A`, transposed for `(in, out)` weights (`fan_in_fan_out`). Returns the
    /// number of layers changed.
    pub fn merge_into(&self, tensors: &mut HashMap<String, Tensor>) -> Result<usize> {
        let scale = self.config.scale();
        for (module, (a, b)) in &self.modules {
            let key = format!("{module}.weight");
            let Some(w) = tensors.get(&key) else {
                return Err(candle_core::Error::Msg(format!(
                    "the adapter in {} adapts '{module}', which the base model does not have: \
                     it was trained on another model",
                    self.dir.display()
                )));
            };
            let (r, in_dim) = a.dims2()?;
            let (out_dim, r2) = b.dims2()?;
            let layout = if self.config.fan_in_fan_out {
                WeightLayout::InOut
            } else {
                WeightLayout::OutIn
            };
            let want = match layout {
                WeightLayout::InOut => [in_dim, out_dim],
                WeightLayout::OutIn => [out_dim, in_dim],
            };
            if r != r2 || w.dims() != want {
                return Err(candle_core::Error::Msg(format!(
                    "the adapter of '{module}' (A {:?}, B {:?}, fan_in_fan_out {}) does not fit \
                     the base weight {:?}: it was trained on another model",
                    a.dims(),
                    b.dims(),
                    self.config.fan_in_fan_out,
                    w.dims()
                )));
            }
            let d = delta(
                &a.to_dtype(w.dtype())?,
                &b.to_dtype(w.dtype())?,
                scale,
                layout,
            )?;
            let merged = (w + d)?;
            tensors.insert(key, merged);
        }
        Ok(self.modules.len())
    }
}

/// `base_model.model.<m>.lora_A.weight` / `lora_B.weight` -> `{m: (A, B)}`.
fn group_modules(
    tensors: HashMap<String, Tensor>,
) -> std::result::Result<BTreeMap<String, (Tensor, Tensor)>, String> {
    let mut a = HashMap::new();
    let mut b = HashMap::new();
    for (name, t) in tensors {
        let bare = name
            .strip_prefix(&format!("{PEFT_PREFIX}."))
            .unwrap_or(&name);
        if let Some(m) = bare.strip_suffix(".lora_A.weight") {
            a.insert(m.to_string(), t);
        } else if let Some(m) = bare.strip_suffix(".lora_B.weight") {
            b.insert(m.to_string(), t);
        }
    }
    let mut out = BTreeMap::new();
    for (m, ta) in a {
        let tb = b
            .remove(&m)
            .ok_or_else(|| format!("'{m}' has lora_A but no lora_B"))?;
        out.insert(m, (ta, tb));
    }
    if let Some(m) = b.keys().next() {
        return Err(format!("'{m}' has lora_B but no lora_A"));
    }
    Ok(out)
}

/// Writes `adapter.safetensors` (the adapter variables, already PEFT-named) and
/// `adapter_config.json` into `dir`.
pub fn save_adapter(
    dir: &Path,
    tensors: &HashMap<String, Tensor>,
    config: &AdapterConfig,
) -> crate::Result<()> {
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let host: Vec<(String, Tensor)> = sorted
        .into_iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let path = dir.join(ADAPTER_FILE);
    let bytes =
        safetensors::tensor::serialize(host.iter().map(|(k, t)| (k.as_str(), t)), Some(metadata))
            .map_err(|e| crate::Error::input(format!("cannot serialise {}: {e}", path.display())))?;
    crate::io::write_atomic(&path, &bytes)?;
    crate::io::write_json_atomic(&dir.join(ADAPTER_CONFIG_FILE), config)
}

fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        other => other,
    }
}
