//! Golden files for the OpenAI → Anthropic pair: each case runs the adapter against a fake
//! upstream answering with real Anthropic wire text (`fixtures/`) and snapshots the whole
//! exchange (`snapshots/anthropic__<case>.snap`).

#![allow(clippy::unwrap_used)]

use super::AnthropicProvider;
use crate::providers::Provider;
use crate::providers::golden::{self, GoldenRecord, UpstreamReply};
use crate::providers::secret::ApiKey;
use serde_json::{Value, json};

const UPSTREAM_MODEL: &str = "claude-sonnet-4-5-20250929";

fn adapter(base_url: &str) -> Box<dyn Provider> {
    Box::new(AnthropicProvider::new(
        "anthropic-main".to_owned(),
        base_url,
        "",
        ApiKey::new("sk-ant-test-key".to_owned()),
    ))
}

fn fixture(name: &str) -> String {
    golden::fixture(&format!("src/providers/anthropic/fixtures/{name}"))
}

async fn run(client_request: Value, reply: UpstreamReply) -> GoldenRecord {
    golden::chat(adapter, UPSTREAM_MODEL, client_request, reply).await
}

/// Snapshot files are named after the case alone (`anthropic__text.snap`), not the module path.
use crate::providers::golden::golden_snapshot as golden;

#[tokio::test]
async fn text() {
    let record = run(
        json!({
            "model": "claude",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 100,
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 40,
            "stop": "\n\nHuman:",
            "user": "user-42",
            "n": 1,
            "presence_penalty": 0,
            "logprobs": false,
            "top_logprobs": 0,
            "metadata": {}
        }),
        UpstreamReply::json(&fixture("text.json")),
    )
    .await;
    golden!("anthropic__text", record);
}

#[tokio::test]
async fn text_streaming() {
    let record = run(
        json!({
            "model": "claude",
            "messages": [{"role": "user", "content": "Hello"}],
            "stream": true,
            "stream_options": {"include_usage": true}
        }),
        UpstreamReply::sse(&fixture("text.sse")),
    )
    .await;
    golden!("anthropic__text_streaming", record);
}

#[tokio::test]
async fn multi_turn() {
    let record = run(
        json!({
            "model": "claude",
            "max_completion_tokens": 256,
            "messages": [
                {"role": "user", "content": "My name is Ada."},
                {"role": "user", "content": [{"type": "text", "text": "Keep answers short."}]},
                {"role": "assistant", "content": "Noted, Ada."},
                {"role": "user", "content": "What do you know about me?"}
            ]
        }),
        UpstreamReply::json(&fixture("multi_turn.json")),
    )
    .await;
    golden!("anthropic__multi_turn", record);
}

#[tokio::test]
async fn system_prompt() {
    let record = run(
        json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "You are a pirate."},
                {"role": "developer", "content": [{"type": "text", "text": "End every answer with END."}]},
                {"role": "user", "content": "How is the sea?"}
            ],
            "stop": ["END"]
        }),
        UpstreamReply::json(&fixture("system_prompt.json")),
    )
    .await;
    golden!("anthropic__system_prompt", record);
}

fn weather_tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["location"]
            }
        }
    })
}

#[tokio::test]
async fn tool_call() {
    let record = run(
        json!({
            "model": "claude",
            "messages": [{"role": "user", "content": "What is the weather in San Francisco?"}],
            "tools": [
                weather_tool(),
                {"type": "function", "function": {"name": "get_time"}}
            ],
            "tool_choice": "required",
            "parallel_tool_calls": false
        }),
        UpstreamReply::json(&fixture("tool_call.json")),
    )
    .await;
    golden!("anthropic__tool_call", record);
}

#[tokio::test]
async fn tool_result() {
    let record = run(
        json!({
            "model": "claude",
            "messages": [
                {"role": "user", "content": "Weather in San Francisco and Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "toolu_01A", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\"}"}},
                    {"id": "toolu_01B", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01A", "content": "15 °C"},
                {"role": "tool", "tool_call_id": "toolu_01B", "content": [{"type": "text", "text": "22 °C"}]},
                {"role": "user", "content": "Answer in one sentence."}
            ],
            "tools": [weather_tool()],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
        }),
        UpstreamReply::json(&fixture("tool_result.json")),
    )
    .await;
    golden!("anthropic__tool_result", record);
}

