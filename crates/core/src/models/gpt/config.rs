//! GPT-2 style model configuration, with presets and the Hugging Face `config.json` form.

use serde::{Deserialize, Serialize};

/// The MLP activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Exact GELU (erf), as nanoGPT and `torch.nn.functional.gelu` use.
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation GPT-2 was trained with (HF `gelu_new`).
    #[serde(rename = "gelu_new")]
    GeluNew,
}

/// Architecture of a GPT-2 style decoder (pre-LayerNorm blocks, learned positions).
///
/// Field names are Hugging Face `GPT2Config`'s where one exists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GptConfig {
    /// Output vocabulary; 0 in a preset means "the tokenizer's size".
    pub vocab_size: usize,
    /// Context length (nanoGPT's `block_size`).
    pub n_positions: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block; must divide `n_embd`.
    pub n_head: usize,
    /// Biases in linear layers and LayerNorms (GPT-2: true; nanoGPT baby GPT: false).
    pub bias: bool,
    /// Dropout on embeddings, attention weights and residual branches while training.
    pub dropout: f32,
    /// LayerNorm epsilon.
    pub layer_norm_epsilon: f64,
    /// MLP activation.
    pub activation_function: Activation,
    /// Share the token embedding with the output head.
    pub tie_word_embeddings: bool,
}

impl GptConfig {
    /// nanoGPT's "baby GPT" for CPU: 4 layers, 4 heads, 128 wide, context 64, no bias.
    pub fn char_baby() -> Self {
        Self {
            vocab_size: 0,
            n_positions: 64,
            n_embd: 128,
            n_layer: 4,
            n_head: 4,
            bias: false,
            dropout: 0.0,
            layer_norm_epsilon: 1e-5,
            activation_function: Activation::Gelu,
            tie_word_embeddings: true,
        }
    }

    /// nanoGPT's Shakespeare-char GPU config: 6 layers, 6 heads, 384 wide, context 256.
    pub fn char_shakespeare() -> Self {
        Self {
            n_positions: 256,
            n_embd: 384,
            n_layer: 6,
            n_head: 6,
            dropout: 0.2,
            ..Self::char_baby()
        }
    }

    /// GPT-2 small (124M): 12 layers, 12 heads, 768 wide, context 1024, GPT-2 BPE.
    pub fn gpt2_small() -> Self {
        Self {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            bias: true,
            dropout: 0.0,
            layer_norm_epsilon: 1e-5,
            activation_function: Activation::GeluNew,
            tie_word_embeddings: true,
        }
    }

    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Checks the shape constraints once, with messages that say what to change.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                self.vocab_size > 0,
                "vocab_size must be positive".to_string(),
            ),
            (
                self.n_positions > 0,
                "n_positions (block size) must be positive".to_string(),
            ),
            (self.n_layer > 0, "n_layer must be positive".to_string()),
            (self.n_head > 0, "n_head must be positive".to_string()),
            (
                self.n_head > 0 && self.n_embd.is_multiple_of(self.n_head),
                format!(
                    "n_embd ({}) must be a multiple of n_head ({})",
                    self.n_embd, self.n_head
                ),
            ),
            (
                (0.0..1.0).contains(&self.dropout),
                "dropout must be in [0, 1)".to_string(),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg),
            None => Ok(()),
        }
    }

    /// The Hugging Face `config.json` for this model (`model_type: gpt2`), with `bias` added
    /// when the model has none (transformers' GPT-2 always has biases; export fills zeros).
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": null,
            "activation_function": self.activation_function,
            "resid_pdrop": self.dropout,
            "embd_pdrop": self.dropout,
            "attn_pdrop": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": 0.02,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bias": self.bias,
            "torch_dtype": "float32",
        })
    }

    /// Reads a GPT-2 `config.json` (ours or Hugging Face's).
    pub fn from_hf_json(v: &serde_json::Value) -> Result<Self, String> {
        let get_usize = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| format!("config.json has no integer '{k}'"))
        };
        if let Some(inner) = v.get("n_inner").and_then(|x| x.as_u64()) {
            let n_embd = get_usize("n_embd")?;
            if inner as usize != 4 * n_embd {
                return Err(format!("n_inner {inner} is not 4 * n_embd; not supported"));
            }
        }
        let activation_function = match v.get("activation_function").and_then(|x| x.as_str()) {
            Some("gelu") => Activation::Gelu,
            Some("gelu_new") | Some("gelu_pytorch_tanh") | None => Activation::GeluNew,
            Some(other) => return Err(format!("activation_function '{other}' is not supported")),
        };
        let cfg = Self {
            vocab_size: get_usize("vocab_size")?,
            n_positions: get_usize("n_positions")?,
            n_embd: get_usize("n_embd")?,
            n_layer: get_usize("n_layer")?,
            n_head: get_usize("n_head")?,
            bias: v.get("bias").and_then(|x| x.as_bool()).unwrap_or(true),
            dropout: v.get("resid_pdrop").and_then(|x| x.as_f64()).unwrap_or(0.0) as f32,
            layer_norm_epsilon: v
                .get("layer_norm_epsilon")
                .and_then(|x| x.as_f64())
                .unwrap_or(1e-5),
            activation_function,
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(|x| x.as_bool())
                .unwrap_or(true),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
