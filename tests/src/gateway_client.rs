//! A client for the edge's OpenAI-compatible HTTP API, and assertions on the OpenAI wire shapes
//! (chat completions, stream chunks, errors).

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt as _;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};

/// Per-request limit: generous, since some tests deliberately wait on slow upstreams.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A reqwest client for talking to local test servers: ring as the rustls provider (reqwest is
/// built with `rustls-no-provider`), no proxy from the environment, a request timeout.
pub fn http_client() -> reqwest::Client {
    // Fails only when a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("build a reqwest client")
}

/// A minimal valid chat request: one user message.
pub fn chat_body(model: &str, content: &str) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
    })
}

/// A buffered HTTP response.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl HttpReply {
    /// The body parsed as JSON; panics (showing the body) if it is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| {
            panic!(
                "response body is not JSON ({error}); status {}: {}",
                self.status, self.body
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The `x-request-id` header every edge response carries.
    pub fn request_id(&self) -> Option<&str> {
        self.header("x-request-id")
    }

    /// Asserts an OpenAI-style error, `{"error": {"message", "type", "param", "code"}}`, with
    /// the given status, type, code and param (`None` = JSON null), a non-empty message and an
    /// `x-request-id` header. Returns the `error` object.
    #[track_caller]
    pub fn assert_openai_error(
        &self,
        status: u16,
        error_type: &str,
        code: &str,
        param: Option<&str>,
    ) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        let body = self.json();
        let error = body
            .get("error")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("no `error` object in {body}"));
        for field in ["message", "type", "param", "code"] {
            assert!(
                error.contains_key(field),
                "error has no `{field}` field: {body}"
            );
        }
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty()),
            "error.message must be a non-empty string: {body}"
        );
        assert_eq!(error["type"], error_type, "error.type in {body}");
        assert_eq!(error["code"], code, "error.code in {body}");
        match param {
            Some(param) => assert_eq!(error["param"], param, "error.param in {body}"),
            None => assert!(
                error["param"].is_null(),
                "error.param should be null in {body}"
            ),
        }
        assert!(
            self.request_id().is_some(),
            "no x-request-id header on an error response"
        );
        Value::Object(error.clone())
    }
}

/// A server-sent-events response read to its end (or to the transport error that cut it).
#[derive(Debug, Clone)]
/// A streamed response read to its end, or to the transport error that cut it.
pub(crate) struct StreamedBody {
    pub status: u16,
    pub headers: HeaderMap,
    pub raw: String,
    pub transport_error: Option<String>,
}

impl StreamedBody {
    pub async fn read(response: reqwest::Response) -> StreamedBody {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        let mut transport_error = None;
        let mut stream = pin!(response.bytes_stream());
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(error) => {
                    transport_error = Some(format!("{:#}", anyhow::Error::from(error)));
                    break;
                }
            }
        }
        StreamedBody {
            status,
            headers,
            raw: String::from_utf8_lossy(&bytes).into_owned(),
            transport_error,
        }
    }
}

pub struct SseReply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The whole body as text.
    pub raw: String,
    /// The `data:` payload of every event, in order (including `[DONE]`).
    pub events: Vec<String>,
    /// Set when the body ended with a transport error instead of a clean end.
    pub transport_error: Option<String>,
}

