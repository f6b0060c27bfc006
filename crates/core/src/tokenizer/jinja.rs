//! Jinja chat templates: the `chat_template` that Hugging Face folders carry in
//! `tokenizer_config.json` and GGUF files in `tokenizer.chat_template`, rendered by a real
//! Jinja engine (`minijinja`) the way transformers' `apply_chat_template` renders them:
//! `trim_blocks` and `lstrip_blocks` on, `messages`, `add_generation_prompt`, `bos_token` and
//! `eos_token` in scope, `raise_exception(msg)` to fail, and Python's string methods
//! (`.strip()`, `.startswith()`, ...) through minijinja-contrib's pycompat.
//!
//! [`ChatFormat`] is what a chat session renders with: a Jinja template, or one of Muse's own
//! pattern templates ([`ChatTemplate`]).

use minijinja::{Environment, Error as JinjaError, ErrorKind, context};

use super::chat::{ChatMessage, ChatTemplate};
use crate::error::{Error, Result};

/// A Jinja chat template with the special tokens it may refer to.
#[derive(Clone, Debug)]
pub struct JinjaTemplate {
    /// The template source.
    pub source: String,
    /// Where it came from, for messages (`tokenizer_config.json`, `GGUF metadata`).
    pub origin: String,
    pub bos_token: String,
    pub eos_token: String,
}

impl JinjaTemplate {
    /// A template from `source`. It is parsed when rendered, so a model whose template is
    /// broken still samples; [`JinjaTemplate::check`] parses it now.
    pub fn new(
        source: impl Into<String>,
        origin: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            origin: origin.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        }
    }

    /// Fails with [`Error::Input`] when the template does not parse.
    pub fn check(&self) -> Result<()> {
        self.env()
            .template_from_str(&self.source)
            .map(|_| ())
            .map_err(|e| self.error("does not parse", &e))
    }

    /// The conversation as the model's prompt text; with `add_generation_prompt`, followed by
    /// the start of an assistant reply.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let env = self.env();
        let tmpl = env
            .template_from_str(&self.source)
            .map_err(|e| self.error("does not parse", &e))?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| self.error("failed to render", &e))
    }

    fn env(&self) -> Environment<'_> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, JinjaError> {
                Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env
    }

    fn error(&self, what: &str, e: &JinjaError) -> Error {
        let mut text = e.to_string();
        if let Some(detail) = e.detail()
            && !text.contains(detail)
        {
            text = format!("{text}: {detail}");
        }
        Error::input(format!(
            "the chat template in {} {what} ({text}); pass --template plain or chatml, or a \
             chat_template.json",
            self.origin
        ))
    }
}

/// What a chat renders a conversation with.
#[derive(Clone, Debug)]
pub enum ChatFormat {
    /// One of Muse's pattern templates (`plain`, `chatml`, a `chat_template.json`).
    Patterns(ChatTemplate),
    /// A Jinja template from the model's files.
    Jinja(JinjaTemplate),
}

impl ChatFormat {
    /// A short name for messages.
    pub fn name(&self) -> String {
        match self {
            Self::Patterns(t) => t.name.clone(),
            Self::Jinja(_) => "the model's Jinja".into(),
        }
    }

    /// The prompt text of `messages`, asking for the next assistant reply.
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String> {
        match self {
            Self::Patterns(t) => Ok(t.render(messages, true)),
            Self::Jinja(j) => j.render(messages, true),
        }
    }

    /// Strings that end a reply (besides the end-of-sequence ids).
    pub fn stop(&self) -> Vec<String> {
        match self {
            Self::Patterns(t) => t.stop.clone(),
            Self::Jinja(j) if !j.eos_token.is_empty() => vec![j.eos_token.clone()],
            Self::Jinja(_) => Vec::new(),
        }
    }
}
