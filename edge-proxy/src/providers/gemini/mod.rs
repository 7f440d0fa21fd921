//! Google's Gemini API (`generativelanguage.googleapis.com`): chat through
//! `models/{model}:generateContent` and `:streamGenerateContent?alt=sse`, embeddings through
//! `:embedContent` and `:batchEmbedContents`. The key travels in the `x-goog-api-key` header,
//! never in the URL, so it cannot leak into logs or error messages that quote URLs.

mod embeddings;
mod params;
mod request;
mod response;
mod stream;
mod wire;

#[cfg(test)]
mod golden_tests;

pub use stream::GeminiChunks;

use super::secret::ApiKey;
use super::transport::{CallMode, Upstream};
use super::{ChunkStream, ModelTarget, Provider, ProviderError};
use crate::api::chat::{ChatCompletion, ChatCompletionRequest};
use crate::api::embeddings::{EmbeddingsRequest, EmbeddingsResponse};
use embeddings::EmbedCall;
use serde::Serialize;

#[derive(Debug)]
pub struct GeminiProvider {
    name: String,
    base_url: String,
    api_key: ApiKey,
}

/// A 400 naming what Gemini cannot carry.
fn unsupported(param: impl Into<String>, reason: impl Into<String>) -> ProviderError {
    ProviderError::Unsupported {
        provider_kind: "gemini",
        param: param.into(),
        reason: reason.into(),
    }
}

/// `models/<name>`, unless the configured name is already a resource name
/// (`tunedModels/...`).
fn resource_name(upstream_model: &str) -> String {
    if upstream_model.contains('/') {
        upstream_model.to_owned()
    } else {
        format!("models/{upstream_model}")
    }
}

impl GeminiProvider {
    pub fn new(name: String, base_url: &str, api_key: ApiKey) -> Self {
        Self {
            name,
            base_url: base_url.trim_end_matches('/').to_owned(),
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

    /// `{base}/v1beta/{resource}:{method}`, each path segment escaped.
    fn url(&self, resource: &str, method: &str) -> Result<url::Url, ProviderError> {
        let invalid = |reason: String| ProviderError::Unreachable {
            provider: self.name.clone(),
            reason,
        };
        let mut url = url::Url::parse(&self.base_url)
            .map_err(|err| invalid(format!("invalid base URL: {err}")))?;
        let mut segments: Vec<&str> = resource.split('/').collect();
        let last = segments.pop().unwrap_or_default();
        let action = format!("{last}:{method}");
        url.path_segments_mut()
            .map_err(|()| invalid("the base URL cannot carry a path".to_owned()))?
            .pop_if_empty()
            .push("v1beta")
            .extend(segments)
            .push(&action);
        Ok(url)
    }

    fn post(
        &self,
        target: &ModelTarget,
        method: &str,
        body: &impl Serialize,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let mut url = self.url(&resource_name(&target.upstream_model), method)?;
        if method == "streamGenerateContent" {
            url.query_pairs_mut().append_pair("alt", "sse");
        }
        let request = target.http.post(url).json(body);
        Ok(if self.api_key.is_empty() {
            request
        } else {
            request.header("x-goog-api-key", self.api_key.expose())
        })
    }
}

#[async_trait::async_trait]
impl Provider for GeminiProvider {
    fn kind(&self) -> &'static str {
        "gemini"
    }

    async fn chat(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        let body = request::generate_content_request(request)?;
        let upstream = self.upstream(target);
        let call = upstream
            .send(
                self.post(target, "generateContent", &body)?,
                CallMode::Complete,
            )
            .await?;
        let answer = call.json("a GenerateContentResponse").await?;
        response::completion(answer, &target.upstream_model)
            .map_err(|reason| upstream.invalid(reason))
    }

    async fn chat_stream(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let body = request::generate_content_request(request)?;
        let call = self
            .upstream(target)
            .send(
                self.post(target, "streamGenerateContent", &body)?,
                CallMode::Stream,
            )
            .await?;
        Ok(call.chunks(GeminiChunks::new(&target.upstream_model)))
    }

    async fn embeddings(
        &self,
        target: &ModelTarget,
        request: &EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let resource = resource_name(&target.upstream_model);
        let upstream = self.upstream(target);
        let model = &target.upstream_model;
        match embeddings::embed_call(request, &resource)? {
            EmbedCall::Single(body) => {
                let call = upstream
                    .send(
                        self.post(target, "embedContent", &body)?,
                        CallMode::Complete,
                    )
                    .await?;
                let answer = call.json("an EmbedContentResponse").await?;
                Ok(embeddings::from_single(answer, model))
            }
            EmbedCall::Batch(body) => {
                let inputs = body.requests.len();
                let call = upstream
                    .send(
                        self.post(target, "batchEmbedContents", &body)?,
                        CallMode::Complete,
                    )
                    .await?;
                let answer = call.json("a BatchEmbedContentsResponse").await?;
                embeddings::from_batch(answer, inputs, model)
                    .map_err(|reason| upstream.invalid(reason))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn provider(base: &str) -> GeminiProvider {
        GeminiProvider::new("g".into(), base, ApiKey::new("k".into()))
    }

    #[test]
    fn urls_name_the_model_resource_and_method() {
        let provider = provider("https://generativelanguage.googleapis.com/");
        assert_eq!(
            provider
                .url(&resource_name("gemini-2.5-flash"), "generateContent")
                .unwrap()
                .as_str(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            provider
                .url(&resource_name("tunedModels/my-model"), "generateContent")
                .unwrap()
                .as_str(),
            "https://generativelanguage.googleapis.com/v1beta/tunedModels/my-model:generateContent"
        );
        assert_eq!(
            provider
                .url(&resource_name("odd name?#"), "embedContent")
                .unwrap()
                .as_str(),
            "https://generativelanguage.googleapis.com/v1beta/models/odd%20name%3F%23:embedContent"
        );
    }
}
