//! Google's Gemini API: `/v1beta/models/{model}:generateContent`, `:streamGenerateContent`
//! (SSE with `?alt=sse`, else one JSON array), `:embedContent` and `:batchEmbedContents`;
//! the key in `x-goog-api-key` (or `?key=`); Google's error shape
//! (`{"error": {"code", "message", "status"}}`); `usageMetadata` on every streamed chunk.
//! Like the real API, a wrong key is a 400 `API_KEY_INVALID` and a missing one a 403.

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::FAKE_TOOL_ARGUMENTS;
use super::embedding::{FAKE_EMBEDDING_DIMENSIONS, fake_embedding};
use super::reply::{Output, Reply, text_piece};
use super::wire::{Ask, Incoming, StreamBody, Wire, sse};

/// Top-level `GenerateContentRequest` fields (proto JSON accepts both spellings).
const KNOWN_FIELDS: &[&str] = &[
    "contents",
    "tools",
    "toolConfig",
    "tool_config",
    "safetySettings",
    "safety_settings",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "cachedContent",
    "cached_content",
    "model",
];

pub(crate) struct Gemini;

impl Wire for Gemini {
    fn authenticate(&self, request: &Incoming, expected_key: Option<&str>) -> Result<(), Response> {
        let key = request
            .header("x-goog-api-key")
            .or_else(|| request.query("key"))
            .filter(|key| !key.is_empty());
        match (key, expected_key) {
            (None, _) => Err(error(
                StatusCode::FORBIDDEN,
                "Method doesn't allow unregistered callers (callers without established \
                 identity). Please use API Key or other form of API consumer identity to call \
                 this API.",
                json!([]),
            )),
            (Some(key), Some(expected)) if key != expected => Err(error(
                StatusCode::BAD_REQUEST,
                "API key not valid. Please pass a valid API key.",
                json!([{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }]),
            )),
            _ => Ok(()),
        }
    }

    fn chat_ask(&self, request: &Incoming, body: &Value) -> Result<Ask, Response> {
        validate(body).map_err(|message| error(StatusCode::BAD_REQUEST, &message, json!([])))?;
        let generation = field(body, "generationConfig", "generation_config");
        Ok(Ask {
            model: request.path_model.clone().unwrap_or_default(),
            stream: request.operation == "streamGenerateContent",
            include_usage: true,
            tool: tool_to_call(body),
            max_output_tokens: field(generation, "maxOutputTokens", "max_output_tokens").as_u64(),
        })
    }

    fn completion(&self, reply: &Reply) -> Value {
        let parts = match &reply.output {
            Output::Text { .. } => json!([{"text": reply.text()}]),
            Output::ToolCall { name } => json!([{"functionCall": {"name": name, "args": args()}}]),
        };
        response(
            reply,
            parts,
            Some(finish_reason(reply)),
            reply.completion_tokens(),
        )
    }

    fn stream(&self, reply: Reply, _ask: &Ask, request: &Incoming) -> StreamBody {
        let chunks: Box<dyn Iterator<Item = Value> + Send> = match &reply.output {
            Output::Text { pieces, .. } => {
                let pieces = *pieces;
                let reply = reply.clone();
                Box::new((0..pieces).map(move |index| {
                    let finish = (index + 1 == pieces).then(|| finish_reason(&reply));
                    response(
                        &reply,
                        json!([{"text": text_piece(index)}]),
                        finish,
                        index as u64 + 1,
                    )
                }))
            }
            // Gemini sends a function call whole, in one chunk.
            Output::ToolCall { name } => Box::new(std::iter::once(response(
                &reply,
                json!([{"functionCall": {"name": name, "args": args()}}]),
                Some("STOP"),
                reply.completion_tokens(),
            ))),
        };
        if request.query("alt") == Some("sse") {
            return StreamBody {
                content_type: "text/event-stream",
                events: Box::new(chunks.map(|chunk| sse(None, &chunk.to_string(), "\r\n\r\n"))),
            };
        }
        // Without `alt=sse` the stream is one JSON array, sent element by element.
        let mut first = true;
        let elements = chunks.map(move |chunk| {
            let prefix = if first { "[" } else { ",\r\n" };
            first = false;
            Bytes::from(format!("{prefix}{chunk}"))
        });
        StreamBody {
            content_type: "application/json; charset=UTF-8",
            events: Box::new(elements.chain(std::iter::once(Bytes::from_static(b"]")))),
        }
    }

    fn malformed_event(&self) -> Bytes {
        Bytes::from_static(b"data: {\"candidates\": [{\"content\": \r\n\r\n")
    }

    fn error_event(&self, status: StatusCode, message: &str) -> Bytes {
        let body = json!({"error": {
            "code": status.as_u16(), "message": message, "status": status_name(status),
        }});
        sse(None, &body.to_string(), "\r\n\r\n")
    }

