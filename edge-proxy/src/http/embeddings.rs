//! `POST /v1/embeddings`, as the named phases every model endpoint shares: validate →
//! authenticate → route → count → reserve → call → settle, then render in OpenAI's shape.
//! Embeddings are billed and rate-limited like chat: input tokens only, counted before the
//! call (token arrays by their length), replaced by the provider's count when it reports one.

use super::AppState;
use super::body::read_limited;
use super::chat::RequestId;
use super::pipeline::{Caller, reserve, usage_headers};
use crate::api::chat::Usage;
use crate::api::embeddings::{
    EmbeddingInput, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage, EncodingFormat,
};
use crate::config::runtime::ModelRoute;
use crate::error::GatewayError;
use crate::limits::spec::Demand;
use crate::pricing::TokenUsage;
use crate::routing;
use crate::tokens::TokenCounter;
use crate::usage::{RequestMeter, Settlement};
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use std::sync::Arc;

/// Inputs above this size are counted on the blocking pool, off the async threads.
const INLINE_COUNT_MAX_BYTES: usize = 64 * 1024;

/// Responses with more vector components than this are encoded on the blocking pool: a full
/// batch (2048 inputs × 3072 dimensions) is tens of megabytes of JSON.
const INLINE_RENDER_MAX_COMPONENTS: usize = 64 * 1024;

pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let caller = Caller::authenticate(&state, &headers)?;
    let mut response = match run(&state, &caller, &request_id, &headers, body).await {
        Ok(embedded) => embedded.render().await,
        Err(err) => err.into_response(),
    };
    caller.add_rate_headers(response.headers_mut());
    Ok(response)
}

/// A settled embeddings call, ready to render.
struct Embedded {
    response: EmbeddingsResponse,
    /// The name the client asked for; the response names the model by it.
    public_model: String,
    encoding: EncodingFormat,
    settlement: Settlement,
}

/// Everything after authentication. Any error is recorded in the ledger before it is
/// returned; a success is recorded with the provider's usage, else the edge's count.
async fn run(
    state: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: Body,
) -> Result<Embedded, GatewayError> {
    let mut meter = caller.meter(state, request_id)?;
    let (response, public_model, encoding) =
        match serve(state, caller, headers, body, &mut meter).await {
            Ok(served) => served,
            Err(err) => return Err(meter.fail(err)),
        };
    let provider_usage = response
        .usage
        .map(|usage| Usage::new(usage.prompt_tokens, 0));
    // Embeddings produce no text: output tokens are 0 either way.
    let settlement = meter.settle(provider_usage.as_ref(), "");
    Ok(Embedded {
        response,
        public_model,
        encoding,
        settlement,
    })
}

async fn serve(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
    meter: &mut RequestMeter,
) -> Result<(EmbeddingsResponse, String, EncodingFormat), GatewayError> {
    let body = read_limited(body, headers, state.max_body_bytes, &state.body_budget).await?;
    let request = EmbeddingsRequest::parse_within(&body, &state.parse_limits)?;
    meter.requested(&request.model, false);
    let route = routing::resolve(&caller.runtime, &caller.key, &request.model)?;
    meter.routed(&route);
    let (request, input_tokens) =
        count_input(&state.meter.counter, &route, request, body.len()).await;
    meter.prompt_counted(input_tokens);
    let demand = input_demand(&route, input_tokens, caller.limits.now_ms());
    reserve(state, &caller.limits, demand, meter).await?;
    let target = route.target();
    meter.upstream_called();
    let response = route.provider.embeddings(&target, &request).await?;
    let encoding = request.encoding_format.unwrap_or(EncodingFormat::Float);
    Ok((response, route.name.clone(), encoding))
}

/// Input tokens as the upstream model counts them: each text with the model's encoding (an
/// approximation for non-OpenAI models, see `tokens`), each token array by its length. Large
/// inputs are counted on the blocking pool.
async fn count_input(
    counter: &TokenCounter,
    route: &ModelRoute,
    request: EmbeddingsRequest,
    body_len: usize,
) -> (EmbeddingsRequest, u64) {
    if body_len <= INLINE_COUNT_MAX_BYTES {
        let tokens = input_tokens(counter, &route.upstream_model, &request.input);
        return (request, tokens);
    }
    let counter = counter.clone();
    let model = route.upstream_model.clone();
    let shared = Arc::new(request);
    let for_count = Arc::clone(&shared);
    let tokens =
        tokio::task::spawn_blocking(move || input_tokens(&counter, &model, &for_count.input))
            .await
            .unwrap_or(0);
    let request = Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone());
    (request, tokens)
}

