//! `POST /v1/completions`: the request, the response and its stream chunks.

use serde::{Deserialize, Serialize};

use super::Usage;
use super::sampling::RawSampling;

/// `prompt`: a string, or a list holding one string (token arrays are not accepted).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
}

#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: PromptInput,
    /// Report the probability of each token and this many alternatives (0 to 20).
    pub logprobs: Option<i64>,
    /// Prepend the prompt to the text (OpenAI's `echo`).
    #[serde(default)]
    pub echo: bool,
    #[serde(flatten)]
    pub sampling: RawSampling,
}

/// `logprobs` of a completion choice (OpenAI's legacy shape).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<serde_json::Map<String, serde_json::Value>>,
    pub text_offset: Vec<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompletionChoice {
    pub text: String,
    pub index: usize,
    pub logprobs: Option<CompletionLogprobs>,
    /// `stop` or `length`; `null` in stream chunks before the last.
    pub finish_reason: Option<&'static str>,
}

/// The response, and (with one choice, `object` the same) each stream chunk.
#[derive(Clone, Debug, Serialize)]
pub struct CompletionResponse {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}
