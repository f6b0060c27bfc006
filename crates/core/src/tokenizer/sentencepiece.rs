//! Llama's SentencePiece BPE tokenizer (Kudo & Richardson 2018, "SentencePiece"), read from a
//! `tokenizer.model` protobuf or from llama2.c's `tokenizer.bin`, and turned into the Hugging
//! Face `tokenizer.json` pipeline that transformers' (legacy) `LlamaConverter` builds: a
//! normalizer that prepends `▁` and turns spaces into `▁` (SentencePiece's dummy prefix, added
//! even before a leading space), BPE with byte fallback, merges derived from the piece scores
//! (transformers' `SentencePieceExtractor`), and the matching decoder.
//!
//! `tokenizer.bin` (llama2.c `tokenizer.py`): int32 max_token_length, then per token a f32
//! score, an int32 byte length and the bytes, with `▁` written as a space and BOS/EOS as
//! `"\n<s>\n"` / `"\n</s>\n"`.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use serde_json::{Value, json};
use tokenizers::Tokenizer;

use super::TextTokenizer;
use crate::error::{Error, Result};

/// One vocabulary entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceKind,
}

/// SentencePiece's piece types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Byte,
    Unused,
}

/// Loads `tokenizer.model` (SentencePiece protobuf) or llama2.c `tokenizer.bin`, chosen by
/// the file's extension (`.model` or anything else).
pub fn load(path: &Path) -> Result<TextTokenizer> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::input(format!("cannot read tokenizer {}: {e}", path.display())))?;
    let bad = |e: String| Error::input(format!("{}: {e}", path.display()));
    let pieces = if path.extension().is_some_and(|e| e == "model") {
        parse_model_proto(&bytes).map_err(bad)?
    } else {
        parse_llama2c_bin(&bytes).map_err(bad)?
    };
    let json = hf_tokenizer_json(&pieces).map_err(bad)?;
    let inner = Tokenizer::from_str(&json.to_string())
        .map_err(|e| bad(format!("cannot build the tokenizer: {e}")))?;
    Ok(TextTokenizer::from_hf(inner))
}

/// Pieces of a llama2.c `tokenizer.bin` (the vocabulary size is not stored: the whole file is
/// read).
pub fn parse_llama2c_bin(bytes: &[u8]) -> std::result::Result<Vec<Piece>, String> {
    let mut pos = 4; // max_token_length
    let mut pieces = Vec::new();
    while pos < bytes.len() {
        let take = |pos: usize, n: usize| {
            bytes
                .get(pos..pos + n)
                .ok_or_else(|| format!("truncated at byte {pos}: not a llama2.c tokenizer.bin"))
        };
        let score = f32::from_le_bytes(take(pos, 4)?.try_into().expect("4 bytes"));
        let len = i32::from_le_bytes(take(pos + 4, 4)?.try_into().expect("4 bytes"));
        if !(0..=1024).contains(&len) {
            return Err(format!(
                "token length {len} at byte {pos}: not a llama2.c tokenizer.bin"
            ));
        }
        let raw = take(pos + 8, len as usize)?;
        pos += 8 + len as usize;
        let text = String::from_utf8_lossy(raw);
        let id = pieces.len();
        let (piece, kind) = match (id, text.as_ref()) {
            (0, "<unk>") => ("<unk>".to_string(), PieceKind::Unknown),
            (1, "\n<s>\n") => ("<s>".to_string(), PieceKind::Control),
            (2, "\n</s>\n") => ("</s>".to_string(), PieceKind::Control),
            (_, t) if is_byte_piece(t) => (t.to_string(), PieceKind::Byte),
            (_, t) => (t.replace(' ', "\u{2581}"), PieceKind::Normal),
        };
        pieces.push(Piece { piece, score, kind });
    }
    if pieces.len() < 3 {
        return Err("holds fewer than 3 tokens: not a llama2.c tokenizer.bin".into());
    }
    Ok(pieces)
}

/// `<0xAB>`.
fn is_byte_piece(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && u8::from_str_radix(&t[3..5], 16).is_ok()
}

/// Pieces of a SentencePiece `ModelProto`. Only BPE models are accepted (Llama's kind).
pub fn parse_model_proto(bytes: &[u8]) -> std::result::Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut model_type = 1; // UNIGRAM unless the trainer spec says otherwise
    for field in Fields::new(bytes) {
        let (num, value) = field?;
        match (num, value) {
            (1, Wire::Bytes(msg)) => pieces.push(parse_piece(msg)?),
            (2, Wire::Bytes(msg)) => {
                for f in Fields::new(msg) {
                    if let (3, Wire::Varint(t)) = f? {
                        model_type = t;
                    }
                }
            }
            _ => {}
        }
    }
    if pieces.is_empty() {
        return Err("has no pieces: not a SentencePiece model".into());
    }
    if model_type != 2 {
        return Err(format!(
            "is a SentencePiece model of type {model_type}; only BPE models (type 2, as Llama's) \
             are supported"
        ));
    }
    Ok(pieces)
}

