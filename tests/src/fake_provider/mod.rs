//! A fake model provider that speaks each real provider's wire format, chosen by path, on one
//! port: OpenAI (`/v1/chat/completions`, `/v1/embeddings`), Azure OpenAI
//! (`/openai/deployments/{deployment}/...?api-version=`), Anthropic (`/v1/messages`) and Gemini
//! (`/v1beta/models/{model}:generateContent` and friends). Bodies, streams, errors and usage are
//! shaped as the providers' public API references describe them, so the edge's adapters are
//! exercised against what they will meet in production.
//!
//! It records every request and every response body that was dropped before it finished (the
//! edge or the client hung up), and can be told to misbehave (see [`Behavior`]).

mod anthropic;
mod azure;
mod embedding;
mod gemini;
mod openai;
mod reply;
mod script;
mod server;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use embedding::{FAKE_EMBEDDING_DIMENSIONS, fake_embedding};
pub use script::Behavior;

/// The assistant message every successful text completion carries.
pub const FAKE_CONTENT: &str = "Hello from the fake upstream";
/// Prompt tokens the fake reports, whatever the prompt and the format.
pub const FAKE_PROMPT_TOKENS: u64 = 12;
/// Completion tokens the fake reports for [`FAKE_CONTENT`] (one per word; a longer scripted
/// stream reports one per chunk).
pub const FAKE_COMPLETION_TOKENS: u64 = 5;
/// The arguments of every tool call the fake makes (a JSON object, as a string).
pub const FAKE_TOOL_ARGUMENTS: &str = r#"{"location":"Paris","unit":"celsius"}"#;
/// Completion tokens the fake reports for a tool call.
pub const FAKE_TOOL_CALL_TOKENS: u64 = 9;

/// The provider wire formats the fake speaks (the edge's provider kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    OpenAi,
    AzureOpenAi,
    Anthropic,
    Gemini,
}

impl WireFormat {
    pub const ALL: [WireFormat; 4] = [
        WireFormat::OpenAi,
        WireFormat::AzureOpenAi,
        WireFormat::Anthropic,
        WireFormat::Gemini,
    ];

    /// The provider kind, as `tollgatectl providers create --kind` spells it.
    pub fn kind(self) -> &'static str {
        match self {
            WireFormat::OpenAi => "openai",
            WireFormat::AzureOpenAi => "azure_openai",
            WireFormat::Anthropic => "anthropic",
            WireFormat::Gemini => "gemini",
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions` or
    /// `/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse`.
    pub path: String,
    pub headers: HeaderMap,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    pub raw_body: Bytes,
    /// When the request arrived.
    pub at: Instant,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Whether `needle` appears in the path, any header value or the body.
    pub fn contains(&self, needle: &str) -> bool {
        self.path.contains(needle)
            || self
                .headers
                .values()
                .any(|value| String::from_utf8_lossy(value.as_bytes()).contains(needle))
            || String::from_utf8_lossy(&self.raw_body).contains(needle)
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }

    /// A query parameter's value.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.path.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

/// A response the fake had started (or was about to start) that went away unfinished because
/// the other side hung up: the edge cancelled the upstream call.
#[derive(Debug, Clone)]
pub struct Disconnect {
    /// Path and query of the request.
    pub path: String,
    /// When the fake noticed (the response body or the pending handler was dropped).
    pub at: Instant,
    /// Body pieces (SSE events, or the one JSON body) already handed to the connection.
    pub events_sent: usize,
}

pub(crate) struct Shared {
    behavior: Mutex<Behavior>,
    /// The key every request must carry; `None` accepts any non-empty key.
    api_key: Mutex<Option<String>>,
    requests: Mutex<Vec<RecordedRequest>>,
    disconnects: Mutex<Vec<Disconnect>>,
    connections: AtomicUsize,
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn behavior(&self) -> Behavior {
        lock(&self.behavior).clone()
    }

    pub(crate) fn api_key(&self) -> Option<String> {
        lock(&self.api_key).clone()
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        lock(&self.requests).push(request);
    }

    pub(crate) fn record_disconnect(&self, disconnect: Disconnect) {
        lock(&self.disconnects).push(disconnect);
    }

    /// A number unique to this fake, for response ids.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
    /// Binds an ephemeral port and starts serving with [`Behavior::Normal`], accepting any
    /// non-empty API key (see [`FakeProvider::set_api_key`]).
    pub async fn start() -> FakeProvider {
        let shared = Arc::new(Shared {
            behavior: Mutex::new(Behavior::Normal),
            api_key: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            disconnects: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        });
        let (addr, server) = server::serve(Arc::clone(&shared)).await;
        FakeProvider {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the OpenAI base URL (the edge appends `/chat/completions`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, with no path.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL a provider of `format` is configured with, following each provider's own
    /// convention: OpenAI's includes `/v1`; Azure's is the resource endpoint; Anthropic's
    /// (`https://api.anthropic.com`) and Gemini's (`https://generativelanguage.googleapis.com`)
    /// are the bare host, the adapter adding `/v1/messages` or `/v1beta/models/...`.
    pub fn base_url_for(&self, format: WireFormat) -> String {
        match format {
            WireFormat::OpenAi => self.base_url(),
            WireFormat::AzureOpenAi | WireFormat::Anthropic | WireFormat::Gemini => self.root_url(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how every following request is answered.
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.shared.behavior) = behavior;
    }

    /// Requires exactly this API key from now on (in each format's own header); a missing or
    /// different key gets the provider's own authentication error.
    pub fn set_api_key(&self, key: &str) {
        *lock(&self.shared.api_key) = Some(key.to_owned());
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

    /// Responses abandoned by the other side so far, oldest first.
    pub fn disconnects(&self) -> Vec<Disconnect> {
        lock(&self.shared.disconnects).clone()
    }

    /// Waits until a response has been abandoned by the other side and returns the first such
    /// disconnect. Panics after `timeout`, saying how many requests came in.
    pub async fn wait_for_disconnect(&self, timeout: Duration) -> Disconnect {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(first) = lock(&self.shared.disconnects).first().cloned() {
                return first;
            }
            assert!(
                Instant::now() < deadline,
                "the fake provider saw no disconnect within {timeout:?} ({} requests received)",
                self.request_count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl FakeProvider {
    /// Waits until `count` responses have been abandoned by the other side and returns them,
    /// oldest first. Panics after `timeout`.
    pub async fn wait_for_disconnects(&self, count: usize, timeout: Duration) -> Vec<Disconnect> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.disconnects();
            if seen.len() >= count {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the fake provider saw {} of {count} disconnects within {timeout:?}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests;
