//! `muse serve`: an OpenAI-compatible HTTP server for every model family Muse runs.
//!
//! Each model given at start is opened once by an engine thread ([`engine`]) that owns it;
//! the axum handlers ([`routes`]) check requests, queue jobs and shape answers in the OpenAI
//! wire format ([`wire`]), and never touch a tensor. Errors are answered as OpenAI error JSON
//! with the status chosen in [`error`].

pub mod app;
pub mod auth;
pub mod bench;
pub mod body;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod serve;
pub mod wire;

pub use app::{AppState, router};
pub use error::ApiError;
pub use serve::{ServeConfig, ServeError, model_names, run};
