//! BERT encoder configuration in the Hugging Face `config.json` form (`BertConfig`).

use serde::{Deserialize, Serialize};

use crate::nn::ops::GeluKind;

/// Architecture of a BERT encoder ("BERT: Pre-training of Deep Bidirectional Transformers",
/// Devlin et al. 2018): post-LayerNorm blocks, learned absolute positions, token types.
///
/// Field names are Hugging Face `BertConfig`'s; fields Muse does not use (dropout rates,
/// `initializer_range`, ...) are ignored when read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Rows of the word-embedding table.
    pub vocab_size: usize,
    /// Width of the token states.
    pub hidden_size: usize,
    /// Number of encoder blocks.
    pub num_hidden_layers: usize,
    /// Attention heads per block; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation: `gelu` (erf), `gelu_new` / `gelu_pytorch_tanh` (tanh form).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest input in tokens (rows of the position table).
    pub max_position_embeddings: usize,
    /// Rows of the token-type (segment) table.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Id of `[PAD]`.
    #[serde(default)]
    pub pad_token_id: u32,
    /// Only `absolute` is supported.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

/// The `model_type` values read as BERT.
pub const BERT_MODEL_TYPES: &[&str] = &["bert"];

impl BertConfig {
    /// all-MiniLM-L6-v2 (sentence-transformers): 6 layers, 384 wide, 12 heads.
    pub fn minilm_l6() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            hidden_act: "gelu".into(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
        }
    }

    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The feed-forward GELU (the only activations supported; see [`Self::validate`]).
    pub fn gelu_kind(&self) -> GeluKind {
        match self.hidden_act.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" => GeluKind::Tanh,
            _ => GeluKind::Erf,
        }
    }

    /// Checks the shape constraints once, with messages that say what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size ({}) must be a multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !matches!(
            self.hidden_act.as_str(),
            "gelu" | "gelu_new" | "gelu_pytorch_tanh"
        ) {
            return Err(format!(
                "hidden_act '{}' is not supported: Muse's BERT has gelu, gelu_new and \
                 gelu_pytorch_tanh",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type '{}' is not supported: Muse's BERT has absolute \
                 positions only",
                self.position_embedding_type
            ));
        }
        if self.pad_token_id as usize >= self.vocab_size {
            return Err(format!(
                "pad_token_id ({}) is outside the vocabulary ({})",
                self.pad_token_id, self.vocab_size
            ));
        }
        Ok(())
    }

    /// Reads a Hugging Face BERT `config.json`; another `model_type` (a GPT-2 or Llama folder)
    /// is an error that says a BERT encoder was expected.
    pub fn from_hf_json(v: &serde_json::Value) -> Result<Self, String> {
        match v.get("model_type").and_then(|x| x.as_str()) {
            Some(t) if BERT_MODEL_TYPES.contains(&t) => {}
            Some(other) => {
                return Err(format!(
                    "model_type is '{other}', not a BERT encoder: expected model_type 'bert' \
                     (a sentence encoder folder such as all-MiniLM-L6-v2)"
                ));
            }
            None => {
                return Err(
                    "no model_type: expected model_type 'bert' (a BERT encoder folder \
                            such as all-MiniLM-L6-v2)"
                        .into(),
                );
            }
        }
        let cfg: Self = serde_json::from_value(v.clone()).map_err(|e| format!("{e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The Hugging Face `config.json` of this architecture (`model_type: bert`).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("model_type".into(), "bert".into());
            obj.insert("architectures".into(), serde_json::json!(["BertModel"]));
        }
        v
    }

    /// Reads `path` (a `config.json`).
    pub fn read(path: &std::path::Path) -> candle_core::Result<Self> {
        let msg = |m: String| candle_core::Error::Msg(m);
        let text =
            std::fs::read_to_string(path).map_err(|e| msg(format!("{}: {e}", path.display())))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| msg(format!("{} is not valid JSON: {e}", path.display())))?;
        Self::from_hf_json(&value).map_err(|e| msg(format!("{}: {e}", path.display())))
    }
}
