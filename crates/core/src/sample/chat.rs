//! A chat session: a conversation history rendered through a [`ChatFormat`], fitted into the
//! model's context by dropping the oldest turns, and replies generated (streamed) until the
//! template's stop string or end-of-text.

use crate::error::{Error, Result};
use crate::sample::generate::{GenerateOptions, Generated, TokenEvent, generate};
use crate::sample::logits::Sampler;
use crate::sample::open::TextModel;
use crate::tokenizer::chat::{ChatMessage, Role};
use crate::tokenizer::jinja::ChatFormat;

/// A conversation with one model.
#[derive(Clone, Debug)]
pub struct Conversation {
    pub template: ChatFormat,
    /// The system prompt (empty: none).
    pub system: String,
    /// User and assistant messages, oldest first.
    pub history: Vec<ChatMessage>,
}

/// What [`Conversation::reply`] did.
#[derive(Clone, Debug)]
pub struct Reply {
    pub generated: Generated,
    /// The reply as stored in the history (trimmed).
    pub text: String,
    /// Old messages dropped to fit the context before this reply.
    pub dropped: usize,
}

impl Conversation {
    /// A new conversation; `system` overrides the template's default system prompt.
    pub fn new(template: ChatFormat, system: Option<String>) -> Self {
        let default = match &template {
            ChatFormat::Patterns(t) => t.default_system.clone(),
            // A Jinja template supplies its own default system message, if any.
            ChatFormat::Jinja(_) => String::new(),
        };
        let system = system.unwrap_or(default);
        Self {
            template,
            system,
            history: Vec::new(),
        }
    }

    /// Forgets every message (the system prompt stays).
    pub fn reset(&mut self) {
        self.history.clear();
    }

    /// The messages to render: system prompt (when set), then the history.
    pub fn messages(&self) -> Vec<ChatMessage> {
        let system =
            (!self.system.is_empty()).then(|| ChatMessage::new(Role::System, &self.system));
        system
            .into_iter()
            .chain(self.history.iter().cloned())
            .collect()
    }

    /// Token ids of the prompt asking for the next reply, dropping the oldest messages (a user
    /// message with the reply that followed it) until the prompt leaves `reserve` positions
    /// of the context free. Returns the ids and how many messages were dropped.
    pub fn prompt_ids(&mut self, tm: &TextModel, reserve: usize) -> Result<(Vec<u32>, usize)> {
        let budget = tm.model.context_len().saturating_sub(reserve);
        let mut dropped = 0;
        loop {
            let text = self.template.render_prompt(&self.messages())?;
            let ids = tm.encode_prompt(&text)?;
            if ids.len() <= budget {
                return Ok((ids, dropped));
            }
            // Keep the last message (the user's new one); drop from the front.
            if self.history.len() <= 1 {
                return Err(Error::usage(format!(
                    "the message needs {} tokens with the system prompt and chat template, but \
                     the model's context of {} leaves room for {budget} before the reply: \
                     write a shorter message or a shorter --system",
                    ids.len(),
                    tm.model.context_len()
                )));
            }
            let n = if self.history[0].role == Role::User && self.history.len() > 2 {
                2
            } else {
                1
            };
            self.history.drain(..n);
            dropped += n;
        }
    }

    /// Adds `user`'s message, generates the reply (streamed through `on_token`) and stores it.
    /// The reply gets what the context leaves after the prompt, at most `opts.max_tokens` and
    /// at least a quarter of the context (older messages are dropped for it); the template's
    /// stop strings are added.
    pub fn reply(
        &mut self,
        tm: &TextModel,
        user: &str,
        opts: &GenerateOptions,
        sampler: &mut Sampler,
        on_token: &mut dyn FnMut(TokenEvent) -> Result<()>,
    ) -> Result<Reply> {
        self.history.push(ChatMessage::new(Role::User, user));
        // Keep at least a quarter of the context (or the whole reply, if shorter) for the
        // reply; a prompt that leaves more gets a longer reply, up to `opts.max_tokens`.
        let context = tm.model.context_len();
        let reserve = opts.max_tokens.min((context / 4).max(1));
        let (ids, dropped) = match self.prompt_ids(tm, reserve) {
            Ok(x) => x,
            Err(e) => {
                self.history.pop();
                return Err(e);
            }
        };
        let mut opts = opts.clone();
        opts.max_tokens = opts
            .max_tokens
            .min(context.saturating_sub(ids.len()).max(1));
        opts.stop.extend(self.template.stop());
        opts.stop_at_eos = true;
        let generated = match generate(
            tm.model.as_ref(),
            &tm.tokenizer,
            &ids,
            &opts,
            sampler,
            on_token,
        ) {
            Ok(g) => g,
            Err(e) => {
                self.history.pop();
                return Err(e);
            }
        };
        let text = generated.text.trim().to_string();
        self.history
            .push(ChatMessage::new(Role::Assistant, text.clone()));
        Ok(Reply {
            generated,
            text,
            dropped,
        })
    }
}
