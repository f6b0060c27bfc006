//! Chat templates: how a conversation (system, user and assistant messages) becomes the one
//! prompt string a language model continues, and where each assistant reply ends.
//!
//! Muse stores a template as `chat_template.json` in the run or model folder:
//!
//! ```json
//! {
//!   "name": "chatml",
//!   "system": "<|im_start|>system\n{content}<|im_end|>\n",
//!   "user": "<|im_start|>user\n{content}<|im_end|>\n",
//!   "assistant": "<|im_start|>assistant\n{content}<|im_end|>\n",
//!   "default_system": "",
//!   "stop": ["<|im_end|>"]
//! }
//! ```
//!
//! Each role's pattern holds `{content}` exactly once; a conversation renders as the patterns
//! filled in, in order. To ask for a reply, the prompt ends with the assistant pattern's text
//! before `{content}` (trailing spaces left for the model to write), and generation stops at
//! any `stop` string. The text after `{content}` in the assistant pattern ends a reply in the
//! training data, so a fine-tuned model learns to emit it. `muse export` writes the same
//! template as the Jinja `chat_template` of `tokenizer_config.json`, which transformers'
//! `apply_chat_template` renders identically.
//!
//! A model without a template gets [`ChatTemplate::plain`]: `User: ...` / `Assistant: ...`
//! lines that any tokenizer, even a character-level one, can spell.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The file name of a stored template.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.json";

/// The placeholder each role pattern holds once.
pub const CONTENT: &str = "{content}";

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of a conversation (the shape of transformers' `messages`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A piece of a rendered conversation. `trainable` marks what the model should learn to
/// write (assistant content and the end of the assistant turn), for fine-tuning loss masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    pub trainable: bool,
}

/// A chat template (module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatTemplate {
    /// A short name for messages: `plain`, `chatml`, ...
    pub name: String,
    /// Pattern of a system message.
    pub system: String,
    /// Pattern of a user message.
    pub user: String,
    /// Pattern of an assistant message.
    pub assistant: String,
    /// System prompt used when none is given (empty: no system message).
    #[serde(default)]
    pub default_system: String,
    /// Generation stops at any of these.
    #[serde(default)]
    pub stop: Vec<String>,
}

impl ChatTemplate {
    /// The default for models without a template: plain `User:` / `Assistant:` lines after an
    /// optional system paragraph; a reply ends at the next line that starts a user turn.
    pub fn plain() -> Self {
        Self {
            name: "plain".into(),
            system: "{content}\n\n".into(),
            user: "User: {content}\n".into(),
            assistant: "Assistant: {content}\n".into(),
            default_system: String::new(),
            stop: vec!["\nUser:".into()],
        }
    }

    /// ChatML (`<|im_start|>role ... <|im_end|>`), as many chat models on the Hub use.
    pub fn chatml() -> Self {
        Self {
            name: "chatml".into(),
            system: "<|im_start|>system\n{content}<|im_end|>\n".into(),
            user: "<|im_start|>user\n{content}<|im_end|>\n".into(),
            assistant: "<|im_start|>assistant\n{content}<|im_end|>\n".into(),
            default_system: String::new(),
            stop: vec!["<|im_end|>".into()],
        }
    }

