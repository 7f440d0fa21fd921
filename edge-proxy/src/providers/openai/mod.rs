//! OpenAI and every server that speaks its API (vLLM, Ollama's `/v1`, LM Studio, Azure-hosted
//! compatible endpoints). The request body is forwarded as the client sent it, unknown fields
//! included, with the upstream model name and, for streams, usage reporting switched on.

#[cfg(test)]
pub(crate) mod golden_cases;
#[cfg(test)]
mod golden_tests;
mod stream;

pub use stream::OpenAiChunks;

use super::secret::ApiKey;
use super::transport::{CallMode, Upstream};
use super::{ChunkStream, ModelTarget, Provider, ProviderError};
use crate::api::chat::{ChatCompletion, ChatCompletionRequest};
use crate::api::embeddings::{EmbeddingsRequest, EmbeddingsResponse};
use serde_json::Value;

#[derive(Debug)]
pub struct OpenAiProvider {
    name: String,
    /// Parsed once when the config is compiled: parsing a URL (IDNA included) on every call
    /// was a measurable share of the edge's CPU per request.
    chat_completions_url: Endpoint,
    embeddings_url: Endpoint,
    api_key: ApiKey,
}

/// An endpoint URL, or its text when it does not parse (the call then fails as reqwest
/// reports it, as it did before URLs were parsed ahead).
#[derive(Debug)]
enum Endpoint {
    Parsed(reqwest::Url),
    Unparsed(String),
}

impl Endpoint {
    fn new(base_url: &str, path: &str) -> Self {
        let text = format!("{}/{path}", base_url.trim_end_matches('/'));
        match reqwest::Url::parse(&text) {
            Ok(url) => Self::Parsed(url),
            Err(_) => Self::Unparsed(text),
        }
    }

    fn post(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        match self {
            Self::Parsed(url) => http.post(url.clone()),
            Self::Unparsed(text) => http.post(text.as_str()),
        }
    }
}

impl OpenAiProvider {
    pub fn new(name: String, base_url: &str, api_key: ApiKey) -> Self {
        Self {
            name,
            chat_completions_url: Endpoint::new(base_url, "chat/completions"),
            embeddings_url: Endpoint::new(base_url, "embeddings"),
            api_key,
        }
    }

    fn upstream<'a>(&'a self, target: &'a ModelTarget) -> Upstream<'a> {
        Upstream {
            provider: &self.name,
            secret: &self.api_key,
            target,
        }
    }

    fn post(
        &self,
        target: &ModelTarget,
        endpoint: &Endpoint,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let request = endpoint.post(&target.http).json(body);
        if self.api_key.is_empty() {
            request
        } else {
            request.bearer_auth(self.api_key.expose())
        }
    }
}

/// The upstream body for a chat call: the client's request with the upstream model name; for
/// streams, `stream_options.include_usage` is always on so every stream can be billed (the
/// pipeline drops the usage chunk again if the client did not ask for it).
pub fn chat_body(
    target: &ModelTarget,
    request: &ChatCompletionRequest,
    mode: CallMode,
) -> Result<Value, ProviderError> {
    let mut body = serde_json::to_value(request).map_err(|err| ProviderError::InvalidResponse {
        provider: target.public_name.clone(),
        reason: format!("could not encode the request: {err}"),
    })?;
    if let Some(fields) = body.as_object_mut() {
        fields.insert(
            "model".to_owned(),
            Value::String(target.upstream_model.clone()),
        );
        match mode {
            CallMode::Stream => {
                fields.insert("stream".to_owned(), Value::Bool(true));
                let options = fields
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Some(options) = options.as_object_mut() {
                    options.insert("include_usage".to_owned(), Value::Bool(true));
                }
            }
            CallMode::Complete => {
                fields.remove("stream");
                fields.remove("stream_options");
            }
        }
    }
    Ok(body)
}

/// The upstream body for embeddings: floats always (the HTTP layer encodes base64 itself).
pub fn embeddings_body(
    target: &ModelTarget,
    request: &EmbeddingsRequest,
) -> Result<Value, ProviderError> {
    let mut body = serde_json::to_value(request).map_err(|err| ProviderError::InvalidResponse {
        provider: target.public_name.clone(),
        reason: format!("could not encode the request: {err}"),
    })?;
    if let Some(fields) = body.as_object_mut() {
        fields.insert(
            "model".to_owned(),
            Value::String(target.upstream_model.clone()),
        );
        fields.insert(
            "encoding_format".to_owned(),
            Value::String("float".to_owned()),
        );
    }
    Ok(body)
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn kind(&self) -> &'static str {
        "openai"
    }

    async fn chat(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        let body = chat_body(target, request, CallMode::Complete)?;
        let upstream = self.upstream(target);
        let call = upstream
            .send(
                self.post(target, &self.chat_completions_url, &body),
                CallMode::Complete,
            )
            .await?;
        call.json("a chat completion").await
    }

    async fn chat_stream(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let body = chat_body(target, request, CallMode::Stream)?;
        let upstream = self.upstream(target);
        let call = upstream
            .send(
                self.post(target, &self.chat_completions_url, &body),
                CallMode::Stream,
            )
            .await?;
        Ok(call.chunks(OpenAiChunks::default()))
    }

    async fn embeddings(
        &self,
        target: &ModelTarget,
        request: &EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let body = embeddings_body(target, request)?;
        let upstream = self.upstream(target);
        let call = upstream
            .send(
                self.post(target, &self.embeddings_url, &body),
                CallMode::Complete,
            )
            .await?;
        call.json("an embeddings response").await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn upstream_body_uses_upstream_model_and_always_requests_stream_usage() {
        let request = ChatCompletionRequest::parse(
            br#"{"model":"public","messages":[{"role":"user","content":"x"}],"stream":true,"top_p":0.5}"#,
        )
        .unwrap();
        let target = crate::providers::test_target("public", "gpt-4o-mini");
        let body = chat_body(&target, &request, CallMode::Stream).unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["top_p"], 0.5);
        let body = chat_body(&target, &request, CallMode::Complete).unwrap();
        assert!(body.get("stream").is_none());
    }
}
