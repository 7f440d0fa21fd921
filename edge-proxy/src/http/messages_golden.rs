//! Golden files for the inbound Anthropic API. Each snapshot reads top to bottom: the
//! Anthropic client's request, the OpenAI-shaped request the gateway routes, what the
//! provider side answered (a completion, or chunks), and what the Anthropic client receives
//! (a `Message`, or the SSE events exactly as framed on the wire). Stream cases run the real
//! SSE renderer over a fixture stream of pipeline events, settled as the meter would.

#![allow(clippy::unwrap_used)]

use super::anthropic_sse;
use crate::api::chat::{ChatCompletion, ChatCompletionChunk, Usage};
use crate::api::messages::{self, MessageStream};
use crate::error::GatewayError;
use crate::http::chat::StreamEvent;
use crate::limits::admission::LimitExceeded;
use crate::limits::spec::{Level, Metric};
use crate::pricing::TokenUsage;
use crate::providers::{ProviderError, TimeoutPhase};
use crate::usage::{Settlement, UsageSource};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Golden {
    client_request: Value,
    gateway_request: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_completion: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_chunks: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_response: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_events: Option<Vec<SseEvent>>,
}

#[derive(Serialize)]
struct SseEvent {
    event: String,
    data: Value,
}

/// The client's request through the gateway's parse.
fn translated(client_request: &Value) -> (String, Value) {
    let request = messages::parse(client_request.to_string().as_bytes()).unwrap();
    (
        request.model.clone(),
        serde_json::to_value(&request).unwrap(),
    )
}

/// What the meter settles for provider-reported usage.
fn settled(usage: &Usage) -> TokenUsage {
    TokenUsage {
        input_tokens: usage.prompt_tokens,
        cached_input_tokens: usage
            .extra
            .get("prompt_tokens_details")
            .and_then(|details| details.get("cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
        output_tokens: usage.completion_tokens,
    }
}

fn settlement(usage: TokenUsage) -> Settlement {
    Settlement {
        usage,
        cost_micros: Some(42),
        price_version: Some(1),
        source: UsageSource::Provider,
    }
}

fn complete(client_request: Value, completion: Value) -> Golden {
    let (model, gateway_request) = translated(&client_request);
    let parsed: ChatCompletion = serde_json::from_value(completion.clone()).unwrap();
    let usage = settled(parsed.usage.as_ref().unwrap());
    let message = messages::render(&parsed, &model, &usage);
    Golden {
        client_request,
        gateway_request,
        upstream_completion: Some(completion),
        upstream_chunks: None,
        client_response: Some(serde_json::to_value(message).unwrap()),
        client_events: None,
    }
}

/// Runs the SSE renderer over the chunks as `metered` hands them on (usage taken out), ending
/// with `failure` or, without one, the settlement of the reported usage.
async fn streamed(
    client_request: Value,
    chunks: Vec<Value>,
    failure: Option<GatewayError>,
) -> Golden {
    let (model, gateway_request) = translated(&client_request);
    let mut events = Vec::new();
    let mut usage = TokenUsage::default();
    for chunk in &chunks {
        let mut chunk: ChatCompletionChunk = serde_json::from_value(chunk.clone()).unwrap();
        if let Some(reported) = chunk.usage.take() {
            usage = settled(&reported);
        }
        events.push(StreamEvent::Chunk(chunk));
    }
    events.push(match failure {
        Some(err) => StreamEvent::Failed(err),
        None => StreamEvent::Finished(settlement(usage)),
    });
    // 9: the gateway's own prompt count, which message_start reports.
    let renderer = MessageStream::new(model, "msg_req0001".to_owned(), 9);
    let bytes: Vec<u8> = anthropic_sse(futures::stream::iter(events), renderer)
        .map(|piece| piece.unwrap().to_vec())
        .concat()
        .await;
    Golden {
        client_request,
        gateway_request,
        upstream_completion: None,
        upstream_chunks: Some(chunks),
        client_response: None,
        client_events: Some(parse_sse(&String::from_utf8(bytes).unwrap())),
    }
}

/// Splits SSE text into events, checking each is exactly `event: <name>\ndata: <json>`.
fn parse_sse(text: &str) -> Vec<SseEvent> {
    assert!(text.ends_with("\n\n"), "{text}");
    text.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|frame| {
            let (event_line, data_line) = frame.split_once('\n').unwrap();
            let event = event_line.strip_prefix("event: ").unwrap().to_owned();
            let data: Value =
                serde_json::from_str(data_line.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(
                data["type"],
                event.as_str(),
                "the data's type names the event"
            );
            SseEvent { event, data }
        })
        .collect()
}

fn completion(message: Value, finish_reason: &str, usage: Value) -> Value {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage,
    })
}