fn parse_piece(msg: &[u8]) -> std::result::Result<Piece, String> {
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceKind::Normal,
    };
    for f in Fields::new(msg) {
        match f? {
            (1, Wire::Bytes(s)) => p.piece = String::from_utf8_lossy(s).into_owned(),
            (2, Wire::Fixed32(v)) => p.score = f32::from_bits(v),
            (3, Wire::Varint(t)) => {
                p.kind = match t {
                    2 => PieceKind::Unknown,
                    3 => PieceKind::Control,
                    4 => PieceKind::UserDefined,
                    5 => PieceKind::Unused,
                    6 => PieceKind::Byte,
                    _ => PieceKind::Normal,
                }
            }
            _ => {}
        }
    }
    Ok(p)
}

/// A protobuf field value.
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterator over the (field number, value) pairs of one protobuf message.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated protobuf")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("bad varint in protobuf".into())
    }

    fn bytes(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or("truncated protobuf")?;
        self.pos += n;
        Ok(s)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = std::result::Result<(u64, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let field = (|| {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => {
                    self.bytes(8)?;
                    Wire::Fixed64
                }
                2 => {
                    let n = self.varint()? as usize;
                    Wire::Bytes(self.bytes(n)?)
                }
                5 => Wire::Fixed32(u32::from_le_bytes(
                    self.bytes(4)?.try_into().expect("4 bytes"),
                )),
                w => return Err(format!("unsupported protobuf wire type {w}")),
            };
            Ok((key >> 3, value))
        })();
        if field.is_err() {
            self.pos = self.buf.len();
        }
        Some(field)
    }
}

/// `<s>` before every text, as `LlamaConverter` writes it (`add_bos_token` defaults to true):
/// transformers' tokenizer, and Muse's prompts, then start with a BOS. Null without `<s>`.
fn bos_post_processor(pieces: &[Piece]) -> Value {
    let Some(id) = pieces
        .iter()
        .position(|p| p.piece == "<s>" && p.kind == PieceKind::Control)
    else {
        return Value::Null;
    };
    json!({"type": "TemplateProcessing",
           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}}],
           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                    {"Sequence": {"id": "B", "type_id": 1}}],
           "special_tokens": {"<s>": {"id": "<s>", "ids": [id], "tokens": ["<s>"]}}})
}

/// The Hugging Face `tokenizer.json` for Llama-style pieces (as transformers' `LlamaConverter`
/// writes it).
pub fn hf_tokenizer_json(pieces: &[Piece]) -> std::result::Result<Value, String> {
    let unk = pieces
        .iter()
        .position(|p| p.kind == PieceKind::Unknown)
        .ok_or("has no <unk> piece")?;
    let vocab: HashMap<&str, usize> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| (p.piece.as_str(), i))
        .collect();
    // Every split of a piece into two pieces is a merge, ranked by the merged piece's score
    // (highest first), ties by the ids of the two parts (`SentencePieceExtractor.extract`).
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
    for p in pieces {
        let mut local = Vec::new();
        for (at, _) in p.piece.char_indices().skip(1) {
            let (l, r) = p.piece.split_at(at);
            if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                local.push((li, ri));
            }
        }
        local.sort();
        for (l, r) in local {
            merges.push((p.score, l, r, merges.len()));
        }
    }
    // Stable: descending score, then the order above.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.3.cmp(&b.3)));
    let merges: Vec<Value> = merges
        .iter()
        .map(|&(_, l, r, _)| json!([pieces[l].piece, pieces[r].piece]))
        .collect();
    let vocab_json: serde_json::Map<String, Value> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| (p.piece.clone(), json!(i)))
        .collect();
    let added: Vec<Value> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.kind, PieceKind::Unknown | PieceKind::Control))
        .map(|(i, p)| {
            json!({"id": i, "content": p.piece, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        // SentencePiece's dummy prefix: always one "▁" in front, even before a space.
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u{2581}"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}
        ]},
        "pre_tokenizer": null,
        "post_processor": bos_post_processor(pieces),
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": pieces[unk].piece,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab_json, "merges": merges}
    }))
}
