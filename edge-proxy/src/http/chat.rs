//! `POST /v1/chat/completions`, as the named phases of the design's data flow:
//! validate → authenticate → admit → route → count → reserve → call → settle. (Guard and cache
//! join as they land.) From authentication on, a `RequestMeter` guarantees one usage event, and
//! the limit reservation settles with it.

use super::AppState;
use super::body::read_limited;
use crate::api::chat::{ChatCompletionChunk, ChatCompletionRequest, Usage};
use crate::auth;
use crate::config::runtime::{ModelRoute, Runtime};
use crate::error::GatewayError;
use crate::limits::RENEWAL_WAIT;
use crate::limits::admission::{KeyLimits, Refusal};
use crate::limits::headers::RateHeaders;
use crate::limits::spec::Demand;
use crate::pricing::TokenUsage;
use crate::providers::{ChunkStream, ModelTarget};
use crate::routing;
use crate::usage::{RequestMeter, Settlement};
use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;

/// The id the `request_id` middleware assigned; also the usage event's `request_id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Prompts above this size are counted on the blocking pool, off the async threads.
const INLINE_COUNT_MAX_BYTES: usize = 64 * 1024;

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    // One runtime for the whole request, however many swaps happen meanwhile.
    let runtime = state.runtime.load().ok_or(GatewayError::NotReady)?;
    let key = auth::authenticate(&runtime, &headers, auth::now_unix_ms())?;
    let limits = state.limiter.bind(&runtime, &key);
    let mut response =
        match authenticated(&state, &runtime, &key, &limits, &request_id, &headers, body).await {
            Ok(response) => response,
            Err(err) => err.into_response(),
        };
    rate_limit_headers(response.headers_mut(), &limits);
    Ok(response)
}

/// Everything after authentication; its response, success or error, gets rate-limit headers.
async fn authenticated(
    state: &AppState,
    runtime: &Runtime,
    key: &crate::config::snapshot::VirtualKey,
    limits: &KeyLimits,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    if state.spool.refuses_requests() {
        return Err(GatewayError::UsageSpoolFull);
    }
    let mut meter = RequestMeter::start(&state.meter, key, &request_id.0, runtime.version);
    match serve(state, runtime, key, limits, headers, body, &mut meter).await {
        Ok(Served::Complete(response)) => Ok(response),
        Ok(Served::Stream {
            upstream,
            include_usage,
        }) => Ok(stream_response(upstream, include_usage, meter)),
        Err(err) => Err(meter.fail(err)),
    }
}

enum Served {
    Complete(Response),
    Stream {
        upstream: ChunkStream,
        include_usage: bool,
    },
}

async fn serve(
    state: &AppState,
    runtime: &Runtime,
    key: &crate::config::snapshot::VirtualKey,
    limits: &KeyLimits,
    headers: &HeaderMap,
    body: Body,
    meter: &mut RequestMeter,
) -> Result<Served, GatewayError> {
    let body = read_limited(body, headers, state.max_body_bytes).await?;
    let request = ChatCompletionRequest::parse(&body)?;
    meter.requested(&request.model, request.stream);
    let route = routing::resolve(runtime, key, &request.model)?;
    meter.routed(&route);
    let (request, prompt_tokens) = count_prompt(state, &route, request, body.len()).await;
    meter.prompt_counted(prompt_tokens);
    reserve(state, limits, &route, &request, prompt_tokens, meter).await?;
    let target = ModelTarget {
        public_name: route.name.clone(),
        upstream_model: route.upstream_model.clone(),
    };
    meter.upstream_called();
    if request.stream {
        let upstream = route.provider.chat_stream(&target, &request).await?;
        return Ok(Served::Stream {
            upstream,
            include_usage: request.wants_stream_usage(),
        });
    }
    let completion = route.provider.chat(&target, &request).await?;
    let output_text: String = completion
        .choices
        .iter()
        .filter_map(|choice| choice.message.content.as_deref())
        .collect();
    let settlement = meter.settle(completion.usage.as_ref(), &output_text);
    let mut response = Json(completion).into_response();
    usage_headers(response.headers_mut(), &settlement);
    Ok(Served::Complete(response))
}

