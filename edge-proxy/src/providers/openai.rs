//! OpenAI and every server that speaks its API (vLLM, Ollama's `/v1`, LM Studio, Azure-hosted
//! compatible endpoints). The request body is forwarded as the client sent it, with the
//! upstream model name and, for streams, usage reporting switched on.

use super::sse::SseDecoder;
use super::{ChunkStream, ModelTarget, Provider, ProviderError};
use crate::api::chat::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest};
use futures::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Largest upstream error body we read to extract a message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// Longest upstream error message we repeat to the client.
const MAX_ERROR_MESSAGE_CHARS: usize = 500;

#[derive(Debug)]
pub struct OpenAiProvider {
    name: String,
    chat_url: String,
    api_key: ApiKey,
    timeout: Duration,
    client: reqwest::Client,
}

/// A provider secret: never printed, and scrubbed from anything an upstream echoes back.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

impl ApiKey {
    pub fn new(key: String) -> Self {
        Self(key)
    }

    fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, "[redacted]")
        }
    }
}

impl OpenAiProvider {
    pub fn new(
        name: String,
        base_url: &str,
        api_key: ApiKey,
        timeout: Duration,
        client: reqwest::Client,
    ) -> Self {
        Self {
            name,
            chat_url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key,
            timeout,
            client,
        }
    }

    fn body(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
        stream: bool,
    ) -> Result<Value, ProviderError> {
        let mut body =
            serde_json::to_value(request).map_err(|err| self.invalid(err.to_string()))?;
        if let Some(fields) = body.as_object_mut() {
            fields.insert(
                "model".to_owned(),
                Value::String(target.upstream_model.clone()),
            );
            if stream {
                fields.insert("stream".to_owned(), Value::Bool(true));
                // Always ask for usage so every stream can be billed; the pipeline drops the
                // usage chunk again if the client did not ask for it.
                let options = fields
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Some(options) = options.as_object_mut() {
                    options.insert("include_usage".to_owned(), Value::Bool(true));
                }
            } else {
                fields.remove("stream");
                fields.remove("stream_options");
            }
        }
        Ok(body)
    }

