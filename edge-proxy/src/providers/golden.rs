//! Golden-file harness for adapter tests: the adapter runs for real (its transport included)
//! against a one-shot in-process upstream that records the request and answers with a fixture.
//! One YAML snapshot per case shows, in order, what the client sent, what the upstream got,
//! what the upstream answered, and what the client gets back, so a reviewer reads a
//! translation top to bottom. Values that differ per run (`created`, ids the gateway
//! generates) are normalised so snapshots are stable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{ModelTarget, Provider};
use crate::api::chat::ChatCompletionRequest;
use crate::api::embeddings::EmbeddingsRequest;
use crate::error::GatewayError;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What the fake upstream answers.
#[derive(Debug, Clone)]
pub struct UpstreamReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Extra response headers (e.g. `retry-after`).
    pub headers: Vec<(&'static str, &'static str)>,
}

impl UpstreamReply {
    pub fn json(body: &str) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    pub fn sse(body: &str) -> Self {
        Self {
            status: 200,
            content_type: "text/event-stream",
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    pub fn error(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }
}

/// The request as the upstream received it. Only headers that carry meaning for the upstream
/// API are kept (auth, versions, content type); transport noise is dropped.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path_and_query: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

/// What the client receives, in OpenAI's shape.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientResult {
    Response(Value),
    /// The chunks of a stream, and the error that ended it early, if any.
    Stream {
        chunks: Vec<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
    },
    /// The call failed before any output: HTTP status and OpenAI error body.
    Error {
        status: u16,
        body: Value,
    },
}

#[derive(Debug, Serialize)]
pub struct GoldenRecord {
    pub client_request: Value,
    pub upstream_request: Option<RecordedRequest>,
    /// JSON replies as JSON; SSE replies as their events (data parsed when it is JSON).
    pub upstream_reply: Value,
    pub client_result: ClientResult,
}

impl GoldenRecord {
    /// The client's response, or a panic naming what came instead.
    pub fn response(&self) -> &Value {
        match &self.client_result {
            ClientResult::Response(value) => value,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// The client's chunks and the error that ended the stream, if any.
    pub fn stream(&self) -> (&[Value], Option<&Value>) {
        match &self.client_result {
            ClientResult::Stream { chunks, error } => (chunks, error.as_ref()),
            other => panic!("expected a stream, got {other:?}"),
        }
    }

    /// The client's error status and body.
    pub fn error(&self) -> (u16, &Value) {
        match &self.client_result {
            ClientResult::Error { status, body } => (*status, body),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

/// Snapshots a record as `<name>.snap` beside the calling test (named after the pair and case,
/// not the module path). A macro so insta files the snapshot next to the caller.
macro_rules! golden_snapshot {
    ($name:expr, $record:expr) => {
        insta::with_settings!({prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_yaml_snapshot!($name, $record);
        })
    };
}
pub(crate) use golden_snapshot;

const MEANINGFUL_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "anthropic-version",
    "anthropic-beta",
    "content-type",
];

#[derive(Clone)]
struct Upstream {
    reply: UpstreamReply,
    recorded: Arc<Mutex<Option<RecordedRequest>>>,
}

async fn answer(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| MEANINGFUL_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or("<binary>").to_owned(),
            )
        })
        .collect();
    *upstream.recorded.lock().unwrap() = Some(RecordedRequest {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(String::new, ToString::to_string),
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    });
    let mut response = (
        StatusCode::from_u16(upstream.reply.status).unwrap(),
        [("content-type", upstream.reply.content_type)],
        upstream.reply.body.clone(),
    )
        .into_response();
    for (name, value) in &upstream.reply.headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

/// Starts the one-shot upstream; returns its base URL (`http://127.0.0.1:port`) and the slot
/// where the request lands.
async fn start(reply: UpstreamReply) -> (String, Arc<Mutex<Option<RecordedRequest>>>) {
    let recorded = Arc::new(Mutex::new(None));
    let app = axum::Router::new().fallback(answer).with_state(Upstream {
        reply,
        recorded: Arc::clone(&recorded),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), recorded)
}

fn error_result(err: GatewayError) -> ClientResult {
    ClientResult::Error {
        status: err.status().as_u16(),
        body: serde_json::to_value(err.body()).unwrap(),
    }
}

/// Runs one chat case: `make` builds the adapter for the given base URL; the client request's
/// `stream` field decides between `chat` and `chat_stream`.
pub async fn chat(
    make: impl FnOnce(&str) -> Box<dyn Provider>,
    upstream_model: &str,
    client_request: Value,
    reply: UpstreamReply,
) -> GoldenRecord {
    let (base_url, recorded) = start(reply.clone()).await;
    let provider = make(&base_url);
    let target = super::test_target("public-model", upstream_model);
    let parsed = ChatCompletionRequest::parse(client_request.to_string().as_bytes())
        .expect("golden client requests are valid");
    let client_result = run_chat(provider.as_ref(), &target, &parsed).await;
    let mut record = GoldenRecord {
        client_request,
        upstream_request: recorded.lock().unwrap().take(),
        upstream_reply: reply_view(&reply),
        client_result,
    };
    normalise(&mut record, &reply.body);
    record
}

async fn run_chat(
    provider: &dyn Provider,
    target: &ModelTarget,
    request: &ChatCompletionRequest,
) -> ClientResult {
    if !request.stream {
        return match provider.chat(target, request).await {
            Ok(completion) => ClientResult::Response(serde_json::to_value(completion).unwrap()),
            Err(err) => error_result(err.into()),
        };
    }
    let mut stream = match provider.chat_stream(target, request).await {
        Ok(stream) => stream,
        Err(err) => return error_result(err.into()),
    };
    let mut chunks = Vec::new();
    let mut error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => chunks.push(serde_json::to_value(chunk).unwrap()),
            Err(err) => {
                error = Some(serde_json::to_value(GatewayError::from(err).body()).unwrap());
                break;
            }
        }
    }
    ClientResult::Stream { chunks, error }
}

/// Runs one embeddings case.
pub async fn embeddings(
    make: impl FnOnce(&str) -> Box<dyn Provider>,
    upstream_model: &str,
    client_request: Value,
    reply: UpstreamReply,
) -> GoldenRecord {
    let (base_url, recorded) = start(reply.clone()).await;
    let provider = make(&base_url);
    let target = super::test_target("public-model", upstream_model);
    let parsed = EmbeddingsRequest::parse(client_request.to_string().as_bytes())
        .expect("golden client requests are valid");
    let client_result = match provider.embeddings(&target, &parsed).await {
        Ok(response) => ClientResult::Response(serde_json::to_value(response).unwrap()),
        Err(err) => error_result(err.into()),
    };
    let mut record = GoldenRecord {
        client_request,
        upstream_request: recorded.lock().unwrap().take(),
        upstream_reply: reply_view(&reply),
        client_result,
    };
    normalise(&mut record, &reply.body);
    record
}

/// The upstream's reply in a form a reviewer reads: parsed JSON, or the SSE events in order.
fn reply_view(reply: &UpstreamReply) -> Value {
    if let Ok(json) = serde_json::from_str::<Value>(&reply.body) {
        return json;
    }
    if reply.content_type != "text/event-stream" {
        return Value::String(reply.body.clone());
    }
    let mut decoder = super::sse::SseDecoder::new();
    let mut events = decoder.feed(reply.body.as_bytes()).unwrap_or_default();
    // A cut stream's last event may lack its blank line; show what was sent.
    let rest = decoder.feed(b"\n\n").unwrap_or_default();
    events.extend(rest);
    Value::Array(
        events
            .into_iter()
            .map(|event| {
                let data =
                    serde_json::from_str::<Value>(&event.data).unwrap_or(Value::String(event.data));
                match event.event {
                    Some(name) => serde_json::json!({ "event": name, "data": data }),
                    None => serde_json::json!({ "data": data }),
                }
            })
            .collect(),
    )
}

/// An id the gateway made up at random (it holds a UUID's worth of hex digits that the
/// upstream never sent); ids derived from the upstream's, or numbered, are stable and kept.
fn is_random_id(id: &str, upstream_body: &str) -> bool {
    let hex_digits = id.chars().filter(char::is_ascii_hexdigit).count();
    hex_digits >= 32 && !upstream_body.contains(id)
}

/// `created` becomes 0; an id the gateway generated at random becomes "[generated]".
fn normalise(record: &mut GoldenRecord, upstream_body: &str) {
    fn walk(value: &mut Value, upstream_body: &str) {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields.iter_mut() {
                    match (key.as_str(), &*field) {
                        ("created", Value::Number(_)) => *field = Value::from(0),
                        ("id", Value::String(id)) if is_random_id(id, upstream_body) => {
                            *field = Value::String("[generated]".to_owned());
                        }
                        _ => walk(field, upstream_body),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, upstream_body)),
            _ => {}
        }
    }
    match &mut record.client_result {
        ClientResult::Response(value) => walk(value, upstream_body),
        ClientResult::Stream { chunks, .. } => {
            chunks
                .iter_mut()
                .for_each(|chunk| walk(chunk, upstream_body));
        }
        ClientResult::Error { .. } => {}
    }
}

/// Reads a fixture file relative to the crate root.
pub fn fixture(relative: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}