/// Prompt tokens as the upstream model counts them, before the call (limits and budgets will
/// reserve against this). Large prompts are counted on the blocking pool.
async fn count_prompt(
    state: &AppState,
    route: &ModelRoute,
    request: ChatCompletionRequest,
    body_len: usize,
) -> (ChatCompletionRequest, u64) {
    let counter = state.meter.counter.clone();
    let model = route.upstream_model.clone();
    if body_len <= INLINE_COUNT_MAX_BYTES {
        let tokens = counter.count_chat_prompt(&model, &request);
        return (request, tokens);
    }
    let shared = Arc::new(request);
    let for_count = Arc::clone(&shared);
    let tokens = tokio::task::spawn_blocking(move || counter.count_chat_prompt(&model, &for_count))
        .await
        .unwrap_or(0);
    let request = Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone());
    (request, tokens)
}

/// Reserve phase: the request's worst case against every limit of its key, all or nothing.
/// On a miss that a lease renewal may cure, wait (at most 200 ms) for one and retry once.
/// The admission goes into the meter, which settles it with the usage event.
async fn reserve(
    state: &AppState,
    limits: &KeyLimits,
    route: &ModelRoute,
    request: &ChatCompletionRequest,
    prompt_tokens: u64,
    meter: &mut RequestMeter,
) -> Result<(), GatewayError> {
    if limits.is_empty() {
        return Ok(());
    }
    let demand = worst_case(route, request, prompt_tokens, limits.now_ms());
    let admission = match limits.try_admit(demand) {
        Ok(admission) => admission,
        Err(refusal) if refusal.renewable => {
            state.limiter.await_renewal(RENEWAL_WAIT).await;
            limits
                .try_admit(demand)
                .map_err(|refusal| rejected(state, refusal))?
        }
        Err(refusal) => return Err(rejected(state, refusal)),
    };
    meter.admitted(admission);
    Ok(())
}

fn rejected(state: &AppState, refusal: Refusal) -> GatewayError {
    let exceeded = refusal.exceeded;
    state
        .metrics
        .limit_rejected(exceeded.level.as_str(), exceeded.metric.as_str());
    GatewayError::LimitExceeded(exceeded)
}

/// The most a request can spend: its prompt plus the output cap (the request's
/// `max_completion_tokens` or `max_tokens`, else the model's) for each of `n` choices, and the
/// cost of that at the model's price now. An unpriced model costs 0.
fn worst_case(
    route: &ModelRoute,
    request: &ChatCompletionRequest,
    prompt_tokens: u64,
    now_unix_ms: i64,
) -> Demand {
    let cap = request
        .output_token_cap()
        .unwrap_or(route.max_output_tokens);
    let usage = TokenUsage {
        input_tokens: prompt_tokens,
        cached_input_tokens: 0,
        output_tokens: u64::from(cap) * u64::from(request.choices()),
    };
    Demand {
        tokens: i64::try_from(usage.input_tokens.saturating_add(usage.output_tokens))
            .unwrap_or(i64::MAX),
        cost_micros: route
            .prices
            .at(now_unix_ms)
            .map_or(0, |price| price.cost_micros(&usage)),
    }
}

