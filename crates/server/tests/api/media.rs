//! `/health`, `/v1/models`, `/metrics`, `/v1/embeddings` and `/v1/images/generations`.

use axum::http::StatusCode;
use base64::Engine as _;
use muse_server::router;
use serde_json::json;

use crate::common::{assert_error, body_text, call, get, json_of, send, server};

#[tokio::test]
async fn models_list_each_model_with_its_kind() {
    let got = json_of(send(router(server().state.clone()), get("/v1/models")).await).await;
    assert_eq!(got.0, StatusCode::OK);
    let data = got.1["data"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = data
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("gpt2", "text"),
            ("all-minilm-l6-v2", "embeddings"),
            ("vae-tiny", "images"),
            ("ddpm-tiny", "images"),
            ("cgan-tiny", "images")
        ]
    );
    assert_eq!(got.1["object"], "list");
    assert_eq!(data[0]["object"], "model");
    assert_eq!(data[0]["context_length"], 64);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let app = router(server().state.clone());
    send(app.clone(), get("/health")).await;
    let resp = send(app, get("/metrics")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = body_text(resp).await;
    assert!(
        text.contains("muse_requests_total{route=\"/health\",status=\"200\"}"),
        "{text}"
    );
    for name in [
        "muse_prompt_tokens_total",
        "muse_prompt_tokens_reused_total",
        "muse_tokens_generated_total",
        "muse_images_generated_total",
        "muse_queue_depth",
    ] {
        assert!(text.contains(&format!("# TYPE {name}")), "{text}");
    }
    for name in [
        "muse_time_to_first_token_seconds",
        "muse_time_per_token_seconds",
    ] {
        assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
        assert!(
            text.contains(&format!("{name}_bucket{{le=\"+Inf\"}}")),
            "{text}"
        );
        assert!(text.contains(&format!("{name}_count")), "{text}");
    }
}

#[tokio::test]
async fn embeddings_are_unit_vectors_in_input_order() {
    let req = json!({"model": "all-minilm-l6-v2",
                     "input": ["a red sneaker", "crimson running shoes", "tax law"]});
    let (status, v) = call("/v1/embeddings", req.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let vecs: Vec<Vec<f64>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["index"], i);
            assert_eq!(d["object"], "embedding");
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(vecs[0].len(), 384);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    assert!((dot(&vecs[0], &vecs[0]) - 1.0).abs() < 1e-4);
    assert!(dot(&vecs[0], &vecs[1]) > dot(&vecs[0], &vecs[2]));
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 6);
    let got = call(
        "/v1/embeddings",
        json!({"model": "all-minilm-l6-v2", "input": []}),
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "between 1 and");

    // base64, as the official clients ask by default: the same numbers as little-endian f32.
    let mut b64_req = req.clone();
    b64_req["encoding_format"] = json!("base64");
    let (status, b) = call("/v1/embeddings", b64_req).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][1]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect();
    assert_eq!(decoded.len(), 384);
    assert!(
        decoded
            .iter()
            .zip(&vecs[1])
            .all(|(a, b)| (a - b).abs() < 1e-6)
    );
    let mut bad = req;
    bad["encoding_format"] = json!("int8");
    let got = call("/v1/embeddings", bad).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "float or base64");
}

#[tokio::test]
async fn images_come_back_as_labelled_pngs() {
    let req = json!({"model": "vae-tiny", "prompt": "a digit", "n": 2, "seed": 5,
                     "response_format": "b64_json"});
    let (status, v) = call("/v1/images/generations", req.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let b64 = base64::engine::general_purpose::STANDARD;
    for d in data {
        let png = b64.decode(d["b64_json"].as_str().unwrap()).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (28, 28));
        let xmp = xmp_packet(&png);
        for want in [
            "trainedAlgorithmicMedia",
            "<muse:Family>vae</muse:Family>",
            "<muse:Seed>5</muse:Seed>",
            "AI-generated by Muse",
        ] {
            assert!(xmp.contains(want), "no {want} in\n{xmp}");
        }
    }
    // Same seed, same images (the files differ in their date).
    let (_, again) = call("/v1/images/generations", req).await;
    assert_eq!(grey_pixels(&v), grey_pixels(&again));
    let bad = [
        (json!({"n": 11}), "n"),
        (json!({"label": 3}), "label"),
        (json!({"steps": 20}), "steps"),
        (json!({"response_format": "url"}), "response_format"),
    ];
    for (extra, needle) in bad {
        let mut req = json!({"model": "vae-tiny", "prompt": ""});
        for (k, val) in extra.as_object().unwrap() {
            req[k] = val.clone();
        }
        let got = call("/v1/images/generations", req).await;
        assert_error(&got, StatusCode::BAD_REQUEST, needle);
    }
}

