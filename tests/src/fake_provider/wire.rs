//! What every wire format provides the fake's common request flow: authentication, reading
//! a chat or embeddings request, rendering a reply (JSON or stream) and errors, all in that
//! provider's own shapes.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use super::reply::Reply;

/// Body pieces of a response, produced lazily (a scripted stream can be very long).
pub(crate) type Events = Box<dyn Iterator<Item = Bytes> + Send>;

/// The parts of an incoming request a format looks at besides the body.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub headers: HeaderMap,
    /// Query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// The model or deployment named in the path (Azure, Gemini).
    pub path_model: Option<String>,
    /// The operation the path names: `chat`, `embeddings`, or Gemini's method
    /// (`generateContent`, `streamGenerateContent`, `embedContent`, `batchEmbedContents`).
    pub operation: String,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn is_embeddings(&self) -> bool {
        matches!(
            self.operation.as_str(),
            "embeddings" | "embedContent" | "batchEmbedContents"
        )
    }
}

/// What a chat request asks for, read from the body in its own format.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    /// The model the request names (body or path).
    pub model: String,
    pub stream: bool,
    /// OpenAI's `stream_options.include_usage`; other formats always report usage.
    pub include_usage: bool,
    /// The tool to call, when the request offers tools and a call is the natural answer.
    pub tool: Option<String>,
    /// The request's output cap.
    pub max_output_tokens: Option<u64>,
}

/// A streamed response: its content type and body pieces.
pub(crate) struct StreamBody {
    pub content_type: &'static str,
    pub events: Events,
}

/// One provider's wire format.
// The `Err` of the checks is the provider's finished error response, built at most once per
// request in a test server: boxing it would only add noise.
#[allow(clippy::result_large_err)]
pub(crate) trait Wire: Send + Sync + 'static {
    /// `Err` with the provider's own authentication error when the credentials are missing or
    /// wrong (`expected_key` `None` accepts any non-empty key); also rejects requests the
    /// provider refuses before reading the body (a missing API version).
    fn authenticate(&self, request: &Incoming, expected_key: Option<&str>) -> Result<(), Response>;

    /// Reads a chat request; `Err` is the provider's own 400.
    fn chat_ask(&self, request: &Incoming, body: &Value) -> Result<Ask, Response>;

    /// A complete (non-streaming) chat response.
    fn completion(&self, reply: &Reply) -> Value;

    /// A streamed chat response, ending with the format's end marker.
    fn stream(&self, reply: Reply, ask: &Ask, request: &Incoming) -> StreamBody;

    /// An event that is not valid JSON, in the format's framing.
    fn malformed_event(&self) -> Bytes;

    /// The error event the provider sends when a stream fails after it started.
    fn error_event(&self, status: StatusCode, message: &str) -> Bytes;

    /// An embeddings response; `Err` is the provider's own error.
    fn embeddings(&self, request: &Incoming, body: &Value) -> Result<Value, Response>;

    /// An error in the provider's own shape.
    fn error(&self, status: StatusCode, message: &str) -> Response;

    /// A 429 in the provider's own shape, with its way of saying when to retry.
    fn rate_limited(&self, retry_after_secs: u64) -> Response;
}

/// SSE framing: `event:` line when named, one `data:` line, blank line (with `separator`,
/// `\n\n` or Gemini's `\r\n\r\n`).
pub(crate) fn sse(event: Option<&str>, data: &str, separator: &str) -> Bytes {
    let line_end = &separator[..separator.len() / 2];
    match event {
        Some(name) => Bytes::from(format!("event: {name}{line_end}data: {data}{separator}")),
        None => Bytes::from(format!("data: {data}{separator}")),
    }
}