/// A conversation an OpenAI model answered before, replayed as OpenAI's SDKs send it back:
/// assistant messages with `annotations: []`, `refusal: null`, `audio: null`, an empty
/// `tool_calls`, empty content; a tool message with `name` and an empty result.
#[tokio::test]
async fn replayed_openai_conversation() {
    let record = run(
        json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": ""},
                {"role": "user", "content": "What time is it in Paris?"},
                {"role": "assistant", "content": null, "refusal": null, "annotations": [],
                 "audio": null, "tool_calls": [
                    {"id": "call_Qm3b", "type": "function",
                     "function": {"name": "get_time", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_Qm3b", "name": "get_time", "content": ""},
                {"role": "assistant", "content": "", "refusal": null, "annotations": [],
                 "tool_calls": []},
                {"role": "user", "content": [{"type": "text", "text": ""}]},
                {"role": "user", "content": "The clock tool seems broken; guess."}
            ],
            "tools": [{"type": "function", "function": {"name": "get_time"}}]
        }),
        UpstreamReply::json(&fixture("tool_result.json")),
    )
    .await;
    golden!("anthropic__replayed_openai_conversation", record);
}

#[tokio::test]
async fn tool_call_streaming() {
    let record = run(
        json!({
            "model": "claude",
            "messages": [{"role": "user", "content": "Weather in San Francisco and Paris?"}],
            "tools": [weather_tool()],
            "stream": true
        }),
        UpstreamReply::sse(&fixture("tool_call_streaming.sse")),
    )
    .await;
    golden!("anthropic__tool_call_streaming", record);
}

/// A call without arguments streams one empty fragment; the client must still read "{}".
#[tokio::test]
async fn tool_call_no_arguments_streaming() {
    let record = run(
        json!({
            "model": "claude",
            "messages": [{"role": "user", "content": "What time is it?"}],
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
            "stream": true
        }),
        UpstreamReply::sse(&fixture("tool_call_no_arguments.sse")),
    )
    .await;
    golden!("anthropic__tool_call_no_arguments_streaming", record);
}

fn city_schema_request(stream: bool) -> Value {
    json!({
        "model": "claude",
        "messages": [{"role": "user", "content": "Facts about Paris as JSON."}],
        "stream": stream,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "city_facts",
                "strict": true,
                "schema": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "country": {"type": "string"},
                        "population": {"type": "integer"}
                    },
                    "required": ["city", "country", "population"],
                    "additionalProperties": false
                }
            }
        }
    })
}

#[tokio::test]
async fn json_mode() {
    let record = run(
        city_schema_request(false),
        UpstreamReply::json(&fixture("json_mode.json")),
    )
    .await;
    golden!("anthropic__json_mode", record);
}

#[tokio::test]
async fn json_mode_streaming() {
    let record = run(
        city_schema_request(true),
        UpstreamReply::sse(&fixture("json_mode.sse")),
    )
    .await;
    golden!("anthropic__json_mode_streaming", record);
}

#[tokio::test]
async fn image_input() {
    let record = run(
        json!({
            "model": "claude",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Describe both images."},
                {"type": "image_url", "image_url": {
                    "url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="}},
                {"type": "image_url", "image_url": {
                    "url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg",
                    "detail": "high"}}
            ]}]
        }),
        UpstreamReply::json(&fixture("image_input.json")),
    )
    .await;
    golden!("anthropic__image_input", record);
}

fn hello() -> Value {
    json!({"model": "claude", "messages": [{"role": "user", "content": "Hello"}]})
}

#[tokio::test]
async fn error_invalid_request() {
    let record = run(
        hello(),
        UpstreamReply::error(400, &fixture("error_invalid_request.json")),
    )
    .await;
    golden!("anthropic__error_invalid_request", record);
}

#[tokio::test]
async fn error_overloaded() {
    let record = run(
        hello(),
        UpstreamReply::error(529, &fixture("error_overloaded.json")),
    )
    .await;
    golden!("anthropic__error_overloaded", record);
}

#[tokio::test]
async fn error_rate_limited() {
    let mut reply = UpstreamReply::error(429, &fixture("error_rate_limit.json"));
    reply.headers.push(("retry-after", "17"));
    let record = run(hello(), reply).await;
    golden!("anthropic__error_rate_limited", record);
}

#[tokio::test]
async fn error_in_stream() {
    let mut request = hello();
    request["stream"] = json!(true);
    let record = run(request, UpstreamReply::sse(&fixture("stream_error.sse"))).await;
    golden!("anthropic__error_in_stream", record);
}

#[tokio::test]
async fn usage_in_stream() {
    let record = run(
        json!({
            "model": "claude",
            "messages": [{"role": "user", "content": "Summarise the contract."}],
            "max_tokens": 9,
            "stream": true,
            "stream_options": {"include_usage": true}
        }),
        UpstreamReply::sse(&fixture("usage_in_stream.sse")),
    )
    .await;
    golden!("anthropic__usage_in_stream", record);
}

#[tokio::test]
async fn stream_cut() {
    let mut request = hello();
    request["stream"] = json!(true);
    let record = run(request, UpstreamReply::sse(&fixture("stream_cut.sse"))).await;
    golden!("anthropic__stream_cut", record);
}

#[tokio::test]
async fn unsupported_parameter() {
    let mut request = hello();
    request["seed"] = json!(7);
    let record = run(request, UpstreamReply::json(&fixture("text.json"))).await;
    golden!("anthropic__unsupported_parameter", record);
}
