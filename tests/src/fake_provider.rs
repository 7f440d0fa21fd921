//! A fake OpenAI-compatible provider: speaks the real `/v1/chat/completions` wire format
//! (plain JSON and `text/event-stream`), records every request, and can be told to misbehave
//! (error status, latency, a stream cut mid-way, malformed JSON).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt as _;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The assistant message every successful completion carries.
pub const FAKE_CONTENT: &str = "Hello from the fake upstream";
/// `usage.prompt_tokens` the fake reports, whatever the prompt.
pub const FAKE_PROMPT_TOKENS: u64 = 12;
/// `usage.completion_tokens` the fake reports (one per word of [`FAKE_CONTENT`]).
pub const FAKE_COMPLETION_TOKENS: u64 = 5;

/// How long a cut stream stays open after its last chunk, so the chunks are surely flushed to
/// the client before the connection is aborted.
const CUT_GRACE: Duration = Duration::from_millis(200);

/// How the fake answers chat completions, until told otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// A correct completion (or stream) of [`FAKE_CONTENT`].
    Normal,
    /// Answer every request with this status and body (`application/json`).
    Status { code: u16, body: String },
    /// Wait this long before answering normally.
    Latency(Duration),
    /// Stream responses send this many SSE events (the role chunk counts as one), then the
    /// connection is aborted: no finish chunk, no `[DONE]`. Non-streaming responses are cut
    /// half-way through the JSON body.
    CutStreamAfter(usize),
    /// 200 with a body that is not valid JSON (non-streaming), or a stream with an event that
    /// is not valid JSON.
    MalformedJson,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    pub headers: HeaderMap,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    pub raw_body: Bytes,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Whether `needle` appears in any header value or in the body.
    pub fn contains(&self, needle: &str) -> bool {
        self.headers
            .values()
            .any(|value| String::from_utf8_lossy(value.as_bytes()).contains(needle))
            || String::from_utf8_lossy(&self.raw_body).contains(needle)
    }
}

struct Shared {
    behavior: Mutex<Behavior>,
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicUsize,
    next_completion: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running fake provider on 127.0.0.1:<ephemeral port>; stops when dropped.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeProvider {
    /// Binds an ephemeral port and starts serving with [`Behavior::Normal`].
    pub async fn start() -> FakeProvider {
        let shared = Arc::new(Shared {
            behavior: Mutex::new(Behavior::Normal),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            next_completion: AtomicU64::new(1),
        });
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the fake provider");
        let addr = listener.local_addr().expect("fake provider address");
        let counter = Arc::clone(&shared);
        let listener = listener.tap_io(move |_stream| {
            counter.connections.fetch_add(1, Ordering::SeqCst);
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .fallback(not_found)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("e2e: fake provider stopped: {error}");
            }
        });
        FakeProvider {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the provider base URL the edge appends `/chat/completions` to.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how every following request is answered.
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.shared.behavior) = behavior;
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.requests).last().cloned()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// TCP connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn not_found(uri: Uri) -> Response {
    openai_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        &format!("the fake provider has no route {uri}"),
    )
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    lock(&shared.requests).push(RecordedRequest {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), ToString::to_string),
        headers,
        body: parsed.clone().unwrap_or(Value::Null),
        raw_body: body,
    });
    let behavior = lock(&shared.behavior).clone();

    let Some(request) = parsed else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "We could not parse the JSON body of your request.",
        );
    };
    let completion = Completion {
        id: format!(
            "chatcmpl-fake{:06}",
            shared.next_completion.fetch_add(1, Ordering::SeqCst)
        ),
        created: unix_now(),
        model: request["model"].as_str().unwrap_or("unknown").to_owned(),
    };
    let stream = request["stream"].as_bool().unwrap_or(false);
    let include_usage = request["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);

    match behavior {
        Behavior::Normal => completion.respond(stream, include_usage),
        Behavior::Latency(delay) => {
            tokio::time::sleep(delay).await;
            completion.respond(stream, include_usage)
        }
        Behavior::Status { code, body } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [(CONTENT_TYPE, "application/json")], body).into_response()
        }
        Behavior::CutStreamAfter(events) => {
            let parts = if stream {
                completion.sse_events(include_usage)
            } else {
                let whole = completion.json().to_string().into_bytes();
                vec![Bytes::from(whole[..whole.len() / 2].to_vec())]
            };
            let content_type = if stream {
                "text/event-stream"
            } else {
                "application/json"
            };
            let cut = async_stream::stream! {
                for part in parts.into_iter().take(events) {
                    yield Ok::<Bytes, std::io::Error>(part);
                }
                tokio::time::sleep(CUT_GRACE).await;
                yield Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "the fake provider cut the response",
                ));
            };
            (
                [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
                Body::from_stream(cut),
            )
                .into_response()
        }
        Behavior::MalformedJson => {
            if stream {
                let events = vec![
                    completion.sse(&completion.chunk(
                        json!({"role": "assistant", "content": ""}),
                        None,
                        include_usage,
                    )),
                    Bytes::from_static(
                        b"data: {\"id\": \"chatcmpl-broken\", \"choices\": [{\"delta\": \n\n",
                    ),
                    Bytes::from_static(b"data: [DONE]\n\n"),
                ];
                sse_response(events)
            } else {
                (
                    StatusCode::OK,
                    [(CONTENT_TYPE, "application/json")],
                    "{\"id\": \"chatcmpl-broken\", \"object\": \"chat.completion\", \"choices\": [",
                )
                    .into_response()
            }
        }
    }
}

/// The completion being answered: the parts every chunk repeats.
struct Completion {
    id: String,
    created: u64,
    model: String,
}

impl Completion {
    fn respond(&self, stream: bool, include_usage: bool) -> Response {
        if stream {
            sse_response(self.sse_events(include_usage))
        } else {
            (
                StatusCode::OK,
                [(CONTENT_TYPE, "application/json")],
                self.json().to_string(),
            )
                .into_response()
        }
    }

    /// A non-streaming `chat.completion`, as OpenAI sends it.
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": FAKE_CONTENT, "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        })
    }

    /// The SSE events of a streamed completion: role chunk, one chunk per word, finish chunk,
    /// usage chunk (only if asked), `[DONE]`.
    fn sse_events(&self, include_usage: bool) -> Vec<Bytes> {
        let mut events = vec![self.sse(&self.chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
            include_usage,
        ))];
        for (index, word) in FAKE_CONTENT.split(' ').enumerate() {
            let piece = if index == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            };
            events.push(self.sse(&self.chunk(json!({"content": piece}), None, include_usage)));
        }
        events.push(self.sse(&self.chunk(json!({}), Some("stop"), include_usage)));
        if include_usage {
            events.push(self.sse(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": usage(),
            })));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        });
        if include_usage {
            // OpenAI sends `"usage": null` on every chunk but the last when usage was asked for.
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn sse(&self, event: &Value) -> Bytes {
        Bytes::from(format!("data: {event}\n\n"))
    }
}

fn usage() -> Value {
    json!({
        "prompt_tokens": FAKE_PROMPT_TOKENS,
        "completion_tokens": FAKE_COMPLETION_TOKENS,
        "total_tokens": FAKE_PROMPT_TOKENS + FAKE_COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

fn sse_response(events: Vec<Bytes>) -> Response {
    let body = futures::stream::iter(events.into_iter().map(Ok::<Bytes, std::io::Error>));
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn openai_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = json!({
        "error": {"message": message, "type": error_type, "param": null, "code": null}
    });
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
