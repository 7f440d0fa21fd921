//! OpenAI's Chat Completions and Embeddings wire format (`Authorization: Bearer`), also the
//! body shapes Azure OpenAI uses (see `azure.rs` for what Azure adds).

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

use super::FAKE_TOOL_ARGUMENTS;
use super::embedding::{FAKE_EMBEDDING_DIMENSIONS, fake_embedding, text_tokens};
use super::reply::{Output, Reply, argument_fragments, text_piece};
use super::wire::{Ask, Incoming, StreamBody, Wire, sse};

pub(crate) struct OpenAi;

impl Wire for OpenAi {
    fn authenticate(&self, request: &Incoming, expected_key: Option<&str>) -> Result<(), Response> {
        let key = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
            .filter(|key| !key.is_empty());
        match (key, expected_key) {
            (None, _) => Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                "You didn't provide an API key. You need to provide your API key in an \
                 Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )),
            (Some(key), Some(expected)) if key != expected => Err(error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                Some("invalid_api_key"),
                &format!(
                    "Incorrect API key provided: {}. You can find your API key at \
                     https://platform.openai.com/account/api-keys.",
                    masked(key)
                ),
            )),
            _ => Ok(()),
        }
    }

    fn chat_ask(&self, _request: &Incoming, body: &Value) -> Result<Ask, Response> {
        let model = chat_validate(body).map_err(|message| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &message,
            )
        })?;
        Ok(ask(model, body))
    }

    fn completion(&self, reply: &Reply) -> Value {
        completion(reply, false)
    }

    fn stream(&self, reply: Reply, ask: &Ask, _request: &Incoming) -> StreamBody {
        stream(reply, ask.include_usage, false)
    }

    fn malformed_event(&self) -> Bytes {
        Bytes::from_static(b"data: {\"id\": \"chatcmpl-broken\", \"choices\": [{\"delta\": \n\n")
    }

    fn error_event(&self, status: StatusCode, message: &str) -> Bytes {
        error_event(status, message)
    }

    fn embeddings(&self, _request: &Incoming, body: &Value) -> Result<Value, Response> {
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        if model.is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "you must provide a model parameter",
            ));
        }
        embeddings(body, &model).map_err(|message| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &message,
            )
        })
    }

    fn error(&self, status: StatusCode, message: &str) -> Response {
        let kind = match status.as_u16() {
            400..=499 => "invalid_request_error",
            _ => "server_error",
        };
        error(status, kind, None, message)
    }

    fn rate_limited(&self, retry_after_secs: u64) -> Response {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "tokens",
            Some("rate_limit_exceeded"),
            &format!(
                "Rate limit reached for gpt-4o-mini in organization org-fake on tokens per min \
                 (TPM): Limit 200000, Used 200000, Requested 12. Please try again in \
                 {retry_after_secs}s."
            ),
        );
        response
            .headers_mut()
            .insert("retry-after", retry_after_secs.into());
        response
    }
}

/// The model of a chat request, or what is wrong with it.
pub(crate) fn chat_validate(body: &Value) -> Result<String, String> {
    if !body.is_object() {
        return Err("The request body must be a JSON object.".to_owned());
    }
    let model = body["model"].as_str().unwrap_or_default();
    if model.is_empty() {
        return Err("you must provide a model parameter".to_owned());
    }
    match body["messages"].as_array() {
        Some(messages) if !messages.is_empty() => Ok(model.to_owned()),
        Some(_) => Err("[] is too short - 'messages'".to_owned()),
        None => Err("Missing required parameter: 'messages'.".to_owned()),
    }
}

/// What an OpenAI-shaped chat body asks for (`model` from the body or, for Azure, the path).
pub(crate) fn ask(model: String, body: &Value) -> Ask {
    Ask {
        model,
        stream: body["stream"].as_bool().unwrap_or(false),
        include_usage: body["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false),
        tool: tool_to_call(body),
        max_output_tokens: body["max_completion_tokens"]
            .as_u64()
            .or_else(|| body["max_tokens"].as_u64()),
    }
}

/// The function to call: the forced one, else the first offered; none when `tool_choice` is
/// "none" or the conversation ends with a tool result.
fn tool_to_call(body: &Value) -> Option<String> {
    let first = body["tools"].as_array()?.first()?["function"]["name"]
        .as_str()?
        .to_owned();
    let last_role = body["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .and_then(|message| message["role"].as_str());
    if last_role == Some("tool") {
        return None;
    }
    match &body["tool_choice"] {
        Value::String(choice) if choice == "none" => None,
        Value::Object(choice) => choice
            .get("function")
            .and_then(|function| function["name"].as_str())
            .map(str::to_owned)
            .or(Some(first)),
        _ => Some(first),
    }
}

pub(crate) fn completion_id(reply: &Reply) -> String {
    format!("chatcmpl-fake{:06}", reply.seq)
}

fn tool_call_id(reply: &Reply) -> String {
    format!("call_fake{:06}", reply.seq)
}

fn finish_reason(reply: &Reply) -> &'static str {
    match reply.output {
        Output::ToolCall { .. } => "tool_calls",
        Output::Text { .. } if reply.truncated() => "length",
        Output::Text { .. } => "stop",
    }
}

pub(crate) fn usage(reply: &Reply) -> Value {
    let completion = reply.completion_tokens();
    json!({
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

/// Azure's content-filter verdicts, all clean.
pub(crate) fn content_filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({
        "hate": safe, "self_harm": safe, "sexual": safe, "violence": safe,
    })
}

/// A non-streaming `chat.completion`; `azure` adds Azure's content-filter fields.
pub(crate) fn completion(reply: &Reply, azure: bool) -> Value {
    let message = match &reply.output {
        Output::Text { .. } => json!({
            "role": "assistant", "content": reply.text(), "refusal": null, "annotations": [],
        }),
        Output::ToolCall { name } => json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{
                "id": tool_call_id(reply),
                "type": "function",
                "function": {"name": name, "arguments": FAKE_TOOL_ARGUMENTS},
            }],
            "refusal": null,
            "annotations": [],
        }),
    };
    let mut choice = json!({
        "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(reply),
    });
    let mut body = json!({
        "id": completion_id(reply),
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [],
        "usage": usage(reply),
        "system_fingerprint": "fp_fake",
    });
    if azure {
        choice["content_filter_results"] = content_filter_results();
        body["prompt_filter_results"] =
            json!([{"prompt_index": 0, "content_filter_results": content_filter_results()}]);
    } else {
        body["service_tier"] = json!("default");
    }
    body["choices"] = json!([choice]);
    body
}