impl SseReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Whether any event is the `[DONE]` sentinel.
    pub fn has_done(&self) -> bool {
        self.events.iter().any(|event| event == "[DONE]")
    }

    /// Every event except `[DONE]`, parsed as JSON; panics on an event that is not JSON.
    #[track_caller]
    pub fn json_events(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter(|event| event.as_str() != "[DONE]")
            .map(|event| {
                serde_json::from_str(event).unwrap_or_else(|error| {
                    panic!(
                        "SSE event is not JSON ({error}): {event}\nwhole stream:\n{}",
                        self.raw
                    )
                })
            })
            .collect()
    }

    /// Events carrying an `error` object.
    #[track_caller]
    pub fn error_events(&self) -> Vec<Value> {
        self.json_events()
            .into_iter()
            .filter(|event| event.get("error").is_some())
            .collect()
    }

    /// Chunks with `"choices": []` and a `usage` object (the include_usage chunk).
    #[track_caller]
    pub fn usage_chunks(&self) -> Vec<Value> {
        self.json_events()
            .into_iter()
            .filter(|event| {
                event["choices"].as_array().is_some_and(Vec::is_empty) && event["usage"].is_object()
            })
            .collect()
    }

    /// All `choices[0].delta.content` strings concatenated.
    #[track_caller]
    pub fn content(&self) -> String {
        self.json_events()
            .iter()
            .filter_map(|event| {
                event["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// Prompt/completion token counts from a `usage` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl TokenUsage {
    /// Parses an OpenAI `usage` object, asserting the three counts are integers and add up.
    #[track_caller]
    pub fn from_json(usage: &Value) -> TokenUsage {
        let count = |field: &str| {
            usage[field]
                .as_u64()
                .unwrap_or_else(|| panic!("usage.{field} is not a non-negative integer: {usage}"))
        };
        let parsed = TokenUsage {
            prompt_tokens: count("prompt_tokens"),
            completion_tokens: count("completion_tokens"),
            total_tokens: count("total_tokens"),
        };
        assert_eq!(
            parsed.total_tokens,
            parsed.prompt_tokens + parsed.completion_tokens,
            "usage.total_tokens must be prompt + completion: {usage}"
        );
        parsed
    }
}

/// Asserts `body` is a non-streaming OpenAI `chat.completion` with one assistant choice and
/// usage; checks `model` when given. Returns the usage.
#[track_caller]
pub fn assert_chat_completion(body: &Value, model: Option<&str>) -> TokenUsage {
    assert!(
        body["id"].as_str().is_some_and(|id| !id.is_empty()),
        "id must be a non-empty string: {body}"
    );
    assert_eq!(body["object"], "chat.completion", "object in {body}");
    assert!(
        body["created"].as_u64().is_some_and(|created| created > 0),
        "created in {body}"
    );
    assert!(body["model"].is_string(), "model must be a string: {body}");
    if let Some(model) = model {
        assert_eq!(body["model"], model, "model in {body}");
    }
    let choices = body["choices"]
        .as_array()
        .unwrap_or_else(|| panic!("choices in {body}"));
    assert_eq!(choices.len(), 1, "exactly one choice expected: {body}");
    let choice = &choices[0];
    assert_eq!(choice["index"], 0, "choices[0].index in {body}");
    assert_eq!(
        choice["message"]["role"], "assistant",
        "choices[0].message.role in {body}"
    );
    assert!(
        choice["message"]["content"]
            .as_str()
            .is_some_and(|content| !content.is_empty()),
        "choices[0].message.content must be a non-empty string: {body}"
    );
    assert!(
        choice["finish_reason"].is_string(),
        "choices[0].finish_reason in {body}"
    );
    TokenUsage::from_json(&body["usage"])
}

/// Asserts `reply` is a complete OpenAI chat stream: 200 `text/event-stream`; JSON
/// `chat.completion.chunk` events sharing one id (and `model`, when given); a first chunk with
/// the assistant role; exactly one chunk with a finish_reason; content or tool calls; a usage chunk
/// (`"choices": []`) as the last JSON event exactly when `include_usage`; then a single
/// `[DONE]` as the final event. Returns the usage when `include_usage`.
#[track_caller]
pub fn assert_chat_stream(
    reply: &SseReply,
    model: Option<&str>,
    include_usage: bool,
) -> Option<TokenUsage> {
    assert_eq!(reply.status, 200, "stream status; body:\n{}", reply.raw);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|value| value.starts_with("text/event-stream")),
        "content-type must be text/event-stream, got {:?}",
        reply.header("content-type")
    );
    assert!(
        reply.transport_error.is_none(),
        "stream broke: {:?}\n{}",
        reply.transport_error,
        reply.raw
    );
    assert_eq!(
        reply.events.last().map(String::as_str),
        Some("[DONE]"),
        "stream must end with [DONE]:\n{}",
        reply.raw
    );
    assert_eq!(
        reply
            .events
            .iter()
            .filter(|event| event.as_str() == "[DONE]")
            .count(),
        1,
        "exactly one [DONE] expected:\n{}",
        reply.raw
    );

    let chunks = reply.json_events();
    assert!(
        !chunks.is_empty(),
        "no chunks before [DONE]:\n{}",
        reply.raw
    );
    let id = chunks[0]["id"].clone();
    assert!(
        id.as_str().is_some_and(|id| !id.is_empty()),
        "chunk id in {}",
        chunks[0]
    );
    for chunk in &chunks {
        assert_eq!(
            chunk["object"], "chat.completion.chunk",
            "object in {chunk}"
        );
        assert_eq!(chunk["id"], id, "every chunk carries the same id: {chunk}");
        if let Some(model) = model {
            assert_eq!(chunk["model"], model, "model in {chunk}");
        }
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "the first chunk carries the assistant role: {}",
        chunks[0]
    );
    let finish_chunks = chunks
        .iter()
        .filter(|chunk| chunk["choices"][0]["finish_reason"].is_string())
        .count();
    assert_eq!(
        finish_chunks, 1,
        "exactly one chunk with a finish_reason:\n{}",
        reply.raw
    );
    let has_tool_calls = chunks
        .iter()
        .any(|chunk| chunk["choices"][0]["delta"]["tool_calls"].is_array());
    assert!(
        !reply.content().is_empty() || has_tool_calls,
        "the stream carried no content and no tool calls:\n{}",
        reply.raw
    );

    let usage_chunks = reply.usage_chunks();
    if include_usage {
        assert_eq!(
            usage_chunks.len(),
            1,
            "exactly one usage chunk expected:\n{}",
            reply.raw
        );
        let last = chunks
            .last()
            .unwrap_or_else(|| unreachable!("chunks is not empty"));
        assert_eq!(
            last, &usage_chunks[0],
            "the usage chunk comes last, before [DONE]"
        );
        for chunk in &chunks[..chunks.len() - 1] {
            assert!(
                chunk["usage"].is_null(),
                "only the last chunk carries usage: {chunk}"
            );
        }
        Some(TokenUsage::from_json(&usage_chunks[0]["usage"]))
    } else {
        assert!(
            usage_chunks.is_empty(),
            "usage chunk sent without include_usage:\n{}",
            reply.raw
        );
        for chunk in &chunks {
            assert!(
                chunk["usage"].is_null(),
                "usage sent without include_usage: {chunk}"
            );
        }
        None
    }
}

/// The edge's HTTP API at one base URL.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    pub(crate) http: reqwest::Client,
    base_url: String,
}

