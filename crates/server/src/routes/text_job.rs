//! What completions and chat share: finding the model a request names, queueing the text job
//! and waiting until it has started (so that a bad prompt is a 400, not a broken stream), and
//! log probabilities.

use muse_core::run::ServedKind;
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::engine::{Job, ModelInfo, Prompt, TextEvent, TextRequest};
use crate::error::ApiError;
use crate::wire::sampling::TextSettings;

/// The model a request names, which must answer `kind` requests.
pub fn find_model(
    state: &AppState,
    name: &str,
    kind: ServedKind,
) -> Result<(usize, ModelInfo), ApiError> {
    let Some(i) = state.models.iter().position(|m| m.name == name) else {
        let served: Vec<String> = state.models.iter().map(|m| m.name.clone()).collect();
        return Err(ApiError::unknown_model(name, &served));
    };
    let info = state.models[i].clone();
    if info.kind != kind {
        let endpoint = match info.kind {
            ServedKind::Text => "/v1/completions or /v1/chat/completions",
            ServedKind::Embeddings => "/v1/embeddings",
            ServedKind::Images => "/v1/images/generations",
        };
        return Err(ApiError::invalid_param(
            "model",
            format!(
                "'{name}' is a {} model ({}): send it to {endpoint}",
                info.kind.as_str(),
                info.family
            ),
        ));
    }
    Ok((i, info))
}

/// A queued text job that has started: its events and the prompt's token count.
pub struct Started {
    pub events: mpsc::UnboundedReceiver<TextEvent>,
    pub prompt_tokens: usize,
}

/// Queues the job and waits for its first event.
pub async fn start(
    state: &AppState,
    model: usize,
    prompt: Prompt,
    settings: TextSettings,
) -> Result<Started, ApiError> {
    let received = std::time::Instant::now();
    let (tx, mut events) = mpsc::unbounded_channel();
    state.engine.submit(Job::Text {
        req: TextRequest {
            received,
            model,
            prompt,
            settings,
        },
        events: tx,
    })?;
    match events.recv().await {
        Some(TextEvent::Started { prompt_tokens }) => Ok(Started {
            events,
            prompt_tokens,
        }),
        Some(TextEvent::Failed(e)) => Err(e),
        Some(_) | None => Err(ApiError::internal(
            "the engine ended the request before it started",
        )),
    }
}

/// Natural log of a probability, finite even for 0 (as OpenAI reports -9999 for impossible
/// tokens).
pub fn logprob(p: f32) -> f32 {
    if p > 0.0 { p.ln() } else { -9999.0 }
}
