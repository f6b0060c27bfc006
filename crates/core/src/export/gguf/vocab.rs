//! A tokenizer as GGUF metadata (`tokenizer.ggml.*`), the inverse of
//! [`crate::tokenizer::gguf`], as llama.cpp's `convert_hf_to_gguf.py` writes it:
//!
//! - byte-level BPE (GPT-2, SmolLM, Muse's trained BPE) as the `gpt2` kind: tokens, merges and
//!   token types, with the pre-tokenizer named in `tokenizer.ggml.pre`;
//! - SentencePiece-style BPE (`▁` for spaces, byte fallback: Llama 2, llama2.c, TinyLlama) as
//!   the `llama` kind: tokens, scores and token types. A `tokenizer.json` has merges, not
//!   SentencePiece scores; a token's score is minus the rank of the merge that makes it, so
//!   llama.cpp's highest-score-first merging applies the merges in their order.
//!
//! Rows of the embedding that the tokenizer does not name become `[PAD{id}]` tokens of the
//! unused type (llama.cpp wants one token per row).

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;

use crate::tokenizer::TextTokenizer;

/// llama.cpp's `llama_token_type`.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// Special tokens and the BOS rule, as Muse runs the model.
pub(super) struct Specials {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// The tokenizer puts `bos` in front of every prompt.
    pub add_bos: bool,
}

