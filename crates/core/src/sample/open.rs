//! Opening a text model folder (a Muse run or a Hugging Face folder) for generation.

use std::path::Path;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::models::CausalLm;
use crate::models::gpt::load_gpt;
use crate::run_dir::RunDir;
use crate::tokenizer::TextTokenizer;

/// A loaded language model with its tokenizer.
pub struct TextModel {
    pub model: Box<dyn CausalLm>,
    pub tokenizer: TextTokenizer,
    /// `gpt`, or the Hugging Face `model_type`.
    pub family: String,
}

/// Loads the model and tokenizer of the run or model folder at `dir`.
pub fn open_text_model(dir: &Path, device: &Device) -> Result<TextModel> {
    let run = RunDir::open(dir)?;
    let family = run.family()?;
    let model: Box<dyn CausalLm> = match family.as_str() {
        "gpt" | "gpt2" => Box::new(load_gpt(dir, device).map_err(|e| Error::input(e.to_string()))?),
        other => {
            return Err(Error::input(format!(
                "{} holds a '{other}' model, which has no text generation; supported: gpt \
                 (Muse runs) and gpt2 (Hugging Face folders)",
                dir.display()
            )));
        }
    };
    if !run.tokenizer().is_file() {
        return Err(Error::input(format!(
            "{} has no tokenizer.json: copy the tokenizer the model was trained with into the folder",
            dir.display()
        )));
    }
    let tokenizer = TextTokenizer::from_file(&run.tokenizer())?;
    if tokenizer.vocab_size() > model.vocab_size() {
        return Err(Error::input(format!(
            "tokenizer.json has {} tokens but the model only {}: they do not belong together",
            tokenizer.vocab_size(),
            model.vocab_size()
        )));
    }
    Ok(TextModel {
        model,
        tokenizer,
        family,
    })
}
