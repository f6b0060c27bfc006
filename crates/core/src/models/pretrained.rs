//! Pretrained text models from disk, whatever their family: Hugging Face folders
//! (`model_type` gpt2 or llama), Muse runs (the same layout), llama2.c checkpoints (`.bin`)
//! and, widened to f32, GGUF files (llama and gpt2).
//!
//! Two ways in: [`load_pretrained`] for generation (weights as plain tensors), and
//! [`load_trainable`] for further training (the weights become the variables of a `VarMap`,
//! so an optimizer can update them and `checkpoint::save` can write them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde_json::Value;

use super::CausalLm;
use super::gpt::{Gpt, GptConfig};
use super::llama::{Llama, LlamaConfig};
use super::llama2c;
use crate::nn::{Dropout, KvCache};

/// The dtype pretrained weights are converted to on load.
pub const DTYPE: DType = DType::F32;

/// The `model_type` values Muse reads.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["gpt2", "llama"];

/// The architecture of a supported text model.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    Gpt(GptConfig),
    Llama(LlamaConfig),
}

impl ModelConfig {
    /// Parses a `config.json`, dispatching on `model_type`.
    pub fn from_hf_json(v: &Value) -> std::result::Result<Self, String> {
        match v.get("model_type").and_then(Value::as_str) {
            Some("gpt2") => {
                check_gpt2_extras(v)?;
                GptConfig::from_hf_json(v).map(Self::Gpt)
            }
            Some("llama") => LlamaConfig::from_hf_json(v).map(Self::Llama),
            Some(other) => Err(format!(
                "model_type '{other}' is not supported: Muse loads {} (GPT-2- and Llama-family \
                 causal language models); pass a folder of one of those",
                SUPPORTED_MODEL_TYPES.join(" and ")
            )),
            None => Err(format!(
                "no model_type: cannot tell the architecture; set \"model_type\" to one of {} \
                 if the weights are such a model",
                SUPPORTED_MODEL_TYPES.join(", ")
            )),
        }
    }

    /// Reads `path` (a `config.json`).
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| msg(format!("{}: {e}", path.display())))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| msg(format!("{} is not valid JSON: {e}", path.display())))?;
        Self::from_hf_json(&value).map_err(|e| msg(format!("{}: {e}", path.display())))
    }

    /// The Hugging Face `config.json` of this architecture.
    pub fn to_hf_json(&self) -> Value {
        match self {
            Self::Gpt(c) => c.to_hf_json(),
            Self::Llama(c) => c.to_hf_json(),
        }
    }

    /// The Hugging Face `model_type`: `gpt2` or `llama`.
    pub fn model_type(&self) -> &'static str {
        match self {
            Self::Gpt(_) => "gpt2",
            Self::Llama(_) => "llama",
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt(c) => c.vocab_size,
            Self::Llama(c) => c.vocab_size,
        }
    }

    /// Longest context in positions.
    pub fn context_len(&self) -> usize {
        match self {
            Self::Gpt(c) => c.n_positions,
            Self::Llama(c) => c.max_position_embeddings,
        }
    }

    /// Builds the model under `vb`.
    pub fn build(&self, vb: VarBuilder) -> Result<TextLm> {
        Ok(match self {
            Self::Gpt(c) => TextLm::Gpt(Gpt::new(c, vb)?),
            Self::Llama(c) => TextLm::Llama(Llama::new(c, vb)?),
        })
    }
}

/// GPT-2 options that change the maths and that Muse's GPT does not implement.
fn check_gpt2_extras(v: &Value) -> std::result::Result<(), String> {
    let flag = |k: &str| v.get(k).and_then(Value::as_bool);
    if flag("scale_attn_by_inverse_layer_idx") == Some(true) {
        return Err("scale_attn_by_inverse_layer_idx: true is not supported".into());
    }
    if flag("scale_attn_weights") == Some(false) {
        return Err("scale_attn_weights: false is not supported".into());
    }
    if flag("add_cross_attention") == Some(true) {
        return Err("add_cross_attention: true is not supported (decoder-only models)".into());
    }
    Ok(())
}

/// A loaded text model of any supported family.
#[derive(Clone, Debug)]
pub enum TextLm {
    Gpt(Gpt),
    Llama(Llama),
}

impl TextLm {
    /// Its architecture.
    pub fn config(&self) -> ModelConfig {
        match self {
            Self::Gpt(m) => ModelConfig::Gpt(m.config().clone()),
            Self::Llama(m) => ModelConfig::Llama(m.config().clone()),
        }
    }

    /// Logits for every position (training and evaluation forward; no state changes).
    ///
    /// # Shapes
    /// `idx`: (B, T) u32 -> (B * T, vocab).
    pub fn forward(&self, idx: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        match self {
            Self::Gpt(m) => m.forward(idx, dropout),
            Self::Llama(m) => m.forward(idx, dropout),
        }
    }

    /// Mean next-token cross-entropy; targets equal to `nn::ops::IGNORE_INDEX` are skipped.
    ///
    /// # Shapes
    /// `idx`, `targets`: (B, T) u32 -> scalar.
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        match self {
            Self::Gpt(m) => m.loss(idx, targets, dropout),
            Self::Llama(m) => m.loss(idx, targets, dropout),
        }
    }

    fn inner(&self) -> &dyn CausalLm {
        match self {
            Self::Gpt(m) => m,
            Self::Llama(m) => m,
        }
    }
}

