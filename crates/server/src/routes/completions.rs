//! `POST /v1/completions`: continue a prompt, `n` choices, streamed or whole.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use muse_core::run::ServedKind;

use super::stream::{Chunker, json, sse};
use super::text_job::{find_model, logprob, start};
use crate::app::AppState;
use crate::body::ApiJson;
use crate::engine::{Prompt, TextEvent};
use crate::error::ApiError;
use crate::wire::completions::{
    CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse, PromptInput,
};
use crate::wire::{Usage, new_id, now};

pub async fn completions(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let (index, info) = find_model(&state, &req.model, ServedKind::Text)?;
    let prompt = match req.prompt {
        PromptInput::Text(s) => s,
        PromptInput::Texts(mut v) if v.len() == 1 => v.remove(0),
        PromptInput::Texts(v) => {
            return Err(ApiError::invalid_param(
                "prompt",
                format!(
                    "prompt is a list of {} strings: send one string per request",
                    v.len()
                ),
            ));
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid_param(
            "prompt",
            "the prompt is empty: give at least one character",
        ));
    }
    let settings = req.sampling.check(req.logprobs)?;
    let (stream, include_usage, n, logprobs) = (
        settings.stream,
        settings.include_usage,
        settings.n,
        settings.top_logprobs.is_some(),
    );
    let started = start(&state, index, Prompt::Text(prompt.clone()), settings).await?;
    let echo = req.echo.then_some(prompt);
    let base = CompletionResponse {
        id: new_id("cmpl"),
        object: "text_completion",
        created: now(),
        model: info.name,
        choices: Vec::new(),
        usage: None,
    };
    let mut builder = Builder {
        base,
        choices: (0..n)
            .map(|index| CompletionChoice {
                text: echo.clone().unwrap_or_default(),
                index,
                logprobs: logprobs.then(CompletionLogprobs::default),
                finish_reason: None,
            })
            .collect(),
        prompt_tokens: started.prompt_tokens,
        completion_tokens: 0,
        include_usage,
    };
    if stream {
        let first = match &echo {
            Some(p) => (0..n)
                .map(|i| builder.chunk(i, p.clone(), None, None))
                .collect(),
            None => Vec::new(),
        };
        return Ok(sse(started.events, builder, first));
    }
    let mut events = started.events;
    while let Some(event) = events.recv().await {
        match event {
            TextEvent::Failed(e) => return Err(e),
            other => builder.add(other),
        }
    }
    Ok(axum::Json(builder.finish()).into_response())
}

/// Collects a whole response, or frames a stream.
struct Builder {
    base: CompletionResponse,
    choices: Vec<CompletionChoice>,
    prompt_tokens: usize,
    completion_tokens: usize,
    include_usage: bool,
}

impl Builder {
    fn add(&mut self, event: TextEvent) {
        match event {
            TextEvent::Token {
                choice,
                text,
                probs,
            } => {
                let Some(c) = self.choices.get_mut(choice) else {
                    return;
                };
                if let (Some(lp), Some(p)) = (c.logprobs.as_mut(), probs) {
                    lp.text_offset.push(c.text.len());
                    lp.tokens.push(p.token);
                    lp.token_logprobs.push(logprob(p.prob));
                    lp.top_logprobs.push(top_map(&p.top));
                }
                c.text.push_str(&text);
            }
            TextEvent::Done {
                choice,
                finish_reason,
                completion_tokens,
            } => {
                self.completion_tokens += completion_tokens;
                if let Some(c) = self.choices.get_mut(choice) {
                    c.finish_reason = Some(finish_reason);
                }
            }
            TextEvent::Started { .. } | TextEvent::Failed(_) => {}
        }
    }

    fn finish(self) -> CompletionResponse {
        CompletionResponse {
            choices: self.choices,
            usage: Some(Usage::new(self.prompt_tokens, self.completion_tokens)),
            ..self.base
        }
    }

    fn chunk(
        &self,
        index: usize,
        text: String,
        logprobs: Option<CompletionLogprobs>,
        finish_reason: Option<&'static str>,
    ) -> String {
        json(&CompletionResponse {
            choices: vec![CompletionChoice {
                text,
                index,
                logprobs,
                finish_reason,
            }],
            ..self.base.clone()
        })
    }
}

impl Chunker for Builder {
    fn on_event(&mut self, event: TextEvent) -> Vec<String> {
        match event {
            TextEvent::Token {
                choice,
                text,
                probs,
            } => {
                let logprobs = probs.map(|p| CompletionLogprobs {
                    tokens: vec![p.token],
                    token_logprobs: vec![logprob(p.prob)],
                    top_logprobs: vec![top_map(&p.top)],
                    text_offset: Vec::new(),
                });
                vec![self.chunk(choice, text, logprobs, None)]
            }
            TextEvent::Done {
                choice,
                finish_reason,
                completion_tokens,
            } => {
                self.completion_tokens += completion_tokens;
                vec![self.chunk(choice, String::new(), None, Some(finish_reason))]
            }
            TextEvent::Started { .. } | TextEvent::Failed(_) => Vec::new(),
        }
    }

    fn on_end(&mut self) -> Vec<String> {
        if !self.include_usage {
            return Vec::new();
        }
        vec![json(&CompletionResponse {
            usage: Some(Usage::new(self.prompt_tokens, self.completion_tokens)),
            ..self.base.clone()
        })]
    }
}

/// `{token: logprob}` of the alternatives.
fn top_map(top: &[(String, f32)]) -> serde_json::Map<String, serde_json::Value> {
    top.iter()
        .map(|(t, p)| (t.clone(), serde_json::json!(logprob(*p))))
        .collect()
}
