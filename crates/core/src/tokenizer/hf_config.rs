//! What a Hugging Face folder's `tokenizer_config.json` says beyond `tokenizer.json`: the
//! special tokens by text, whether a BOS is added (`add_bos_token`), and the Jinja
//! `chat_template`.

use std::path::Path;

use serde_json::Value;

use super::TextTokenizer;
use super::jinja::JinjaTemplate;
use crate::error::{Error, Result};

/// The parts of `tokenizer_config.json` Muse follows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenizerConfig {
    /// `add_bos_token`, when the file says.
    pub add_bos_token: Option<bool>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// `chat_template` (the one named `default` when the file lists several).
    pub chat_template: Option<String>,
}

impl TokenizerConfig {
    /// Reads `dir/tokenizer_config.json`; a folder without one gives the default (all `None`).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        if !path.is_file() {
            return Ok(Self::default());
        }
        let v: Value = crate::io::read_json(&path)?;
        Ok(Self::from_json(&v))
    }

    pub fn from_json(v: &Value) -> Self {
        // A special token is a string or an AddedToken object with "content".
        let token = |k: &str| match v.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        let chat_template = match v.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        Self {
            add_bos_token: v.get("add_bos_token").and_then(Value::as_bool),
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            chat_template,
        }
    }

    /// These fields as a `tokenizer_config.json` (what a run writes, so that a model made from
    /// a GGUF file or a Hugging Face folder keeps its BOS rule, EOS and chat template).
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::Map::new();
        if let Some(add) = self.add_bos_token {
            v.insert("add_bos_token".into(), Value::Bool(add));
        }
        let fields = [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("chat_template", &self.chat_template),
        ];
        for (key, value) in fields {
            if let Some(text) = value {
                v.insert(key.into(), Value::String(text.clone()));
            }
        }
        Value::Object(v)
    }

    /// The chat template, ready to render (`None` when the folder has none).
    pub fn jinja(&self, dir: &Path) -> Option<JinjaTemplate> {
        self.jinja_from(dir.join("tokenizer_config.json").display().to_string())
    }

    /// [`TokenizerConfig::jinja`] with `source` naming where the template came from (in
    /// messages).
    pub fn jinja_from(&self, source: String) -> Option<JinjaTemplate> {
        self.chat_template.as_ref().map(|src| {
            JinjaTemplate::new(
                src.clone(),
                source,
                self.bos_token.clone().unwrap_or_default(),
                self.eos_token.clone().unwrap_or_default(),
            )
        })
    }

    /// The BOS id to put before every prompt, as transformers' tokenizer adds it: `add_bos_token`
    /// when the file says (with `bos_token`, else `fallback_bos`); otherwise whatever
    /// `tokenizer.json`'s post-processor puts in front of a text.
    pub fn bos_id(&self, tok: &TextTokenizer, fallback_bos: Option<u32>) -> Result<Option<u32>> {
        match self.add_bos_token {
            Some(false) => Ok(None),
            Some(true) => {
                let id = self
                    .bos_token
                    .as_deref()
                    .and_then(|t| tok.token_to_id(t))
                    .or(fallback_bos);
                if id.is_none() {
                    return Err(Error::input(
                        "tokenizer_config.json says add_bos_token: true but names no BOS token \
                         the tokenizer knows",
                    ));
                }
                Ok(id)
            }
            None => Ok(tok.post_processor_prefix()),
        }
    }
}
