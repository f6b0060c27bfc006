//! `GET /health`, `GET /v1/models`, `GET /metrics`, and the answers for unknown paths.

use axum::Json;
use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::wire::{ModelEntry, ModelList};

/// Liveness (no key needed): `{"status": "ok"}`.
pub async fn health() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// The models given at start, each with its kind.
pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: state
            .models
            .iter()
            .map(|m| ModelEntry {
                id: m.name.clone(),
                object: "model",
                created: state.started,
                owned_by: "muse",
                kind: m.kind.as_str(),
                family: m.family.clone(),
                context_length: m.context_len,
            })
            .collect(),
    })
}

/// Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.engine.queued()),
    )
        .into_response()
}

pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::no_route(uri.path())
}

pub async fn wrong_method() -> ApiError {
    ApiError::wrong_method()
}
