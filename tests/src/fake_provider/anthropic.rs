//! Anthropic's Messages API (`POST /v1/messages`): `x-api-key` and `anthropic-version`
//! headers, strict request validation (unknown fields are refused, as the real API does), the
//! message JSON, and the SSE sequence `message_start`, `content_block_start`, `ping`,
//! `content_block_delta` (`text_delta` / `input_json_delta`), `content_block_stop`,
//! `message_delta` (stop reason and usage), `message_stop`.

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::FAKE_TOOL_ARGUMENTS;
use super::reply::{Output, Reply, argument_fragments, text_piece};
use super::wire::{Ask, Incoming, StreamBody, Wire, sse};

/// Top-level request fields the Messages API knows; anything else is a 400.
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
];

pub(crate) struct Anthropic;

impl Wire for Anthropic {
    fn authenticate(&self, request: &Incoming, expected_key: Option<&str>) -> Result<(), Response> {
        let key = request.header("x-api-key").filter(|key| !key.is_empty());
        match (key, expected_key) {
            (None, _) => {
                return Err(error(
                    StatusCode::UNAUTHORIZED,
                    "x-api-key header is required",
                ));
            }
            (Some(key), Some(expected)) if key != expected => {
                return Err(error(StatusCode::UNAUTHORIZED, "invalid x-api-key"));
            }
            _ => {}
        }
        if request
            .header("anthropic-version")
            .is_none_or(str::is_empty)
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "anthropic-version: header is required",
            ));
        }
        Ok(())
    }

    fn chat_ask(&self, _request: &Incoming, body: &Value) -> Result<Ask, Response> {
        validate(body).map_err(|message| error(StatusCode::BAD_REQUEST, &message))?;
        Ok(Ask {
            model: body["model"].as_str().unwrap_or_default().to_owned(),
            stream: body["stream"].as_bool().unwrap_or(false),
            include_usage: true,
            tool: tool_to_call(body),
            max_output_tokens: body["max_tokens"].as_u64(),
        })
    }

    fn completion(&self, reply: &Reply) -> Value {
        let content = match &reply.output {
            Output::Text { .. } => json!([{"type": "text", "text": reply.text()}]),
            Output::ToolCall { name } => json!([{
                "type": "tool_use",
                "id": tool_use_id(reply),
                "name": name,
                "input": tool_input(),
            }]),
        };
        json!({
            "id": message_id(reply),
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": content,
            "stop_reason": stop_reason(reply),
            "stop_sequence": null,
            "usage": {
                "input_tokens": reply.prompt_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": reply.completion_tokens(),
                "service_tier": "standard",
            },
        })
    }

    fn stream(&self, reply: Reply, _ask: &Ask, _request: &Incoming) -> StreamBody {
        let mut start = vec![event(&json!({
            "type": "message_start",
            "message": {
                "id": message_id(&reply),
                "type": "message",
                "role": "assistant",
                "model": reply.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": reply.prompt_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                    "service_tier": "standard",
                },
            },
        }))];
        let deltas: Box<dyn Iterator<Item = Bytes> + Send> = match &reply.output {
            Output::Text { pieces, .. } => {
                start.push(event(&json!({
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                })));
                start.push(event(&json!({"type": "ping"})));
                Box::new((0..*pieces).map(|index| {
                    event(&json!({
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": text_piece(index)},
                    }))
                }))
            }
            Output::ToolCall { name } => {
                start.push(event(&json!({
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {
                        "type": "tool_use", "id": tool_use_id(&reply), "name": name, "input": {},
                    },
                })));
                start.push(event(&json!({"type": "ping"})));
                // The real API opens a tool's input with an empty fragment.
                let fragments: Vec<Bytes> = std::iter::once(String::new())
                    .chain(argument_fragments())
                    .map(|fragment| {
                        event(&json!({
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "input_json_delta", "partial_json": fragment},
                        }))
                    })
                    .collect();
                Box::new(fragments.into_iter())
            }
        };
        let end = vec![
            event(&json!({"type": "content_block_stop", "index": 0})),
            event(&json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(&reply), "stop_sequence": null},
                "usage": {"output_tokens": reply.completion_tokens()},
            })),
            event(&json!({"type": "message_stop"})),
        ];
        StreamBody {
            content_type: "text/event-stream; charset=utf-8",
            events: Box::new(start.into_iter().chain(deltas).chain(end)),
        }
    }

    fn malformed_event(&self) -> Bytes {
        Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": \n\n",
        )
    }

    fn error_event(&self, status: StatusCode, message: &str) -> Bytes {
        event(&json!({
            "type": "error",
            "error": {"type": error_type(status), "message": message},
        }))
    }

    fn embeddings(&self, _request: &Incoming, _body: &Value) -> Result<Value, Response> {
        Err(error(StatusCode::NOT_FOUND, "Not found"))
    }

    fn error(&self, status: StatusCode, message: &str) -> Response {
        error(status, message)
    }

    fn rate_limited(&self, retry_after_secs: u64) -> Response {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "This request would exceed the rate limit for your organization of 50,000 input \
             tokens per minute.",
        );
        response
            .headers_mut()
            .insert("retry-after", retry_after_secs.into());
        response
    }
}

