//! The built-in mock provider: deterministic answers with configurable latency, length and
//! streaming pace, so demos, tests and benchmarks run offline and repeatably.

mod embeddings;

pub use embeddings::{DEFAULT_DIMENSIONS, MAX_DIMENSIONS};

use super::{ChunkStream, ModelTarget, Provider, ProviderError};
use crate::api::chat::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice, ChunkChoice, Delta,
    ResponseMessage, Usage,
};
use crate::api::embeddings::{
    Embedding, EmbeddingInput, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage,
};
use serde_json::Map;
use std::time::Duration;

/// Output length when the provider's settings leave it at 0.
pub const DEFAULT_OUTPUT_TOKENS: u32 = 16;

/// Up to this many vector components are generated on the async thread; larger requests go to
/// the blocking pool (generation is about as costly as hashing the same number of bytes).
const INLINE_EMBEDDING_COMPONENTS: usize = 64 * 1024;

const REPLY_WORDS: &[&str] = &[
    "Tollgate", "mock", "reply:", "the", "gateway", "is", "up", "and", "routed", "your", "request",
    "to", "the", "built-in", "mock", "model,", "so", "no", "provider", "key", "was", "needed.",
];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MockSettings {
    pub latency_ms: u32,
    pub output_tokens: u32,
    pub chunk_interval_ms: u32,
}

#[derive(Debug)]
pub struct MockProvider {
    settings: MockSettings,
}

/// What the mock will answer for one request, decided before any waiting.
struct Reply {
    words: Vec<&'static str>,
    prompt_tokens: u64,
    finish_reason: &'static str,
}

impl MockProvider {
    pub fn new(settings: MockSettings) -> Self {
        Self { settings }
    }

    fn reply(&self, request: &ChatCompletionRequest) -> Reply {
        let configured = match self.settings.output_tokens {
            0 => DEFAULT_OUTPUT_TOKENS,
            n => n,
        };
        let (count, finish_reason) = match request.output_token_cap() {
            Some(cap) if cap < configured => (cap, "length"),
            _ => (configured, "stop"),
        };
        let words = REPLY_WORDS
            .iter()
            .copied()
            .cycle()
            .take(count as usize)
            .collect();
        Reply {
            words,
            prompt_tokens: approximate_prompt_tokens(request),
            finish_reason,
        }
    }

    async fn wait_latency(&self) {
        if self.settings.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(u64::from(self.settings.latency_ms))).await;
        }
    }
}

/// Whitespace words plus 3 tokens of framing per message: a stand-in until real token counting
/// lands, good enough for a mock's usage numbers to be plausible and deterministic.
fn approximate_prompt_tokens(request: &ChatCompletionRequest) -> u64 {
    request
        .messages
        .iter()
        .map(|message| {
            let words = message
                .content
                .as_ref()
                .map_or(0, |content| content.text().split_whitespace().count());
            words as u64 + 3
        })
        .sum()
}

fn completion_id() -> String {
    format!("chatcmpl-mock-{}", crate::ids::random_uuid().simple())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0))
}

fn chunk(
    id: &str,
    created: i64,
    model: &str,
    delta: Delta,
    finish: Option<&str>,
) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: id.to_owned(),
        object: "chat.completion.chunk".to_owned(),
        created,
        model: model.to_owned(),
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish.map(str::to_owned),
            logprobs: None,
            extra: Map::new(),
        }],
        usage: None,
        extra: Map::new(),
    }
}

