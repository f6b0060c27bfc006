//! What `muse serve` needs from the run API: each model given at start opened once, by kind
//! (language model, sentence encoder, image generator), then answering one request at a time
//! with that request's own settings. The server's engine thread owns these values; its HTTP
//! handlers never see a tensor.

use std::path::{Path, PathBuf};

use super::chat::{ChatRequest, open_chat};
use super::family::detect;
use crate::device::Device;
use crate::embed::SentenceEncoder;
use crate::error::{Error, Result};
use crate::sample::open::TextModel;
use crate::sample::{PrefixCache, SamplingParams};
use crate::tokenizer::chat::{ChatMessage, Role};
use crate::tokenizer::jinja::ChatFormat;

pub use super::serve_images::{GeneratedImages, ImageJob};
pub use super::serve_text::{TextGeneration, TextJob, TokenOut, TokenProbs, finish_reason};

/// What a served model answers: `/v1/completions` and `/v1/chat/completions`,
/// `/v1/embeddings`, or `/v1/images/generations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServedKind {
    Text,
    Embeddings,
    Images,
}

impl ServedKind {
    /// The name `/v1/models` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedKind::Text => "text",
            ServedKind::Embeddings => "embeddings",
            ServedKind::Images => "images",
        }
    }
}

/// A model opened for serving.
pub struct ServedModel {
    /// The folder or file it was opened from.
    pub path: PathBuf,
    /// `gpt`, `llama`, `gguf`, `bert`, `gan`, `vae`, `diffusion`, ...
    pub family: String,
    pub(super) loaded: Loaded,
}

pub(super) enum Loaded {
    Text {
        model: Box<TextModel>,
        template: ChatFormat,
        /// The last prompt's cache, for prompts that start the same way.
        prefixes: Box<PrefixCache>,
    },
    Encoder(Box<SentenceEncoder>),
    Images(super::serve_images::ImageModel),
}

/// Who wrote a chat message, as the OpenAI wire format names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

/// A chat prompt rendered by the model's template.
#[derive(Clone, Debug)]
pub struct ChatPrompt {
    pub ids: Vec<u32>,
    /// Strings that end the reply under this template (added to the request's own).
    pub stop: Vec<String>,
}

/// Opens the model at `path` for serving: a text model (run folder, Hugging Face folder, GGUF
/// or llama2.c file) with its chat template, a sentence-encoder folder, or an image run (GAN,
/// VAE, diffusion).
pub fn open_served(path: &Path, device: &Device) -> Result<ServedModel> {
    if is_sentence_encoder(path) {
        let enc = SentenceEncoder::open(path, device)?;
        return Ok(ServedModel {
            path: path.to_path_buf(),
            family: "bert".into(),
            loaded: Loaded::Encoder(Box::new(enc)),
        });
    }
    let family = detect(path)?;
    let loaded = if family.is_text() {
        let session = open_chat(&ChatRequest {
            model: path.to_path_buf(),
            system: None,
            template: None,
            max_tokens: None,
            params: SamplingParams::default(),
            seed: 0,
            tokenizer: None,
            device: device.clone(),
        })?;
        for note in &session.notes {
            tracing::warn!("{}: {note}", path.display());
        }
        Loaded::Text {
            model: Box::new(session.model),
            template: session.conversation.template,
            prefixes: Box::default(),
        }
    } else if family.is_image_generator() {
        Loaded::Images(super::serve_images::ImageModel::open(path, family, device)?)
    } else {
        return Err(Error::usage(format!(
            "{} holds {}, which generates nothing to serve: give text models, sentence \
             encoders or image runs (GAN, VAE, diffusion)",
            path.display(),
            family.describe()
        )));
    };
    Ok(ServedModel {
        path: path.to_path_buf(),
        family: family.as_str().into(),
        loaded,
    })
}

