//! `POST /v1/images/generations`, with Muse's extensions `label`, `guidance`, `steps`, `seed`,
//! `trajectory` (diffusion) and `walk` (VAE).

use serde::{Deserialize, Serialize};

/// Most images one request may ask for (OpenAI's limit).
pub const MAX_IMAGES: i64 = 10;

#[derive(Clone, Debug, Deserialize)]
pub struct ImagesRequest {
    pub model: String,
    /// What a text-to-image diffusion model draws. Unconditional and class-conditional
    /// models accept it (clients always send one) and ignore it; choose a class with `label`.
    #[serde(default)]
    pub prompt: Option<String>,
    pub n: Option<i64>,
    /// `WxH`: accepted and ignored; images come at the model's own size.
    pub size: Option<String>,
    /// Only `b64_json` (the server keeps no files to link to).
    pub response_format: Option<String>,
    /// Class of a class-conditional model.
    pub label: Option<i64>,
    /// Classifier-free guidance weight (diffusion).
    pub guidance: Option<f64>,
    /// Denoising steps (diffusion).
    pub steps: Option<i64>,
    pub seed: Option<i64>,
    /// Diffusion: also return the denoising chain as one strip (`trajectory_b64_json`).
    pub trajectory: Option<bool>,
    /// VAE: the `n` images walk the latent space between the prior samples of `seed` and
    /// `seed + 1`.
    pub walk: Option<bool>,
}

#[derive(Serialize)]
pub struct ImagesResponse {
    pub created: u64,
    pub data: Vec<ImageData>,
    /// The denoising strip (a PNG labelled AI-generated, base64) when `trajectory` was asked:
    /// for up to four of the images, x_t above the predicted x_0 at ten points of the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trajectory_b64_json: Option<String>,
}

#[derive(Serialize)]
pub struct ImageData {
    /// A PNG labelled AI-generated, base64.
    pub b64_json: String,
}
