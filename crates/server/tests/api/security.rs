//! API keys, the engine's queue limit, and model names.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::common::{assert_error, body_text, detached, get, json_of, post, send, with_keys};

fn with_auth(path: &str, key: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn with_keys_every_endpoint_but_health_needs_one() {
    let app = with_keys(&["k1", "second-key"]);
    let resp = send(app.clone(), get("/health")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_text(resp).await, r#"{"status":"ok"}"#);
    for path in ["/v1/models", "/metrics"] {
        let got = json_of(send(app.clone(), get(path)).await).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "Authorization: Bearer");
        assert_eq!(got.1["error"]["code"], "invalid_api_key");
        let got = json_of(send(app.clone(), with_auth(path, "k2")).await).await;
        assert_error(
            &got,
            StatusCode::UNAUTHORIZED,
            "not one this server accepts",
        );
    }
    let got = json_of(
        send(
            app.clone(),
            post("/v1/completions", json!({"model": "gpt2"}).to_string()),
        )
        .await,
    )
    .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "API key");
    let resp = send(app.clone(), with_auth("/v1/models", "second-key")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(app, with_auth("/v1/models", "k1")).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_full_queue_answers_429() {
    let (app, _jobs) = detached(1);
    let req = || {
        post(
            "/v1/completions",
            json!({"model": "gpt2", "prompt": "Hi"}).to_string(),
        )
    };
    // The first job waits in the queue (nobody runs it); the second finds it full.
    let first = tokio::spawn(send(app.clone(), req()));
    tokio::task::yield_now().await;
    for _ in 0..100 {
        let got = json_of(send(app.clone(), req()).await).await;
        if got.0 == StatusCode::TOO_MANY_REQUESTS {
            assert_error(&got, StatusCode::TOO_MANY_REQUESTS, "busy");
            assert_eq!(got.1["error"]["code"], "queue_full");
            first.abort();
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the queue never filled");
}

#[test]
fn models_are_named_after_their_folder_or_file_and_names_are_unique() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a/shakespeare");
    let b = tmp.path().join("b/shakespeare");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let gguf = tmp.path().join("smol.Q8_0.gguf");
    std::fs::write(&gguf, b"x").unwrap();
    let named = muse_server::model_names(&[a.clone(), gguf]).unwrap();
    let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["shakespeare", "smol.Q8_0"]);
    let err = muse_server::model_names(&[a, b]).unwrap_err().to_string();
    assert!(err.contains("both be served as 'shakespeare'"), "{err}");
    assert!(muse_server::model_names(&[]).is_err());
}