fn chunk(delta: Value, finish_reason: Value) -> Value {
    json!({
        "id": "chatcmpl-stream1",
        "object": "chat.completion.chunk",
        "created": 1_741_569_952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
    })
}

fn usage_chunk(usage: Value) -> Value {
    json!({
        "id": "chatcmpl-stream1",
        "object": "chat.completion.chunk",
        "created": 1_741_569_952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
        "usage": usage,
    })
}

#[test]
fn text() {
    let record = complete(
        json!({
            "model": "gpt-4o-mini",
            "max_tokens": 256,
            "temperature": 0.5,
            "messages": [{"role": "user", "content": "Say hello in French."}],
        }),
        completion(
            json!({"role": "assistant", "content": "Bonjour !", "refusal": null}),
            "stop",
            json!({"prompt_tokens": 13, "completion_tokens": 4, "total_tokens": 17}),
        ),
    );
    insta::assert_yaml_snapshot!("messages_inbound__text", record);
}

#[test]
fn multi_turn() {
    let record = complete(
        json!({
            "model": "gpt-4o-mini",
            "max_tokens": 5,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["\n\nHuman:"],
            "metadata": {"user_id": "user-7"},
            "messages": [
                {"role": "user", "content": "My name is Ada."},
                {"role": "assistant", "content": [{"type": "text", "text": "Nice to meet you, "}, {"type": "text", "text": "Ada."}]},
                {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
            ],
        }),
        completion(
            json!({"role": "assistant", "content": "Your name is Ada", "refusal": null}),
            "length",
            json!({"prompt_tokens": 31, "completion_tokens": 5, "total_tokens": 36}),
        ),
    );
    insta::assert_yaml_snapshot!("messages_inbound__multi_turn", record);
}

#[test]
fn system_prompt() {
    let record = complete(
        json!({
            "model": "gpt-4o-mini",
            "max_tokens": 64,
            "system": [
                {"type": "text", "text": "You are a terse assistant."},
                {"type": "text", "text": "Answer in one word.", "cache_control": {"type": "ephemeral"}},
            ],
            "messages": [{"role": "user", "content": "Colour of the sky?"}],
        }),
        completion(
            json!({"role": "assistant", "content": "Blue.", "refusal": null}),
            "stop",
            json!({"prompt_tokens": 1040, "completion_tokens": 2, "total_tokens": 1042,
                   "prompt_tokens_details": {"cached_tokens": 1024}}),
        ),
    );
    insta::assert_yaml_snapshot!("messages_inbound__system_prompt", record);
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Current weather for a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    })
}

#[test]
fn tool_call() {
    let record = complete(
        json!({
            "model": "gpt-4o-mini",
            "max_tokens": 512,
            "tools": [weather_tool()],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Weather in Paris and Oslo?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking both."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Oslo"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C, sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": true,
                     "content": [{"type": "text", "text": "service unavailable"}]},
                    {"type": "text", "text": "Try Oslo again."},
                ]},
            ],
        }),
        completion(
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [{
                "id": "call_Xq3", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
            }]}),
            "tool_calls",
            json!({"prompt_tokens": 120, "completion_tokens": 15, "total_tokens": 135}),
        ),
    );
    insta::assert_yaml_snapshot!("messages_inbound__tool_call", record);
}

