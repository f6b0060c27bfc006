//! Llama model configuration, in Hugging Face `LlamaConfig`'s field names, read from and
//! written to `config.json`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Architecture of a Llama-style decoder: RMSNorm, rotary positions, SwiGLU MLP, grouped-query
/// attention, no biases.
///
/// Field names are Hugging Face `LlamaConfig`'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    /// Output vocabulary.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU hidden layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Query heads per block.
    pub num_attention_heads: usize,
    /// Key/value heads per block (grouped-query attention when fewer than the query heads).
    pub num_key_value_heads: usize,
    /// Width of one head (`hidden_size / num_attention_heads` unless the config says).
    pub head_dim: usize,
    /// Longest context (positions).
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Base of the rotary frequencies.
    pub rope_theta: f64,
    /// Share the token embedding with the output head.
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence id, when the model has one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id, when the model has one (the first, if the config lists several).
    pub eos_token_id: Option<u32>,
}

impl LlamaConfig {
    /// Checks the shape constraints once, with messages that say what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim ({}) must be even for rotary embeddings",
                self.head_dim
            ));
        }
        Ok(())
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Width of all key (or value) heads together: one cache row.
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// The Hugging Face `config.json` (`model_type: llama`). Writes the rotary base both the
    /// transformers 4 way (`rope_theta`, `rope_scaling: null`) and the transformers 5 way
    /// (`rope_parameters`), so either version reads it.
    pub fn to_hf_json(&self) -> Value {
        serde_json::json!({
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": null,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
            "attention_dropout": 0.0,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "initializer_range": 0.02,
            "torch_dtype": "float32",
        })
    }

    /// Reads a Llama `config.json` (transformers 4 or 5 style), refusing what Muse's Llama
    /// does not implement (biases, rope scaling, other activations) with a message naming it.
    pub fn from_hf_json(v: &Value) -> Result<Self, String> {
        let get_usize = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| format!("config.json has no integer '{k}'"))
        };
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        for key in ["attention_bias", "mlp_bias"] {
            if flag(key) {
                return Err(format!(
                    "{key}: true is not supported (Muse's Llama has no biases)"
                ));
            }
        }
        match v.get("hidden_act").and_then(Value::as_str) {
            None | Some("silu") => {}
            Some(other) => {
                return Err(format!("hidden_act '{other}' is not supported (silu only)"));
            }
        }
        if let Some(tp) = v.get("pretraining_tp").and_then(Value::as_u64)
            && tp != 1
        {
            return Err(format!("pretraining_tp {tp} is not supported (1 only)"));
        }
        let rope_theta = rope_theta(v)?;
        let hidden_size = get_usize("hidden_size")?;
        let num_attention_heads = get_usize("num_attention_heads")?;
        let head_dim = match v.get("head_dim").and_then(Value::as_u64) {
            Some(h) => h as usize,
            None if num_attention_heads > 0 => hidden_size / num_attention_heads,
            None => 0,
        };
        let token = |k: &str| match v.get(k) {
            Some(Value::Number(n)) => n.as_u64().map(|x| x as u32),
            Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|x| x as u32),
            _ => None,
        };
        let cfg = Self {
            vocab_size: get_usize("vocab_size")?,
            hidden_size,
            intermediate_size: get_usize("intermediate_size")?,
            num_hidden_layers: get_usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: v
                .get("num_key_value_heads")
                .and_then(Value::as_u64)
                .map_or(num_attention_heads, |x| x as usize),
            head_dim,
            max_position_embeddings: get_usize("max_position_embeddings")?,
            rms_norm_eps: v
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta,
            tie_word_embeddings: flag("tie_word_embeddings"),
            bos_token_id: token("bos_token_id"),
            eos_token_id: token("eos_token_id"),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The rotary base from `rope_theta` (transformers 4) or `rope_parameters` (transformers 5);
/// any scaling other than the default is refused.
fn rope_theta(v: &Value) -> Result<f64, String> {
    let check_type = |t: Option<&str>| match t {
        None | Some("default") => Ok(()),
        Some(other) => Err(format!(
            "rope scaling '{other}' is not supported (plain RoPE only: rope_scaling null)"
        )),
    };
    match v.get("rope_scaling") {
        None | Some(Value::Null) => {}
        Some(s) => check_type(
            s.get("rope_type")
                .or_else(|| s.get("type"))
                .and_then(Value::as_str)
                .or(Some("unknown")),
        )?,
    }
    if let Some(p) = v.get("rope_parameters").filter(|p| !p.is_null()) {
        check_type(p.get("rope_type").and_then(Value::as_str))?;
        if let Some(theta) = p.get("rope_theta").and_then(Value::as_f64) {
            return Ok(theta);
        }
    }
    Ok(v.get("rope_theta")
        .and_then(Value::as_f64)
        .unwrap_or(10000.0))
}
