//! Opening a GGUF file (llama.cpp's format) as a text model: the model, and the tokenizer,
//! special tokens and chat template its metadata carries.
//!
//! A `llama` file runs quantised ([`QLlama`]); a `gpt2` file is widened to Muse's GPT
//! ([`crate::models::gguf::gpt2`]).

use std::path::Path;

use candle_core::Device;
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::models::gguf::{GgufFile, QLlama, unsupported_architecture};
use crate::models::gpt::Gpt;
use crate::models::pretrained::DTYPE;
use crate::sample::open::TextModel;
use crate::tokenizer::TextTokenizer;
use crate::tokenizer::gguf::from_gguf;
use crate::tokenizer::jinja::JinjaTemplate;

/// Everything a GGUF `llama` file holds for text generation.
pub struct GgufModel {
    pub model: QLlama,
    pub tokenizer: TextTokenizer,
    /// The BOS id to put before prompts (`None` when `add_bos_token` is false).
    pub bos_id: Option<u32>,
    pub chat_template: Option<JinjaTemplate>,
}

/// The tokenizer side of a GGUF file: its tokenizer (or `tokenizer`, which replaces it), the
/// BOS id to put before prompts, and its chat template.
struct TextParts {
    tokenizer: TextTokenizer,
    bos_id: Option<u32>,
    chat_template: Option<JinjaTemplate>,
}

fn text_parts(
    file: &GgufFile,
    tokenizer: Option<TextTokenizer>,
    model_vocab: usize,
) -> Result<TextParts> {
    let path = &file.path;
    let bad = |e: String| Error::input(format!("{} {e}", path.display()));
    let (file_tok, specials) = from_gguf(&file.content).map_err(bad)?;
    let tokenizer = tokenizer.unwrap_or(file_tok);
    if tokenizer.vocab_size() > model_vocab {
        return Err(Error::input(format!(
            "the tokenizer has {} tokens but the model only {model_vocab}: they do not belong \
             together",
            tokenizer.vocab_size()
        )));
    }
    let chat_template =
        crate::tokenizer::gguf::tokenizer_config(&file.content, &tokenizer, &specials).jinja_from(
            format!("{} (metadata tokenizer.chat_template)", path.display()),
        );
    Ok(TextParts {
        bos_id: specials.bos.filter(|_| specials.add_bos),
        tokenizer,
        chat_template,
    })
}

/// Opens `path` and checks that Muse builds its architecture, which it returns.
fn open_checked(path: &Path) -> Result<(GgufFile, String)> {
    let file = GgufFile::open(path).map_err(Error::model_load)?;
    let arch = file.architecture().map_err(Error::model_load)?;
    if !crate::models::gguf::SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(Error::input(unsupported_architecture(path, &arch)));
    }
    Ok((file, arch))
}

/// The quantised model of an open GGUF `llama` file, with its tokenizer, BOS id and template.
fn llama_model(
    mut file: GgufFile,
    tokenizer: Option<TextTokenizer>,
    device: &Device,
) -> Result<(QLlama, TextParts)> {
    let model = QLlama::load(&mut file, device).map_err(Error::model_load)?;
    let vocab = crate::models::CausalLm::vocab_size(&model);
    let t = text_parts(&file, tokenizer, vocab)?;
    Ok((model, t))
}

impl GgufModel {
    fn new((model, t): (QLlama, TextParts)) -> Self {
        Self {
            model,
            tokenizer: t.tokenizer,
            bos_id: t.bos_id,
            chat_template: t.chat_template,
        }
    }
}

/// Muse's GPT (weights widened to f32) from an open GGUF `gpt2` file, with its tokenizer, BOS
/// id and template.
fn gpt2_model(
    mut file: GgufFile,
    tokenizer: Option<TextTokenizer>,
    device: &Device,
) -> Result<(Gpt, TextParts)> {
    let (cfg, tensors) =
        crate::models::gguf::gpt2::hf_tensors(&mut file, device).map_err(Error::model_load)?;
    let model = Gpt::new(&cfg, VarBuilder::from_tensors(tensors, DTYPE, device))
        .map_err(Error::model_load)?;
    let t = text_parts(&file, tokenizer, cfg.vocab_size)?;
    Ok((model, t))
}

/// Reads the GGUF `llama` file at `path`: its quantised model, tokenizer and template.
/// `tokenizer` replaces the file's own.
pub fn load_gguf(
    path: &Path,
    tokenizer: Option<TextTokenizer>,
    device: &Device,
) -> Result<GgufModel> {
    let (file, arch) = open_checked(path)?;
    if arch != "llama" {
        return Err(Error::input(format!(
            "{} holds a '{arch}' model: this needs a llama one",
            path.display()
        )));
    }
    llama_model(file, tokenizer, device).map(GgufModel::new)
}

/// A GGUF file's language model, by architecture: what evaluation needs of either. (One is
/// built per command, so the variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
pub enum GgufLm {
    Llama(GgufModel),
    Gpt2 {
        model: Gpt,
        tokenizer: TextTokenizer,
    },
}

/// Reads the GGUF file at `path`, of any architecture Muse runs, with its own tokenizer.
pub fn load_gguf_lm(path: &Path, device: &Device) -> Result<GgufLm> {
    let (file, arch) = open_checked(path)?;
    if arch == "gpt2" {
        let (model, t) = gpt2_model(file, None, device)?;
        return Ok(GgufLm::Gpt2 {
            model,
            tokenizer: t.tokenizer,
        });
    }
    llama_model(file, None, device).map(|parts| GgufLm::Llama(GgufModel::new(parts)))
}

/// The GGUF file at `path` as a [`TextModel`] for sampling, chat and evaluation.
pub fn open_gguf(
    path: &Path,
    tokenizer: Option<TextTokenizer>,
    device: &Device,
) -> Result<TextModel> {
    let (file, arch) = open_checked(path)?;
    let (model, t): (Box<dyn crate::models::CausalLm>, TextParts) = if arch == "gpt2" {
        let (model, t) = gpt2_model(file, tokenizer, device)?;
        (Box::new(model), t)
    } else {
        let (model, t) = llama_model(file, tokenizer, device)?;
        (Box::new(model), t)
    };
    Ok(TextModel {
        model,
        tokenizer: t.tokenizer,
        family: "gguf".into(),
        bos_id: t.bos_id,
        chat_template: t.chat_template,
    })
}