#[tokio::test]
async fn tool_call_streaming() {
    let record = streamed(
        json!({
            "model": "gpt-4o-mini",
            "max_tokens": 512,
            "stream": true,
            "tools": [weather_tool()],
            "tool_choice": {"type": "auto"},
            "messages": [{"role": "user", "content": "Weather in Paris and Oslo?"}],
        }),
        vec![
            chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null),
            chunk(json!({"content": "Checking."}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_P", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"Paris\"}"}}]}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_O", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"city\": \"Oslo\"}"}}]}), Value::Null),
            chunk(json!({}), json!("tool_calls")),
            usage_chunk(json!({"prompt_tokens": 60, "completion_tokens": 31, "total_tokens": 91})),
        ],
        None,
    )
    .await;
    insta::assert_yaml_snapshot!("messages_inbound__tool_call_streaming", record);
}

#[test]
fn image_input() {
    let record = complete(
        json!({
            "model": "gpt-4o-mini",
            "max_tokens": 128,
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "text", "text": "Are these the same animal?"},
            ]}],
        }),
        completion(
            json!({"role": "assistant", "content": "No: a chart and a cat.", "refusal": null}),
            "stop",
            json!({"prompt_tokens": 530, "completion_tokens": 8, "total_tokens": 538}),
        ),
    );
    insta::assert_yaml_snapshot!("messages_inbound__image_input", record);
}

#[tokio::test]
async fn usage_in_stream() {
    let record = streamed(
        json!({
            "model": "gpt-4o-mini",
            "max_tokens": 3,
            "stream": true,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Count to ten."}],
        }),
        vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "1, 2"}), Value::Null),
            chunk(json!({"content": ", 3"}), Value::Null),
            chunk(json!({}), json!("length")),
            usage_chunk(
                json!({"prompt_tokens": 1100, "completion_tokens": 3, "total_tokens": 1103,
                               "prompt_tokens_details": {"cached_tokens": 1024}}),
            ),
        ],
        None,
    )
    .await;
    insta::assert_yaml_snapshot!("messages_inbound__usage_in_stream", record);
}

#[tokio::test]
async fn stream_error() {
    let record = streamed(
        json!({
            "model": "gpt-4o-mini",
            "max_tokens": 64,
            "stream": true,
            "messages": [{"role": "user", "content": "Tell me a story."}],
        }),
        vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Once upon"}), Value::Null),
        ],
        Some(GatewayError::Provider(ProviderError::Timeout {
            provider: "openai".into(),
            phase: TimeoutPhase::Idle,
            after_ms: 60_000,
        })),
    )
    .await;
    insta::assert_yaml_snapshot!("messages_inbound__stream_error", record);
}

#[derive(Serialize)]
struct RenderedError {
    error: String,
    status: u16,
    headers: BTreeMap<String, String>,
    body: Value,
}

async fn rendered(err: GatewayError) -> RenderedError {
    let error = format!("{err:?}");
    let response = err.into_anthropic_response();
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "content-type")
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    RenderedError {
        error,
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap(),
    }
}

fn upstream_status(status: u16, retry_after_secs: Option<u64>) -> GatewayError {
    GatewayError::Provider(ProviderError::UpstreamStatus {
        provider: "openai".into(),
        status,
        message: "upstream said no".into(),
        retry_after_secs,
    })
}

