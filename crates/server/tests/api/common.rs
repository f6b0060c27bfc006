//! A server on the tiny models, built once per test binary, and requests against its router.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use muse_core::device::Device;
use muse_core::run::{ClassifierChoice, Family, FlagSet, StartMode, TrainRequest};
use muse_server::engine::{self, EngineHandle, ModelInfo};
use muse_server::metrics::Metrics;
use muse_server::{AppState, router};
use serde_json::Value;
use tower::ServiceExt as _;

/// The tiny random GPT-2 folder of the core tests (context 64).
pub fn gpt2() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/hf/gpt2")
}

/// A VAE trained for two steps on 64 MNIST digits (seconds).
fn tiny_vae(dir: &std::path::Path) -> PathBuf {
    let out = dir.join("vae-tiny");
    let mnist = muse_core::run::data::dataset_dir("mnist").expect("mnist (set MUSE_DATA_DIR)");
    let mut req = TrainRequest::new(Family::Vae, Device::Cpu);
    req.config.preset = Some("mnist-mlp".into());
    req.config.sets = [
        format!("data.dataset={}", mnist.display()),
        "data.train_limit=64".into(),
        "data.test_limit=32".into(),
        "model.hidden=32".into(),
        "model.latent=4".into(),
        "train.batch_size=16".into(),
        "sample.n=4".into(),
    ]
    .to_vec();
    req.max_steps = Some(2);
    req.seed = Some(1);
    req.out = Some(out.clone());
    req.mode = StartMode::New;
    req.classifier = ClassifierChoice::Off;
    muse_core::run::train(req).expect("the tiny VAE trains");
    out
}

/// Two classes of 8x8 squares (bright and dark), eight images each, under `dir/squares`.
fn squares(dir: &std::path::Path) -> PathBuf {
    let data = dir.join("squares");
    for (class, value) in [("bright", 220u8), ("dark", 30)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..8u32 {
            let img = image::GrayImage::from_fn(8, 8, |x, y| {
                image::Luma([if (x + y + i) % 3 == 0 {
                    value
                } else {
                    value / 2
                }])
            });
            img.save(data.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    data
}

/// A class-conditional GAN with tiny layers trained for two steps on the squares.
fn tiny_cgan(dir: &std::path::Path) -> PathBuf {
    let out = dir.join("cgan-tiny");
    let mut req = TrainRequest::new(Family::Gan, Device::Cpu);
    req.config.preset = Some("cgan-mnist".into());
    req.config.flags = vec![
        FlagSet::new("--data", "data.dataset", squares(dir).display()),
        FlagSet::new("--image-size", "data.image_size", 8),
        FlagSet::new("--channels", "data.channels", 1),
    ];
    req.config.sets = ["batch_size=8", "g_channels=8", "d_channels=4", "z_dim=8"]
        .map(String::from)
        .to_vec();
    req.max_steps = Some(2);
    req.seed = Some(1);
    req.out = Some(out.clone());
    req.classifier = ClassifierChoice::Off;
    muse_core::run::train(req).expect("the tiny GAN trains");
    out
}

/// A class-conditional DDPM (a tiny U-Net, T = 50) trained for two steps on 8x8 squares of
/// two classes (as the CLI's diffusion test trains it).
fn tiny_ddpm(dir: &std::path::Path) -> PathBuf {
    let data = squares(dir);
    let config = dir.join("ddpm-tiny.toml");
    std::fs::write(
        &config,
        "timesteps = 50\n[model]\nchannels = [8, 8, 8]\ntime_dim = 8\ntemb_dim = 16\n\
         groups = 4\nheads = 2\n[train]\nbatch_size = 8\neval_interval = 1000\n\
         sample_interval = 1000\n[data]\nimage_size = 8\nchannels = 1\ntest_limit = 8\n",
    )
    .unwrap();
    let out = dir.join("ddpm-tiny");
    let mut req = TrainRequest::new(Family::Diffusion, Device::Cpu);
    req.config.preset = Some("ddpm-mnist-cond".into());
    req.config.file = Some(config);
    req.config.flags = vec![FlagSet::new("--data", "data.dataset", data.display())];
    req.max_steps = Some(2);
    req.seed = Some(1);
    req.out = Some(out.clone());
    req.classifier = ClassifierChoice::Off;
    muse_core::run::train(req).expect("the tiny DDPM trains");
    out
}

/// The shared server: gpt2 (text), all-minilm-l6-v2 (embeddings), vae-tiny, ddpm-tiny and
/// cgan-tiny (images).
pub struct Server {
    pub state: AppState,
    _tmp: tempfile::TempDir,
}

pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let encoder = muse_core::run::embed::default_model_dir().expect("all-minilm-l6-v2");
        let dir = tmp.path();
        let paths = vec![
            gpt2(),
            encoder,
            tiny_vae(dir),
            tiny_ddpm(dir),
            tiny_cgan(dir),
        ];
        let named = muse_server::model_names(&paths).unwrap();
        let metrics = Arc::new(Metrics::default());
        let cfg = engine::EngineConfig {
            queue: 8,
            ..engine::EngineConfig::new(Device::Cpu)
        };
        let (engine, infos) = engine::start(named, cfg, metrics.clone()).unwrap();
        Server {
            state: AppState::new(infos, engine, Vec::new(), metrics),
            _tmp: tmp,
        }
    })
}

/// A router over `state`'s engine with these keys.
pub fn with_keys(keys: &[&str]) -> axum::Router {
    let s = &server().state;
    router(AppState::new(
        s.models.to_vec(),
        s.engine.clone(),
        keys.iter().map(|k| k.to_string()).collect(),
        s.metrics.clone(),
    ))
}

/// A router whose queue nobody reads (the caller holds it), listing one text model.
pub fn detached(capacity: usize) -> (axum::Router, tokio::sync::mpsc::Receiver<engine::Job>) {
    let (handle, jobs): (EngineHandle, _) = EngineHandle::detached(capacity);
    let models = vec![ModelInfo {
        name: "gpt2".into(),
        kind: muse_core::run::ServedKind::Text,
        family: "gpt".into(),
        context_len: Some(64),
    }];
    let state = AppState::new(models, handle, Vec::new(), Arc::new(Metrics::default()));
    (router(state), jobs)
}

pub async fn send(app: axum::Router, req: Request<Body>) -> Response {
    app.oneshot(req).await.unwrap()
}

pub fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

pub async fn body_text(resp: Response) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// POSTs `body` to the shared server and returns status and JSON.
pub async fn call(path: &str, body: Value) -> (StatusCode, Value) {
    let resp = send(router(server().state.clone()), post(path, body.to_string())).await;
    json_of(resp).await
}

pub async fn json_of(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = body_text(resp).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// Asserts an OpenAI error body with `status`, whose message contains `needle`.
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, needle: &str) {
    let (s, v) = got;
    assert_eq!(*s, status, "{v}");
    let e = &v["error"];
    for field in ["message", "type", "param", "code"] {
        assert!(e.get(field).is_some(), "no error.{field} in {v}");
    }
    let msg = e["message"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "expected '{needle}' in: {msg}");
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_frames(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .filter_map(|f| f.strip_prefix("data: ").map(str::to_string))
        .collect()
}
