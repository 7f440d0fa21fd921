//! Golden files for OpenAI ⇄ Gemini: each case runs the adapter against a one-shot upstream
//! answering with a fixture in Gemini's real wire format, and snapshots the whole exchange
//! (`snapshots/*gemini__<case>.snap`).

#![allow(clippy::unwrap_used)]

use super::GeminiProvider;
use crate::providers::golden::{self, ClientResult, GoldenRecord, UpstreamReply};
use crate::providers::secret::ApiKey;
use crate::providers::{Provider, ProviderError};
use serde_json::{Value, json};
use std::time::Duration;

const UPSTREAM_MODEL: &str = "gemini-2.5-flash";

fn adapter(base_url: &str) -> Box<dyn Provider> {
    Box::new(GeminiProvider::new(
        "gemini-test".to_owned(),
        base_url,
        ApiKey::new("test-gemini-key".to_owned()),
    ))
}

fn fixture(file: &str) -> String {
    golden::fixture(&format!("src/providers/gemini/fixtures/{file}"))
}

async fn chat(request: Value, reply: UpstreamReply) -> GoldenRecord {
    golden::chat(adapter, UPSTREAM_MODEL, request, reply).await
}

#[tokio::test]
async fn text() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "temperature": 0.2,
            "max_tokens": 100,
            "user": "user-1234"
        }),
        UpstreamReply::json(&fixture("text.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__text", record);
}

#[tokio::test]
async fn multi_turn() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [
                {"role": "user", "content": "Hi, my name is Ada."},
                {"role": "assistant", "content": "Nice to meet you, Ada!"},
                {"role": "user", "content": "What is my name?"}
            ],
            "top_p": 0.8,
            "top_k": 40,
            "stop": ["\n\n", "END"],
            "seed": 42
        }),
        UpstreamReply::json(&fixture("multi_turn.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__multi_turn", record);
}

#[tokio::test]
async fn system_prompt() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [
                {"role": "system", "content": "You are a pirate."},
                {"role": "developer", "content": "Answer in one sentence."},
                {"role": "user", "content": "How is the sea today?"}
            ],
            "max_completion_tokens": 12
        }),
        UpstreamReply::json(&fixture("system_prompt.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__system_prompt", record);
}

fn weather_tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city"],
                "additionalProperties": false
            }
        }
    })
}

#[tokio::test]
async fn tool_call() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [{"role": "user", "content": "Weather in Paris, in celsius?"}],
            "tools": [weather_tool()],
            "tool_choice": "required"
        }),
        UpstreamReply::json(&fixture("tool_call.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__tool_call", record);
}

/// The second turn of a tool exchange: the call and its result go back to Gemini.
#[tokio::test]
async fn tool_result() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [
                {"role": "user", "content": "Weather in Paris, in celsius?"},
                {"role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_0", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}
                }]},
                {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp_c\": 21, \"sky\": \"clear\"}"}
            ],
            "tools": [weather_tool()],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
        }),
        UpstreamReply::json(&fixture("tool_result.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__tool_result", record);
}

const GEMINI_3: &str = "gemini-3-flash-preview";