/// The `tokenizer.ggml.*` entries of `tok` for a model of `n_vocab` embedding rows, and notes
/// for the user. Errors are plain messages.
pub(super) fn tokenizer_metadata(
    tok: &TextTokenizer,
    n_vocab: usize,
    specials: &Specials,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, Value)>, String> {
    let json: Json = serde_json::from_str(
        &tok.inner()
            .to_string(false)
            .map_err(|e| format!("cannot read the tokenizer: {e}"))?,
    )
    .map_err(|e| format!("cannot read the tokenizer: {e}"))?;
    let model = &json["model"];
    let kind = model["type"].as_str().unwrap_or("unknown");
    let mentions = |part: &str, what: &str| json[part].to_string().contains(what);
    let byte_level = mentions("pre_tokenizer", "ByteLevel") || mentions("decoder", "ByteLevel");
    let sentencepiece = model["byte_fallback"].as_bool() == Some(true)
        || mentions("pre_tokenizer", "Metaspace")
        || mentions("normalizer", "\u{2581}");
    if kind != "BPE" || !(byte_level || sentencepiece) {
        let no_merges = model["merges"].as_array().is_none_or(|m| m.is_empty());
        let what = if kind == "BPE" && no_merges {
            // Muse's character tokenizer is a BPE vocabulary of single characters.
            "a character-level tokenizer".to_string()
        } else if kind == "BPE" {
            "a BPE tokenizer that is neither byte-level nor SentencePiece-style".to_string()
        } else {
            format!("a {kind} tokenizer (character-level runs have one)")
        };
        return Err(format!(
            "the model has {what}, which llama.cpp cannot read: GGUF holds byte-level BPE \
             (gpt2) and SentencePiece (llama) vocabularies; train the model with a BPE \
             tokenizer (`muse tokenizer train --kind bpe`) or pass one with --tokenizer"
        ));
    }

    // Tokens by id, with how each is flagged.
    let mut tokens: Vec<Option<String>> = vec![None; n_vocab];
    let mut put = |id: u64, text: &str| -> Result<(), String> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            format!("the tokenizer has token {id} but the model only {n_vocab} rows")
        })?;
        *slot = Some(text.to_string());
        Ok(())
    };
    for (text, id) in model["vocab"].as_object().into_iter().flatten() {
        put(id.as_u64().unwrap_or(u64::MAX), text)?;
    }
    let mut added: HashMap<String, bool> = HashMap::new();
    for a in json["added_tokens"].as_array().into_iter().flatten() {
        let text = a["content"].as_str().unwrap_or_default();
        put(a["id"].as_u64().unwrap_or(u64::MAX), text)?;
        added.insert(text.to_string(), a["special"].as_bool() == Some(true));
    }
    let unk = model["unk_token"].as_str();
    let token_type = |text: &str| -> i32 {
        let is_byte = text.len() == 6
            && text.starts_with("<0x")
            && text.ends_with('>')
            && u8::from_str_radix(&text[3..5], 16).is_ok();
        match added.get(text) {
            _ if sentencepiece && !byte_level && is_byte => BYTE,
            _ if Some(text) == unk => UNKNOWN,
            Some(true) => CONTROL,
            Some(false) => USER_DEFINED,
            None => NORMAL,
        }
    };
    let mut texts = Vec::with_capacity(n_vocab);
    let mut types = Vec::with_capacity(n_vocab);
    let mut padded = 0;
    for (id, t) in tokens.into_iter().enumerate() {
        match t {
            Some(t) => {
                types.push(Value::I32(token_type(&t)));
                texts.push(t);
            }
            None => {
                padded += 1;
                types.push(Value::I32(UNUSED));
                texts.push(format!("[PAD{id}]"));
            }
        }
    }
    if padded > 0 {
        notes.push(format!(
            "the model has {padded} embedding rows the tokenizer does not use; they are \
             [PAD] tokens in the file"
        ));
    }

    let merges: Vec<String> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Json::String(s) => Some(s.clone()),
            Json::Array(p) => Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?)),
            _ => None,
        })
        .collect();

    let string = |s: &str| Value::String(s.to_string());
    let mut meta: Vec<(String, Value)> = Vec::new();
    if byte_level {
        meta.push(("tokenizer.ggml.model".into(), string("gpt2")));
        meta.push((
            "tokenizer.ggml.pre".into(),
            string(pre_tokenizer(&json, notes)),
        ));
    } else {
        meta.push(("tokenizer.ggml.model".into(), string("llama")));
        let rank: HashMap<String, usize> = merges
            .iter()
            .enumerate()
            .rev()
            .map(|(r, m)| (m.replacen(' ', "", 1), r))
            .collect();
        let unranked = merges.len() as f32;
        let scores = texts
            .iter()
            .map(|t| Value::F32(rank.get(t).map_or(-unranked, |&r| -(r as f32))))
            .collect();
        meta.push(("tokenizer.ggml.scores".into(), Value::Array(scores)));
        if let Some(id) = unk.and_then(|u| texts.iter().position(|t| t == u)) {
            meta.push((
                "tokenizer.ggml.unknown_token_id".into(),
                Value::U32(id as u32),
            ));
        }
    }
    meta.push((
        "tokenizer.ggml.tokens".into(),
        Value::Array(texts.into_iter().map(Value::String).collect()),
    ));
    meta.push(("tokenizer.ggml.token_type".into(), Value::Array(types)));
    if byte_level {
        meta.push((
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.into_iter().map(Value::String).collect()),
        ));
    }
    if let Some(id) = specials.bos {
        meta.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(id)));
    }
    if let Some(id) = specials.eos {
        meta.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(id)));
    }
    meta.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(specials.add_bos && specials.bos.is_some()),
    ));
    meta.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(false)));
    Ok(meta)
}

/// `tokenizer.ggml.pre` for a byte-level BPE: `smollm` when digits are split one by one before
/// the byte-level split (what [`crate::tokenizer::gguf`] builds back), else GPT-2's, which
/// llama.cpp names `gpt-2` (it refuses a name it does not know).
fn pre_tokenizer(json: &Json, notes: &mut Vec<String>) -> &'static str {
    let pre = json["pre_tokenizer"].to_string();
    if pre.contains("Digits") && pre.contains("\"individual_digits\":true") {
        return "smollm";
    }
    if pre.contains("Split") {
        notes.push(
            "the tokenizer splits text with its own pattern before BPE; the file names GPT-2's \
             (tokenizer.ggml.pre = gpt-2), so llama.cpp may split some texts differently"
                .into(),
        );
    }
    "gpt-2"
}
