//! Instruction data for supervised fine-tuning: JSONL files of alpaca rows or chat
//! conversations, read into conversations, and conversations into token ids with a mask of the
//! positions the model should learn to write (the assistant's replies).
//!
//! Formats (`--format`):
//! - `alpaca`: `{"instruction", "input"?, "output"}` (Stanford Alpaca). Rows with a `status`
//!   other than `"ok"` are skipped (alpaca-libre marks its filtered rows so), and Self-Instruct
//!   seed tasks (`{"instruction", "instances": [{"input", "output"}]}`) give one example per
//!   instance.
//! - `chat`: a list of `{"role": "system"|"user"|"assistant", "content"}` messages, either as
//!   the line itself or under `"messages"`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::jsonl::{Line, kind, read_jsonl, str_field};
use super::locate::search_dirs;
use super::registry::{DatasetKind, spec};
use crate::error::{Error, Result};
use crate::run_dir::DatasetRecord;
use crate::tokenizer::TextTokenizer;
use crate::tokenizer::chat::{ChatMessage, ChatTemplate, Role};

/// How the lines of an instruction file are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstructionFormat {
    Alpaca,
    Chat,
}

impl std::str::FromStr for InstructionFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "alpaca" => Ok(Self::Alpaca),
            "chat" => Ok(Self::Chat),
            other => Err(Error::usage(format!(
                "unknown --format '{other}': choose alpaca (instruction/input/output rows) or \
                 chat (a list of role/content messages per line)"
            ))),
        }
    }
}

/// Conversations read from instruction data.
#[derive(Clone, Debug)]
pub struct InstructionSet {
    pub conversations: Vec<Vec<ChatMessage>>,
    /// Rows left out on purpose (status other than "ok", empty output).
    pub skipped: usize,
    /// What to record in `training.json`.
    pub source: DatasetRecord,
}

/// Reads `--data`: a JSONL file, a folder of `.jsonl` files, or the registered `instructions`
/// dataset (alpaca-libre rows with status "ok" and the Self-Instruct seed tasks).
pub fn read_instructions(data: &str, format: InstructionFormat) -> Result<InstructionSet> {
    let files = resolve_files(data, DatasetKind::Instructions)?;
    let mut conversations = Vec::new();
    let mut skipped = 0;
    for file in &files {
        let (c, s) = read_file(file, format)?;
        conversations.extend(c);
        skipped += s;
    }
    if conversations.is_empty() {
        return Err(Error::input(format!(
            "{data} holds no usable examples ({skipped} rows skipped): it needs rows with an \
             instruction and a non-empty output (alpaca) or an assistant message (chat)"
        )));
    }
    Ok(InstructionSet {
        conversations,
        skipped,
        source: record(data, &files)?,
    })
}

/// The JSONL files behind `--data`: a file, every `.jsonl`/`.jsonl.gz` in a folder, or the
/// files of a registered dataset of `kind` (which may sit in subfolders of its folder, as
/// `hh-rlhf/harmless-base/test.jsonl.gz` does).
pub fn resolve_files(data: &str, kind: DatasetKind) -> Result<Vec<PathBuf>> {
    if data.trim().is_empty() {
        return Err(Error::usage("--data is empty: pass a JSONL file"));
    }
    let path = Path::new(data);
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        let Some(s) = spec(data) else {
            return Err(Error::usage(format!(
                "no file or dataset named {data}: pass a JSONL file (see `muse data list` for \
                 registered datasets)"
            )));
        };
        if s.kind != kind {
            return Err(Error::usage(format!(
                "dataset '{data}' holds {}, not {kind}",
                s.kind
            )));
        }
        // Located (or downloaded) means every registered file is there, with its size.
        let dir = super::locate::dataset_dir_in(s, &search_dirs())?;
        let mut files: Vec<PathBuf> = s
            .files
            .iter()
            .filter(|f| is_jsonl(f.path))
            .map(|f| dir.join(f.path))
            .collect();
        files.sort();
        return Ok(files);
    }
    let dir = path;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned());
            n.is_some_and(|n| is_jsonl(&n))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::input(format!(
            "{} has no .jsonl or .jsonl.gz files: pass a JSONL file, or a folder that holds some",
            dir.display()
        )));
    }
    Ok(files)
}

