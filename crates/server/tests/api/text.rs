//! Completions and chat: whole and streamed, `n`, `seed`, `logprobs`, `usage`, the context
//! check, and a client that goes away mid-stream.

use axum::http::StatusCode;
use muse_server::router;
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;

use crate::common::{assert_error, body_text, call, post, send, server, sse_frames};

#[tokio::test]
async fn completions_whole_with_n_seed_usage_and_logprobs() {
    let req = json!({"model": "gpt2", "prompt": "Hello world", "max_tokens": 5, "n": 2,
                     "temperature": 0.8, "seed": 7, "logprobs": 3});
    let (status, v) = call("/v1/completions", req.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "gpt2");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((2..=10).contains(&completion), "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + completion
    );
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert!(["stop", "length"].contains(&c["finish_reason"].as_str().unwrap()));
        let lp = &c["logprobs"];
        let n = lp["tokens"].as_array().unwrap().len();
        assert!((1..=5).contains(&n), "{lp}");
        assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), n);
        for (p, top) in lp["token_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(lp["top_logprobs"].as_array().unwrap())
        {
            assert!(p.as_f64().unwrap() <= 0.0);
            assert_eq!(
                top.as_object().unwrap().len().min(3),
                top.as_object().unwrap().len()
            );
        }
    }
    // The same seed gives the same text.
    let (_, again) = call("/v1/completions", req).await;
    assert_eq!(v["choices"][0]["text"], again["choices"][0]["text"]);
    assert_eq!(v["choices"][1]["text"], again["choices"][1]["text"]);
}

#[tokio::test]
async fn completions_stream_ends_with_done_and_usage() {
    let req = json!({"model": "gpt2", "prompt": "Once", "max_tokens": 6, "temperature": 0,
                     "stream": true, "stream_options": {"include_usage": true}});
    let resp = send(
        router(server().state.clone()),
        post("/v1/completions", req.to_string()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = body_text(resp).await;
    let frames = sse_frames(&body);
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    let finished = &chunks[chunks.len() - 2]["choices"][0];
    assert!(finished["finish_reason"].is_string(), "{finished}");
    // Streamed text equals the whole answer for the same (greedy) request.
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    let whole = json!({"model": "gpt2", "prompt": "Once", "max_tokens": 6, "temperature": 0});
    let (_, v) = call("/v1/completions", whole).await;
    assert_eq!(v["choices"][0]["text"].as_str().unwrap(), text);
}

#[tokio::test]
async fn chat_whole_and_streamed_with_logprobs() {
    let messages = json!([{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]);
    let req = json!({"model": "gpt2", "messages": messages, "max_tokens": 4, "seed": 3,
                     "logprobs": true, "top_logprobs": 2});
    let (status, v) = call("/v1/chat/completions", req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_string());
    let content = choice["logprobs"]["content"].as_array().unwrap();
    assert!(!content.is_empty());
    assert!(content[0]["top_logprobs"].as_array().unwrap().len() <= 2);
    assert!(content[0]["logprob"].as_f64().unwrap() <= 0.0);

    let req = json!({"model": "gpt2", "messages": messages, "max_completion_tokens": 4,
                     "stream": true, "n": 2});
    let resp = send(
        router(server().state.clone()),
        post("/v1/chat/completions", req.to_string()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let frames = sse_frames(&body_text(resp).await);
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    for index in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0])
            .filter(|c| c["index"] == index)
            .collect();
        assert_eq!(mine[0]["delta"]["role"], "assistant", "{mine:?}");
        assert!(mine.last().unwrap()["finish_reason"].is_string());
    }
}

#[tokio::test]
async fn prompt_and_max_tokens_must_fit_the_context() {
    let req = json!({"model": "gpt2", "prompt": "Hello", "max_tokens": 100});
    let got = call("/v1/completions", req).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "context of 64 tokens");
    // Streaming too: a 400 before the stream starts, not an error frame inside it.
    let req = json!({"model": "gpt2", "prompt": "Hello", "max_tokens": 100, "stream": true});
    let got = call("/v1/completions", req).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "at most");
    let long = "word ".repeat(80);
    let req = json!({"model": "gpt2", "prompt": long});
    let got = call("/v1/completions", req).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "shorten the prompt");
    let req = json!({"model": "gpt2", "messages": [{"role": "user", "content": long}]});
    let got = call("/v1/chat/completions", req).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "shorten the prompt");
}

