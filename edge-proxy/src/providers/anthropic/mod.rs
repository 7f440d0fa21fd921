//! Anthropic's Messages API (`POST /v1/messages`, `x-api-key`, `anthropic-version`).
//! PLACEHOLDER: the adapter is being written; this stub only fixes the constructor's shape.

use super::secret::ApiKey;
use super::{ChunkStream, ModelTarget, Provider, ProviderError};
use crate::api::chat::{ChatCompletion, ChatCompletionRequest};

/// The API version this adapter speaks unless the provider pins another.
pub const DEFAULT_API_VERSION: &str = "2023-06-01";

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
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    async fn chat(
        &self,
        _target: &ModelTarget,
        _request: &ChatCompletionRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        Err(ProviderError::Unreachable {
            provider: format!(
                "{} {} {} {:?}",
                self.name, self.base_url, self.api_version, self.api_key
            ),
            reason: "not yet".into(),
        })
    }

    async fn chat_stream(
        &self,
        _target: &ModelTarget,
        _request: &ChatCompletionRequest,
    ) -> Result<ChunkStream, ProviderError> {
        Err(ProviderError::Unreachable {
            provider: self.name.clone(),
            reason: "not yet".into(),
        })
    }
}
