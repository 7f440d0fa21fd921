//! `/v1/messages` served in process through the mock provider: Anthropic's SDK headers,
//! messages and streams, Anthropic's errors, and the one usage event each request records.

#![allow(clippy::unwrap_used)]

use super::super::tests::serve;
use crate::config::snapshot::tests::wire_limit;
use crate::usage::UsageStatus;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_proto::v1 as pb;

/// Posts as Anthropic's SDK does: `x-api-key` and `anthropic-version`, no bearer token.
async fn post(url: &str, api_key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = crate::providers::test_http_client()
        .post(format!("{url}/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(body);
    if let Some(key) = api_key {
        request = request.header("x-api-key", key);
    }
    request.send().await.unwrap()
}

fn hello(max_tokens: u32) -> Value {
    json!({
        "model": "mock-small",
        "max_tokens": max_tokens,
        "system": "You are a test.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    })
}

/// `(event name, data)` pairs of an Anthropic SSE body.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            let (event, data) = frame.split_once('\n').unwrap();
            (
                event.strip_prefix("event: ").unwrap().to_owned(),
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_anthropic_client_gets_a_message_from_the_mock_provider() {
    let edge = serve(vec![]).await;
    let response = post(&edge.url, Some("tg_limited"), &hello(64)).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(headers.contains_key("x-request-id"));
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "mock-small");
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["stop_sequence"], Value::Null);
    assert_eq!(message["content"][0]["type"], "text");
    assert!(
        message["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Tollgate mock reply:")
    );
    let output_tokens = message["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!(output_tokens, 16);
    assert_eq!(
        headers["x-tollgate-output-tokens"],
        output_tokens.to_string().as_str()
    );
    assert_eq!(
        headers["x-tollgate-input-tokens"],
        message["usage"]["input_tokens"].to_string().as_str()
    );

    let event = edge.events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(event.status, UsageStatus::Ok);
    assert_eq!(event.requested_model, "mock-small");
    assert_eq!(event.output_tokens, output_tokens);
    assert!(!event.stream);
}

#[tokio::test]
async fn a_stream_is_anthropics_event_sequence_with_usage_at_the_end() {
    let edge = serve(vec![]).await;
    let mut body = hello(5);
    body["stream"] = json!(true);
    let response = post(&edge.url, Some("tg_limited"), &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names[1], "content_block_start");
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        names[2..names.len() - 3]
            .iter()
            .all(|name| *name == "content_block_delta")
    );
    let text: String = events
        .iter()
        .filter_map(|(_, data)| data.pointer("/delta/text")?.as_str())
        .collect();
    assert_eq!(text, "Tollgate mock reply: the gateway");
    let start = &events[0].1["message"];
    assert_eq!(start["model"], "mock-small");
    assert!(start["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 5);

    let event = edge.events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(event.status, UsageStatus::Ok);
    assert!(event.stream);
    assert_eq!(event.output_tokens, 5);
}

#[tokio::test]
async fn a_missing_key_is_anthropics_authentication_error() {
    let edge = serve(vec![]).await;
    let response = post(&edge.url, None, &hello(8)).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API key")
    );

    let wrong = post(&edge.url, Some("tg_wrong"), &hello(8)).await;
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn bad_requests_and_unknown_models_are_anthropic_errors_with_rate_headers() {
    let edge = serve(vec![wire_limit(
        pb::LimitScope::Key,
        "k1",
        pb::LimitMetric::TokensPerMinute,
        5_000,
    )])
    .await;
    let mut body = hello(8);
    body.as_object_mut().unwrap().remove("max_tokens");
    let response = post(&edge.url, Some("tg_limited"), &body).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-ratelimit-limit-tokens"], "5000");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}})
    );

    let mut body = hello(8);
    body["model"] = json!("no-such-model");
    let response = post(&edge.url, Some("tg_limited"), &body).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");

    // Both refusals are in the ledger, as for chat.
    for _ in 0..2 {
        let event = edge.events.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_ne!(event.status, UsageStatus::Ok);
    }
}

#[tokio::test]
async fn an_openai_style_bearer_token_works_here_too() {
    let edge = serve(vec![]).await;
    let response = crate::providers::test_http_client()
        .post(format!("{}/v1/messages", edge.url))
        .bearer_auth("tg_limited")
        .json(&hello(4))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["stop_reason"], "max_tokens");
}
