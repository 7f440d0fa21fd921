//! Google Gemini's `generateContent` / `streamGenerateContent` and embeddings.
//! PLACEHOLDER: the adapter is being written; this stub only fixes the constructor's shape.

use super::secret::ApiKey;
use super::{ChunkStream, ModelTarget, Provider, ProviderError};
use crate::api::chat::{ChatCompletion, ChatCompletionRequest};

#[derive(Debug)]
pub struct GeminiProvider {
    name: String,
    base_url: String,
    api_key: ApiKey,
}

impl GeminiProvider {
    pub fn new(name: String, base_url: &str, api_key: ApiKey) -> Self {
        Self {
            name,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        }
    }
}

#[async_trait::async_trait]
impl Provider for GeminiProvider {
    fn kind(&self) -> &'static str {
        "gemini"
    }

    async fn chat(
        &self,
        _target: &ModelTarget,
        _request: &ChatCompletionRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        Err(ProviderError::Unreachable {
            provider: format!("{} {} {:?}", self.name, self.base_url, self.api_key),
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
