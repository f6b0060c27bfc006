//! Bad requests: each answered with OpenAI error JSON and the right status, and the server
//! answering the next request as before.

use axum::http::StatusCode;
use muse_server::router;
use serde_json::json;

use crate::common::{assert_error, call, get, json_of, post, send, server};

async fn raw(path: &str, body: &str) -> (StatusCode, serde_json::Value) {
    json_of(send(router(server().state.clone()), post(path, body.to_string())).await).await
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_400() {
    let got = raw("/v1/completions", "{\"model\": \"gpt2\", \"prompt\": ").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "not valid JSON");
    let got = raw("/v1/chat/completions", "not json at all").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "not valid JSON");
    let got = raw("/v1/completions", "").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "empty");
    let got = raw("/v1/completions", "[1, 2, 3]").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "does not match");
    let wrong = json!({"model": "gpt2", "prompt": "Hi", "max_tokens": "ten"});
    let got = call("/v1/completions", wrong).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "does not match");
    let missing = json!({"model": "gpt2"});
    let got = call("/v1/chat/completions", missing).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "messages");
    let got = call("/v1/embeddings", json!({"model": 5, "input": "x"})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "does not match");
    // Still serving.
    let (status, _) = call(
        "/v1/completions",
        json!({"model": "gpt2", "prompt": "Hi", "max_tokens": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_model_is_404_and_a_model_of_another_kind_400() {
    let got = call(
        "/v1/completions",
        json!({"model": "../../etc/passwd", "prompt": "x"}),
    )
    .await;
    assert_error(&got, StatusCode::NOT_FOUND, "does not exist");
    assert_eq!(got.1["error"]["code"], "model_not_found");
    assert_eq!(got.1["error"]["param"], "model");
    let got = call("/v1/embeddings", json!({"model": "gpt2", "input": "x"})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "/v1/completions");
    let got = call(
        "/v1/chat/completions",
        json!({"model": "all-minilm-l6-v2", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "/v1/embeddings");
}

#[tokio::test]
async fn out_of_range_values_name_their_field() {
    let cases = [
        (json!({"n": 0}), "n"),
        (json!({"n": 17}), "n"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"max_tokens": -5}), "max_tokens"),
        (json!({"temperature": 3.5}), "temperature"),
        (json!({"top_p": 0}), "top_p"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"logprobs": 21}), "top_logprobs"),
    ];
    for (extra, param) in cases {
        let mut req = json!({"model": "gpt2", "prompt": "Hi"});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        let got = call("/v1/completions", req).await;
        assert_error(&got, StatusCode::BAD_REQUEST, param);
        assert_eq!(got.1["error"]["param"], param, "{}", got.1);
    }
    let got = call(
        "/v1/chat/completions",
        json!({"model": "gpt2", "messages": [{"role": "tool", "content": "x"}]}),
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "role 'tool'");
    let got = call(
        "/v1/chat/completions",
        json!({"model": "gpt2", "messages": []}),
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "messages is empty");
}

#[tokio::test]
async fn a_10_mb_body_is_413() {
    let big = format!(
        "{{\"model\": \"gpt2\", \"prompt\": \"{}\"}}",
        "a".repeat(10 << 20)
    );
    let got = raw("/v1/completions", &big).await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "larger than");
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let app = router(server().state.clone());
    let got = json_of(send(app.clone(), get("/v1/nothing")).await).await;
    assert_error(&got, StatusCode::NOT_FOUND, "no endpoint /v1/nothing");
    let got = json_of(send(app, get("/v1/completions")).await).await;
    assert_error(&got, StatusCode::METHOD_NOT_ALLOWED, "POST");
}