    /// Checks that every pattern holds `{content}` exactly once.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (role, p) in [
            ("system", &self.system),
            ("user", &self.user),
            ("assistant", &self.assistant),
        ] {
            if p.matches(CONTENT).count() != 1 {
                return Err(format!(
                    "the {role} pattern {p:?} must contain {CONTENT} exactly once"
                ));
            }
        }
        Ok(())
    }

    /// The pattern of `role`, split around `{content}`.
    fn parts(&self, role: Role) -> (&str, &str) {
        let p = match role {
            Role::System => &self.system,
            Role::User => &self.user,
            Role::Assistant => &self.assistant,
        };
        p.split_once(CONTENT).unwrap_or((p.as_str(), ""))
    }

    /// What a prompt ends with to ask for a reply: the assistant pattern before `{content}`,
    /// without trailing spaces (a BPE model writes the space as part of its first word).
    pub fn generation_prompt(&self) -> &str {
        self.parts(Role::Assistant).0.trim_end_matches(' ')
    }

    /// The conversation as text; with `add_generation_prompt`, followed by the start of an
    /// assistant reply.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        let mut text: String = self
            .render_segments(messages)
            .into_iter()
            .map(|s| s.text)
            .collect();
        if add_generation_prompt {
            text.push_str(self.generation_prompt());
        }
        text
    }

    /// The conversation as segments, assistant content and turn endings marked trainable.
    pub fn render_segments(&self, messages: &[ChatMessage]) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut push = |text: &str, trainable: bool| {
            if !text.is_empty() {
                out.push(Segment {
                    text: text.to_string(),
                    trainable,
                });
            }
        };
        for m in messages {
            let (before, after) = self.parts(m.role);
            let assistant = m.role == Role::Assistant;
            push(before, false);
            push(&m.content, assistant);
            push(after, assistant);
        }
        out
    }

    /// The same template in transformers' Jinja form, for `tokenizer_config.json`.
    pub fn to_jinja(&self) -> String {
        let lit = |s: &str| serde_json::to_string(s).expect("strings serialise");
        let mut j = String::from("{#- Muse chat template: ");
        j.push_str(&self.name.replace("#}", ""));
        j.push_str(" -#}{%- for message in messages -%}");
        for (i, role) in [Role::System, Role::User, Role::Assistant]
            .iter()
            .enumerate()
        {
            let name = match role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            let (before, after) = self.parts(*role);
            j.push_str(if i == 0 { "{%- if" } else { "{%- elif" });
            j.push_str(&format!(
                " message['role'] == '{name}' -%}}{{{{ {} + message['content'] + {} }}}}",
                lit(before),
                lit(after)
            ));
        }
        j.push_str("{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}");
        j.push_str(&format!("{{{{ {} }}}}", lit(self.generation_prompt())));
        j.push_str("{%- endif -%}");
        j
    }

    /// Reads `chat_template.json` from `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(CHAT_TEMPLATE_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let t: Self = crate::io::read_json(&path)?;
        t.validate()
            .map_err(|e| Error::input(format!("{}: {e}", path.display())))?;
        Ok(Some(t))
    }

    /// Writes `chat_template.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.validate().map_err(Error::usage)?;
        crate::io::write_json_atomic(&dir.join(CHAT_TEMPLATE_FILE), self)
    }

    /// The template of a model folder: its `chat_template.json`; else a Jinja template in
    /// `tokenizer_config.json` that Muse recognises (ChatML); else [`ChatTemplate::plain`].
    /// The flag says whether a Jinja template was present but not understood.
    pub fn for_model_dir(dir: &Path) -> Result<(Self, bool)> {
        if let Some(t) = Self::load(dir)? {
            return Ok((t, false));
        }
        let config = dir.join("tokenizer_config.json");
        let jinja = std::fs::read_to_string(&config)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| {
                v.get("chat_template")
                    .and_then(|t| t.as_str())
                    .map(str::to_string)
            });
        Ok(Self::from_jinja(jinja.as_deref()))
    }

    /// The template a model's Jinja chat template amounts to: ChatML when it writes
    /// `<|im_start|>` and `<|im_end|>`, else plain. The flag is true when a Jinja template
    /// was there but not recognised.
    pub fn from_jinja(jinja: Option<&str>) -> (Self, bool) {
        match jinja {
            Some(j) if j.contains("<|im_start|>") && j.contains("<|im_end|>") => {
                (Self::chatml(), false)
            }
            Some(_) => (Self::plain(), true),
            None => (Self::plain(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Hi"),
            ChatMessage::new(Role::Assistant, "Hello."),
            ChatMessage::new(Role::User, "Bye"),
        ]
    }

    #[test]
    fn plain_renders_lines_and_a_generation_prompt() {
        let t = ChatTemplate::plain();
        assert_eq!(
            t.render(&convo(), true),
            "Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:"
        );
    }

    #[test]
    fn segments_mark_assistant_text_trainable() {
        let t = ChatTemplate::chatml();
        let segs = t.render_segments(&convo()[1..3]);
        let trainable: String = segs
            .iter()
            .filter(|s| s.trainable)
            .map(|s| s.text.as_str())
            .collect();
        assert_eq!(trainable, "Hello.<|im_end|>\n");
        let all: String = segs.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(all, t.render(&convo()[1..3], false));
    }

    #[test]
    fn patterns_need_one_content_placeholder() {
        let mut t = ChatTemplate::plain();
        t.user = "User: ".into();
        assert!(t.validate().unwrap_err().contains("user"));
    }

    #[test]
    fn jinja_form_names_every_role() {
        let j = ChatTemplate::plain().to_jinja();
        assert!(j.contains("'system'") && j.contains("'user'") && j.contains("'assistant'"));
        assert!(j.contains("\"User: \"") && j.contains("\"\\n\""));
        assert!(j.contains("add_generation_prompt"));
    }
}
