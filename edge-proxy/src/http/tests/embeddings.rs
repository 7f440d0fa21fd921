//! `POST /v1/embeddings` in process: the mock model's vectors as floats and base64, input
//! validation, routing errors, billing (usage event, headers, limits), and an OpenAI-compatible
//! upstream whose answer is renamed to the public model and billed by its own usage.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

/// $20 per million input tokens: 20 micro-dollars per token, so costs are easy to check.
const EMBED_PRICE_MICROS_PER_MTOK: i64 = 20_000_000;

fn model(id: &str, name: &str, provider_id: &str, upstream: &str) -> pb::SnapshotModel {
    let mut model = wire_snapshot().models.remove(0);
    model.id = id.into();
    model.name = name.into();
    model.provider_id = provider_id.into();
    model.upstream_model = upstream.into();
    model.input_price_micros_per_mtok = EMBED_PRICE_MICROS_PER_MTOK;
    model
}

fn provider(id: &str, name: &str, kind: &str, base_url: &str) -> pb::SnapshotProvider {
    let mut provider = wire_snapshot().providers.remove(0);
    provider.id = id.into();
    provider.name = name.into();
    provider.kind = kind.into();
    provider.base_url = base_url.into();
    provider.api_key = "sk-upstream".into();
    provider
}

/// The mock runtime plus `mock-embed` (mock), `claude` (Anthropic, which has no embeddings)
/// and `openai-embed` (an OpenAI-compatible server at `openai_url`).
fn snapshot(openai_url: &str, limits: Vec<pb::SnapshotLimit>) -> pb::ConfigSnapshot {
    let mut wire = wire_snapshot();
    wire.providers.push(provider(
        "pr2",
        "anthropic",
        "anthropic",
        "http://127.0.0.1:9",
    ));
    wire.providers
        .push(provider("pr3", "compatible", "openai", openai_url));
    wire.models.extend([
        model("m2", "mock-embed", "pr1", "mock-embed"),
        model("m3", "claude", "pr2", "claude-sonnet-4"),
        model("m4", "openai-embed", "pr3", "text-embedding-3-small"),
    ]);
    wire.limits = limits;
    wire
}

async fn edge() -> Served {
    serve_snapshot(snapshot("http://127.0.0.1:9", Vec::new())).await
}

async fn embed(url: &str, body: Value) -> reqwest::Response {
    crate::providers::test_http_client()
        .post(format!("{url}/v1/embeddings"))
        .bearer_auth("tg_limited")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn vector(embedding: &Value) -> Vec<f32> {
    embedding
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap() as f32)
        .collect()
}