/// True for the file names `--data` reads: `.jsonl` and `.jsonl.gz`.
fn is_jsonl(name: &str) -> bool {
    name.ends_with(".jsonl") || name.ends_with(".jsonl.gz")
}

/// Name, path and a sha256 over the files (one file: its own sha256).
pub fn record(data: &str, files: &[PathBuf]) -> Result<DatasetRecord> {
    let sha256 = if files.len() == 1 {
        super::sha256_file(&files[0])?
    } else {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for f in files {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            h.update(format!(
                "{} {}\n",
                super::sha256_file(f)?,
                name.unwrap_or_default()
            ));
        }
        format!("{:x}", h.finalize())
    };
    let path = if files.len() == 1 {
        files[0].display().to_string()
    } else {
        files[0]
            .parent()
            .map_or(data.to_string(), |p| p.display().to_string())
    };
    Ok(DatasetRecord {
        name: data.to_string(),
        path,
        sha256,
    })
}

/// Reads one JSONL file: (conversations, rows skipped).
pub fn read_file(path: &Path, format: InstructionFormat) -> Result<(Vec<Vec<ChatMessage>>, usize)> {
    let mut out = Vec::new();
    let mut skipped = 0;
    for line in read_jsonl(path)? {
        match format {
            InstructionFormat::Alpaca => {
                let rows = alpaca_row(path, &line)?;
                if rows.is_empty() {
                    skipped += 1;
                }
                out.extend(rows);
            }
            InstructionFormat::Chat => out.push(chat_row(path, &line)?),
        }
    }
    Ok((out, skipped))
}

/// The user's message of an alpaca row: the instruction, then the input after a blank line.
pub fn alpaca_prompt(instruction: &str, input: &str) -> String {
    if input.trim().is_empty() {
        instruction.trim().to_string()
    } else {
        format!("{}\n\n{}", instruction.trim(), input.trim())
    }
}

fn alpaca_row(path: &Path, line: &Line) -> Result<Vec<Vec<ChatMessage>>> {
    let at = || format!("{}:{}", path.display(), line.number);
    let Some(instruction) = str_field(path, line, "instruction")? else {
        return Err(Error::input(format!(
            "{}: no 'instruction' field; alpaca rows need instruction, input (optional) and \
             output (or --format chat for role/content messages)",
            at()
        )));
    };
    if let Some(status) = str_field(path, line, "status")?
        && status != "ok"
    {
        return Ok(Vec::new());
    }
    let convo = |input: &str, output: &str| {
        vec![
            ChatMessage::new(Role::User, alpaca_prompt(instruction, input)),
            ChatMessage::new(Role::Assistant, output.trim()),
        ]
    };
    if let Some(instances) = line.value.get("instances") {
        let Some(list) = instances.as_array() else {
            return Err(Error::input(format!(
                "{}: 'instances' must be a list of {{input, output}}, found {}",
                at(),
                kind(instances)
            )));
        };
        let mut out = Vec::new();
        for (i, inst) in list.iter().enumerate() {
            let field = |k: &str| -> Result<String> {
                match inst.get(k) {
                    None | Some(Value::Null) => Ok(String::new()),
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(v) => Err(Error::input(format!(
                        "{}: instances[{i}].{k} must be a string, found {}",
                        at(),
                        kind(v)
                    ))),
                }
            };
            let output = field("output")?;
            if !output.trim().is_empty() {
                out.push(convo(&field("input")?, &output));
            }
        }
        return Ok(out);
    }
    let Some(output) = str_field(path, line, "output")? else {
        return Err(Error::input(format!(
            "{}: no 'output' field; alpaca rows need instruction, input (optional) and output",
            at()
        )));
    };
    if output.trim().is_empty() || instruction.trim().is_empty() {
        return Ok(Vec::new());
    }
    let input = str_field(path, line, "input")?.unwrap_or("");
    Ok(vec![convo(input, output)])
}

