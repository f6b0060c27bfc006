//! `POST /v1/chat/completions`: the conversation rendered by the model's own chat template,
//! `n` replies, streamed or whole.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use muse_core::run::{ChatRole, ServedKind};

use super::stream::{Chunker, json, sse};
use super::text_job::{find_model, logprob, start};
use crate::app::AppState;
use crate::body::ApiJson;
use crate::engine::{Prompt, TextEvent, TokenLogprobs};
use crate::error::ApiError;
use crate::wire::Usage;
use crate::wire::chat::{
    AssistantMessage, ChatChoice, ChatCompletionChunk, ChatCompletionRequest,
    ChatCompletionResponse, ChatMessageIn, ChoiceLogprobs, ChunkChoice, Delta, MessageContent,
    TokenLogprob, TopLogprob,
};
use crate::wire::{new_id, now};

pub async fn chat(
    State(state): State<AppState>,
    ApiJson(mut req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let (index, info) = find_model(&state, &req.model, ServedKind::Text)?;
    let messages = messages(req.messages)?;
    if req.max_completion_tokens.is_some() {
        req.sampling.max_tokens = req.max_completion_tokens;
    }
    let top_logprobs = match (req.logprobs, req.top_logprobs) {
        (true, k) => Some(k.unwrap_or(0)),
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                "top_logprobs needs \"logprobs\": true",
            ));
        }
    };
    let settings = req.sampling.check(top_logprobs)?;
    let (stream, include_usage, n) = (settings.stream, settings.include_usage, settings.n);
    let started = start(&state, index, Prompt::Chat(messages), settings).await?;
    let mut reply = Reply {
        id: new_id("chatcmpl"),
        created: now(),
        model: info.name,
        texts: vec![String::new(); n],
        logprobs: vec![None; n],
        finish: vec!["stop"; n],
        announced: BTreeSet::new(),
        prompt_tokens: started.prompt_tokens,
        completion_tokens: 0,
        include_usage,
    };
    if stream {
        return Ok(sse(started.events, reply, Vec::new()));
    }
    let mut events = started.events;
    while let Some(event) = events.recv().await {
        match event {
            TextEvent::Failed(e) => return Err(e),
            other => reply.add(other),
        }
    }
    Ok(axum::Json(reply.finish()).into_response())
}

/// The messages as (role, text). `developer` is OpenAI's newer name for `system`; only text
/// content is read.
fn messages(raw: Vec<ChatMessageIn>) -> Result<Vec<(ChatRole, String)>, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages is empty: send at least one {\"role\": \"user\", \"content\": \"...\"}",
        ));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => ChatRole::System,
                "user" => ChatRole::User,
                "assistant" => ChatRole::Assistant,
                other => {
                    return Err(ApiError::invalid_param(
                        &format!("messages[{i}].role"),
                        format!(
                            "role '{other}' is not supported: use system, developer, user or \
                             assistant"
                        ),
                    ));
                }
            };
            let text = match m.content {
                MessageContent::Text(t) => t,
                MessageContent::Parts(parts) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            (kind, _) => {
                                return Err(ApiError::invalid_param(
                                    &format!("messages[{i}].content"),
                                    format!(
                                        "content part of type '{kind}' is not supported: \
                                         send text"
                                    ),
                                ));
                            }
                        }
                    }
                    text
                }
            };
            Ok((role, text))
        })
        .collect()
}

/// Collects whole replies, or frames a stream.
struct Reply {
    id: String,
    created: u64,
    model: String,
    texts: Vec<String>,
    logprobs: Vec<Option<ChoiceLogprobs>>,
    finish: Vec<&'static str>,
    /// Choices whose `role` delta was sent (streaming).
    announced: BTreeSet<usize>,
    prompt_tokens: usize,
    completion_tokens: usize,
    include_usage: bool,
}

impl Reply {
    fn add(&mut self, event: TextEvent) {
        match event {
            TextEvent::Token {
                choice,
                text,
                probs,
            } if choice < self.texts.len() => {
                if let Some(p) = probs {
                    self.logprobs[choice]
                        .get_or_insert_with(ChoiceLogprobs::default)
                        .content
                        .push(token_logprob(p));
                }
                self.texts[choice].push_str(&text);
            }
            TextEvent::Done {
                choice,
                finish_reason,
                completion_tokens,
            } if choice < self.finish.len() => {
                self.completion_tokens += completion_tokens;
                self.finish[choice] = finish_reason;
            }
            _ => {}
        }
    }

    fn finish(self) -> ChatCompletionResponse {
        let choices = self
            .texts
            .into_iter()
            .zip(self.logprobs)
            .zip(self.finish)
            .enumerate()
            .map(|(index, ((content, logprobs), finish_reason))| ChatChoice {
                index,
                message: AssistantMessage {
                    role: "assistant",
                    content,
                },
                logprobs,
                finish_reason,
            })
            .collect();
        ChatCompletionResponse {
            id: self.id,
            object: "chat.completion",
            created: self.created,
            model: self.model,
            choices,
            usage: Usage::new(self.prompt_tokens, self.completion_tokens),
        }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> String {
        json(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
    }

    /// The first chunk of a choice says who speaks, as OpenAI's streams do.
    fn announce(&mut self, choice: usize, frames: &mut Vec<String>) {
        if self.announced.insert(choice) {
            frames.push(self.chunk(
                vec![ChunkChoice {
                    index: choice,
                    delta: Delta {
                        role: Some("assistant"),
                        content: Some(String::new()),
                    },
                    logprobs: None,
                    finish_reason: None,
                }],
                None,
            ));
        }
    }
}

impl Chunker for Reply {
    fn on_event(&mut self, event: TextEvent) -> Vec<String> {
        let mut frames = Vec::new();
        match event {
            TextEvent::Token {
                choice,
                text,
                probs,
            } => {
                self.announce(choice, &mut frames);
                let logprobs = probs.map(|p| ChoiceLogprobs {
                    content: vec![token_logprob(p)],
                });
                frames.push(self.chunk(
                    vec![ChunkChoice {
                        index: choice,
                        delta: Delta {
                            role: None,
                            content: Some(text),
                        },
                        logprobs,
                        finish_reason: None,
                    }],
                    None,
                ));
            }
            TextEvent::Done {
                choice,
                finish_reason,
                completion_tokens,
            } => {
                self.announce(choice, &mut frames);
                self.completion_tokens += completion_tokens;
                frames.push(self.chunk(
                    vec![ChunkChoice {
                        index: choice,
                        delta: Delta::default(),
                        logprobs: None,
                        finish_reason: Some(finish_reason),
                    }],
                    None,
                ));
            }
            TextEvent::Started { .. } | TextEvent::Failed(_) => {}
        }
        frames
    }

    fn on_end(&mut self) -> Vec<String> {
        if !self.include_usage {
            return Vec::new();
        }
        let usage = Usage::new(self.prompt_tokens, self.completion_tokens);
        vec![self.chunk(Vec::new(), Some(usage))]
    }
}

/// One token's probabilities in the chat shape.
fn token_logprob(p: TokenLogprobs) -> TokenLogprob {
    TokenLogprob {
        bytes: p.token.as_bytes().to_vec(),
        logprob: logprob(p.prob),
        top_logprobs: p
            .top
            .into_iter()
            .map(|(t, q)| TopLogprob {
                bytes: t.as_bytes().to_vec(),
                logprob: logprob(q),
                token: t,
            })
            .collect(),
        token: p.token,
    }
}