/// Gemini 3 signs its function calls; the signature rides in the tool call id
/// (`call_0~ts~<url-safe base64>`, see `tool_call_id.rs`). Only the first of parallel calls
/// is signed.
#[tokio::test]
async fn thought_signature_two_turns() {
    let first_turn = json!({
        "model": "gemini-pro",
        "messages": [{"role": "user", "content": "Weather in Paris and Tokyo, in celsius?"}],
        "tools": [weather_tool()]
    });
    let turn_1 = golden::chat(
        adapter,
        GEMINI_3,
        first_turn.clone(),
        UpstreamReply::json(&fixture("tool_call_thought_signature.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__thought_signature_turn_1", turn_1);

    // The client replays the assistant message as it received it, and answers both calls.
    let ClientResult::Response(completion) = &turn_1.client_result else {
        panic!("turn 1 failed: {:?}", turn_1.client_result);
    };
    let assistant = completion["choices"][0]["message"].clone();
    let ids: Vec<&str> = assistant["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| call["id"].as_str().unwrap())
        .collect();
    let mut second_turn = first_turn;
    second_turn["messages"].as_array_mut().unwrap().extend([
        assistant.clone(),
        json!({"role": "tool", "tool_call_id": ids[0], "name": "get_weather",
                   "content": "{\"temp_c\": 21, \"sky\": \"clear\"}"}),
        json!({"role": "tool", "tool_call_id": ids[1], "name": "get_weather",
                   "content": "{\"temp_c\": 17, \"sky\": \"light rain\"}"}),
    ]);
    let turn_2 = golden::chat(
        adapter,
        GEMINI_3,
        second_turn,
        UpstreamReply::json(&fixture("tool_result_thought_signature.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__thought_signature_turn_2", turn_2);

    // Gemini gets back exactly the signature it sent, on the call it came with.
    let sent: Value = serde_json::from_str(&fixture("tool_call_thought_signature.json")).unwrap();
    let replayed = &turn_2.upstream_request.as_ref().unwrap().body["contents"][1]["parts"];
    assert_eq!(
        replayed[0]["thoughtSignature"],
        sent["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    );
    assert!(replayed[1].get("thoughtSignature").is_none());
}

#[tokio::test]
async fn thought_signature_streaming() {
    let record = golden::chat(
        adapter,
        GEMINI_3,
        json!({
            "model": "gemini-pro",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [weather_tool()],
            "stream": true
        }),
        UpstreamReply::sse(&fixture("tool_call_thought_signature_streaming.sse")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__thought_signature_streaming", record);
}

#[tokio::test]
async fn tool_call_streaming() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [{"role": "user", "content": "Weather in Paris and Tokyo?"}],
            "tools": [weather_tool()],
            "stream": true
        }),
        UpstreamReply::sse(&fixture("tool_call_streaming.sse")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__tool_call_streaming", record);
}

#[tokio::test]
async fn json_mode() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [{"role": "user", "content": "Who wrote the first program? JSON please."}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "person",
                    "strict": true,
                    "schema": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
                        "required": ["name", "born"],
                        "additionalProperties": false
                    }
                }
            }
        }),
        UpstreamReply::json(&fixture("json_mode.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__json_mode", record);
}

#[tokio::test]
async fn json_object_mode() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [{"role": "user", "content": "Who wrote the first program? JSON please."}],
            "response_format": {"type": "json_object"}
        }),
        UpstreamReply::json(&fixture("json_mode.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__json_object_mode", record);
}

#[tokio::test]
async fn image_input() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Describe this image."},
                {"type": "image_url", "image_url": {
                    "url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==",
                    "detail": "high"
                }}
            ]}]
        }),
        UpstreamReply::json(&fixture("image_input.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__image_input", record);
}

fn simple_request(stream: bool) -> Value {
    json!({
        "model": "gemini-flash",
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": stream
    })
}

