//! Opening a text model for generation: a folder (a Muse run or a Hugging Face folder), a
//! GGUF file, or a llama2.c checkpoint.
//!
//! The BOS id before every prompt is what the model's tokenizer adds: `add_bos_token` in
//! `tokenizer_config.json`, else `tokenizer.json`'s post-processor; GGUF files say it in
//! `tokenizer.ggml.add_bos_token`.

use std::path::Path;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::models::CausalLm;
use crate::models::gpt::load_gpt;
use crate::models::pretrained::load_pretrained;
use crate::run_dir::RunDir;
use crate::tokenizer::hf_config::TokenizerConfig;
use crate::tokenizer::jinja::JinjaTemplate;
use crate::tokenizer::{TextTokenizer, files};

/// A loaded language model with its tokenizer.
pub struct TextModel {
    pub model: Box<dyn CausalLm>,
    pub tokenizer: TextTokenizer,
    /// `gpt`, or the Hugging Face `model_type` (`llama2c` for a llama2.c checkpoint).
    pub family: String,
    /// Prepended to every prompt when the tokenizer adds a BOS (Llama's `<s>`).
    pub bos_id: Option<u32>,
    /// The model's own Jinja chat template (GGUF metadata, `tokenizer_config.json`).
    pub chat_template: Option<JinjaTemplate>,
}

impl TextModel {
    /// Prompt text to ids, after the beginning-of-sequence id when the model uses one.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let ids = self.tokenizer.encode(text)?;
        Ok(self.bos_id.into_iter().chain(ids).collect())
    }
}

/// Loads the model and tokenizer of the run or model folder at `dir`.
pub fn open_text_model(dir: &Path, device: &Device) -> Result<TextModel> {
    open_text_model_with(dir, None, device)
}

/// [`open_text_model`], also for a llama2.c checkpoint file, with `tokenizer` (a
/// tokenizer.json, SentencePiece `tokenizer.model` or llama2.c `tokenizer.bin`) replacing the
/// folder's own. A LoRA adapter in the folder (`adapter.safetensors`) is applied.
pub fn open_text_model_with(
    dir: &Path,
    tokenizer: Option<&Path>,
    device: &Device,
) -> Result<TextModel> {
    open_text_model_adapted(dir, tokenizer, None, device)
}

/// [`open_text_model_with`], applying the LoRA adapter in `adapter` (a folder with
/// `adapter_config.json` and `adapter.safetensors`) over the model instead of the folder's own.
pub fn open_text_model_adapted(
    dir: &Path,
    tokenizer: Option<&Path>,
    adapter: Option<&Path>,
    device: &Device,
) -> Result<TextModel> {
    let tokenizer = tokenizer.map(files::load_file).transpose()?;
    let gguf_named = dir
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if dir.is_file() && (gguf_named || crate::models::gguf::is_gguf(dir)) {
        if let Some(a) = adapter {
            return Err(Error::usage(format!(
                "--adapter {}: adapters apply over a model folder, not a GGUF file",
                a.display()
            )));
        }
        return super::gguf::open_gguf(dir, tokenizer, device);
    }
    if dir.is_file() {
        if let Some(a) = adapter {
            return Err(Error::usage(format!(
                "--adapter {}: adapters apply over a model folder, not a llama2.c file; \
                 `muse export` the checkpoint to a folder first",
                a.display()
            )));
        }
        return open_llama2c(dir, tokenizer, device);
    }
    let run = RunDir::open(dir)?;
    let family = run.family()?;
    let mut adapted = open_adapted(dir, adapter, device)?;
    let model: Box<dyn CausalLm> = match family.as_str() {
        // A LoRA adapter: the base weights with the adapter merged in.
        _ if adapted.is_some() => adapted.take().expect("checked"),
        "gpt" | "gpt2" => Box::new(load_gpt(dir, device).map_err(Error::model_load)?),
        "llama" => Box::new(load_pretrained(dir, device).map_err(Error::model_load)?),
        other => {
            return Err(Error::input(format!(
                "{} holds a '{other}' model (model_type '{other}' is not supported for text \
                 generation): pass a Muse GPT run or a Hugging Face gpt2 or llama folder",
                dir.display()
            )));
        }
    };
    let mut tokenizer = match tokenizer {
        Some(t) => t,
        None => files::find_in_dir(dir)?.ok_or_else(|| {
            Error::input(format!(
                "{} has no tokenizer.json (nor vocab.json + merges.txt): copy the tokenizer the \
                 model was trained with into the folder, or pass --tokenizer FILE",
                dir.display()
            ))
        })?,
    };
    if tokenizer.vocab_size() > model.vocab_size() {
        return Err(Error::input(format!(
            "tokenizer.json has {} tokens but the model only {}: they do not belong together",
            tokenizer.vocab_size(),
            model.vocab_size()
        )));
    }
    let tok_cfg = TokenizerConfig::read(dir)?;
    let config_bos = crate::models::pretrained::ModelConfig::read(&run.config())
        .ok()
        .and_then(|c| match c {
            crate::models::pretrained::ModelConfig::Llama(c) => c.bos_token_id,
            _ => None,
        });
    let bos_id = if family == "llama" {
        tok_cfg.bos_id(&tokenizer, config_bos)?
    } else {
        None
    };
    if let Some(eos) = tok_cfg
        .eos_token
        .as_deref()
        .and_then(|t| tokenizer.token_to_id(t))
    {
        tokenizer.set_eos_ids(vec![eos]);
    }
    Ok(TextModel {
        model,
        tokenizer,
        family,
        bos_id,
        chat_template: tok_cfg.jinja(dir),
    })
}

