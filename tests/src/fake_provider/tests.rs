//! The fake itself, spoken to directly: each format's shapes, auth, scripted failures and
//! disconnect detection. (The e2e tests rely on all of it; a broken fake would make them lie.)

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};

use super::*;
use crate::gateway_client::http_client;

const KEY: &str = "sk-fake-test-key-0001";

async fn post(
    fake: &FakeProvider,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut request = http_client()
        .post(format!("{}{path}", fake.root_url()))
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn bearer() -> String {
    format!("Bearer {KEY}")
}

fn openai_chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": stream,
           "stream_options": {"include_usage": true}})
}

fn tools_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
}

/// `data:` payloads of an SSE body.
fn data_events(text: &str) -> Vec<String> {
    crate::gateway_client::sse_data_events(text)
}

#[tokio::test]
async fn openai_text_tool_call_stream_and_usage() {
    let fake = FakeProvider::start().await;
    fake.set_api_key(KEY);
    let auth = bearer();
    let headers = [("authorization", auth.as_str())];

    let body: Value = post(&fake, "/v1/chat/completions", &headers, openai_chat(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], FAKE_CONTENT);
    assert_eq!(body["usage"]["completion_tokens"], FAKE_COMPLETION_TOKENS);

    let mut request = openai_chat(true);
    request["tools"] = tools_openai();
    let text = post(&fake, "/v1/chat/completions", &headers, request)
        .await
        .text()
        .await
        .unwrap();
    let events = data_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|event| serde_json::from_str(event).unwrap())
        .collect();
    let arguments: String = chunks
        .iter()
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        })
        .collect();
    assert_eq!(arguments, FAKE_TOOL_ARGUMENTS);
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .filter(|chunk| chunk["choices"][0]["finish_reason"].is_string())
        .collect();
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        chunks.last().unwrap()["usage"]["completion_tokens"],
        FAKE_TOOL_CALL_TOKENS
    );

    let wrong = post(
        &fake,
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-wrong-key-123456")],
        openai_chat(false),
    )
    .await;
    assert_eq!(wrong.status(), 401);
    let error: Value = wrong.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_api_key");
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn azure_needs_api_version_and_opens_streams_with_a_filter_chunk() {
    let fake = FakeProvider::start().await;
    fake.set_api_key(KEY);
    let path = "/openai/deployments/prod/chat/completions";
    let missing = post(&fake, path, &[("api-key", KEY)], openai_chat(false)).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "404"
    );

    let versioned = format!("{path}?api-version=2024-10-21");
    let no_key = post(&fake, &versioned, &[], openai_chat(false)).await;
    assert_eq!(no_key.status(), 401);

    let text = post(&fake, &versioned, &[("api-key", KEY)], openai_chat(true))
        .await
        .text()
        .await
        .unwrap();
    let events = data_events(&text);
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["id"], "");
    assert!(first["prompt_filter_results"].is_array());
    assert_eq!(
        fake.last_request().unwrap().query("api-version").as_deref(),
        Some("2024-10-21")
    );
}

#[tokio::test]
async fn anthropic_stream_has_the_documented_event_sequence() {
    let fake = FakeProvider::start().await;
    fake.set_api_key(KEY);
    let headers = [("x-api-key", KEY), ("anthropic-version", "2023-06-01")];
    let request = json!({"model": "claude", "max_tokens": 64, "stream": true,
                         "messages": [{"role": "user", "content": "hi"}]});
    let text = post(&fake, "/v1/messages", &headers, request.clone())
        .await
        .text()
        .await
        .unwrap();
    let types: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("event: ").map(str::to_owned))
        .collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n(
        "content_block_delta",
        FAKE_COMPLETION_TOKENS as usize,
    ));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(types, expected);

    let no_version = post(
        &fake,
        "/v1/messages",
        &[("x-api-key", KEY)],
        request.clone(),
    )
    .await;
    assert_eq!(no_version.status(), 400);
    let mut extra = request.clone();
    extra["frequency_penalty"] = json!(0);
    let refused = post(&fake, "/v1/messages", &headers, extra).await;
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");

    let mut tools = request;
    tools["stream"] = json!(false);
    tools["tools"] = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    let body: Value = post(&fake, "/v1/messages", &headers, tools)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["content"][0]["input"],
        serde_json::from_str::<Value>(FAKE_TOOL_ARGUMENTS).unwrap()
    );
}

