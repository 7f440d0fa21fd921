//! Provider adapters behind one trait. Each adapter owns its conversion from our parsed request
//! (OpenAI's shape, the gateway's lingua franca) to its upstream's wire format and back; the
//! request pipeline never matches on a provider kind. The HTTP mechanics every adapter shares
//! (deadlines by phase, error bodies, SSE framing, secret redaction) live in `transport`.

pub mod anthropic;
pub mod azure_openai;
pub mod clients;
pub mod deadlines;
pub mod gemini;
#[cfg(test)]
pub mod golden;
pub mod mock;
pub mod openai;
pub mod resolver;
pub mod secret;
pub mod sse;
pub mod transport;

use crate::api::chat::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest};
use crate::api::embeddings::{EmbeddingsRequest, EmbeddingsResponse};
pub use deadlines::{Deadlines, TimeoutPhase};
use futures::stream::BoxStream;

/// Streamed chunks in OpenAI's chunk shape, whatever the upstream spoke.
pub type ChunkStream = BoxStream<'static, Result<ChatCompletionChunk, ProviderError>>;

/// Which model a request resolved to, and how the call to it is bounded.
#[derive(Debug, Clone)]
pub struct ModelTarget {
    /// The name the client used.
    pub public_name: String,
    /// The upstream's own name (for Azure, the deployment).
    pub upstream_model: String,
    pub deadlines: Deadlines,
    /// A pooled client whose connect timeout is `deadlines.connect` (reqwest sets it per client).
    pub http: reqwest::Client,
}

#[async_trait::async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The provider kind as configured ("openai", "anthropic", ...), for error messages.
    fn kind(&self) -> &'static str;

    async fn chat(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChatCompletion, ProviderError>;

    /// Resolves once the upstream accepted the request (headers received), so failures before
    /// the first byte can still become a proper HTTP error for the client. The stream enforces
    /// the first-token, idle and total deadlines itself.
    async fn chat_stream(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChunkStream, ProviderError>;

    /// Embeddings, always as floats (the HTTP layer encodes base64 when the client asks).
    async fn embeddings(
        &self,
        _target: &ModelTarget,
        _request: &EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        Err(ProviderError::Unsupported {
            provider_kind: self.kind(),
            param: "model".to_owned(),
            reason: "this model's provider does not serve embeddings".to_owned(),
        })
    }
}

/// Upstream failures. Messages never contain provider secrets: adapters redact before building.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("Upstream provider '{provider}' returned status {status}: {message}")]
    UpstreamStatus {
        provider: String,
        status: u16,
        message: String,
        /// The upstream's `Retry-After` in seconds, passed on with a 429.
        retry_after_secs: Option<u64>,
    },
    #[error(
        "Upstream provider '{provider}' timed out in phase '{}' (no {} within {after_ms} ms).",
        phase.as_str(),
        phase.awaited()
    )]
    Timeout {
        provider: String,
        phase: TimeoutPhase,
        after_ms: u64,
    },
    #[error("Upstream provider '{provider}' is unreachable: {reason}")]
    Unreachable { provider: String, reason: String },
    #[error("Upstream provider '{provider}' sent an invalid response: {reason}")]
    InvalidResponse { provider: String, reason: String },
    #[error("The stream from upstream provider '{provider}' broke off: {reason}")]
    StreamInterrupted { provider: String, reason: String },
    /// The request uses something this provider kind cannot do; a 400 naming the parameter,
    /// never a silent drop.
    #[error("'{param}' is not supported by {provider_kind} models: {reason}")]
    Unsupported {
        provider_kind: &'static str,
        param: String,
        reason: String,
    },
}

/// A client like the one `main` builds, for unit tests (which have no `main` to install the
/// TLS crypto provider).
#[cfg(test)]
pub(crate) fn test_http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The client pool `main` builds, for unit tests.
#[cfg(test)]
pub(crate) fn test_http_clients() -> clients::HttpClients {
    let _ = rustls::crypto::ring::default_provider().install_default();
    clients::HttpClients::new()
}

/// A target for unit tests: default deadlines, the test client.
#[cfg(test)]
pub(crate) fn test_target(public_name: &str, upstream_model: &str) -> ModelTarget {
    ModelTarget {
        public_name: public_name.to_owned(),
        upstream_model: upstream_model.to_owned(),
        deadlines: Deadlines::default(),
        http: test_http_client(),
    }
}