/// A client that stops reading mid-stream: the engine stops that job at its next token and
/// takes the next request.
#[tokio::test]
async fn a_client_that_goes_away_cancels_its_generation() {
    let tokens = || server().state.metrics.render(0);
    let count = |text: String| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("muse_tokens_generated_total "))
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    // 16 choices of up to 50 tokens: 800 tokens if nobody stops it.
    let req = json!({"model": "gpt2", "prompt": "Once upon", "max_tokens": 50, "n": 16,
                     "stream": true, "temperature": 1.0, "seed": 1});
    let before = count(tokens());
    let resp = send(
        router(server().state.clone()),
        post("/v1/completions", req.to_string()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(first.starts_with("data: {\"id\":\"cmpl-"), "{first}");
    drop(body);
    // The engine runs one job at a time: once this answers, the cancelled one has ended.
    let (status, _) = call(
        "/v1/completions",
        json!({"model": "gpt2", "prompt": "x", "max_tokens": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let spent = count(tokens()) - before;
    eprintln!("{spent} tokens generated before the engine noticed");
    assert!(
        spent < 16 * 50 / 2,
        "{spent} tokens generated after the client left"
    );
}

#[tokio::test]
async fn stop_strings_cut_the_text_and_echo_prepends_the_prompt() {
    let req = json!({"model": "gpt2", "prompt": "Hello", "max_tokens": 12, "temperature": 0});
    let (_, v) = call("/v1/completions", req.clone()).await;
    let text = v["choices"][0]["text"].as_str().unwrap().to_string();
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 4, "{text:?}");
    // Stop at what greedy decoding writes from its third character on.
    let stop: String = chars[2..4].iter().collect();
    let cut = &text[..text.find(&stop).unwrap()];
    let mut stopped = req.clone();
    stopped["stop"] = json!(stop);
    let (_, v) = call("/v1/completions", stopped).await;
    assert_eq!(v["choices"][0]["text"].as_str().unwrap(), cut);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let mut echoed = req;
    echoed["echo"] = json!(true);
    let (_, v) = call("/v1/completions", echoed).await;
    assert_eq!(
        v["choices"][0]["text"].as_str().unwrap(),
        format!("Hello{text}")
    );
}

/// `muse serve --watermark-key`: every completion carries the key's watermark, which
/// `muse detect` finds with the tokenizer alone; the unkeyed server's text does not.
#[tokio::test]
async fn a_keyed_server_watermarks_its_text() {
    use muse_core::run::generation::{Scheme, Watermark};
    use muse_core::run::{DetectRequest, Verdict, detect_watermark};
    use muse_server::engine;
    use muse_server::metrics::Metrics;
    use std::sync::Arc;

    let named = muse_server::model_names(&[crate::common::gpt2()]).unwrap();
    let metrics = Arc::new(Metrics::default());
    let key = Watermark::new("serve-key").unwrap();
    let cfg = engine::EngineConfig {
        queue: 4,
        watermark: Some(key),
        ..engine::EngineConfig::new(muse_core::device::Device::Cpu)
    };
    let (engine, infos) = engine::start(named, cfg, metrics.clone()).unwrap();
    let keyed = router(muse_server::AppState::new(
        infos,
        engine,
        Vec::new(),
        metrics,
    ));
    let req = json!({"model": "gpt2", "prompt": "Hello", "max_tokens": 50, "temperature": 1.0,
                     "seed": 3});
    let verdict = |text: &str| {
        detect_watermark(&DetectRequest {
            text: text.to_string(),
            key: "serve-key".into(),
            tokenizer: crate::common::gpt2(),
            gamma: 0.25,
            scheme: Scheme::PrevToken,
            threshold: 4.0,
            count_repeats: false,
        })
        .unwrap()
    };
    let (status, v) =
        crate::common::json_of(send(keyed, post("/v1/completions", req.to_string())).await).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let marked = verdict(v["choices"][0]["text"].as_str().unwrap());
    assert_eq!(marked.verdict, Verdict::Watermarked, "{marked:?}");
    let (_, v) = call("/v1/completions", req).await;
    let plain = verdict(v["choices"][0]["text"].as_str().unwrap());
    assert_ne!(plain.verdict, Verdict::Watermarked, "{plain:?}");
}

/// Continuous batching: requests that arrive together are generated together (one forward
/// pass per token for all of them, as the batch counters show), and each gets the text it
/// gets alone.
#[tokio::test]
async fn concurrent_requests_share_steps_and_get_their_own_text() {
    use muse_server::engine;
    use muse_server::metrics::Metrics;
    use std::sync::Arc;

    let named = muse_server::model_names(&[crate::common::gpt2()]).unwrap();
    let metrics = Arc::new(Metrics::default());
    let cfg = engine::EngineConfig::new(muse_core::device::Device::Cpu);
    let (engine, infos) = engine::start(named, cfg, metrics.clone()).unwrap();
    let app = router(muse_server::AppState::new(
        infos,
        engine,
        Vec::new(),
        metrics.clone(),
    ));
    let requests: Vec<Value> = [
        ("The meaning of life is", 12, 0.0),
        ("Once upon a time, in a land far away,", 20, 1.0),
        ("Paris is", 8, 0.8),
        ("def fibonacci(n):", 16, 1.0),
    ]
    .iter()
    .enumerate()
    .map(|(i, (prompt, max_tokens, temperature))| {
        json!({"model": "gpt2", "prompt": prompt, "max_tokens": max_tokens,
               "temperature": temperature, "seed": 10 + i})
    })
    .collect();
    let text = |v: Value| v["choices"][0]["text"].as_str().unwrap().to_string();
    let one = |req: &Value| {
        let app = app.clone();
        let req = req.to_string();
        async move { crate::common::json_of(send(app, post("/v1/completions", req)).await).await }
    };
    let handles: Vec<_> = requests.iter().map(|r| tokio::spawn(one(r))).collect();
    let mut together = Vec::new();
    for h in handles {
        together.push(h.await.unwrap());
    }
    let (steps, choices) = metrics.batch_totals();
    assert!(
        choices > steps,
        "{choices} choices in {steps} steps: the requests never shared a step"
    );
    for (req, (status, v)) in requests.iter().zip(together) {
        assert_eq!(status, StatusCode::OK, "{v}");
        let (status, alone) = one(req).await;
        assert_eq!(status, StatusCode::OK, "{alone}");
        assert_eq!(text(v), text(alone), "{req}");
    }
}

/// Chats with the same system message share the start of their prompts: a later chat copies
/// that part of the cache instead of computing it (counted in /metrics; the counting itself is
/// tested in the core, where no other request runs in between), and answers exactly as when
/// it was first asked.
#[tokio::test]
async fn chats_that_start_the_same_way_answer_as_computed_whole() {
    let chat = |question: &str| {
        json!({"model": "gpt2", "max_tokens": 4, "temperature": 0.0,
               "messages": [{"role": "system", "content": "Be brief and careful."},
                            {"role": "user", "content": question}]})
    };
    let (status, first) = call("/v1/chat/completions", chat("What is two and two?")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, _) = call("/v1/chat/completions", chat("Name a colour.")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = call("/v1/chat/completions", chat("What is two and two?")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again["choices"][0]["message"]["content"],
        first["choices"][0]["message"]["content"]
    );
}
