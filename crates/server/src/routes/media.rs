//! `POST /v1/embeddings` and `POST /v1/images/generations`: one engine job each, answered
//! whole.

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use muse_core::run::{ImageJob, ServedKind};
use tokio::sync::oneshot;

use super::text_job::find_model;
use crate::app::AppState;
use crate::body::ApiJson;
use crate::engine::Job;
use crate::error::ApiError;
use crate::wire::images::{ImageData, ImagesRequest, ImagesResponse, MAX_IMAGES};
use crate::wire::{
    Embedding, EmbeddingUsage, EmbeddingValue, EmbeddingsRequest, EmbeddingsResponse, OneOrMany,
    now,
};

/// Most texts one embeddings request may hold.
pub const MAX_INPUTS: usize = 2048;

pub async fn embeddings(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    let (model, info) = find_model(&state, &req.model, ServedKind::Embeddings)?;
    let as_base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        // The official clients ask for base64 by default and decode it themselves.
        Some("base64") => true,
        Some(f) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("encoding_format '{f}' is not supported: use float or base64"),
            ));
        }
    };
    let texts = match req.input {
        OneOrMany::One(t) => vec![t],
        OneOrMany::Many(v) => v,
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid_param(
            "input",
            format!(
                "input holds {} texts: send between 1 and {MAX_INPUTS}",
                texts.len()
            ),
        ));
    }
    if texts.iter().any(String::is_empty) {
        return Err(ApiError::invalid_param("input", "an input text is empty"));
    }
    let (reply, answer) = oneshot::channel();
    state.engine.submit(Job::Embed {
        model,
        texts,
        reply,
    })?;
    let (vectors, tokens) = answer.await.map_err(|_| ApiError::unavailable())??;
    Ok(Json(EmbeddingsResponse {
        object: "list",
        data: vectors
            .into_iter()
            .enumerate()
            .map(|(index, vector)| Embedding {
                object: "embedding",
                index,
                embedding: if as_base64 {
                    EmbeddingValue::Base64(base64_of(&vector))
                } else {
                    EmbeddingValue::Float(vector)
                },
            })
            .collect(),
        model: info.name,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

/// The vector as base64 of its little-endian f32 bytes (what OpenAI's `base64` format holds).
fn base64_of(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn images(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ImagesRequest>,
) -> Result<Json<ImagesResponse>, ApiError> {
    let (model, _) = find_model(&state, &req.model, ServedKind::Images)?;
    let n = req.n.unwrap_or(1);
    if !(1..=MAX_IMAGES).contains(&n) {
        return Err(ApiError::invalid_param(
            "n",
            format!("n is {n}: it must be between 1 and {MAX_IMAGES}"),
        ));
    }
    if let Some(f) = req.response_format.as_deref()
        && f != "b64_json"
    {
        return Err(ApiError::invalid_param(
            "response_format",
            format!("response_format '{f}' is not supported: use b64_json (no files are kept)"),
        ));
    }
    let label = match req.label {
        Some(l) if l < 0 => {
            return Err(ApiError::invalid_param(
                "label",
                format!("label is {l}: classes are numbered from 0"),
            ));
        }
        l => l.map(|l| l as usize),
    };
    let steps = match req.steps {
        Some(s) if s < 1 => {
            return Err(ApiError::invalid_param(
                "steps",
                format!("steps is {s}: it must be at least 1"),
            ));
        }
        s => s.map(|s| s as usize),
    };
    if let Some(g) = req.guidance
        && !(g.is_finite() && g >= 0.0)
    {
        return Err(ApiError::invalid_param(
            "guidance",
            format!("guidance is {g}: it must be a number >= 0 (0: unguided)"),
        ));
    }
    let job = ImageJob {
        n: n as usize,
        seed: req
            .seed
            .map_or_else(|| now() ^ u64::from(std::process::id()), |s| s as u64),
        label,
        guidance: req.guidance,
        steps,
        prompt: req.prompt.clone(),
        trajectory: req.trajectory.unwrap_or(false),
        walk: req.walk.unwrap_or(false),
    };
    let (reply, answer) = oneshot::channel();
    state.engine.submit(Job::Images { model, job, reply })?;
    let out = answer.await.map_err(|_| ApiError::unavailable())??;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(Json(ImagesResponse {
        created: now(),
        data: out
            .images
            .iter()
            .map(|png| ImageData {
                b64_json: b64.encode(png),
            })
            .collect(),
        trajectory_b64_json: out.trajectory.map(|png| b64.encode(png)),
    }))
}
