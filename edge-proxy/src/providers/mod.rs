//! Provider adapters behind one trait. Each adapter owns its conversion from our parsed request
//! to its upstream's wire format; the request pipeline never matches on a provider kind.

pub mod mock;
pub mod openai;
pub mod sse;

use crate::api::chat::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest};
use futures::stream::BoxStream;

/// Streamed chunks in OpenAI's chunk shape, whatever the upstream spoke.
pub type ChunkStream = BoxStream<'static, Result<ChatCompletionChunk, ProviderError>>;

/// Which model a request resolved to: the name the client used and the upstream's own name.
#[derive(Debug, Clone)]
pub struct ModelTarget {
    pub public_name: String,
    pub upstream_model: String,
}

#[async_trait::async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    async fn chat(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChatCompletion, ProviderError>;

    /// Resolves once the upstream accepted the request (headers received), so failures before
    /// the first byte can still become a proper HTTP error for the client.
    async fn chat_stream(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChunkStream, ProviderError>;
}

/// Upstream failures. Messages never contain provider secrets: adapters redact before building.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("Upstream provider '{provider}' returned status {status}: {message}")]
    UpstreamStatus {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("Upstream provider '{provider}' did not answer within {after_ms} ms.")]
    Timeout { provider: String, after_ms: u64 },
    #[error("Upstream provider '{provider}' is unreachable: {reason}")]
    Unreachable { provider: String, reason: String },
    #[error("Upstream provider '{provider}' sent an invalid response: {reason}")]
    InvalidResponse { provider: String, reason: String },
    #[error("The stream from upstream provider '{provider}' broke off: {reason}")]
    StreamInterrupted { provider: String, reason: String },
}

/// A client like the one `main` builds, for unit tests (which have no `main` to install the
/// TLS crypto provider).
#[cfg(test)]
pub(crate) fn test_http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
