//! Export to a single GGUF file that llama.cpp (and Ollama) load, written by candle's own
//! writer (`candle_core::quantized::gguf_file::write`).
//!
//! Sources: Llama-architecture models, as Muse loads them (Muse llama runs, Hugging Face llama
//! folders, llama2.c checkpoints with their tokenizer), GPT-2-family models (Muse GPT runs,
//! Hugging Face gpt2 folders) as llama.cpp's `gpt2`, and GGUF `llama` and `gpt2` files, whose
//! weights are re-quantised with everything else kept. Matrices take the chosen type ([`GgufQuant`]);
//! vectors (the norms) stay F32, and a matrix whose rows do not split into whole blocks falls
//! back to F16, as llama.cpp's converter does. The file carries the tokenizer, special tokens,
//! BOS rule and chat template Muse runs the model with ([`vocab`]).

mod gpt2;
mod llama;
mod vocab;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::models::gguf::GgufFile;
use crate::models::pretrained::{ModelConfig, load_tensors, without_backtrace};

/// The type of the exported matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufQuant {
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl GgufQuant {
    /// Every type, by the name `--quant` takes.
    pub const ALL: [(&'static str, Self); 5] = [
        ("f32", Self::F32),
        ("f16", Self::F16),
        ("q8_0", Self::Q8_0),
        ("q4_0", Self::Q4_0),
        ("q4_1", Self::Q4_1),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, q)| *q == self)
            .map_or("?", |(n, _)| n)
    }

    fn dtype(self) -> GgmlDType {
        match self {
            Self::F32 => GgmlDType::F32,
            Self::F16 => GgmlDType::F16,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4_1 => GgmlDType::Q4_1,
        }
    }

    /// llama.cpp's `llama_ftype` (`general.file_type`): ALL_F32, MOSTLY_F16, ...
    fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 7,
        }
    }
}