#[tokio::test]
async fn diffusion_images_take_label_steps_and_guidance() {
    let req = json!({"model": "ddpm-tiny", "prompt": "", "n": 3, "seed": 2, "label": 1,
                     "steps": 4, "guidance": 2.0});
    let (status, v) = call("/v1/images/generations", req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for d in data {
        let png = b64.decode(d["b64_json"].as_str().unwrap()).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (8, 8));
        let xmp = xmp_packet(&png);
        for want in [
            "<muse:Family>diffusion</muse:Family>",
            "<muse:Label>1</muse:Label>",
            "<muse:Steps>4</muse:Steps>",
            "<muse:Guidance>2</muse:Guidance>",
            "<muse:Sampler>ddim</muse:Sampler>",
        ] {
            assert!(xmp.contains(want), "no {want} in\n{xmp}");
        }
    }
    let got = call(
        "/v1/images/generations",
        json!({"model": "ddpm-tiny", "prompt": "", "label": 5}),
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "label");
}

#[tokio::test]
async fn diffusion_returns_its_denoising_strip_on_request() {
    let req = json!({"model": "ddpm-tiny", "prompt": "", "n": 2, "seed": 3, "label": 0,
                     "steps": 10, "trajectory": true});
    let (status, v) = call("/v1/images/generations", req.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let b64 = base64::engine::general_purpose::STANDARD;
    let strip = b64
        .decode(v["trajectory_b64_json"].as_str().expect("a strip"))
        .unwrap();
    let img = image::load_from_memory(&strip).unwrap();
    // Two rows (x_t above the predicted x_0) per image, one column per recorded step: wider
    // than tall, and more than one 8x8 image in each direction.
    assert!(
        img.width() > img.height() && img.height() > 2 * 8,
        "{}x{}",
        img.width(),
        img.height()
    );
    let xmp = xmp_packet(&strip);
    for want in [
        "trainedAlgorithmicMedia",
        "<muse:Family>diffusion</muse:Family>",
        "trajectory",
    ] {
        assert!(xmp.contains(want), "no {want} in\n{xmp}");
    }
    // Without the flag there is no strip, and the images are the same.
    let mut plain = req;
    plain["trajectory"] = json!(false);
    let (_, w) = call("/v1/images/generations", plain).await;
    assert!(w.get("trajectory_b64_json").is_none(), "{w}");
    assert_eq!(grey_pixels(&v), grey_pixels(&w));
    // Other families say what the flag is for.
    let got = call(
        "/v1/images/generations",
        json!({"model": "vae-tiny", "prompt": "", "trajectory": true}),
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "diffusion");
}

#[tokio::test]
async fn vae_walk_runs_between_the_prior_samples_of_two_seeds() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let walk = json!({"model": "vae-tiny", "prompt": "", "n": 5, "seed": 7, "walk": true});
    let (status, v) = call("/v1/images/generations", walk).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let steps = grey_pixels(&v);
    assert_eq!(steps.len(), 5);
    // Its ends are the prior samples of seed 7 and seed 8 (decoded in a batch of one, so a
    // pixel may round the other way).
    for (seed, end) in [(7, &steps[0]), (8, &steps[4])] {
        let one = json!({"model": "vae-tiny", "prompt": "", "n": 1, "seed": seed});
        let (_, v) = call("/v1/images/generations", one).await;
        let alone = &grey_pixels(&v)[0];
        let most = alone.iter().zip(end).map(|(a, b)| a.abs_diff(*b)).max();
        assert!(most <= Some(1), "seed {seed}: pixels differ by {most:?}");
    }
    // and it moves between them.
    assert_ne!(steps[1], steps[0]);
    assert_ne!(steps[3], steps[4]);
    let caption = xmp_packet(
        &b64.decode(v["data"][2]["b64_json"].as_str().unwrap())
            .unwrap(),
    );
    assert!(caption.contains("latent walk"), "{caption}");
    for (req, needle) in [
        (
            json!({"model": "vae-tiny", "prompt": "", "n": 1, "walk": true}),
            "n >= 2",
        ),
        (
            json!({"model": "cgan-tiny", "prompt": "", "n": 3, "walk": true}),
            "VAE",
        ),
    ] {
        let got = call("/v1/images/generations", req).await;
        assert_error(&got, StatusCode::BAD_REQUEST, needle);
    }
}

#[tokio::test]
async fn gan_images_take_a_label_in_range() {
    let req = json!({"model": "cgan-tiny", "prompt": "", "n": 2, "seed": 4, "label": 1});
    let (status, v) = call("/v1/images/generations", req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let got = call(
        "/v1/images/generations",
        json!({"model": "cgan-tiny", "prompt": "", "label": 2}),
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "out of range");
    let got = call(
        "/v1/images/generations",
        json!({"model": "cgan-tiny", "prompt": "", "guidance": 2.0}),
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "diffusion");
}

/// The grey pixels of each image of an images answer.
fn grey_pixels(v: &serde_json::Value) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let data = v["data"].as_array().unwrap();
    data.iter()
        .map(|d| {
            let png = b64.decode(d["b64_json"].as_str().unwrap()).unwrap();
            image::load_from_memory(&png).unwrap().to_luma8().into_raw()
        })
        .collect()
}

/// The XMP packet of a PNG, read with the `png` crate.
fn xmp_packet(png: &[u8]) -> String {
    let reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let chunk = reader
        .info()
        .utf8_text
        .iter()
        .find(|t| t.keyword == "XML:com.adobe.xmp")
        .expect("an XMP packet in every served PNG")
        .clone();
    chunk.get_text().unwrap()
}