    /// Sends the request and waits for the response headers within the provider's deadline.
    async fn send(&self, body: &Value) -> Result<(reqwest::Response, Instant), ProviderError> {
        let started = Instant::now();
        let mut request = self.client.post(&self.chat_url).json(body);
        if !self.api_key.0.is_empty() {
            request = request.bearer_auth(&self.api_key.0);
        }
        let response = tokio::time::timeout(self.timeout, request.send())
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|err| self.unreachable(&err))?;
        let status = response.status();
        if !status.is_success() {
            let message = self.error_message(status, response).await;
            return Err(ProviderError::UpstreamStatus {
                provider: self.name.clone(),
                status: status.as_u16(),
                message,
            });
        }
        Ok((response, started))
    }

    /// The upstream's own error message, redacted. For auth failures only the status is kept:
    /// upstreams echo parts of the key there.
    async fn error_message(
        &self,
        status: reqwest::StatusCode,
        response: reqwest::Response,
    ) -> String {
        if matches!(status.as_u16(), 401 | 403) {
            return "the upstream rejected the gateway's credentials for this provider".to_owned();
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(Ok(piece)) = stream.next().await {
            body.extend_from_slice(&piece);
            if body.len() >= MAX_ERROR_BODY_BYTES {
                break;
            }
        }
        let text = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|json| {
                json.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let text: String = text.chars().take(MAX_ERROR_MESSAGE_CHARS).collect();
        let text = self.api_key.redact(&text);
        if text.trim().is_empty() {
            status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            text
        }
    }

    fn timed_out(&self) -> ProviderError {
        ProviderError::Timeout {
            provider: self.name.clone(),
            after_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn unreachable(&self, err: &reqwest::Error) -> ProviderError {
        let reason = if err.is_connect() {
            "connection failed".to_owned()
        } else if err.is_timeout() {
            return self.timed_out();
        } else {
            self.api_key.redact(&err.without_url_string())
        };
        ProviderError::Unreachable {
            provider: self.name.clone(),
            reason,
        }
    }

    fn invalid(&self, reason: String) -> ProviderError {
        ProviderError::InvalidResponse {
            provider: self.name.clone(),
            reason: self.api_key.redact(&reason),
        }
    }
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(url.as_str(), "<upstream>");
        }
        text
    }
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    async fn chat(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        let body = self.body(target, request, false)?;
        let (response, started) = self.send(&body).await?;
        let remaining = self.timeout.saturating_sub(started.elapsed());
        let bytes = tokio::time::timeout(remaining, response.bytes())
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|err| self.unreachable(&err))?;
        serde_json::from_slice(&bytes)
            .map_err(|err| self.invalid(format!("not a chat completion: {err}")))
    }

    async fn chat_stream(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let body = self.body(target, request, true)?;
        let (response, _) = self.send(&body).await?;
        let provider = self.name.clone();
        let api_key = self.api_key.clone();
        // Between chunks the same deadline applies as an idle gap, so a stalled upstream ends.
        let idle = self.timeout;
        let mut bytes = response.bytes_stream();
        let stream = async_stream::stream! {
            let mut decoder = SseDecoder::new();
            let interrupted = |reason: String| ProviderError::StreamInterrupted {
                provider: provider.clone(),
                reason: api_key.redact(&reason),
            };
            loop {
                let piece = match tokio::time::timeout(idle, bytes.next()).await {
                    Err(_) => {
                        yield Err(interrupted(format!("no data for {} ms", idle.as_millis())));
                        return;
                    }
                    Ok(None) => {
                        yield Err(interrupted("the upstream closed the stream before [DONE]".to_owned()));
                        return;
                    }
                    Ok(Some(Err(err))) => {
                        yield Err(interrupted(err.without_url_string()));
                        return;
                    }
                    Ok(Some(Ok(piece))) => piece,
                };
                let events = match decoder.feed(&piece) {
                    Ok(events) => events,
                    Err(err) => {
                        yield Err(interrupted(err.to_string()));
                        return;
                    }
                };
                for event in events {
                    if event.data == "[DONE]" {
                        return;
                    }
                    match serde_json::from_str::<ChatCompletionChunk>(&event.data) {
                        Ok(chunk) => yield Ok(chunk),
                        Err(err) => {
                            let upstream_error = serde_json::from_str::<Value>(&event.data)
                                .ok()
                                .and_then(|json| json.pointer("/error/message").and_then(Value::as_str).map(str::to_owned));
                            let reason = upstream_error.unwrap_or_else(|| format!("unparseable chunk: {err}"));
                            yield Err(interrupted(reason));
                            return;
                        }
                    }
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_are_redacted_and_not_debug_printed() {
        let key = ApiKey::new("sk-abc".into());
        assert_eq!(key.redact("bad key sk-abc!"), "bad key [redacted]!");
        assert_eq!(format!("{key:?}"), "ApiKey(..)");
    }

    #[test]
    fn upstream_body_uses_upstream_model_and_always_requests_stream_usage() {
        let provider = OpenAiProvider::new(
            "p".into(),
            "http://localhost/v1/",
            ApiKey::new(String::new()),
            Duration::from_secs(1),
            crate::providers::test_http_client(),
        );
        assert_eq!(provider.chat_url, "http://localhost/v1/chat/completions");
        let request = ChatCompletionRequest::parse(
            br#"{"model":"public","messages":[{"role":"user","content":"x"}],"stream":true,"top_p":0.5}"#,
        )
        .unwrap();
        let target = ModelTarget {
            public_name: "public".into(),
            upstream_model: "gpt-4o-mini".into(),
        };
        let body = provider.body(&target, &request, true).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["top_p"], 0.5);
        let body = provider.body(&target, &request, false).unwrap();
        assert!(body.get("stream").is_none());
    }
}