/// A sentence-transformers folder (modules.json) or a plain BERT folder.
fn is_sentence_encoder(path: &Path) -> bool {
    if !path.is_dir() {
        return false;
    }
    if path.join("modules.json").is_file() {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(path.join("config.json")) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("model_type")?.as_str().map(|t| t == "bert"))
        .unwrap_or(false)
}

impl ServedModel {
    pub fn kind(&self) -> ServedKind {
        match self.loaded {
            Loaded::Text { .. } => ServedKind::Text,
            Loaded::Encoder(_) => ServedKind::Embeddings,
            Loaded::Images(_) => ServedKind::Images,
        }
    }

    /// Tokens a text model sees at once (the encoder's longest input for an encoder).
    pub fn context_len(&self) -> Option<usize> {
        match &self.loaded {
            Loaded::Text { model, .. } => Some(model.model.context_len()),
            Loaded::Encoder(e) => Some(e.max_seq_length()),
            Loaded::Images(_) => None,
        }
    }

    pub(super) fn text(&self) -> Result<&TextModel> {
        self.text_and_prefixes().map(|(model, _)| model)
    }

    pub(super) fn text_and_prefixes(&self) -> Result<(&TextModel, &PrefixCache)> {
        match &self.loaded {
            Loaded::Text {
                model, prefixes, ..
            } => Ok((model, prefixes)),
            _ => Err(self.wrong_kind(ServedKind::Text)),
        }
    }

    /// Prompt tokens whose keys and values were copied from an earlier prompt with the same
    /// start instead of computed (0 for a model that is not text).
    pub fn reused_prompt_tokens(&self) -> u64 {
        match &self.loaded {
            Loaded::Text { prefixes, .. } => prefixes.reused_tokens(),
            _ => 0,
        }
    }

    /// The error for a request this model cannot answer.
    pub fn wrong_kind(&self, wanted: ServedKind) -> Error {
        Error::usage(format!(
            "this model is a {} model ({}); the request needs a {} model",
            self.kind().as_str(),
            self.family,
            wanted.as_str()
        ))
    }

    /// Prompt text to token ids (after the model's BOS, when it uses one).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Err(Error::usage(
                "the prompt is empty: give at least one character",
            ));
        }
        self.text()?.encode_prompt(text)
    }

    /// The conversation rendered by the model's chat template, asking for the next reply.
    pub fn chat_prompt(&self, messages: &[(ChatRole, String)]) -> Result<ChatPrompt> {
        let Loaded::Text {
            model, template, ..
        } = &self.loaded
        else {
            return Err(self.wrong_kind(ServedKind::Text));
        };
        let messages: Vec<ChatMessage> = messages
            .iter()
            .map(|(role, content)| {
                let role = match role {
                    ChatRole::System => Role::System,
                    ChatRole::User => Role::User,
                    ChatRole::Assistant => Role::Assistant,
                };
                ChatMessage::new(role, content.clone())
            })
            .collect();
        let text = template.render_prompt(&messages)?;
        Ok(ChatPrompt {
            ids: model.encode_prompt(&text)?,
            stop: template.stop(),
        })
    }

    /// Embeddings of `texts` and the tokens they held (each truncated to the encoder's
    /// longest input).
    pub fn embed(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, usize)> {
        let Loaded::Encoder(enc) = &self.loaded else {
            return Err(self.wrong_kind(ServedKind::Embeddings));
        };
        let mut tokens = 0;
        for t in texts {
            tokens += enc.token_count(t)?.min(enc.max_seq_length());
        }
        let vectors = enc.encode_batched(texts, crate::embed::DEFAULT_BATCH_SIZE)?;
        Ok((vectors, tokens))
    }

    /// PNG images (each labelled AI-generated) for one images request, and the denoising
    /// strip when asked.
    pub fn images(&self, job: &ImageJob) -> Result<GeneratedImages> {
        let Loaded::Images(m) = &self.loaded else {
            return Err(self.wrong_kind(ServedKind::Images));
        };
        m.generate(job)
    }
}