/// The parts every chunk of one stream repeats.
#[derive(Clone)]
struct ChunkHead {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    azure: bool,
}

impl ChunkHead {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        let mut choice = json!({
            "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason,
        });
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [],
        });
        if self.azure {
            choice["content_filter_results"] = if finish_reason.is_some() {
                json!({})
            } else {
                content_filter_results()
            };
        } else {
            chunk["service_tier"] = json!("default");
        }
        chunk["choices"] = json!([choice]);
        if self.include_usage {
            // OpenAI sends `"usage": null` on every chunk but the last when usage was asked for.
            chunk["usage"] = Value::Null;
        }
        sse(None, &chunk.to_string(), "\n\n")
    }
}

/// A streamed completion: (Azure: its prompt-filter chunk with an empty id,) the role chunk,
/// content or tool-call argument chunks, the finish chunk, the usage chunk when asked for,
/// `[DONE]`.
pub(crate) fn stream(reply: Reply, include_usage: bool, azure: bool) -> StreamBody {
    let head = ChunkHead {
        id: completion_id(&reply),
        created: reply.created,
        model: reply.model.clone(),
        include_usage,
        azure,
    };
    let mut start = Vec::new();
    if azure {
        start.push(sse(
            None,
            &json!({
                "choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [
                    {"prompt_index": 0, "content_filter_results": content_filter_results()}
                ],
            })
            .to_string(),
            "\n\n",
        ));
    }
    let body: Box<dyn Iterator<Item = Bytes> + Send> =
        match &reply.output {
            Output::Text { pieces, .. } => {
                start.push(head.chunk(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                ));
                let piece_head = head.clone();
                Box::new((0..*pieces).map(move |index| {
                    piece_head.chunk(json!({"content": text_piece(index)}), None)
                }))
            }
            Output::ToolCall { name } => {
                start.push(head.chunk(
                    json!({
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{
                            "index": 0,
                            "id": tool_call_id(&reply),
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }],
                        "refusal": null,
                    }),
                    None,
                ));
                let fragments: Vec<Bytes> = argument_fragments()
                    .into_iter()
                    .map(|fragment| {
                        head.chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}),
                        None,
                    )
                    })
                    .collect();
                Box::new(fragments.into_iter())
            }
        };
    let mut end = vec![head.chunk(json!({}), Some(finish_reason(&reply)))];
    if include_usage {
        let mut usage_chunk = json!({
            "id": head.id,
            "object": "chat.completion.chunk",
            "created": head.created,
            "model": head.model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": usage(&reply),
        });
        if !azure {
            usage_chunk["service_tier"] = json!("default");
        }
        end.push(sse(None, &usage_chunk.to_string(), "\n\n"));
    }
    end.push(Bytes::from_static(b"data: [DONE]\n\n"));
    StreamBody {
        content_type: "text/event-stream; charset=utf-8",
        events: Box::new(start.into_iter().chain(body).chain(end)),
    }
}

/// An embeddings response (OpenAI's and Azure's shape) for a validated body.
pub(crate) fn embeddings(body: &Value, model: &str) -> Result<Value, String> {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if items.is_empty() => {
            return Err("'$.input' is invalid: [] is too short".to_owned());
        }
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_u64) => vec![tokens_text(items)],
        Value::Array(items) if items.iter().all(Value::is_array) => items
            .iter()
            .map(|tokens| {
                tokens
                    .as_array()
                    .map(|t| tokens_text(t))
                    .unwrap_or_default()
            })
            .collect(),
        Value::Null => return Err("Missing required parameter: 'input'.".to_owned()),
        other => return Err(format!("'$.input' is invalid: {other}")),
    };
    let dimensions = match body["dimensions"].as_u64() {
        Some(0) => return Err("'$.dimensions' must be at least 1".to_owned()),
        Some(dimensions) => usize::try_from(dimensions).unwrap_or(FAKE_EMBEDDING_DIMENSIONS),
        None => FAKE_EMBEDDING_DIMENSIONS,
    };
    let base64 = match body["encoding_format"].as_str() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(format!(
                "'{other}' is not one of ['float', 'base64'] - 'encoding_format'"
            ));
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = fake_embedding(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector
                    .iter()
                    .flat_map(|value| value.to_le_bytes())
                    .collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|text| text_tokens(text)).sum();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

/// A token-array input, embedded as the text of its numbers.
fn tokens_text(tokens: &[Value]) -> String {
    tokens
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The error OpenAI sends inside a stream that fails after it started: a `data:` event with
/// the error object, and no `[DONE]`.
pub(crate) fn error_event(status: StatusCode, message: &str) -> Bytes {
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    sse(None, &body.to_string(), "\n\n")
}

/// OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    let body = json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    });
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A key as OpenAI repeats it in errors: the first and last few characters.
fn masked(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "***".to_owned();
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}***{tail}")
}
