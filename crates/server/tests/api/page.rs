//! The web page: its files are served from the binary with a strict content policy, need no
//! key (they hold no data), and call only the API a client would.

use axum::http::{StatusCode, header};

use crate::common::{body_text, get, send, with_keys};

#[tokio::test]
async fn the_page_and_its_files_are_served_without_a_key() {
    let app = with_keys(&["k1"]);
    for (path, kind, needle) in [
        ("/", "text/html", "AI-generated"),
        ("/app.js", "text/javascript", "/v1/completions"),
        ("/style.css", "text/css", ".tok"),
    ] {
        let resp = send(app.clone(), get(path)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let headers = resp.headers().clone();
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}: {headers:?}"
        );
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(body_text(resp).await.contains(needle), "{path}");
    }
    // The data behind the page still needs the key.
    let resp = send(app, get("/v1/models")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_page_loads_nothing_from_elsewhere_and_labels_outputs() {
    let app = with_keys(&[]);
    let html = body_text(send(app.clone(), get("/")).await).await;
    let script = body_text(send(app, get("/app.js")).await).await;
    for text in [&html, &script] {
        assert!(!text.contains("http://") && !text.contains("https://"));
    }
    // Every output the script shows carries the label: text gets a label line, each image a
    // caption.
    assert!(script.contains("labelLine()") && script.contains("cap.textContent = AI_LABEL"));
    // Token alternatives come from the API's logprobs.
    assert!(script.contains("body.logprobs = 5"));
}