#[tokio::test]
async fn error() {
    let provider = || "openai".to_owned();
    let errors = vec![
        GatewayError::MalformedJson("expected value at line 1 column 1".into()),
        messages::parse(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#)
            .unwrap_err(),
        GatewayError::MissingApiKey,
        GatewayError::InvalidApiKey,
        GatewayError::ExpiredApiKey,
        GatewayError::ModelNotAllowed("claude-opus".into()),
        GatewayError::ModelNotFound("nope".into()),
        GatewayError::UnknownRoute("/v1/nope".into()),
        GatewayError::BodyTooLarge { limit_bytes: 16 },
        GatewayError::BodyRead("connection reset".into()),
        GatewayError::NotReady,
        GatewayError::UsageSpoolFull,
        GatewayError::LimitExceeded(LimitExceeded {
            level: Level::Team,
            scope_name: "ml".into(),
            metric: Metric::RequestsPerMinute,
            limit: 60,
            retry_after_ms: 1_500,
        }),
        GatewayError::LimitExceeded(LimitExceeded {
            level: Level::Project,
            scope_name: "acme/search".into(),
            metric: Metric::BudgetMicrosPerMonth,
            limit: 5_000_000,
            retry_after_ms: 3_600_000,
        }),
        upstream_status(422, None),
        upstream_status(429, Some(7)),
        upstream_status(500, None),
        GatewayError::Provider(ProviderError::Timeout {
            provider: provider(),
            phase: TimeoutPhase::Connect,
            after_ms: 10_000,
        }),
        GatewayError::Provider(ProviderError::Timeout {
            provider: provider(),
            phase: TimeoutPhase::FirstToken,
            after_ms: 60_000,
        }),
        GatewayError::Provider(ProviderError::Unreachable {
            provider: provider(),
            reason: "connection refused".into(),
        }),
        GatewayError::Provider(ProviderError::InvalidResponse {
            provider: provider(),
            reason: "missing choices".into(),
        }),
        GatewayError::Provider(ProviderError::StreamInterrupted {
            provider: provider(),
            reason: "connection closed".into(),
        }),
        GatewayError::Provider(ProviderError::Unsupported {
            provider_kind: "gemini",
            param: "top_k".into(),
            reason: "not an OpenAI parameter".into(),
        }),
    ];
    let mut table = Vec::new();
    for err in errors {
        table.push(rendered(err).await);
    }
    insta::assert_yaml_snapshot!("messages_inbound__error", table);
}

#[derive(Serialize)]
struct Refusal {
    request: Value,
    status: u16,
    body: Value,
}

#[test]
fn bad_input() {
    let user = || json!([{"role": "user", "content": "hi"}]);
    let requests = vec![
        json!({"model": "m", "messages": user()}),
        json!({"model": "m", "max_tokens": "9", "messages": user()}),
        json!({"model": "", "max_tokens": 9, "messages": user()}),
        json!({"max_tokens": 9, "messages": user()}),
        json!({"model": "m", "max_tokens": 9, "messages": []}),
        json!({"model": "m", "max_tokens": 9, "messages": [{"role": "system", "content": "x"}]}),
        json!({"model": "m", "max_tokens": 9, "messages": user(), "thinking": {"type": "enabled", "budget_tokens": 2048}}),
        json!({"model": "m", "max_tokens": 9, "messages": user(), "tools": [{"type": "bash_20250124", "name": "bash"}]}),
        json!({"model": "m", "max_tokens": 9, "messages": user(), "tools": [{"name": "f"}]}),
        json!({"model": "m", "max_tokens": 9, "messages": user(), "tool_choice": {"type": "tool", "name": "f"}}),
        json!({"model": "m", "max_tokens": 9, "messages": user(), "metadata": {"session": "s"}}),
        json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "file_1"}}]}]}),
        json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}]}]}),
        json!({"model": "m", "max_tokens": 9, "messages": [{"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"}]}]}),
        json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": 7}]}),
    ];
    let table: Vec<Refusal> = requests
        .into_iter()
        .map(|request| {
            let err = messages::parse(request.to_string().as_bytes()).unwrap_err();
            Refusal {
                status: err.status().as_u16(),
                body: serde_json::to_value(err.anthropic_body()).unwrap(),
                request,
            }
        })
        .collect();
    insta::assert_yaml_snapshot!("messages_inbound__bad_input", table);
}
