//! Anthropic's Messages API (`POST {base_url}/v1/messages`, `x-api-key`, `anthropic-version`).
//! The request is translated from OpenAI's shape (`request`, `messages`, `tools`), the answer
//! back (`response`), the stream event by event (`stream`); `wire` holds Anthropic's JSON.
//! `base_url` is the API root, e.g. `https://api.anthropic.com`.

mod messages;
mod request;
mod response;
mod stream;
mod tools;
mod wire;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;

pub use request::DEFAULT_MAX_TOKENS;
pub use stream::AnthropicChunks;
pub use tools::JSON_TOOL_NAME;

use super::secret::ApiKey;
use super::transport::{CallMode, Upstream};
use super::{ChunkStream, ModelTarget, Provider, ProviderError};
use crate::api::chat::{ChatCompletion, ChatCompletionRequest};
use request::Translated;
use wire::MessageResponse;

/// The API version this adapter speaks unless the provider pins another.
pub const DEFAULT_API_VERSION: &str = "2023-06-01";

/// The provider kind, as configured and as named in errors.
const KIND: &str = "anthropic";

#[derive(Debug)]
pub struct AnthropicProvider {
    name: String,
    base_url: String,
    api_version: String,
    api_key: ApiKey,
}

impl AnthropicProvider {
    pub fn new(name: String, base_url: &str, api_version: &str, api_key: ApiKey) -> Self {
        Self {
            name,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_version: if api_version.is_empty() {
                DEFAULT_API_VERSION.to_owned()
            } else {
                api_version.to_owned()
            },
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

    fn post(&self, target: &ModelTarget, translated: &Translated<'_>) -> reqwest::RequestBuilder {
        let request = target
            .http
            .post(format!("{}/v1/messages", self.base_url))
            .header("anthropic-version", &self.api_version)
            .json(&translated.body);
        if self.api_key.is_empty() {
            request
        } else {
            request.header("x-api-key", self.api_key.expose())
        }
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn chat(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        let translated = request::translate(&target.upstream_model, request, false)?;
        let call = self
            .upstream(target)
            .send(self.post(target, &translated), CallMode::Complete)
            .await?;
        let message: MessageResponse = call.json("an Anthropic message").await?;
        let created = crate::auth::now_unix_ms() / 1000;
        Ok(response::completion(message, translated.json_mode, created))
    }

    async fn chat_stream(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let translated = request::translate(&target.upstream_model, request, true)?;
        let call = self
            .upstream(target)
            .send(self.post(target, &translated), CallMode::Stream)
            .await?;
        Ok(call.chunks(AnthropicChunks::new(translated.json_mode)))
    }
}