/// What the Messages API would refuse with a 400.
fn validate(body: &Value) -> Result<(), String> {
    let Some(fields) = body.as_object() else {
        return Err("The request body is not valid JSON.".to_owned());
    };
    if let Some(unknown) = fields
        .keys()
        .find(|field| !KNOWN_FIELDS.contains(&field.as_str()))
    {
        return Err(format!("{unknown}: Extra inputs are not permitted"));
    }
    if !body["model"].is_string() {
        return Err("model: Field required".to_owned());
    }
    if !body["max_tokens"].is_u64() {
        return Err("max_tokens: Field required".to_owned());
    }
    let Some(messages) = body["messages"].as_array() else {
        return Err("messages: Field required".to_owned());
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".to_owned());
    }
    for (index, message) in messages.iter().enumerate() {
        if !matches!(message["role"].as_str(), Some("user" | "assistant")) {
            return Err(format!(
                "messages.{index}.role: Input should be 'user' or 'assistant'"
            ));
        }
        if !(message["content"].is_string() || message["content"].is_array()) {
            return Err(format!("messages.{index}.content: Field required"));
        }
    }
    if let Some(tools) = body["tools"].as_array()
        && let Some(index) = tools
            .iter()
            .position(|tool| !tool["name"].is_string() || !tool["input_schema"].is_object())
    {
        return Err(format!("tools.{index}: name and input_schema are required"));
    }
    Ok(())
}

/// The tool to call: the forced one (`tool_choice: {type: "tool", name}`), else the first
/// offered; none for `tool_choice: {type: "none"}` or when the last message is a tool result.
fn tool_to_call(body: &Value) -> Option<String> {
    let first = body["tools"].as_array()?.first()?["name"]
        .as_str()?
        .to_owned();
    let ends_with_result = body["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .and_then(|message| message["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|block| block["type"] == "tool_result"));
    if ends_with_result {
        return None;
    }
    match body["tool_choice"]["type"].as_str() {
        Some("none") => None,
        Some("tool") => body["tool_choice"]["name"]
            .as_str()
            .map(str::to_owned)
            .or(Some(first)),
        _ => Some(first),
    }
}

fn message_id(reply: &Reply) -> String {
    format!("msg_fake{:06}", reply.seq)
}

fn tool_use_id(reply: &Reply) -> String {
    format!("toolu_fake{:06}", reply.seq)
}

fn tool_input() -> Value {
    serde_json::from_str(FAKE_TOOL_ARGUMENTS).unwrap_or(Value::Null)
}

fn stop_reason(reply: &Reply) -> &'static str {
    match reply.output {
        Output::ToolCall { .. } => "tool_use",
        Output::Text { .. } if reply.truncated() => "max_tokens",
        Output::Text { .. } => "end_turn",
    }
}

fn event(data: &Value) -> Bytes {
    let name = data["type"].as_str().unwrap_or("message");
    sse(Some(name), &data.to_string(), "\n\n")
}

/// Anthropic's error shape, `{"type": "error", "error": {"type", "message"}}`, with the error
/// type the API uses for the status.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "type": "error",
        "error": {"type": error_type(status), "message": message},
        "request_id": "req_fake",
    });
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The error type Anthropic's API uses for `status`.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}
