//! The JSON body of a request, read whatever its content type (so `curl -d` works) and turned
//! into OpenAI-style errors when it is too large, malformed or of the wrong shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest request body accepted by default: a long prompt or a batch of texts to embed
/// fits many times over; a 10 MB upload does not.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// A request body parsed as JSON into `T`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(DEFAULT_BODY_LIMIT)
                } else {
                    ApiError::invalid(format!("cannot read the request body: {e}"))
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid(
                "the request body is empty: send a JSON object (see docs/serve.md)",
            ));
        }
        parse(&bytes).map(ApiJson)
    }
}

/// `T` from JSON bytes; a syntax error and a field of the wrong type are both 400, naming the
/// line and column (and field, for a wrong type) serde found.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match deserialize_all(&mut de) {
        Ok(v) => Ok(v),
        Err(e) if e.is_syntax() || e.is_eof() => Err(ApiError::invalid(format!(
            "the request body is not valid JSON: {e}"
        ))),
        Err(e) => Err(ApiError::invalid(format!(
            "the request body does not match the endpoint's fields: {e}"
        ))),
    }
}

/// Deserialises the whole input (trailing characters are an error).
fn deserialize_all<'de, T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, serde_json::Error> {
    let v = T::deserialize(&mut *de)?;
    de.end()?;
    Ok(v)
}