fn decode_base64(embedding: &Value) -> Vec<f32> {
    BASE64
        .decode(embedding.as_str().unwrap())
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[tokio::test]
async fn mock_embeddings_come_back_as_floats_billed_for_their_input() {
    let edge = edge().await;
    let response = embed(
        &edge.url,
        json!({"model": "mock-embed", "input": ["the quick brown fox", "jumps"]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "mock-embed");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (index, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], index);
        let vector = vector(&item["embedding"]);
        assert_eq!(vector.len(), 256);
        let length: f32 = vector.iter().map(|c| c * c).sum::<f32>().sqrt();
        assert!((length - 1.0).abs() < 1e-4, "{length}");
    }
    // The mock reports 5 words as 5 prompt tokens; its usage is what the request is billed.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
    assert_eq!(headers["x-tollgate-input-tokens"], "5");
    assert_eq!(headers["x-tollgate-output-tokens"], "0");
    assert_eq!(headers["x-tollgate-cost-micros"], "100");

    let event = edge.events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(event.status.as_str(), "ok");
    assert_eq!(event.http_status, 200);
    assert_eq!(event.model, "mock-embed");
    assert_eq!(event.requested_model, "mock-embed");
    assert!(!event.stream);
    assert_eq!((event.input_tokens, event.output_tokens), (5, 0));
    assert_eq!(event.cost_micros, Some(100));
    assert_eq!(event.usage_source.as_str(), "provider");

    // Chat is unaffected on the same edge.
    assert_eq!(chat(&edge.url, hello()).await.status(), 200);
}

#[tokio::test]
async fn base64_embeddings_decode_to_the_float_vectors() {
    let edge = edge().await;
    let request = |format: &str| json!({"model": "mock-embed", "input": ["a", "b c"], "dimensions": 12, "encoding_format": format});
    let floats: Value = embed(&edge.url, request("float"))
        .await
        .json()
        .await
        .unwrap();
    let encoded = embed(&edge.url, request("base64")).await;
    assert_eq!(encoded.status(), 200);
    let encoded: Value = encoded.json().await.unwrap();
    assert_eq!(encoded["usage"], floats["usage"]);
    for index in 0..2 {
        let float = vector(&floats["data"][index]["embedding"]);
        assert_eq!(float.len(), 12);
        assert_eq!(decode_base64(&encoded["data"][index]["embedding"]), float);
    }
}

#[tokio::test]
async fn bad_embeddings_requests_are_400s_naming_the_field() {
    let edge = edge().await;
    for (body, param, code) in [
        (
            json!({"model": "mock-embed", "input": []}),
            "input",
            "invalid_value",
        ),
        (json!({"model": "mock-embed"}), "input", "missing_field"),
        (
            json!({"model": "mock-embed", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
            "invalid_type",
        ),
        (
            json!({"model": "mock-embed", "input": "x", "dimensions": 5000}),
            "dimensions",
            "unsupported_parameter",
        ),
        (
            json!({"model": "claude", "input": "x"}),
            "model",
            "unsupported_parameter",
        ),
    ] {
        let response = embed(&edge.url, body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        let event = edge.events.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            (event.status.as_str(), event.http_status),
            ("client_error", 400)
        );
        // Refused requests are not billed.
        assert_eq!((event.input_tokens, event.cost_micros.unwrap_or(0)), (0, 0));
    }

    let unknown = embed(&edge.url, json!({"model": "nope", "input": "x"})).await;
    assert_eq!(unknown.status(), 404);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn embeddings_reserve_their_input_tokens_and_carry_rate_headers() {
    let edge = serve_snapshot(snapshot(
        "http://127.0.0.1:9",
        vec![wire_limit(
            pb::LimitScope::Key,
            "k1",
            pb::LimitMetric::TokensPerMinute,
            20,
        )],
    ))
    .await;
    let small = embed(&edge.url, json!({"model": "mock-embed", "input": "hello"})).await;
    assert_eq!(small.status(), 200);
    assert_eq!(small.headers()["x-ratelimit-limit-tokens"], "20");
    let long = "many words make many tokens ".repeat(10);
    let refused = embed(&edge.url, json!({"model": "mock-embed", "input": long})).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["x-tollgate-limit-metric"],
        "tokens_per_minute"
    );
    assert!(
        refused
            .headers()
            .contains_key("x-ratelimit-remaining-tokens")
    );
    // Token arrays reserve their length.
    let tokens = embed(
        &edge.url,
        json!({"model": "mock-embed", "input": vec![1; 25]}),
    )
    .await;
    assert_eq!(tokens.status(), 429);
}

/// An OpenAI-compatible upstream answering every request with `body`; returns its base URL.
async fn upstream(body: Value) -> String {
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { axum::Json(body) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test]
async fn upstream_embeddings_answer_as_the_public_model_billed_by_upstream_usage() {
    let url = upstream(json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25, 0.125]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 9, "total_tokens": 9}
    }))
    .await;
    let edge = serve_snapshot(snapshot(&url, Vec::new())).await;
    let response = embed(
        &edge.url,
        json!({"model": "openai-embed", "input": "hi", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-cost-micros"], "180");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"], "openai-embed");
    assert_eq!(
        decode_base64(&body["data"][0]["embedding"]),
        vec![0.5, -0.25, 0.125]
    );
    assert_eq!(body["usage"]["prompt_tokens"], 9);
    let event = edge.events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((event.input_tokens, event.cost_micros), (9, Some(180)));
    assert_eq!(event.provider, "compatible");
    assert_eq!(event.usage_source.as_str(), "provider");
}

#[tokio::test]
async fn upstream_embeddings_without_usage_are_billed_by_the_edge_count() {
    let url = upstream(json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [1.0]}],
        "model": "text-embedding-3-small"
    }))
    .await;
    let edge = serve_snapshot(snapshot(&url, Vec::new())).await;
    let response = embed(
        &edge.url,
        json!({"model": "openai-embed", "input": "hello world"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // "hello world" is 2 tokens in text-embedding-3-small's encoding (cl100k_base).
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 2, "total_tokens": 2})
    );
    let event = edge.events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((event.input_tokens, event.cost_micros), (2, Some(40)));
    assert_eq!(event.usage_source.as_str(), "counted");
}