    fn embeddings(&self, request: &Incoming, body: &Value) -> Result<Value, Response> {
        let model = request.path_model.clone().unwrap_or_default();
        let bad = |message: String| error(StatusCode::BAD_REQUEST, &message, json!([]));
        if request.operation == "embedContent" {
            let values = embed_one(body, &model).map_err(bad)?;
            return Ok(json!({"embedding": {"values": values}}));
        }
        let Some(requests) = body["requests"].as_array().filter(|r| !r.is_empty()) else {
            return Err(bad(
                "* BatchEmbedContentsRequest.requests: requests is not specified".to_owned(),
            ));
        };
        let embeddings = requests
            .iter()
            .map(|one| embed_one(one, &model).map(|values| json!({"values": values})))
            .collect::<Result<Vec<Value>, String>>()
            .map_err(bad)?;
        Ok(json!({"embeddings": embeddings}))
    }

    fn error(&self, status: StatusCode, message: &str) -> Response {
        error(status, message, json!([]))
    }

    fn rate_limited(&self, retry_after_secs: u64) -> Response {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details.",
            json!([{
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format!("{retry_after_secs}s"),
            }]),
        )
    }
}

/// A field under its camelCase or snake_case name (proto JSON accepts both).
fn field<'a>(object: &'a Value, camel: &str, snake: &str) -> &'a Value {
    match &object[camel] {
        Value::Null => &object[snake],
        value => value,
    }
}

/// What the API would refuse with a 400.
fn validate(body: &Value) -> Result<(), String> {
    let Some(fields) = body.as_object() else {
        return Err("Invalid JSON payload received.".to_owned());
    };
    if let Some(unknown) = fields
        .keys()
        .find(|field| !KNOWN_FIELDS.contains(&field.as_str()))
    {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
        ));
    }
    let Some(contents) = body["contents"].as_array().filter(|c| !c.is_empty()) else {
        return Err("* GenerateContentRequest.contents: contents is not specified".to_owned());
    };
    for content in contents {
        if !matches!(content["role"].as_str(), None | Some("user" | "model")) {
            return Err("Please use a valid role: user, model.".to_owned());
        }
        if content["parts"].as_array().is_none_or(Vec::is_empty) {
            return Err(
                "* GenerateContentRequest.contents.parts: contents.parts must not be empty."
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// The function to call: the first declared (or the first allowed, in mode ANY); none in mode
/// NONE or when the conversation ends with a function response.
fn tool_to_call(body: &Value) -> Option<String> {
    let first = body["tools"]
        .as_array()?
        .iter()
        .filter_map(|tool| field(tool, "functionDeclarations", "function_declarations").as_array())
        .flatten()
        .find_map(|declaration| declaration["name"].as_str())?
        .to_owned();
    let ends_with_response = body["contents"]
        .as_array()
        .and_then(|contents| contents.last())
        .and_then(|content| content["parts"].as_array())
        .is_some_and(|parts| {
            parts
                .iter()
                .any(|part| !field(part, "functionResponse", "function_response").is_null())
        });
    if ends_with_response {
        return None;
    }
    let config = field(
        field(body, "toolConfig", "tool_config"),
        "functionCallingConfig",
        "function_calling_config",
    );
    match config["mode"].as_str() {
        Some("NONE") => None,
        _ => field(config, "allowedFunctionNames", "allowed_function_names")
            .as_array()
            .and_then(|names| names.first())
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(Some(first)),
    }
}

fn args() -> Value {
    serde_json::from_str(FAKE_TOOL_ARGUMENTS).unwrap_or(Value::Null)
}

fn finish_reason(reply: &Reply) -> &'static str {
    if reply.truncated() {
        "MAX_TOKENS"
    } else {
        "STOP"
    }
}

/// One `GenerateContentResponse` with `candidates_tokens` output so far.
fn response(reply: &Reply, parts: Value, finish: Option<&str>, candidates_tokens: u64) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(finish) = finish {
        candidate["finishReason"] = json!(finish);
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": reply.prompt_tokens,
            "candidatesTokenCount": candidates_tokens,
            "totalTokenCount": reply.prompt_tokens + candidates_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": reply.prompt_tokens}],
        },
        "modelVersion": reply.model,
        "responseId": format!("fakeResp{:06}", reply.seq),
    })
}

/// The vector for one `EmbedContentRequest`, checking what the API checks.
fn embed_one(request: &Value, path_model: &str) -> Result<Vec<f32>, String> {
    if let Some(model) = request["model"].as_str()
        && model != format!("models/{path_model}")
    {
        return Err(format!(
            "Model name in the request ({model}) does not match the model in the URL \
             (models/{path_model})."
        ));
    }
    let texts: Vec<&str> = request["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|part| part["text"].as_str())
        .collect();
    if texts.is_empty() {
        return Err("* EmbedContentRequest.content: contents is not specified".to_owned());
    }
    let dimensions = field(request, "outputDimensionality", "output_dimensionality")
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(FAKE_EMBEDDING_DIMENSIONS);
    Ok(fake_embedding(&texts.concat(), dimensions))
}

/// Google's error shape with the canonical status name for `status`.
pub(crate) fn error(status: StatusCode, message: &str, details: Value) -> Response {
    let name = status_name(status);
    let mut error = json!({"code": status.as_u16(), "message": message, "status": name});
    if details
        .as_array()
        .is_some_and(|details| !details.is_empty())
    {
        error["details"] = details;
    }
    (
        status,
        [(CONTENT_TYPE, "application/json; charset=UTF-8")],
        json!({ "error": error }).to_string(),
    )
        .into_response()
}

/// Google's canonical status name for an HTTP status.
fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}