impl CausalLm for TextLm {
    fn context_len(&self) -> usize {
        self.inner().context_len()
    }
    fn device(&self) -> &Device {
        self.inner().device()
    }
    fn vocab_size(&self) -> usize {
        self.inner().vocab_size()
    }
    fn new_cache(&self, batch: usize) -> Result<KvCache> {
        self.inner().new_cache(batch)
    }
    fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.inner().forward_cached(ids, cache)
    }
}

/// Loads the model at `path` for generation: a folder with `config.json` and safetensors
/// weights, or a llama2.c `.bin` checkpoint.
pub fn load_pretrained(path: &Path, device: &Device) -> Result<TextLm> {
    let (cfg, tensors) = load_tensors(path, device)?;
    let vb = VarBuilder::from_tensors(tensors, DTYPE, device);
    cfg.build(vb).map_err(|e| mismatch(path, e))
}

/// Loads the model at `path` for training: builds it on `varmap` (which must be empty) and
/// sets every variable from the file, so the optimizer sees exactly the pretrained weights.
/// Tensors in the file that the model does not use (buffers, a tied head) are ignored.
pub fn load_trainable(path: &Path, varmap: &VarMap, device: &Device) -> Result<TextLm> {
    let (cfg, tensors) = load_tensors(path, device)?;
    let model = cfg.build(VarBuilder::from_varmap(varmap, DTYPE, device))?;
    set_vars(varmap, &tensors).map_err(|e| mismatch(path, e))?;
    Ok(model)
}

/// Copies `tensors` into the variables of `varmap` with the same names, checking shapes.
pub fn set_vars(varmap: &VarMap, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let vars = varmap.data().lock().expect("varmap lock is never poisoned");
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let Some(t) = tensors.get(name) else {
            return Err(msg(format!("the weights have no tensor '{name}'")));
        };
        if t.dims() != var.dims() {
            return Err(msg(format!(
                "tensor '{name}' has shape {:?}, the config needs {:?}",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// The architecture and the weights (Muse's tensor names, f32, on `device`) at `path`.
pub fn load_tensors(
    path: &Path,
    device: &Device,
) -> Result<(ModelConfig, HashMap<String, Tensor>)> {
    if path.is_file() && super::gguf::is_gguf(path) {
        // Widened to f32: fine-tuning, alignment and export take plain weights.
        let mut f = super::gguf::GgufFile::open(path)?;
        return super::gguf::widened_hf(&mut f, device);
    }
    if path.is_file() {
        let (cfg, tensors) = llama2c::read_checkpoint(path, device)?;
        return Ok((ModelConfig::Llama(cfg), tensors));
    }
    let cfg = ModelConfig::read(&path.join("config.json"))?;
    let mut tensors = HashMap::new();
    for file in weight_files(path)? {
        let part = candle_core::safetensors::load(&file, device).map_err(|e| {
            let e = without_backtrace(e);
            msg(format!(
                "{} is damaged or not safetensors ({e}); restore the file",
                file.display()
            ))
        })?;
        for (name, t) in part {
            let t = if t.dtype() == DTYPE {
                t
            } else {
                t.to_dtype(DTYPE)?
            };
            tensors.insert(name, t);
        }
    }
    if let ModelConfig::Gpt(_) = cfg {
        tensors = gpt2_names(tensors);
    }
    Ok((cfg, tensors))
}

/// The safetensors files of a folder: `model.safetensors`, or the shards its
/// `model.safetensors.index.json` names.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| msg(format!("{}: {e}", index.display())))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| msg(format!("{}: {e}", index.display())))?;
        let mut files: Vec<String> = v
            .get("weight_map")
            .and_then(Value::as_object)
            .map(|m| {
                m.values()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.dedup();
        if files.is_empty() {
            return Err(msg(format!("{} names no weight files", index.display())));
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let hint = if dir.join("pytorch_model.bin").is_file() {
        ": it has pytorch_model.bin, which Muse does not read; convert it to safetensors \
         (transformers: `model.save_pretrained(dir, safe_serialization=True)`)"
    } else {
        ""
    };
    Err(msg(format!(
        "{} has no model.safetensors{hint}",
        dir.display()
    )))
}

/// GPT-2 names as Muse's GPT wants them: `transformer.`-prefixed (the original OpenAI upload
/// has bare `h.0...` names), without the attention-mask buffers old checkpoints carry.
fn gpt2_names(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .filter(|(k, _)| !k.ends_with(".attn.bias") && !k.ends_with(".attn.masked_bias"))
        .map(|(k, t)| {
            if k.starts_with("transformer.") || k.starts_with("lm_head.") {
                (k, t)
            } else {
                (format!("transformer.{k}"), t)
            }
        })
        .collect()
}

/// A plain message error. (candle's `Error::msg` and `bail!` attach a backtrace that their
/// `Display` prints whenever `RUST_BACKTRACE` is set: not for users' eyes.)
fn msg(text: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(text.into())
}

/// `e` without the backtraces candle attaches, for messages shown to users.
pub fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        other => other,
    }
}

/// The error for weights that do not fit the config.
fn mismatch(path: &Path, e: candle_core::Error) -> candle_core::Error {
    let e = without_backtrace(e);
    msg(format!(
        "the weights in {} do not match its config: {e}. They come from different models, or \
         the file is incomplete",
        path.display()
    ))
}