/// x-ratelimit-* for keys with a requests- or tokens-per-minute limit.
fn rate_limit_headers(headers: &mut HeaderMap, limits: &KeyLimits) {
    for (name, value) in RateHeaders::for_key(limits).pairs() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Tokens and cost of this request, so a client can see what it spent without a report.
fn usage_headers(headers: &mut HeaderMap, settlement: &Settlement) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set(
        "x-tollgate-input-tokens",
        settlement.usage.input_tokens.to_string(),
    );
    set(
        "x-tollgate-output-tokens",
        settlement.usage.output_tokens.to_string(),
    );
    set(
        "x-tollgate-priced",
        settlement.cost_micros.is_some().to_string(),
    );
    if let Some(cost) = settlement.cost_micros {
        set("x-tollgate-cost-micros", cost.to_string());
    }
    if let Some(version) = settlement.price_version {
        set("x-tollgate-price-version", version.to_string());
    }
}

fn stream_response(upstream: ChunkStream, include_usage: bool, meter: RequestMeter) -> Response {
    let events = sse_events(upstream, include_usage, meter);
    let mut response = Body::from_stream(events).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn sse_data(json: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(json.len() + 8);
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(json);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// Relays the upstream's chunks and meters them. Usage always comes from upstream (it is always
/// asked for); the client gets one final usage chunk, carrying the request's cost, only if it
/// asked. If the client hangs up, the stream is dropped, the upstream call with it, and the
/// meter's `Drop` bills what was produced. A failure after the first byte becomes a final SSE
/// error event, since the status line is already sent.
fn sse_events(
    mut upstream: ChunkStream,
    include_usage: bool,
    mut meter: RequestMeter,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    async_stream::stream! {
        let mut template: Option<ChatCompletionChunk> = None;
        while let Some(item) = upstream.next().await {
            match item {
                Ok(mut chunk) => {
                    for choice in &chunk.choices {
                        if let Some(text) = choice.delta.content.as_deref() {
                            meter.stream_content(text);
                        }
                    }
                    if let Some(usage) = chunk.usage.take() {
                        meter.stream_usage(&usage);
                    }
                    // id, model and created are the same in every chunk of a stream.
                    if template.is_none() {
                        template = Some(ChatCompletionChunk {
                            id: chunk.id.clone(),
                            object: chunk.object.clone(),
                            created: chunk.created,
                            model: chunk.model.clone(),
                            choices: Vec::new(),
                            usage: None,
                            extra: serde_json::Map::new(),
                        });
                    }
                    if chunk.choices.is_empty() {
                        continue;
                    }
                    match serde_json::to_vec(&chunk) {
                        Ok(json) => yield Ok(sse_data(&json)),
                        Err(err) => tracing::error!(error = %err, "could not encode a stream chunk"),
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "upstream stream failed after the response started");
                    meter.stream_failed(&err);
                    let body = GatewayError::from(err).body();
                    if let Ok(json) = serde_json::to_vec(&body) {
                        yield Ok(sse_data(&json));
                    }
                    return;
                }
            }
        }
        let settlement = meter.stream_settlement();
        if include_usage
            && let Some(template) = template
            && let Ok(json) = serde_json::to_vec(&usage_chunk(template, &settlement))
        {
            yield Ok(sse_data(&json));
        }
        meter.settle_stream();
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}

/// OpenAI's final usage chunk (`choices: []`), plus a `tollgate` object with the cost; clients
/// that do not know the field ignore it.
fn usage_chunk(mut chunk: ChatCompletionChunk, settlement: &Settlement) -> ChatCompletionChunk {
    let mut usage = Usage::new(
        settlement.usage.input_tokens,
        settlement.usage.output_tokens,
    );
    if settlement.usage.cached_input_tokens > 0 {
        usage.extra.insert(
            "prompt_tokens_details".to_owned(),
            json!({ "cached_tokens": settlement.usage.cached_input_tokens }),
        );
    }
    chunk.choices.clear();
    chunk.usage = Some(usage);
    chunk.extra.insert(
        "tollgate".to_owned(),
        json!({
            "cost_micros": settlement.cost_micros,
            "priced": settlement.cost_micros.is_some(),
            "price_version": settlement.price_version,
            "usage_source": settlement.source.as_str(),
        }),
    );
    chunk
}
