//! `muse bench http` end to end on the tiny GPT-2: a real server on a loopback port, real
//! streaming clients, every request answered.

use muse_core::device::Device;
use muse_server::bench::{HttpLoadOptions, http_load_bench};

use crate::common::gpt2;

#[test]
fn loopback_load_answers_every_streaming_client() {
    let report = http_load_bench(&HttpLoadOptions {
        model: gpt2(),
        url: None,
        api_key: None,
        device: Device::Cpu,
        clients: vec![1, 3],
        seconds: 0.5,
        max_tokens: 8,
        max_batch: 4,
        queue: 8,
    })
    .unwrap();
    assert_eq!(report.runs.len(), 2);
    for run in &report.runs {
        assert_eq!(run.errors, 0, "{run:?}");
        assert!(run.completions >= run.clients, "{run:?}");
        // Every reply has text, and none runs past max_tokens.
        assert!(run.tokens >= run.completions && run.tokens <= run.completions * 8);
        assert!(run.first_token_ms_median > 0.0 && run.per_token_ms_median > 0.0);
    }
    // Three clients share forward passes.
    assert!(report.runs[1].mean_batch.unwrap() > 1.0, "{report:?}");
}

#[test]
fn loopback_load_reports_a_server_that_is_not_there() {
    // A port nothing listens on: every request fails, and the run says so instead of
    // stopping.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let report = http_load_bench(&HttpLoadOptions {
        model: gpt2(),
        url: Some(format!("http://127.0.0.1:{port}/")),
        api_key: None,
        device: Device::Cpu,
        clients: vec![2],
        seconds: 0.2,
        max_tokens: 4,
        max_batch: 4,
        queue: 8,
    })
    .unwrap();
    let run = &report.runs[0];
    assert_eq!(run.completions, 0);
    assert!(run.errors >= 2, "{run:?}");
    assert_eq!(report.peak_rss_mb, None);
}