#[tokio::test]
async fn error_invalid_argument() {
    let mut request = simple_request(false);
    request["temperature"] = json!(5);
    let record = chat(
        request,
        UpstreamReply::error(400, &fixture("error_400.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__error_invalid_argument", record);
}

#[tokio::test]
async fn error_resource_exhausted() {
    let mut reply = UpstreamReply::error(429, &fixture("error_429.json"));
    reply.headers.push(("retry-after", "29"));
    let record = chat(simple_request(true), reply).await;
    insta::assert_yaml_snapshot!("gemini__error_resource_exhausted", record);
}

#[tokio::test]
async fn error_internal() {
    let record = chat(
        simple_request(false),
        UpstreamReply::error(500, &fixture("error_500.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__error_internal", record);
}

#[tokio::test]
async fn usage_in_stream() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [{"role": "user", "content": "Count to five."}],
            "stream": true,
            "stream_options": {"include_usage": true}
        }),
        UpstreamReply::sse(&fixture("usage_in_stream.sse")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__usage_in_stream", record);
}

#[tokio::test]
async fn stream_cut() {
    let record = chat(
        simple_request(true),
        UpstreamReply::sse(&fixture("stream_cut.sse")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__stream_cut", record);
}

#[tokio::test]
async fn unsupported_parameter_never_reaches_the_upstream() {
    let record = chat(
        json!({
            "model": "gemini-flash",
            "messages": [{"role": "user", "content": "Hello"}],
            "logit_bias": {"1234": -100}
        }),
        UpstreamReply::json(&fixture("text.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__unsupported_parameter", record);
}

#[tokio::test]
async fn embeddings_single() {
    let record = golden::embeddings(
        adapter,
        "gemini-embedding-001",
        json!({"model": "gemini-embed", "input": "The quick brown fox", "dimensions": 4}),
        UpstreamReply::json(&fixture("embed_single.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__embeddings_single", record);
}

#[tokio::test]
async fn embeddings_batch() {
    let record = golden::embeddings(
        adapter,
        "gemini-embedding-001",
        json!({
            "model": "gemini-embed",
            "input": ["The quick brown fox", "jumps over the lazy dog"],
            "dimensions": 3,
            "encoding_format": "float"
        }),
        UpstreamReply::json(&fixture("embed_batch.json")),
    )
    .await;
    insta::assert_yaml_snapshot!("gemini__embeddings_batch", record);
}

/// The golden record shows the client's status and body; the 429's Retry-After (which the
/// HTTP layer passes on) is checked on the error itself.
#[tokio::test]
async fn a_429_keeps_the_upstream_retry_after() {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "29"), ("content-type", "application/json")],
            fixture("error_429.json"),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let provider = adapter(&base_url);
    let target = crate::providers::test_target("gemini-flash", UPSTREAM_MODEL);
    let request = crate::api::chat::ChatCompletionRequest::parse(
        simple_request(false).to_string().as_bytes(),
    )
    .unwrap();
    match provider.chat(&target, &request).await.unwrap_err() {
        ProviderError::UpstreamStatus {
            status,
            retry_after_secs,
            message,
            ..
        } => {
            assert_eq!((status, retry_after_secs), (429, Some(29)));
            assert!(
                message.starts_with("You exceeded your current quota"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A `batchEmbedContents` upstream that answers each input `t<n>` with the vector `[n]` after
/// `delay`, records the size of every batch it receives, and fails call number `fail_call`
/// (1-based) with a 500.
async fn counting_embed_upstream(
    fail_call: Option<usize>,
    delay: std::time::Duration,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<usize>>>) {
    use axum::http::{StatusCode, Uri};
    use std::sync::{Arc, Mutex};
    let batches = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&batches);
    let app = axum::Router::new().fallback(move |uri: Uri, body: String| {
        let seen = Arc::clone(&seen);
        async move {
            assert!(uri.path().ends_with(":batchEmbedContents"), "{uri}");
            let body: Value = serde_json::from_str(&body).unwrap();
            let requests = body["requests"].as_array().unwrap();
            let call = {
                let mut seen = seen.lock().unwrap();
                seen.push(requests.len());
                seen.len()
            };
            tokio::time::sleep(delay).await;
            if fail_call == Some(call) {
                return (StatusCode::INTERNAL_SERVER_ERROR, fixture("error_500.json"));
            }
            let embeddings: Vec<Value> = requests
                .iter()
                .map(|request| {
                    let text = request["content"]["parts"][0]["text"].as_str().unwrap();
                    let n: f32 = text.trim_start_matches('t').parse().unwrap();
                    json!({"values": [n]})
                })
                .collect();
            (
                StatusCode::OK,
                json!({ "embeddings": embeddings }).to_string(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base_url, batches)
}

fn embed_inputs(count: usize) -> crate::api::embeddings::EmbeddingsRequest {
    let inputs: Vec<String> = (0..count).map(|n| format!("t{n}")).collect();
    let body = json!({"model": "gemini-embed", "input": inputs});
    crate::api::embeddings::EmbeddingsRequest::parse(body.to_string().as_bytes()).unwrap()
}

#[tokio::test]
async fn embeddings_beyond_100_inputs_go_in_batches_of_100_with_continuous_indexes() {
    let (base_url, batches) = counting_embed_upstream(None, Duration::ZERO).await;
    let target = crate::providers::test_target("gemini-embed", "gemini-embedding-001");
    let response = adapter(&base_url)
        .embeddings(&target, &embed_inputs(250))
        .await
        .unwrap();
    assert_eq!(*batches.lock().unwrap(), [100, 100, 50]);
    assert_eq!(response.data.len(), 250);
    for (position, embedding) in response.data.iter().enumerate() {
        assert_eq!(embedding.index as usize, position);
        assert_eq!(embedding.embedding, vec![position as f32]);
    }
}

#[tokio::test]
async fn a_failed_batch_fails_the_request_and_stops_the_batches() {
    let (base_url, batches) = counting_embed_upstream(Some(2), Duration::ZERO).await;
    let target = crate::providers::test_target("gemini-embed", "gemini-embedding-001");
    let err = adapter(&base_url)
        .embeddings(&target, &embed_inputs(250))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::UpstreamStatus { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(*batches.lock().unwrap(), [100, 100]);
}

/// Each batch call is well within the total deadline, the three together are not: the deadline
/// bounds the client's request, not each upstream call.
#[tokio::test]
async fn the_total_deadline_spans_all_batches() {
    // Each batch alone fits the deadline; were it per call, all three would be sent.
    let (base_url, batches) = counting_embed_upstream(None, Duration::from_millis(1_200)).await;
    let mut target = crate::providers::test_target("gemini-embed", "gemini-embedding-001");
    target.deadlines.total = Duration::from_secs(2);
    let err = adapter(&base_url)
        .embeddings(&target, &embed_inputs(250))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                phase: crate::providers::TimeoutPhase::Total,
                ..
            }
        ),
        "{err:?}"
    );
    // Two on an idle machine, one when a loaded machine slows the first past the deadline;
    // never the third.
    let sent = batches.lock().unwrap().clone();
    assert!(matches!(sent.as_slice(), [100] | [100, 100]), "{sent:?}");
}
