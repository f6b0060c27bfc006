//! Tokenizers from GGUF metadata (`tokenizer.ggml.*`), as llama.cpp reads them:
//!
//! - `gpt2`: byte-level BPE from `tokens` and `merges` (Radford et al. 2019), built by candle's
//!   `TokenizerFromGguf`; the pre-tokenizer is then set from `tokenizer.ggml.pre` to match the
//!   model's Hugging Face `tokenizer.json` (no prefix space; `smollm` splits digits one by one).
//! - `llama`: SentencePiece BPE from `tokens`, `scores` and `token_type`, through the same
//!   `tokenizer.json` pipeline as a `tokenizer.model` ([`super::sentencepiece`]).
//!
//! Special tokens (`bos`, `eos`, `eot`) come from their `*_token_id` entries.

use std::str::FromStr;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use tokenizers::Tokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

use super::TextTokenizer;
use super::sentencepiece::{Piece, PieceKind, hf_tokenizer_json};

/// The ids a GGUF file names for its special tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GgufSpecials {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// End of turn, when the model has one apart from `eos`.
    pub eot: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; when absent, llama.cpp's default: true for SentencePiece
    /// (`llama`) vocabularies, false for `gpt2` ones.
    pub add_bos: bool,
}

/// What a GGUF file says beyond its vocabulary, in `tokenizer_config.json` terms: the BOS
/// rule, the BOS and EOS tokens by their text in `tok`, and the Jinja chat template
/// (`tokenizer.chat_template`). Sampling renders the template from it; a run tuned from the
/// file stores it.
pub fn tokenizer_config(
    ct: &Content,
    tok: &TextTokenizer,
    specials: &GgufSpecials,
) -> super::hf_config::TokenizerConfig {
    let text = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
    super::hf_config::TokenizerConfig {
        add_bos_token: Some(specials.add_bos),
        bos_token: text(specials.bos),
        eos_token: text(specials.eos),
        chat_template: match ct.metadata.get("tokenizer.chat_template") {
            Some(Value::String(src)) => Some(src.clone()),
            _ => None,
        },
    }
}

/// The tokenizer and special tokens of a GGUF file. Errors are plain messages.
pub fn from_gguf(ct: &Content) -> Result<(TextTokenizer, GgufSpecials), String> {
    let model = match ct.metadata.get("tokenizer.ggml.model") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("has no tokenizer (metadata tokenizer.ggml.model)".into()),
    };
    let id = |key: &str| -> Option<u32> { ct.metadata.get(key).and_then(as_u64).map(|v| v as u32) };
    let specials = GgufSpecials {
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        eot: id("tokenizer.ggml.eot_token_id"),
        add_bos: match ct.metadata.get("tokenizer.ggml.add_bos_token") {
            Some(Value::Bool(b)) => *b,
            _ => model == "llama",
        },
    };
    let inner = match model.as_str() {
        "gpt2" => gpt2(ct)?,
        "llama" => sentencepiece(ct)?,
        other => {
            return Err(format!(
                "has a '{other}' tokenizer; Muse reads the gpt2 (BPE) and llama \
                 (SentencePiece) kinds"
            ));
        }
    };
    let mut tok = TextTokenizer::from_hf(inner);
    tok.set_eos_ids(specials.eos.into_iter().chain(specials.eot).collect());
    Ok((tok, specials))
}

fn gpt2(ct: &Content) -> Result<Tokenizer, String> {
    let mut tok = Tokenizer::from_gguf(ct).map_err(|e| {
        let e = match e {
            candle_core::Error::WithBacktrace { inner, .. } => *inner,
            e => e,
        };
        format!("cannot build its BPE tokenizer: {e}")
    })?;
    let pre = match ct.metadata.get("tokenizer.ggml.pre") {
        Some(Value::String(s)) => s.as_str(),
        _ => "gpt2",
    };
    // candle already matches qwen2 and llama3; GPT-2's own tokenizer (and its relatives) puts
    // no space in front of the text, which candle's default ByteLevel does.
    if !matches!(pre, "qwen2" | "llama3" | "smaug-bpe" | "lfm2") {
        let byte_level = ByteLevel::new(false, true, true);
        if pre == "smollm" {
            tok.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                byte_level.into(),
            ])));
        } else {
            tok.with_pre_tokenizer(Some(byte_level));
        }
    }
    Ok(tok)
}

fn sentencepiece(ct: &Content) -> Result<Tokenizer, String> {
    let array = |key: &str| -> Result<&Vec<Value>, String> {
        match ct.metadata.get(key) {
            Some(Value::Array(a)) => Ok(a),
            _ => Err(format!("has no {key} array")),
        }
    };
    let tokens = array("tokenizer.ggml.tokens")?;
    let scores = array("tokenizer.ggml.scores")?;
    let types = array("tokenizer.ggml.token_type").ok();
    if scores.len() != tokens.len() {
        return Err("tokenizer.ggml.scores and tokens differ in length".into());
    }
    let mut pieces = Vec::with_capacity(tokens.len());
    for (i, (t, s)) in tokens.iter().zip(scores).enumerate() {
        let piece = match t {
            Value::String(s) => s.clone(),
            _ => return Err(format!("token {i} is not a string")),
        };
        let score = match s {
            Value::F32(x) => *x,
            Value::F64(x) => *x as f32,
            _ => 0.0,
        };
        // llama.cpp's llama_token_type: 1 normal, 2 unknown, 3 control, 4 user-defined,
        // 5 unused, 6 byte.
        let kind = match types.and_then(|ts| ts.get(i)).and_then(as_u64) {
            Some(2) => PieceKind::Unknown,
            Some(3) => PieceKind::Control,
            Some(4) => PieceKind::UserDefined,
            Some(5) => PieceKind::Unused,
            Some(6) => PieceKind::Byte,
            _ => PieceKind::Normal,
        };
        pieces.push(Piece { piece, score, kind });
    }
    let json = hf_tokenizer_json(&pieces)?;
    Tokenizer::from_str(&json.to_string()).map_err(|e| format!("cannot build the tokenizer: {e}"))
}

/// An integer metadata value (negative values are `None`).
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(*x as u64),
        Value::U16(x) => Some(*x as u64),
        Value::U32(x) => Some(*x as u64),
        Value::U64(x) => Some(*x),
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    }
}