impl FromStr for GgufQuant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, q)| *q)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
                Error::usage(format!(
                    "unknown GGUF type '{s}': choose one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// What [`export_gguf`] wrote.
#[derive(Clone, Debug)]
pub struct GgufExport {
    pub out: PathBuf,
    /// `general.architecture` (`llama` or `gpt2`).
    pub architecture: String,
    pub quant: GgufQuant,
    pub tensors: usize,
    /// Size of the file.
    pub bytes: u64,
    /// Things the user should know (F16 fallbacks, padded vocabulary, ...).
    pub notes: Vec<String>,
}

/// Writes the model at `src` as the GGUF file `out`, its matrices as `quant`. `tokenizer`
/// replaces the source's (required for a llama2.c `.bin`); `merge_lora` folds a LoRA run's
/// adapter in. `out` must not exist unless `overwrite`.
pub fn export_gguf(
    src: &Path,
    tokenizer: Option<&Path>,
    out: &Path,
    quant: GgufQuant,
    overwrite: bool,
    merge_lora: bool,
) -> Result<GgufExport> {
    check_out(src, out, overwrite)?;
    let mut notes = Vec::new();
    let (meta, tensors) = if src.is_file() && crate::models::gguf::is_gguf(src) {
        if tokenizer.is_some() {
            return Err(Error::usage(format!(
                "--tokenizer: {} carries its own tokenizer, which the export keeps",
                src.display()
            )));
        }
        requantize(src, quant, &mut notes)?
    } else {
        from_weights(src, tokenizer, quant, merge_lora, &mut notes)?
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let architecture = match meta.iter().find(|(k, _)| k == "general.architecture") {
        Some((_, Value::String(a))) => a.clone(),
        _ => "?".into(),
    };
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    crate::io::write_atomic_with(out, |w| {
        gguf_file::write(w, &meta_refs, &tensor_refs).map_err(|e| {
            Error::input(format!(
                "cannot write {}: {}",
                out.display(),
                without_backtrace(e)
            ))
        })
    })?;
    Ok(GgufExport {
        out: out.to_path_buf(),
        architecture,
        quant,
        tensors: tensors.len(),
        bytes: std::fs::metadata(out).map_err(Error::io(out))?.len(),
        notes,
    })
}

/// `out` names a file that may be (over)written.
fn check_out(src: &Path, out: &Path, overwrite: bool) -> Result<()> {
    if out.is_dir() {
        return Err(Error::usage(format!(
            "{} is a folder: --format gguf writes one file; pass a file name such as {}",
            out.display(),
            out.join("model.gguf").display()
        )));
    }
    if !src.exists() {
        return Err(Error::input(format!(
            "nothing at {}: pass a run folder (`muse train --out`), a Hugging Face llama folder, \
             a llama2.c .bin checkpoint or a GGUF file",
            src.display()
        )));
    }
    let same = |a: &Path, b: &Path| a.canonicalize().ok() == b.canonicalize().ok();
    if out.exists() && same(src, out) {
        return Err(Error::usage(format!(
            "-o {} is the source itself: write the export to another file",
            out.display()
        )));
    }
    if out.exists() && !overwrite {
        return Err(Error::usage(format!(
            "{} already exists: choose another -o or pass --force",
            out.display()
        )));
    }
    Ok(())
}

type Metadata = Vec<(String, Value)>;
type QTensors = Vec<(String, QTensor)>;

/// A Muse run, Hugging Face folder or llama2.c file: weights in Hugging Face layout, the
/// tokenizer, BOS rule and chat template as `muse sample` runs them.
fn from_weights(
    src: &Path,
    tokenizer: Option<&Path>,
    quant: GgufQuant,
    merge_lora: bool,
    notes: &mut Vec<String>,
) -> Result<(Metadata, QTensors)> {
    let device = Device::Cpu;
    let (cfg, mut tensors) = load_tensors(src, &device).map_err(Error::model_load)?;
    notes.extend(super::hf::merge_adapter(
        src,
        merge_lora,
        &mut tensors,
        &device,
    )?);
    let text = crate::sample::open::open_text_model_with(src, tokenizer, &device)?;
    let (bos, eos) = match &cfg {
        ModelConfig::Llama(c) => (c.bos_token_id, c.eos_token_id),
        ModelConfig::Gpt(_) => (None, None),
    };
    let specials = vocab::Specials {
        bos: bos.or(text.bos_id),
        eos: eos.or(text.tokenizer.eos_id()),
        add_bos: text.bos_id.is_some(),
    };
    // llama.cpp's architecture names are the Hugging Face model types: gpt2, llama.
    let arch = cfg.model_type();
    let mut meta: Metadata = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(model_name(src))),
        ("general.file_type".into(), Value::U32(quant.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
    ];
    let named = match &cfg {
        ModelConfig::Llama(c) => {
            meta.extend(llama::metadata(c));
            llama::tensors(c, &tensors)
        }
        ModelConfig::Gpt(c) => {
            meta.extend(gpt2::metadata(c));
            gpt2::tensors(c, &tensors)
        }
    }
    .map_err(|e| Error::input(format!("{}: {}", src.display(), without_backtrace(e))))?;
    drop(tensors);
    meta.extend(
        vocab::tokenizer_metadata(&text.tokenizer, cfg.vocab_size(), &specials, notes)
            .map_err(|e| Error::input(format!("{}: {e}", src.display())))?,
    );
    if let Some(t) = chat_template(src, &text)? {
        meta.push(("tokenizer.chat_template".into(), Value::String(t)));
    }
    let mut fell_back = Vec::new();
    let mut out = Vec::with_capacity(named.len());
    for (name, t) in named {
        let q = quantize(&t, quant, &name, &mut fell_back)?;
        out.push((name, q));
    }
    note_fallbacks(&fell_back, quant, notes);
    Ok((meta, out))
}

/// The Jinja chat template the model is chatted with: its own (tokenizer_config.json), else a
/// Muse run's `chat_template.json` rendered as Jinja.
fn chat_template(src: &Path, text: &crate::sample::TextModel) -> Result<Option<String>> {
    if let Some(t) = &text.chat_template {
        return Ok(Some(t.source.clone()));
    }
    if src.is_dir()
        && src
            .join(crate::tokenizer::chat::CHAT_TEMPLATE_FILE)
            .is_file()
    {
        let (t, _) = crate::tokenizer::chat::ChatTemplate::for_model_dir(src)?;
        return Ok(Some(t.to_jinja()));
    }
    Ok(None)
}

/// A GGUF `llama` file with its matrices re-quantised; metadata kept but for the file type.
fn requantize(
    src: &Path,
    quant: GgufQuant,
    notes: &mut Vec<String>,
) -> Result<(Metadata, QTensors)> {
    let mut f = GgufFile::open(src).map_err(Error::model_load)?;
    let arch = f.architecture().map_err(Error::model_load)?;
    if !crate::models::gguf::SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(Error::input(crate::models::gguf::unsupported_architecture(
            src, &arch,
        )));
    }
    // The hyperparameters must be there: a header without them is not a model to re-write.
    crate::models::gguf::model_config(&f).map_err(Error::model_load)?;
    let mut meta: Metadata = f
        .content
        .metadata
        .iter()
        // candle's writer aligns to 32 bytes, llama.cpp's default: a different alignment
        // written here would misplace every tensor.
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "general.file_type" | "general.quantization_version" | "general.alignment"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    meta.push(("general.file_type".into(), Value::U32(quant.file_type())));
    meta.push(("general.quantization_version".into(), Value::U32(2)));
    // In the file's order.
    let mut names: Vec<(u64, String)> = f
        .content
        .tensor_infos
        .iter()
        .map(|(n, i)| (i.offset, n.clone()))
        .collect();
    names.sort();
    let device = Device::Cpu;
    let mut fell_back = Vec::new();
    let mut out = Vec::with_capacity(names.len());
    for (_, name) in names {
        let t = f.tensor(&name, &device).map_err(Error::model_load)?;
        let q = if t.dtype() == quant.dtype() || t.shape().rank() < 2 {
            t
        } else {
            let w = t.dequantize(&device)?;
            quantize(&w, quant, &name, &mut fell_back)?
        };
        out.push((name, q));
    }
    note_fallbacks(&fell_back, quant, notes);
    Ok((meta, out))
}

/// `t` as `quant` when it is a matrix whose rows split into whole blocks; vectors as F32, other
/// matrices as F16 (their names go into `fell_back`).
fn quantize(
    t: &Tensor,
    quant: GgufQuant,
    name: &str,
    fell_back: &mut Vec<String>,
) -> Result<QTensor> {
    let dtype = if t.rank() < 2 {
        GgmlDType::F32
    } else if t.dim(candle_core::D::Minus1)? % quant.dtype().block_size() != 0 {
        fell_back.push(name.to_string());
        GgmlDType::F16
    } else {
        quant.dtype()
    };
    QTensor::quantize(t, dtype)
        .map_err(|e| Error::input(format!("cannot quantise {name}: {}", without_backtrace(e))))
}

fn note_fallbacks(fell_back: &[String], quant: GgufQuant, notes: &mut Vec<String>) {
    if let Some(first) = fell_back.first() {
        notes.push(format!(
            "{} matrices ({first}, ...) have rows that do not split into blocks of {}: written \
             as f16 rather than {}",
            fell_back.len(),
            quant.dtype().block_size(),
            quant.name()
        ));
    }
}

/// The tensor `name` of a model's weights, or an error naming the one missing.
fn weight(
    hf: &std::collections::HashMap<String, Tensor>,
    name: &str,
) -> candle_core::Result<Tensor> {
    hf.get(name)
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg(format!("the model has no tensor '{name}'")))
}

fn model_name(src: &Path) -> String {
    src.file_stem()
        .map_or("model".into(), |n| n.to_string_lossy().into_owned())
}