impl GatewayClient {
    /// `base_url` like `http://127.0.0.1:PORT` (no trailing slash).
    pub fn new(base_url: &str) -> GatewayClient {
        GatewayClient {
            http: http_client(),
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Like [`GatewayClient::new`] but with no overall request deadline (only a connect
    /// timeout), for streams kept open for minutes.
    pub fn without_request_timeout(base_url: &str) -> GatewayClient {
        // Fails only when a provider is already installed, which is what we want anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        GatewayClient {
            http: reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .expect("build a reqwest client"),
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// GET `path` with an optional bearer key.
    pub async fn get(&self, path: &str, key: Option<&str>) -> anyhow::Result<HttpReply> {
        let mut request = self.http.get(self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        buffer(request.send().await?).await
    }

    /// GET /v1/models.
    pub async fn models(&self, key: Option<&str>) -> anyhow::Result<HttpReply> {
        self.get("/v1/models", key).await
    }

    /// The ids listed by GET /v1/models for `key`, sorted; an error unless the status is 200.
    pub async fn model_ids(&self, key: &str) -> anyhow::Result<Vec<String>> {
        let reply = self.models(Some(key)).await?;
        anyhow::ensure!(
            reply.status == 200,
            "GET /v1/models: {} {}",
            reply.status,
            reply.body
        );
        let body: Value = serde_json::from_str(&reply.body)?;
        let mut ids: Vec<String> = body["data"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("no data array in {body}"))?
            .iter()
            .filter_map(|model| model["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// POST /v1/chat/completions with a JSON body, buffered.
    pub async fn chat(&self, key: Option<&str>, body: &Value) -> anyhow::Result<HttpReply> {
        self.chat_raw(key, body.to_string()).await
    }

    /// POST /v1/chat/completions with an arbitrary body (sent as `application/json`).
    pub async fn chat_raw(&self, key: Option<&str>, body: String) -> anyhow::Result<HttpReply> {
        buffer(self.chat_request(key, body).send().await?).await
    }

    /// The status of a one-message chat with `model`; handy inside `eventually`.
    pub async fn chat_status(&self, key: &str, model: &str) -> anyhow::Result<u16> {
        Ok(self
            .chat(Some(key), &chat_body(model, "ping"))
            .await?
            .status)
    }

    /// POST /v1/chat/completions and read the response as server-sent events, to the end.
    pub async fn chat_stream(&self, key: Option<&str>, body: &Value) -> anyhow::Result<SseReply> {
        let response = self.chat_request(key, body.to_string()).send().await?;
        let body = StreamedBody::read(response).await;
        Ok(SseReply {
            events: sse_data_events(&body.raw),
            status: body.status,
            headers: body.headers,
            raw: body.raw,
            transport_error: body.transport_error,
        })
    }

    /// POST /v1/chat/completions and return once the status and headers are in, leaving the
    /// body to be read event by event. Dropping the result hangs up, as a client that goes
    /// away mid-stream does.
    pub async fn open_chat_stream(
        &self,
        key: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<OpenStream> {
        let response = self.chat_request(key, body.to_string()).send().await?;
        Ok(OpenStream {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            response,
            pending: Vec::new(),
        })
    }

    fn chat_request(&self, key: Option<&str>, body: String) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(self.url("/v1/chat/completions"))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request
    }
}

/// A chat response whose body is still arriving (see [`GatewayClient::open_chat_stream`]).
#[derive(Debug)]
pub struct OpenStream {
    pub status: u16,
    pub headers: HeaderMap,
    response: reqwest::Response,
    /// Body bytes received but not yet returned as an event.
    pending: Vec<u8>,
}

impl OpenStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The `data:` payload of the next server-sent event; `None` once the body has ended.
    pub async fn next_event(&mut self) -> anyhow::Result<Option<String>> {
        loop {
            if let Some((end, separator)) = event_end(&self.pending) {
                let event: Vec<u8> = self.pending.drain(..end + separator).collect();
                if let Some(data) = sse_data_events(&String::from_utf8_lossy(&event))
                    .into_iter()
                    .next()
                {
                    return Ok(Some(data));
                }
                continue;
            }
            match self.response.chunk().await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => {
                    let rest = std::mem::take(&mut self.pending);
                    return Ok(sse_data_events(&String::from_utf8_lossy(&rest))
                        .into_iter()
                        .next());
                }
            }
        }
    }

    /// The rest of the body as text (for a response that is not a stream, e.g. an error).
    pub async fn text(self) -> anyhow::Result<String> {
        let rest = self.response.bytes().await?;
        let mut body = self.pending;
        body.extend_from_slice(&rest);
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// Where the first complete SSE event in `bytes` ends, and the separator's length.
fn event_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let lf = bytes.windows(2).position(|window| window == b"\n\n");
    let crlf = bytes.windows(4).position(|window| window == b"\r\n\r\n");
    match (lf, crlf) {
        (Some(lf), Some(crlf)) if crlf < lf => Some((crlf, 4)),
        (Some(lf), _) => Some((lf, 2)),
        (None, Some(crlf)) => Some((crlf, 4)),
        (None, None) => None,
    }
}

pub(crate) async fn buffer(response: reqwest::Response) -> anyhow::Result<HttpReply> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await?;
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

/// The `data:` payloads of an SSE body, one per event (multi-line data joined with `\n`).
pub(crate) fn sse_data_events(raw: &str) -> Vec<String> {
    let normalized = raw.replace("\r\n", "\n");
    normalized
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sse_data_events;

    #[test]
    fn sse_parser_splits_events_and_ignores_comments() {
        let raw = ": keep-alive\n\ndata: {\"a\":1}\n\ndata:{\"b\":2}\r\n\r\ndata: [DONE]\n\n";
        assert_eq!(
            sse_data_events(raw),
            vec!["{\"a\":1}", "{\"b\":2}", "[DONE]"]
        );
    }

    #[test]
    fn sse_parser_keeps_an_unterminated_last_event() {
        assert_eq!(sse_data_events("data: x\n\ndata: y"), vec!["x", "y"]);
    }
}
