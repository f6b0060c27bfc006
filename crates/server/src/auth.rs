//! API keys: with any key configured, every endpoint but `/health` needs
//! `Authorization: Bearer KEY` with one of them.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;

/// The middleware: passes the request on, or answers 401.
pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.api_keys.is_empty() || req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        None => ApiError::unauthorized(
            "this server needs an API key: send the header `Authorization: Bearer KEY`",
        )
        .into_response(),
        Some(key)
            if state
                .api_keys
                .iter()
                .any(|k| same(k.as_bytes(), key.as_bytes())) =>
        {
            next.run(req).await
        }
        Some(_) => {
            ApiError::unauthorized("the API key is not one this server accepts").into_response()
        }
    }
}

/// Equality that takes as long for every key of a given length, so timing does not reveal how
/// much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_compare_whole() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"ab"));
    }
}