/// The model of `dir` with a LoRA adapter merged in: `adapter`'s, else the folder's own
/// (`None` when there is none).
fn open_adapted(
    dir: &Path,
    adapter: Option<&Path>,
    device: &Device,
) -> Result<Option<Box<dyn CausalLm>>> {
    use crate::nn::lora::Adapter;
    let adir = match adapter {
        Some(a) if Adapter::exists(a) => a.to_path_buf(),
        Some(a) => {
            return Err(Error::input(format!(
                "--adapter {}: no LoRA adapter there (it needs adapter_config.json and \
                 adapter.safetensors, as `muse finetune --lora` writes)",
                a.display()
            )));
        }
        None if Adapter::exists(dir) => dir.to_path_buf(),
        None => return Ok(None),
    };
    let fail = |e: candle_core::Error| {
        Error::input(crate::models::pretrained::without_backtrace(e).to_string())
    };
    let (cfg, mut tensors) = crate::models::pretrained::load_tensors(dir, device).map_err(fail)?;
    Adapter::load(&adir, device)
        .and_then(|a| a.merge_into(&mut tensors))
        .map_err(fail)?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, crate::models::pretrained::DTYPE, device);
    Ok(Some(Box::new(cfg.build(vb).map_err(fail)?)))
}

/// A llama2.c checkpoint with its tokenizer, which must have exactly the model's vocabulary.
fn open_llama2c(
    path: &Path,
    tokenizer: Option<TextTokenizer>,
    device: &Device,
) -> Result<TextModel> {
    let model = crate::models::llama2c::load_llama2c(path, device).map_err(Error::model_load)?;
    let Some(tokenizer) = tokenizer else {
        return Err(Error::usage(format!(
            "{} is a llama2.c checkpoint, which carries no tokenizer: pass --tokenizer \
             tokenizer.bin (or tokenizer.model) with the vocabulary it was trained with",
            path.display()
        )));
    };
    if tokenizer.vocab_size() != model.vocab_size() {
        return Err(Error::input(format!(
            "the tokenizer has {} tokens but {} was trained with a vocabulary of {}: they do not \
             belong together; pass the tokenizer the checkpoint was trained with",
            tokenizer.vocab_size(),
            path.display(),
            model.vocab_size()
        )));
    }
    Ok(TextModel {
        bos_id: model.config().bos_token_id,
        model: Box::new(model),
        tokenizer,
        family: "llama2c".into(),
        chat_template: None,
    })
}