#[async_trait::async_trait]
impl Provider for MockProvider {
    fn kind(&self) -> &'static str {
        "mock"
    }

    async fn chat(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChatCompletion, ProviderError> {
        let reply = self.reply(request);
        self.wait_latency().await;
        let completion_tokens = reply.words.len() as u64;
        Ok(ChatCompletion {
            id: completion_id(),
            object: "chat.completion".to_owned(),
            created: now_unix(),
            model: target.public_name.clone(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant".to_owned(),
                    content: Some(reply.words.join(" ")),
                    extra: Map::new(),
                },
                finish_reason: Some(reply.finish_reason.to_owned()),
                logprobs: None,
                extra: Map::new(),
            }],
            usage: Some(Usage::new(reply.prompt_tokens, completion_tokens)),
            extra: Map::new(),
        })
    }

    async fn chat_stream(
        &self,
        target: &ModelTarget,
        request: &ChatCompletionRequest,
    ) -> Result<ChunkStream, ProviderError> {
        let reply = self.reply(request);
        self.wait_latency().await;
        let interval = Duration::from_millis(u64::from(self.settings.chunk_interval_ms));
        let model = target.public_name.clone();
        let stream = async_stream::stream! {
            let id = completion_id();
            let created = now_unix();
            let role = Delta { role: Some("assistant".to_owned()), content: Some(String::new()), ..Delta::default() };
            yield Ok(chunk(&id, created, &model, role, None));
            for (index, word) in reply.words.iter().enumerate() {
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let text = if index == 0 { (*word).to_owned() } else { format!(" {word}") };
                let delta = Delta { content: Some(text), ..Delta::default() };
                yield Ok(chunk(&id, created, &model, delta, None));
            }
            yield Ok(chunk(&id, created, &model, Delta::default(), Some(reply.finish_reason)));
            let mut usage_chunk = chunk(&id, created, &model, Delta::default(), None);
            usage_chunk.choices.clear();
            usage_chunk.usage = Some(Usage::new(reply.prompt_tokens, reply.words.len() as u64));
            yield Ok(usage_chunk);
        };
        Ok(Box::pin(stream))
    }

    /// Deterministic pseudo-random unit vectors, one per input (see `mock/embeddings.rs`),
    /// `dimensions` long (default [`DEFAULT_DIMENSIONS`], at most [`MAX_DIMENSIONS`]).
    async fn embeddings(
        &self,
        target: &ModelTarget,
        request: &EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let dimensions = request.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
        if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
            return Err(ProviderError::Unsupported {
                provider_kind: self.kind(),
                param: "dimensions".to_owned(),
                reason: format!("mock embeddings have 1 to {MAX_DIMENSIONS} dimensions"),
            });
        }
        let dimensions = dimensions as usize;
        let prompt_tokens = embeddings::prompt_tokens(&request.input);
        let vectors =
            if request.input.len().saturating_mul(dimensions) <= INLINE_EMBEDDING_COMPONENTS {
                embeddings::vectors(&request.input, dimensions)
            } else {
                let input: EmbeddingInput = request.input.clone();
                tokio::task::spawn_blocking(move || embeddings::vectors(&input, dimensions))
                    .await
                    .map_err(|err| ProviderError::InvalidResponse {
                        provider: self.kind().to_owned(),
                        reason: format!("the embedding task failed: {err}"),
                    })?
            };
        self.wait_latency().await;
        Ok(EmbeddingsResponse {
            object: "list".to_owned(),
            data: vectors
                .into_iter()
                .zip(0u32..)
                .map(|(embedding, index)| Embedding {
                    object: "embedding".to_owned(),
                    index,
                    embedding,
                })
                .collect(),
            model: target.public_name.clone(),
            usage: Some(EmbeddingsUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures::StreamExt;

    fn request(body: &str) -> ChatCompletionRequest {
        ChatCompletionRequest::parse(body.as_bytes()).unwrap()
    }

    fn target() -> ModelTarget {
        crate::providers::test_target("mock-small", "mock-small")
    }

    #[tokio::test]
    async fn answers_deterministically_with_the_configured_length() {
        let provider = MockProvider::new(MockSettings {
            output_tokens: 5,
            ..MockSettings::default()
        });
        let body = r#"{"model":"mock-small","messages":[{"role":"user","content":"two words"}]}"#;
        let a = provider.chat(&target(), &request(body)).await.unwrap();
        let b = provider.chat(&target(), &request(body)).await.unwrap();
        assert_eq!(a.choices[0].message.content, b.choices[0].message.content);
        assert_eq!(a.usage, Some(Usage::new(5, 5)));
        assert_eq!(a.choices[0].finish_reason.as_deref(), Some("stop"));
    }

    #[tokio::test]
    async fn max_tokens_cuts_the_reply_with_finish_reason_length() {
        let provider = MockProvider::new(MockSettings::default());
        let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":3}"#;
        let reply = provider.chat(&target(), &request(body)).await.unwrap();
        assert_eq!(reply.usage.unwrap().completion_tokens, 3);
        assert_eq!(reply.choices[0].finish_reason.as_deref(), Some("length"));
    }

    #[tokio::test]
    async fn stream_has_role_words_finish_and_usage_chunks() {
        let provider = MockProvider::new(MockSettings {
            output_tokens: 4,
            ..MockSettings::default()
        });
        let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
        let chunks: Vec<_> = provider
            .chat_stream(&target(), &request(body))
            .await
            .unwrap()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(chunks.len(), 1 + 4 + 1 + 1);
        assert_eq!(
            chunks[0].choices[0].delta.role.as_deref(),
            Some("assistant")
        );
        assert_eq!(chunks[5].choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(chunks[6].is_usage_only());
        let text: String = chunks
            .iter()
            .filter_map(|c| c.choices.first()?.delta.content.clone())
            .collect();
        assert_eq!(text, "Tollgate mock reply: the");
    }

    fn embeddings_request(body: &str) -> EmbeddingsRequest {
        EmbeddingsRequest::parse(body.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn embeddings_are_deterministic_unit_vectors_of_the_default_size() {
        let provider = MockProvider::new(MockSettings::default());
        let target = crate::providers::test_target("mock-embed", "mock-embed");
        let body = r#"{"model":"mock-embed","input":["alpha beta","gamma","alpha beta"]}"#;
        let response = provider
            .embeddings(&target, &embeddings_request(body))
            .await
            .unwrap();
        assert_eq!(response.object, "list");
        assert_eq!(response.model, "mock-embed");
        assert_eq!(
            response.usage,
            Some(EmbeddingsUsage {
                prompt_tokens: 5,
                total_tokens: 5
            })
        );
        let data = &response.data;
        assert_eq!(
            data.iter().map(|d| d.index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(data.iter().all(|d| d.object == "embedding"));
        assert!(
            data.iter()
                .all(|d| d.embedding.len() == DEFAULT_DIMENSIONS as usize)
        );
        assert_eq!(data[0].embedding, data[2].embedding);
        assert_ne!(data[0].embedding, data[1].embedding);
        let again = provider
            .embeddings(&target, &embeddings_request(body))
            .await
            .unwrap();
        assert_eq!(again, response);
    }

    #[tokio::test]
    async fn embeddings_honour_dimensions_and_refuse_too_many() {
        let provider = MockProvider::new(MockSettings::default());
        let target = crate::providers::test_target("mock-embed", "mock-embed");
        let small = provider
            .embeddings(
                &target,
                &embeddings_request(r#"{"model":"m","input":"x","dimensions":3}"#),
            )
            .await
            .unwrap();
        assert_eq!(small.data[0].embedding.len(), 3);
        // Large enough to be generated on the blocking pool.
        let large = provider
            .embeddings(
                &target,
                &embeddings_request(r#"{"model":"m","input":[[1],[2],[3],[4],[5],[6],[7],[8],[9],[10],[11],[12],[13],[14],[15],[16],[17],[18],[19],[20],[21],[22]],"dimensions":3072}"#),
            )
            .await
            .unwrap();
        assert_eq!(large.data.len(), 22);
        assert!(large.data.iter().all(|d| d.embedding.len() == 3072));
        let err = provider
            .embeddings(
                &target,
                &embeddings_request(r#"{"model":"m","input":"x","dimensions":3073}"#),
            )
            .await
            .unwrap_err();
        match err {
            ProviderError::Unsupported { param, .. } => assert_eq!(param, "dimensions"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn embeddings_wait_the_configured_latency() {
        let provider = MockProvider::new(MockSettings {
            latency_ms: 50,
            ..MockSettings::default()
        });
        let target = crate::providers::test_target("mock-embed", "mock-embed");
        let started = std::time::Instant::now();
        provider
            .embeddings(&target, &embeddings_request(r#"{"model":"m","input":"x"}"#))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
