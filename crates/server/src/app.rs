//! The router (every endpoint, the key check, the body limit, request counting, a panic
//! answered as a 500) and the state its handlers share.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::body::DEFAULT_BODY_LIMIT;
use crate::engine::{EngineHandle, ModelInfo};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes::{chat, completions, info, media, page};

/// What every handler can see: names and kinds of the models, never the models.
#[derive(Clone)]
pub struct AppState {
    pub models: Arc<Vec<ModelInfo>>,
    pub engine: EngineHandle,
    /// Accepted bearer keys; empty: no key needed.
    pub api_keys: Arc<Vec<String>>,
    pub metrics: Arc<Metrics>,
    /// Unix time the server started (`created` of each model).
    pub started: u64,
}

impl AppState {
    pub fn new(
        models: Vec<ModelInfo>,
        engine: EngineHandle,
        api_keys: Vec<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            models: Arc::new(models),
            engine,
            api_keys: Arc::new(api_keys),
            metrics,
            started: crate::wire::now(),
        }
    }
}

/// Every endpoint, and the web page. Layers run outside in: panic catcher, body limit,
/// counting, key check; the page's own files sit outside the key check (they hold no data).
pub fn router(state: AppState) -> Router {
    let page = Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style));
    let api = Router::new()
        .route("/health", get(info::health))
        .route("/metrics", get(info::metrics))
        .route("/v1/models", get(info::models))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/chat/completions", post(chat::chat))
        .route("/v1/embeddings", post(media::embeddings))
        .route("/v1/images/generations", post(media::images))
        .fallback(info::no_route)
        .method_not_allowed_fallback(info::wrong_method)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_key,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .with_state(state);
    page.merge(api)
        .layer(CatchPanicLayer::custom(panic_response))
}

/// Counts each answered request by its route pattern (never the raw path, which a client
/// controls) and status.
async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let response = next.run(req).await;
    state
        .metrics
        .record_request(&route, response.status().as_u16());
    response
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("the server failed on this request; it goes on serving").into_response()
}
