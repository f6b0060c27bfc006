//! Opening a GGUF file (llama.cpp's format) as a text model: the quantised model, and the
//! tokenizer, special tokens and chat template its metadata carries.

use std::path::Path;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::models::gguf::{GgufFile, QLlama, SUPPORTED_ARCHITECTURES};
use crate::sample::open::TextModel;
use crate::tokenizer::TextTokenizer;
use crate::tokenizer::gguf::from_gguf;
use crate::tokenizer::jinja::JinjaTemplate;

/// Everything a GGUF file holds for text generation.
pub struct GgufModel {
    pub model: QLlama,
    pub tokenizer: TextTokenizer,
    /// The BOS id to put before prompts (`None` when `add_bos_token` is false).
    pub bos_id: Option<u32>,
    pub chat_template: Option<JinjaTemplate>,
}

/// Reads the GGUF file at `path`: its model (llama architecture), tokenizer and template.
/// `tokenizer` replaces the file's own.
pub fn load_gguf(
    path: &Path,
    tokenizer: Option<TextTokenizer>,
    device: &Device,
) -> Result<GgufModel> {
    let mut file = GgufFile::open(path).map_err(Error::model_load)?;
    let arch = file.architecture().map_err(Error::model_load)?;
    if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(Error::input(format!(
            "{} holds a '{arch}' model (general.architecture); Muse runs GGUF files of the {} \
             architecture",
            path.display(),
            SUPPORTED_ARCHITECTURES.join(", ")
        )));
    }
    let bad = |e: String| Error::input(format!("{} {e}", path.display()));
    let (file_tok, specials) = from_gguf(&file.content).map_err(bad)?;
    let model = QLlama::load(&mut file, device).map_err(Error::model_load)?;
    let vocab = crate::models::CausalLm::vocab_size(&model);
    let tokenizer = tokenizer.unwrap_or(file_tok);
    if tokenizer.vocab_size() > vocab {
        return Err(Error::input(format!(
            "the tokenizer has {} tokens but the model only {vocab}: they do not belong together",
            tokenizer.vocab_size()
        )));
    }
    let chat_template =
        crate::tokenizer::gguf::tokenizer_config(&file.content, &tokenizer, &specials).jinja_from(
            format!("{} (metadata tokenizer.chat_template)", path.display()),
        );
    Ok(GgufModel {
        model,
        bos_id: specials.bos.filter(|_| specials.add_bos),
        tokenizer,
        chat_template,
    })
}

/// [`load_gguf`] as a [`TextModel`] for sampling and chat.
pub fn open_gguf(
    path: &Path,
    tokenizer: Option<TextTokenizer>,
    device: &Device,
) -> Result<TextModel> {
    let g = load_gguf(path, tokenizer, device)?;
    Ok(TextModel {
        model: Box::new(g.model),
        tokenizer: g.tokenizer,
        family: "gguf".into(),
        bos_id: g.bos_id,
        chat_template: g.chat_template,
    })
}