fn chat_row(path: &Path, line: &Line) -> Result<Vec<ChatMessage>> {
    let at = || format!("{}:{}", path.display(), line.number);
    let list = match &line.value {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("messages") {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(Error::input(format!(
                    "{}: no 'messages' list; chat rows are a list of {{role, content}} \
                     messages, or an object with one under 'messages' (--format alpaca for \
                     instruction/output rows)",
                    at()
                )));
            }
        },
        other => {
            return Err(Error::input(format!(
                "{}: expected a list of messages, found {}",
                at(),
                kind(other)
            )));
        }
    };
    let mut messages = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        let content = m.get("content").and_then(Value::as_str);
        let (Some(role), Some(content)) = (role, content) else {
            return Err(Error::input(format!(
                "{}: message {i} needs string fields 'role' and 'content'",
                at()
            )));
        };
        let role = match role {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(Error::input(format!(
                    "{}: message {i} has role '{other}'; roles are system, user and assistant",
                    at()
                )));
            }
        };
        messages.push(ChatMessage::new(role, content));
    }
    if !messages.iter().any(|m| m.role == Role::Assistant) {
        return Err(Error::input(format!(
            "{}: the conversation has no assistant message to learn from",
            at()
        )));
    }
    Ok(messages)
}

/// Token ids of a text with a flag per id: should the model learn to write it?
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenizedExample {
    pub ids: Vec<u32>,
    pub trainable: Vec<bool>,
}

impl TokenizedExample {
    /// How many ids are trainable.
    pub fn n_trainable(&self) -> usize {
        self.trainable.iter().filter(|&&t| t).count()
    }
}

/// Tokenizes consecutive text spans `(text, trainable)` as one text (so ids are exactly those
/// of the whole text), marking each id by the span it starts in: the id boundary of a span
/// boundary is the length of the longest common prefix of the ids of the text up to it and the
/// ids of the whole. `bos` is prepended (not trainable), `eos` appended (trainable).
pub fn tokenize_spans(
    tok: &TextTokenizer,
    spans: &[(&str, bool)],
    bos: Option<u32>,
    eos: Option<u32>,
) -> Result<TokenizedExample> {
    let text: String = spans.iter().map(|(s, _)| *s).collect();
    let ids = tok.encode(&text)?;
    let mut out = TokenizedExample::default();
    if let Some(b) = bos {
        out.ids.push(b);
        out.trainable.push(false);
    }
    let mut start_tok = 0;
    let mut end_byte = 0;
    for (i, (span, trainable)) in spans.iter().enumerate() {
        end_byte += span.len();
        let end_tok = if i + 1 == spans.len() {
            ids.len()
        } else {
            let prefix = tok.encode(&text[..end_byte])?;
            prefix
                .iter()
                .zip(&ids)
                .take_while(|(a, b)| a == b)
                .count()
                .max(start_tok)
        };
        out.ids.extend_from_slice(&ids[start_tok..end_tok]);
        out.trainable
            .extend(std::iter::repeat_n(*trainable, end_tok - start_tok));
        start_tok = end_tok;
    }
    if let Some(e) = eos {
        out.ids.push(e);
        out.trainable.push(true);
    }
    Ok(out)
}

/// A conversation through `template`, assistant replies (and the end of each assistant turn)
/// trainable. Spaces that end a prompt part move to the reply that follows, so the prompt
/// ends as [`ChatTemplate::generation_prompt`] does at chat time. `eos` is appended when the
/// conversation ends with an assistant reply.
pub fn tokenize_conversation(
    tok: &TextTokenizer,
    template: &ChatTemplate,
    messages: &[ChatMessage],
    bos: Option<u32>,
    eos: Option<u32>,
) -> Result<TokenizedExample> {
    let segments = template.render_segments(messages);
    let mut spans: Vec<(String, bool)> = Vec::new();
    for s in segments {
        match spans.last_mut() {
            Some(last) if last.1 == s.trainable => last.0.push_str(&s.text),
            _ => spans.push((s.text, s.trainable)),
        }
    }
    for i in 0..spans.len().saturating_sub(1) {
        if !spans[i].1 && spans[i + 1].1 {
            let trimmed = spans[i].0.trim_end_matches(' ').len();
            let moved = spans[i].0.split_off(trimmed);
            spans[i + 1].0.insert_str(0, &moved);
        }
    }
    let ends_with_reply = messages.last().is_some_and(|m| m.role == Role::Assistant);
    let refs: Vec<(&str, bool)> = spans.iter().map(|(s, t)| (s.as_str(), *t)).collect();
    tokenize_spans(tok, &refs, bos, eos.filter(|_| ends_with_reply))
}