#[tokio::test]
async fn gemini_serves_sse_json_array_and_embeddings() {
    let fake = FakeProvider::start().await;
    fake.set_api_key(KEY);
    let headers = [("x-goog-api-key", KEY)];
    let request = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let sse = post(
        &fake,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        &headers,
        request.clone(),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(sse.contains("\r\n\r\n"), "{sse}");
    let chunks: Vec<Value> = data_events(&sse)
        .iter()
        .map(|event| serde_json::from_str(event).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, FAKE_CONTENT);
    assert_eq!(
        chunks.last().unwrap()["candidates"][0]["finishReason"],
        "STOP"
    );
    assert_eq!(
        chunks.last().unwrap()["usageMetadata"]["candidatesTokenCount"],
        FAKE_COMPLETION_TOKENS
    );

    let array: Value = post(
        &fake,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        &headers,
        request.clone(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        array.as_array().unwrap().len(),
        FAKE_COMPLETION_TOKENS as usize
    );

    let wrong = post(
        &fake,
        "/v1beta/models/gemini-2.0-flash:generateContent",
        &[("x-goog-api-key", "nope")],
        request,
    )
    .await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"]["status"],
        "INVALID_ARGUMENT"
    );

    let batch = json!({"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 3},
    ]});
    let body: Value = post(
        &fake,
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        &headers,
        batch,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        body["embeddings"][0]["values"],
        json!(fake_embedding("a", FAKE_EMBEDDING_DIMENSIONS))
    );
    assert_eq!(
        body["embeddings"][1]["values"],
        json!(fake_embedding("b", 3))
    );
}

#[tokio::test]
async fn openai_embeddings_in_float_and_base64() {
    let fake = FakeProvider::start().await;
    let auth = bearer();
    let headers = [("authorization", auth.as_str())];
    let body: Value = post(&fake, "/v1/embeddings", &headers,
        json!({"model": "text-embedding-3-small", "input": ["one two", "three"], "encoding_format": "base64"}))
        .await
        .json()
        .await
        .unwrap();
    let vectors = crate::embeddings_api::embedding_vectors(&body);
    assert_eq!(
        vectors[1],
        fake_embedding("three", FAKE_EMBEDDING_DIMENSIONS)
    );
    assert_eq!(body["usage"]["prompt_tokens"], 3);
}

#[tokio::test]
async fn scripted_failures_keep_each_providers_error_shape() {
    let fake = FakeProvider::start().await;
    fake.set_behavior(Behavior::RateLimited {
        retry_after_secs: 7,
    });
    let limited = post(&fake, "/v1/messages", &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error"]["type"],
        "rate_limit_error"
    );

    fake.set_behavior(Behavior::ErrorEventAfter {
        events: 3,
        status: 529,
        message: "Overloaded".to_owned(),
    });
    let streamed = post(&fake, "/v1/messages", &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        json!({"model": "claude", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        streamed.ends_with("event: error\ndata: {\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\"},\"type\":\"error\"}\n\n"),
        "{streamed}"
    );
    assert_eq!(streamed.matches("event: ").count(), 4, "{streamed}");

    fake.set_behavior(Behavior::CutStreamAfter(2));
    let auth = bearer();
    let response = post(
        &fake,
        "/v1/chat/completions",
        &[("authorization", auth.as_str())],
        openai_chat(true),
    )
    .await;
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    let mut broke = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(broke, "the cut must be a transport error");
    assert_eq!(data_events(&String::from_utf8_lossy(&received)).len(), 2);
    assert!(
        fake.disconnects().is_empty(),
        "a cut is not a client disconnect"
    );
}

#[tokio::test]
async fn a_client_hanging_up_mid_stream_is_seen_as_a_disconnect() {
    let fake = FakeProvider::start().await;
    fake.set_behavior(Behavior::SlowStream {
        chunks: 1000,
        every: Duration::from_millis(20),
    });
    let auth = bearer();
    let response = post(
        &fake,
        "/v1/chat/completions",
        &[("authorization", auth.as_str())],
        openai_chat(true),
    )
    .await;
    let mut stream = response.bytes_stream();
    let mut received = 0;
    while received < 3 {
        let chunk = stream.next().await.unwrap().unwrap();
        received += chunk.windows(2).filter(|window| window == b"\n\n").count();
    }
    let hung_up = Instant::now();
    drop(stream);
    // Far below how long the upstream would have gone on (a 20 s stream, a 30 s wait), far
    // above what a hang-up takes on a loaded machine.
    let disconnect = fake.wait_for_disconnect(Duration::from_secs(20)).await;
    let noticed = disconnect.at.saturating_duration_since(hung_up);
    assert!(
        noticed < Duration::from_secs(10),
        "noticed after {noticed:?}"
    );
    assert!(disconnect.events_sent >= 3, "{disconnect:?}");
}

#[tokio::test]
async fn a_client_hanging_up_during_latency_is_seen_as_a_disconnect() {
    let fake = FakeProvider::start().await;
    fake.set_behavior(Behavior::Latency(Duration::from_secs(30)));
    let url = format!(
        "{}/v1/chat/completions",
        fake.base_url().trim_end_matches("/v1")
    );
    let request = tokio::spawn(async move {
        http_client()
            .post(url)
            .bearer_auth(KEY)
            .json(&openai_chat(false))
            .send()
            .await
    });
    crate::eventually::eventually(Duration::from_secs(5), async || fake.request_count() == 1).await;
    let hung_up = Instant::now();
    request.abort();
    // Far below how long the upstream would have gone on (a 20 s stream, a 30 s wait), far
    // above what a hang-up takes on a loaded machine.
    let disconnect = fake.wait_for_disconnect(Duration::from_secs(20)).await;
    let noticed = disconnect.at.saturating_duration_since(hung_up);
    assert!(
        noticed < Duration::from_secs(10),
        "noticed after {noticed:?}"
    );
    assert_eq!(disconnect.events_sent, 0);
}
