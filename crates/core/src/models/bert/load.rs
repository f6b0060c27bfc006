//! Opening a BERT encoder from a Hugging Face folder (`config.json` + safetensors).

use std::path::Path;

use candle_core::{Device, Result};
use candle_nn::VarBuilder;

use super::config::BertConfig;
use super::model::{BertModel, DTYPE};
use crate::models::pretrained::{weight_files, without_backtrace};

/// Reads `config.json` and the safetensors weights (`model.safetensors` or shards) of `dir`
/// and builds the encoder on `device`.
///
/// Accepts the bare names `BertModel` saves (`embeddings.*`, `encoder.layer.N.*`) and the
/// `bert.`-prefixed names of `BertForMaskedLM` / `BertForSequenceClassification` checkpoints.
pub fn load_bert(dir: &Path, device: &Device) -> Result<BertModel> {
    let config = dir.join("config.json");
    let cfg = BertConfig::read(&config)?;
    let files = weight_files(dir)?;
    let prefixed = has_bert_prefix(&files)?;
    // SAFETY: the files are memory-mapped read-only and not modified while the model lives.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DTYPE, device)? };
    let vb = if prefixed {
        vb.rename_f(|name: &str| format!("bert.{name}"))
    } else {
        vb
    };
    BertModel::new(&cfg, vb).map_err(|e| {
        candle_core::Error::Msg(format!(
            "the weights in {} do not match its config.json: {}. They come from different \
             models, or the file is incomplete",
            dir.display(),
            without_backtrace(e)
        ))
    })
}

/// True when the checkpoint stores its encoder under `bert.` (and not under bare names).
fn has_bert_prefix(files: &[std::path::PathBuf]) -> Result<bool> {
    let mut bare = false;
    let mut prefixed = false;
    for path in files {
        let file = std::fs::File::open(path)
            .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
        // SAFETY: read-only mapping of a file we do not modify.
        let mmap = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
        let st = safetensors::SafeTensors::deserialize(&mmap).map_err(|e| {
            candle_core::Error::Msg(format!(
                "{} is damaged or truncated ({e}); download it again",
                path.display()
            ))
        })?;
        for name in st.names() {
            bare |= name.starts_with("embeddings.");
            prefixed |= name.starts_with("bert.embeddings.");
        }
    }
    Ok(prefixed && !bare)
}
