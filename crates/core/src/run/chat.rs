//! `muse chat`: open a language model with its chat template and the sampling settings,
//! checked as `muse sample` checks them. The terminal loop stays with the caller.

use std::path::{Path, PathBuf};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::sample::chat::Conversation;
use crate::sample::open::{TextModel, open_text_model_with};
use crate::sample::{GenerateOptions, SamplingParams};
use crate::tokenizer::chat::ChatTemplate;
use crate::tokenizer::jinja::ChatFormat;

/// What `muse chat MODEL` was asked.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub model: PathBuf,
    pub system: Option<String>,
    /// `plain`, `chatml` or a chat_template.json file [default: the model's own: a
    /// chat_template.json, else the Jinja template of tokenizer_config.json or GGUF metadata].
    pub template: Option<String>,
    /// Longest reply [default: what the context leaves after the prompt].
    pub max_tokens: Option<usize>,
    pub params: SamplingParams,
    pub seed: u64,
    pub tokenizer: Option<PathBuf>,
    pub device: Device,
}

/// A model ready to chat.
pub struct ChatSession {
    pub model: TextModel,
    pub conversation: Conversation,
    pub params: SamplingParams,
    pub options: GenerateOptions,
    pub seed: u64,
    /// Things the user should know (a template Muse could not read, ...).
    pub notes: Vec<String>,
}

/// Opens the model and template for a chat.
pub fn open_chat(req: &ChatRequest) -> Result<ChatSession> {
    if req.max_tokens == Some(0) {
        return Err(Error::usage("--max-tokens must be at least 1"));
    }
    req.params.validate()?;
    let family = super::family::detect(&req.model)?;
    if !family.is_text() {
        return Err(Error::usage(format!(
            "{} holds {}: `muse chat` talks to language models (sample images with `muse \
             sample`)",
            req.model.display(),
            family.describe()
        )));
    }
    let model = open_text_model_with(&req.model, req.tokenizer.as_deref(), &req.device)?;
    let mut notes = Vec::new();
    let template = template(&req.model, &model, req.template.as_deref(), &mut notes)?;
    let context = model.model.context_len();
    let max_tokens = match req.max_tokens {
        Some(n) if n >= context => {
            return Err(Error::usage(format!(
                "--max-tokens {n} leaves no room for the conversation in a context of {context}: \
                 ask for fewer (leave it out and the reply gets what the context leaves)"
            )));
        }
        Some(n) => n,
        None => context,
    };
    Ok(ChatSession {
        conversation: Conversation::new(template, req.system.clone()),
        model,
        params: req.params.clone(),
        options: GenerateOptions {
            max_tokens,
            ..Default::default()
        },
        seed: req.seed,
        notes,
    })
}

/// The chat template: `--template` (a name or a file), else the model's own: a
/// `chat_template.json` in its folder, else its Jinja template, else plain.
fn template(
    run: &Path,
    model: &TextModel,
    flag: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<ChatFormat> {
    if flag.is_none() {
        let own = if run.is_dir() {
            ChatTemplate::load(run)?
        } else {
            None
        };
        if let Some(t) = own {
            return Ok(ChatFormat::Patterns(t));
        }
        if let Some(j) = &model.chat_template {
            return Ok(ChatFormat::Jinja(j.clone()));
        }
    }
    Ok(ChatFormat::Patterns(match flag {
        Some("plain") => ChatTemplate::plain(),
        Some("chatml") => ChatTemplate::chatml(),
        Some(path) => {
            let path = Path::new(path);
            if !path.is_file() {
                return Err(Error::usage(format!(
                    "--template {}: use plain, chatml or a chat_template.json file",
                    path.display()
                )));
            }
            let t: ChatTemplate = crate::io::read_json(path)?;
            t.validate()
                .map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
            t
        }
        None if run.is_dir() => {
            let (t, unknown) = ChatTemplate::for_model_dir(run)?;
            if unknown {
                notes.push(
                    "the folder's Jinja chat template is not one Muse understands; using the \
                     plain User:/Assistant: template (pass --template to choose)"
                        .into(),
                );
            }
            t
        }
        None => ChatTemplate::plain(),
    }))
}
