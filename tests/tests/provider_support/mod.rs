//! Shared by the provider end-to-end tests: a stack with one fake provider registered under
//! every provider kind, requests with tools, and checks of what reached the upstream in its
//! own wire format.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tollgate_e2e::{
    CreatedKey, FAKE_ANTHROPIC_MODEL, FAKE_API_KEY, FAKE_AZURE_DEPLOYMENT, FAKE_GEMINI_MODEL,
    FAKE_TOOL_ARGUMENTS, FAKE_UPSTREAM_MODEL, FakeProvider, RecordedRequest, SseReply, Stack,
    WireFormat, chat_body,
};

/// The `api-version` the Azure provider is created with (not the adapter's default, so the
/// test proves it is passed on).
pub const AZURE_API_VERSION: &str = "2025-04-01-preview";

/// A stack plus one fake provider registered once per kind (`p-<kind>`), each with a chat
/// model `fake-<kind>`, and a key allowed to use them all.
pub struct World {
    pub stack: Stack,
    pub fake: FakeProvider,
    pub key: CreatedKey,
}

impl World {
    /// Registers the given kinds; `model_args` go to every `models create`.
    pub async fn start(formats: &[WireFormat], model_args: &[&str]) -> World {
        let stack = Stack::start().await;
        let fake = FakeProvider::start().await;
        for format in formats {
            let provider_args: &[&str] = match format {
                WireFormat::AzureOpenAi => &["--api-version", AZURE_API_VERSION],
                _ => &[],
            };
            stack
                .add_fake_provider(
                    &fake,
                    *format,
                    &provider_name(*format),
                    &model_name(*format),
                    provider_args,
                    model_args,
                )
                .await;
        }
        let key = stack.create_key(&[]).await;
        World { stack, fake, key }
    }

    pub fn key(&self) -> &str {
        &self.key.plaintext
    }
}

pub fn provider_name(format: WireFormat) -> String {
    format!("p-{}", format.kind())
}

pub fn model_name(format: WireFormat) -> String {
    format!("fake-{}", format.kind())
}

/// A chat request offering one function, `get_weather`.
pub fn tools_body(model: &str, stream: bool) -> Value {
    let mut body = chat_body(model, "What is the weather in Paris?");
    body["tools"] = json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["location"],
            },
        },
    }]);
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// [`FAKE_TOOL_ARGUMENTS`] as JSON.
pub fn expected_arguments() -> Value {
    serde_json::from_str(FAKE_TOOL_ARGUMENTS).unwrap()
}

/// One tool call as a client reassembles it from a stream.
#[derive(Debug, Default, Clone)]
pub struct StreamedToolCall {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub arguments: String,
}

/// Reassembles OpenAI streamed tool calls by `index`, checking the contract's shape: the
/// first delta of a call has its id, type "function", name and arguments ""; later deltas
/// only carry argument fragments.
#[track_caller]
pub fn streamed_tool_calls(reply: &SseReply) -> Vec<StreamedToolCall> {
    let mut calls: Vec<StreamedToolCall> = Vec::new();
    for chunk in reply.json_events() {
        let Some(deltas) = chunk["choices"][0]["delta"]["tool_calls"].as_array() else {
            continue;
        };
        for delta in deltas {
            let index = delta["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("tool call delta without index: {chunk}"))
                as usize;
            if index == calls.len() {
                assert!(
                    delta["id"].as_str().is_some_and(|id| !id.is_empty()),
                    "the first delta of a call carries its id: {chunk}"
                );
                assert_eq!(delta["type"], "function", "{chunk}");
                assert!(delta["function"]["name"].is_string(), "{chunk}");
                calls.push(StreamedToolCall {
                    id: delta["id"].as_str().unwrap().to_owned(),
                    kind: "function".to_owned(),
                    name: delta["function"]["name"].as_str().unwrap().to_owned(),
                    arguments: String::new(),
                });
            } else {
                assert!(index < calls.len(), "tool call index skipped: {chunk}");
                assert!(
                    delta.get("id").is_none_or(Value::is_null),
                    "only the first delta of a call names its id: {chunk}"
                );
            }
            if let Some(fragment) = delta["function"]["arguments"].as_str() {
                calls[index].arguments.push_str(fragment);
            }
        }
    }
    calls
}

/// Asserts the upstream request of a chat call went out in `format`'s wire format: its path,
/// credentials, model mapping and stream flag; and that the client's virtual key stayed home.
#[track_caller]
pub fn assert_upstream_chat(
    format: WireFormat,
    upstream: &RecordedRequest,
    stream: bool,
    client_key: &str,
) {
    assert_eq!(upstream.method, "POST");
    assert!(
        !upstream.contains(client_key),
        "the client's virtual key must not reach the upstream: {upstream:?}"
    );
    let body = &upstream.body;
    match format {
        WireFormat::OpenAi => {
            assert_eq!(upstream.path, "/v1/chat/completions");
            assert_eq!(
                upstream.header("authorization"),
                Some(format!("Bearer {FAKE_API_KEY}").as_str())
            );
            assert_eq!(body["model"], FAKE_UPSTREAM_MODEL, "{body}");
            assert_eq!(body["stream"].as_bool().unwrap_or(false), stream, "{body}");
        }
        WireFormat::AzureOpenAi => {
            assert_eq!(
                upstream.path_only(),
                format!("/openai/deployments/{FAKE_AZURE_DEPLOYMENT}/chat/completions")
            );
            assert_eq!(
                upstream.query("api-version").as_deref(),
                Some(AZURE_API_VERSION)
            );
            assert_eq!(upstream.header("api-key"), Some(FAKE_API_KEY));
            assert_eq!(upstream.header("authorization"), None);
            assert_eq!(body["stream"].as_bool().unwrap_or(false), stream, "{body}");
        }
        WireFormat::Anthropic => {
            assert_eq!(upstream.path, "/v1/messages");
            assert_eq!(upstream.header("x-api-key"), Some(FAKE_API_KEY));
            assert_eq!(upstream.header("anthropic-version"), Some("2023-06-01"));
            assert_eq!(upstream.header("authorization"), None);
            assert_eq!(body["model"], FAKE_ANTHROPIC_MODEL, "{body}");
            assert!(
                body["max_tokens"].is_u64(),
                "max_tokens is required: {body}"
            );
            assert_eq!(body["stream"].as_bool().unwrap_or(false), stream, "{body}");
        }
        WireFormat::Gemini => {
            let method = if stream {
                "streamGenerateContent"
            } else {
                "generateContent"
            };
            assert_eq!(
                upstream.path_only(),
                format!("/v1beta/models/{FAKE_GEMINI_MODEL}:{method}")
            );
            let key_sent = upstream.header("x-goog-api-key") == Some(FAKE_API_KEY)
                || upstream.query("key").as_deref() == Some(FAKE_API_KEY);
            assert!(
                key_sent,
                "the Gemini key goes in x-goog-api-key: {upstream:?}"
            );
            assert!(body["contents"].is_array(), "{body}");
        }
    }
}
