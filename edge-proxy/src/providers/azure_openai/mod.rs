//! Azure OpenAI: OpenAI's bodies and stream, addressed by deployment
//! (`{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`) and
//! authenticated with an `api-key` header. The model's upstream name is the deployment.

use super::openai::{OpenAiChunks, chat_body, embeddings_body};
use super::secret::ApiKey;
use super::transport::{CallMode, Upstream};
use super::{ChunkStream, ModelTarget, Provider, ProviderError};
use crate::api::chat::{ChatCompletion, ChatCompletionRequest};
use crate::api::embeddings::{EmbeddingsRequest, EmbeddingsResponse};
use serde_json::Value;

/// The first API version that accepts `stream_options`.
const STREAM_OPTIONS_SINCE: &str = "2024-09-01";

/// The GA version current when this adapter was written; providers can pin another.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

#[derive(Debug)]
pub struct AzureOpenAiProvider {
    name: String,
    endpoint: String,
    api_version: String,
    api_key: ApiKey,
}

impl AzureOpenAiProvider {
    pub fn new(name: String, endpoint: &str, api_version: &str, api_key: ApiKey) -> Self {
        Self {
            name,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            api_version: if api_version.is_empty() {
                DEFAULT_API_VERSION.to_owned()
            } else {
                api_version.to_owned()
            },
            api_key,
        }
    }

    fn url(&self, deployment: &str, operation: &str) -> Result<url::Url, ProviderError> {
        let mut url =
            url::Url::parse(&self.endpoint).map_err(|err| ProviderError::Unreachable {
                provider: self.name.clone(),
                reason: format!("invalid endpoint: {err}"),
            })?;
        url.path_segments_mut()
            .map_err(|()| ProviderError::Unreachable {
                provider: self.name.clone(),
                reason: "the endpoint cannot carry a path".to_owned(),
            })?
            .pop_if_empty()
            .extend(["openai", "deployments", deployment])
            .extend(operation.split('/'));
        url.query_pairs_mut()
            .append_pair("api-version", &self.api_version);
        Ok(url)
    }

    fn post(
        &self,
        target: &ModelTarget,
        operation: &str,
        body: &Value,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let url = self.url(&target.upstream_model, operation)?;
        Ok(target
            .http
            .post(url)
            .header("api-key", self.api_key.expose())
            .json(body))
    }

    /// Azure accepts `stream_options` (usage in streams) from API version 2024-09-01-preview
    /// on and refuses the whole request before that. Versions are ISO dates, which compare as
    /// strings.
    fn accepts_stream_options(&self) -> bool {
        self.api_version.as_str() >= STREAM_OPTIONS_SINCE
    }

    fn upstream<'a>(&'a self, target: &'a ModelTarget) -> Upstream<'a> {
        Upstream {
            provider: &self.name,
            secret: &self.api_key,
            target,
        }
    }
}

#[async_trait::async_trait]
impl Provider for AzureOpenAiProvider {
    fn kind(&self) -> &'static str {
        "azure_openai"
    }

    async fn chat(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        let body = chat_body(target, request, CallMode::Complete)?;
        let request = self.post(target, "chat/completions", &body)?;
        let call = self
            .upstream(target)
            .send(request, CallMode::Complete)
            .await?;
        call.json("a chat completion").await
    }

    async fn chat_stream(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let mut body = chat_body(target, request, CallMode::Stream)?;
        if !self.accepts_stream_options() {
            // Without usage in the stream the edge counts the output itself.
            if let Some(fields) = body.as_object_mut() {
                fields.remove("stream_options");
            }
        }
        let request = self.post(target, "chat/completions", &body)?;
        let call = self
            .upstream(target)
            .send(request, CallMode::Stream)
            .await?;
        Ok(call.chunks(OpenAiChunks::default()))
    }

    async fn embeddings(
        &self,
        target: &ModelTarget,
        request: &EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let body = embeddings_body(target, request)?;
        let request = self.post(target, "embeddings", &body)?;
        let call = self
            .upstream(target)
            .send(request, CallMode::Complete)
            .await?;
        call.json("an embeddings response").await
    }
}

#[cfg(test)]
mod golden_tests;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_name_the_deployment_and_api_version() {
        let provider = AzureOpenAiProvider::new(
            "az".into(),
            "https://example.openai.azure.com/",
            "",
            ApiKey::new("k".into()),
        );
        assert_eq!(
            provider
                .url("gpt4o-prod", "chat/completions")
                .unwrap()
                .as_str(),
            "https://example.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
        );
    }

    #[tokio::test]
    async fn versions_before_stream_options_get_a_stream_without_them() {
        let old = |base_url: &str| -> Box<dyn Provider> {
            Box::new(AzureOpenAiProvider::new(
                "az".into(),
                base_url,
                "2024-06-01",
                ApiKey::new("k".into()),
            ))
        };
        let request = serde_json::json!({"model": "m", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hi"}]});
        let record = crate::providers::golden::chat(
            old,
            "dep",
            request,
            crate::providers::golden::UpstreamReply::sse("data: [DONE]\n\n"),
        )
        .await;
        let body = &record.upstream_request.unwrap().body;
        assert!(body.get("stream_options").is_none(), "{body}");
        assert_eq!(body["stream"], true);
        for (version, accepts) in [
            ("2024-06-01", false),
            ("2024-08-01-preview", false),
            ("2024-09-01-preview", true),
            ("2024-10-21", true),
            ("2025-04-01-preview", true),
        ] {
            let provider = AzureOpenAiProvider::new(
                "az".into(),
                "https://x.example",
                version,
                ApiKey::new(String::new()),
            );
            assert_eq!(provider.accepts_stream_options(), accepts, "{version}");
        }
    }
}