fn input_tokens(counter: &TokenCounter, model: &str, input: &EmbeddingInput) -> u64 {
    match input {
        EmbeddingInput::Text(text) => counter.count_text(model, text),
        EmbeddingInput::Texts(texts) => texts
            .iter()
            .map(|text| counter.count_text(model, text))
            .sum(),
        EmbeddingInput::Tokens(tokens) => tokens.len() as u64,
        EmbeddingInput::TokenBatches(batches) => batches.iter().map(|t| t.len() as u64).sum(),
    }
}

/// What an embeddings request can spend: its input tokens, at the model's input price now
/// (there is no output to bound). An unpriced model costs 0.
fn input_demand(route: &ModelRoute, input_tokens: u64, now_unix_ms: i64) -> Demand {
    let usage = TokenUsage {
        input_tokens,
        cached_input_tokens: 0,
        output_tokens: 0,
    };
    Demand {
        tokens: i64::try_from(input_tokens).unwrap_or(i64::MAX),
        cost_micros: route
            .prices
            .at(now_unix_ms)
            .map_or(0, |price| price.cost_micros(&usage)),
    }
}

/// OpenAI's embeddings response. `usage` is what the request was billed for, so it is present
/// even when the upstream reported none (the openai SDKs expect it).
#[derive(Serialize)]
struct WireResponse<'a> {
    object: &'static str,
    data: Vec<WireEmbedding>,
    model: &'a str,
    usage: EmbeddingsUsage,
}

#[derive(Serialize)]
struct WireEmbedding {
    object: &'static str,
    index: u32,
    embedding: WireVector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireVector {
    Float(Vec<f32>),
    /// The vector's little-endian f32 bytes in standard base64, as OpenAI sends it.
    Base64(String),
}

impl Embedded {
    async fn render(self) -> Response {
        let components: usize = self
            .response
            .data
            .iter()
            .map(|embedding| embedding.embedding.len())
            .sum();
        let settlement = self.settlement;
        let encoded = if components <= INLINE_RENDER_MAX_COMPONENTS {
            self.encode()
        } else {
            tokio::task::spawn_blocking(move || self.encode())
                .await
                .map_err(|err| err.to_string())
                .and_then(|encoded| encoded)
        };
        let mut response = match encoded {
            Ok(json) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                json,
            )
                .into_response(),
            Err(reason) => {
                // Serialising floats and strings cannot fail; should it ever, the client still
                // gets the usage headers of what it was billed for.
                tracing::error!(reason, "could not encode an embeddings response");
                axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        };
        usage_headers(response.headers_mut(), &settlement);
        response
    }

    fn encode(self) -> Result<Vec<u8>, String> {
        let encoding = self.encoding;
        let wire = WireResponse {
            object: "list",
            data: self
                .response
                .data
                .into_iter()
                .map(|embedding| WireEmbedding {
                    object: "embedding",
                    index: embedding.index,
                    embedding: match encoding {
                        EncodingFormat::Float => WireVector::Float(embedding.embedding),
                        EncodingFormat::Base64 => {
                            WireVector::Base64(base64_f32_le(&embedding.embedding))
                        }
                    },
                })
                .collect(),
            model: &self.public_model,
            usage: EmbeddingsUsage {
                prompt_tokens: self.settlement.usage.input_tokens,
                total_tokens: self.settlement.usage.input_tokens,
            },
        };
        serde_json::to_vec(&wire).map_err(|err| err.to_string())
    }
}

/// The encoding OpenAI uses for `encoding_format: "base64"`: the f32 values' little-endian
/// bytes, back to back (what numpy's `frombuffer(..., dtype="float32")` reads).
fn base64_f32_le(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    BASE64.encode(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_is_little_endian_f32_bytes() {
        // 1.0f32 = 0x3F800000, -2.0f32 = 0xC0000000, little-endian.
        assert_eq!(
            base64_f32_le(&[1.0, -2.0]),
            BASE64.encode([0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0])
        );
        assert_eq!(base64_f32_le(&[1.0]), "AACAPw==");
        let vector = [0.25f32, -0.125, 3.5e-8, f32::MAX];
        let bytes = BASE64.decode(base64_f32_le(&vector)).unwrap();
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(decoded, vector);
    }

    #[test]
    fn token_arrays_count_their_length_and_texts_their_tokens() {
        let counter = TokenCounter::new();
        let model = "text-embedding-3-small";
        assert_eq!(
            input_tokens(
                &counter,
                model,
                &EmbeddingInput::TokenBatches(vec![vec![1, 2], vec![3]])
            ),
            3
        );
        assert_eq!(
            input_tokens(&counter, model, &EmbeddingInput::Tokens(vec![9; 7])),
            7
        );
        let one = input_tokens(&counter, model, &EmbeddingInput::Text("hello world".into()));
        assert_eq!(one, 2);
        assert_eq!(
            input_tokens(
                &counter,
                model,
                &EmbeddingInput::Texts(vec!["hello world".into(), "hello world".into()])
            ),
            2 * one
        );
    }
}
