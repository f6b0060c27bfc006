//! GGUF files (the single-file format of llama.cpp and Ollama): header, metadata and
//! quantised tensors, read with candle's own reader (`candle_core::quantized::gguf_file`).
//!
//! [`GgufFile`] holds the parsed header and an open handle; tensors are read one at a time as
//! [`QTensor`]s, so quantised weights stay quantised in memory. The models built from them live
//! in [`llama`] (kept quantised) and [`gpt2`] (widened to Muse's GPT).

pub mod dequantized;
pub mod gpt2;
pub mod llama;

use std::collections::HashMap;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result, Tensor};

pub use llama::{QLlama, config_from_gguf};

use crate::models::pretrained::ModelConfig;

/// The four bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";

/// The `general.architecture` values Muse builds a model for.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "gpt2"];

/// The architecture of the model in `f` and every weight widened to f32 under Hugging Face
/// names: what fine-tuning, alignment, export and the GPT family take.
pub fn widened_hf(
    f: &mut GgufFile,
    device: &Device,
) -> Result<(ModelConfig, HashMap<String, Tensor>)> {
    match f.architecture()?.as_str() {
        "llama" => dequantized::hf_tensors(f, device).map(|(c, t)| (ModelConfig::Llama(c), t)),
        "gpt2" => gpt2::hf_tensors(f, device).map(|(c, t)| (ModelConfig::Gpt(c), t)),
        other => Err(msg(unsupported_architecture(&f.path, other))),
    }
}

/// The architecture of the model in `f`, from its metadata.
pub fn model_config(f: &GgufFile) -> Result<ModelConfig> {
    match f.architecture()?.as_str() {
        "llama" => config_from_gguf(f).map(ModelConfig::Llama),
        "gpt2" => gpt2::config_from_gguf(f).map(ModelConfig::Gpt),
        other => Err(msg(unsupported_architecture(&f.path, other))),
    }
}

/// The message for a file of an architecture Muse does not build.
pub fn unsupported_architecture(path: &Path, arch: &str) -> String {
    format!(
        "{} holds a '{arch}' model (general.architecture); Muse runs GGUF files of the {} \
         architectures",
        path.display(),
        SUPPORTED_ARCHITECTURES.join(" and ")
    )
}

/// The tensor types Muse accepts (what candle's quantised matmul implements).
pub const SUPPORTED_TYPES: &[GgmlDType] = &[
    GgmlDType::F32,
    GgmlDType::F16,
    GgmlDType::BF16,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

/// True when `path` is a file that starts with the GGUF magic.
pub fn is_gguf(path: &Path) -> bool {
    let mut head = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == MAGIC
}

/// An open GGUF file: its parsed header and a reader for its tensors.
pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
    reader: BufReader<File>,
}

impl GgufFile {
    /// Opens and parses the header of `path`. A file that is not GGUF, or whose header is cut
    /// short, is an error that names the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| msg(format!("{}: {e}", path.display())))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| {
            let e = crate::models::pretrained::without_backtrace(e);
            let what = if is_gguf(path) {
                "is a damaged or truncated GGUF file"
            } else {
                "is not a GGUF file"
            };
            msg(format!(
                "{} {what} ({e}); download it again or pass another model",
                path.display()
            ))
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    /// `general.architecture` (`llama`, `gpt2`, `qwen2`, ...).
    pub fn architecture(&self) -> Result<String> {
        self.string("general.architecture")
    }

    /// The metadata value under `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// A required string value.
    pub fn string(&self, key: &str) -> Result<String> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.bad(key, &format!("{v:?} is not a string"))),
            None => Err(self.missing(key)),
        }
    }

    /// A required non-negative integer value (any integer width).
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key).ok_or_else(|| self.missing(key))?;
        as_u64(v)
            .map(|n| n as usize)
            .ok_or_else(|| self.bad(key, &format!("{v:?} is not a non-negative integer")))
    }

    /// An optional non-negative integer value.
    pub fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.usize(key).map(Some),
        }
    }

    /// An optional float value (f32 or f64).
    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(x)) => Ok(Some(*x as f64)),
            Some(Value::F64(x)) => Ok(Some(*x)),
            Some(v) => Err(self.bad(key, &format!("{v:?} is not a number"))),
        }
    }

    /// An optional bool value.
    pub fn bool_opt(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// True when the file has a tensor called `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads tensor `name` onto `device`, still quantised. Types Muse does not run are refused
    /// by name.
    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        let Some(info) = self.content.tensor_infos.get(name) else {
            return Err(msg(format!(
                "{} has no tensor '{name}': it is incomplete or not a model of this \
                 architecture",
                self.path.display()
            )));
        };
        if !SUPPORTED_TYPES.contains(&info.ggml_dtype) {
            return Err(msg(format!(
                "{}: tensor '{name}' is of type {:?}, which Muse cannot run; use a file \
                 quantised as F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 or a K-quant",
                self.path.display(),
                info.ggml_dtype
            )));
        }
        self.content
            .tensor(&mut self.reader, name, device)
            .map_err(|e| {
                let e = crate::models::pretrained::without_backtrace(e);
                msg(format!(
                    "{}: cannot read tensor '{name}' ({e}); the file is truncated or damaged",
                    self.path.display()
                ))
            })
    }

    fn missing(&self, key: &str) -> candle_core::Error {
        msg(format!(
            "{} has no metadata '{key}': it is not a complete GGUF model file",
            self.path.display()
        ))
    }

    fn bad(&self, key: &str, why: &str) -> candle_core::Error {
        msg(format!("{}: metadata '{key}': {why}", self.path.display()))
    }
}

/// An integer metadata value as u64 (negative values are `None`).
pub fn as_u64(v: &Value) -> Option<u64> {
    Some(match v {
        Value::U8(x) => *x as u64,
        Value::U16(x) => *x as u64,
        Value::U32(x) => *x as u64,
        Value::U64(x) => *x,
        Value::I8(x) => u64::try_from(*x).ok()?,
        Value::I16(x) => u64::try_from(*x).ok()?,
        Value::I32(x) => u64::try_from(*x).ok()?,
        Value::I64(x) => u64::try_from(*x).ok()?,
        _ => return None,
    })
}

fn msg(text: impl Into<String>) -> candle_core::Error {
    candle_core::Error::Msg(text.into())
}
