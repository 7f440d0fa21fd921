//! `POST /v1/chat/completions`, as the named phases of the design's data flow:
//! validate → authenticate → route → count → reserve → call → settle. (Guard and cache join as
//! they land.) From authentication on, a `RequestMeter` guarantees one usage event, and the
//! limit reservation settles with it. `run_chat` is shared with Anthropic's `/v1/messages`,
//! which only parses and renders differently.

use super::AppState;
use super::body::read_limited;
use super::pipeline::{Caller, reserve, usage_headers};
use crate::api::chat::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Usage};
use crate::config::runtime::ModelRoute;
use crate::error::GatewayError;
use crate::limits::spec::Demand;
use crate::pricing::TokenUsage;
use crate::providers::{ChunkStream, ProviderError};
use crate::routing;
use crate::usage::{RequestMeter, Settlement};
use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
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
    let caller = Caller::authenticate(&state, &headers)?;
    let outcome = run_chat(&state, &caller, &request_id, &headers, body, |body| {
        ChatCompletionRequest::parse_within(body, &state.parse_limits)
    })
    .await;
    let mut response = match outcome {
        Ok(ChatOutcome::Complete {
            completion,
            settlement,
        }) => {
            let mut response = Json(completion).into_response();
            usage_headers(response.headers_mut(), &settlement);
            response
        }
        Ok(ChatOutcome::Stream {
            upstream,
            include_usage,
            meter,
        }) => sse_response(openai_sse(metered(upstream, meter), include_usage)),
        Err(err) => err.into_response(),
    };
    caller.add_rate_headers(response.headers_mut());
    Ok(response)
}

/// How a chat call ended, before rendering in the client's wire format.
// One per request, moved once: boxing a variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum ChatOutcome {
    /// Settled: the usage event is recorded.
    Complete {
        completion: ChatCompletion,
        settlement: Settlement,
    },
    /// Started: the meter rides along with the stream and settles when it ends.
    Stream {
        upstream: ChunkStream,
        /// Whether the client asked for the final usage chunk (OpenAI's `include_usage`).
        include_usage: bool,
        meter: RequestMeter,
    },
}

/// Everything after authentication for one chat call. Any error is recorded in the ledger
/// before it is returned.
pub async fn run_chat(
    state: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: Body,
    parse: impl FnOnce(&[u8]) -> Result<ChatCompletionRequest, GatewayError>,
) -> Result<ChatOutcome, GatewayError> {
    let mut meter = caller.meter(state, request_id)?;
    match serve(state, caller, headers, body, parse, &mut meter).await {
        Ok(Served::Complete(completion)) => {
            let output_text = output_text(&completion);
            let settlement = meter.settle(completion.usage.as_ref(), &output_text);
            Ok(ChatOutcome::Complete {
                completion,
                settlement,
            })
        }
        Ok(Served::Stream {
            upstream,
            include_usage,
        }) => Ok(ChatOutcome::Stream {
            upstream,
            include_usage,
            meter,
        }),
        Err(err) => Err(meter.fail(err)),
    }
}

enum Served {
    Complete(ChatCompletion),
    Stream {
        upstream: ChunkStream,
        include_usage: bool,
    },
}

async fn serve(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
    parse: impl FnOnce(&[u8]) -> Result<ChatCompletionRequest, GatewayError>,
    meter: &mut RequestMeter,
) -> Result<Served, GatewayError> {
    let body = read_limited(body, headers, state.max_body_bytes, &state.body_budget).await?;
    let request = parse(&body)?;
    meter.requested(&request.model, request.stream);
    let route = routing::resolve(&caller.runtime, &caller.key, &request.model)?;
    meter.routed(&route);
    let (request, prompt_tokens) = count_prompt(state, &route, request, body.len()).await;
    meter.prompt_counted(prompt_tokens);
    let demand = worst_case(&route, &request, prompt_tokens, caller.limits.now_ms());
    reserve(state, &caller.limits, demand, meter).await?;
    let target = route.target();
    meter.upstream_called();
    if request.stream {
        let upstream = route.provider.chat_stream(&target, &request).await?;
        let upstream = first_output(upstream).await?;
        return Ok(Served::Stream {
            upstream,
            include_usage: request.wants_stream_usage(),
        });
    }
    Ok(Served::Complete(
        route.provider.chat(&target, &request).await?,
    ))
}

/// Holds the response back until the upstream produced its first output (or failed, or
/// ended), so anything that goes wrong before the model said a word — a first-token timeout, an
/// error event, a cut — is a proper HTTP error with its status, not a 200 with an error event.
/// Only the few opening chunks (a role-only chunk) are held.
async fn first_output(mut upstream: ChunkStream) -> Result<ChunkStream, ProviderError> {
    let mut held = Vec::new();
    while let Some(item) = upstream.next().await {
        let chunk = item?;
        let output = chunk.carries_output();
        held.push(Ok(chunk));
        if output {
            break;
        }
    }
    Ok(Box::pin(futures::stream::iter(held).chain(upstream)))
}

/// The text a completion produced: message content and tool-call arguments, for counting when
/// the provider reports no usage.
fn output_text(completion: &ChatCompletion) -> String {
    let mut text = String::new();
    for choice in &completion.choices {
        if let Some(content) = choice.message.content.as_deref() {
            text.push_str(content);
        }
        for arguments in tool_call_arguments(&choice.message.extra) {
            text.push_str(arguments);
        }
    }
    text
}

/// `tool_calls[].function.arguments` of a message or delta (kept in its `extra` fields).
fn tool_call_arguments(extra: &serde_json::Map<String, Value>) -> impl Iterator<Item = &str> {
    extra
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|call| call.pointer("/function/arguments").and_then(Value::as_str))
}

/// Prompt tokens as the upstream model counts them, before the call (limits and budgets
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
        .unwrap_or_else(|err| {
            // Counting 0 would let the request past every token limit and budget. A token is
            // at least one byte of the body, so its length is a safe upper bound.
            tracing::error!(error = %err, body_len, "prompt token count failed; reserving the body's length in tokens");
            body_len as u64
        });
    let request = Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone());
    (request, tokens)
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

/// One step of a metered stream, before rendering in the client's wire format.
pub enum StreamEvent {
    /// An upstream chunk, its usage taken out (the meter has it). May have no choices.
    Chunk(ChatCompletionChunk),
    /// The upstream failed after the response started; the meter recorded it. Last event.
    Failed(GatewayError),
    /// The upstream finished; the usage event is recorded with this settlement. Last event.
    Finished(Settlement),
}

/// Meters an upstream stream: output text (content and tool-call arguments) is counted as it
/// passes, provider usage is taken from the chunks, and the end settles the meter. If the
/// client hangs up, the renderer drops this stream, the upstream call with it, and the meter's
/// `Drop` bills what was produced.
pub fn metered(
    mut upstream: ChunkStream,
    mut meter: RequestMeter,
) -> impl Stream<Item = StreamEvent> {
    async_stream::stream! {
        while let Some(item) = upstream.next().await {
            match item {
                Ok(mut chunk) => {
                    for choice in &chunk.choices {
                        if let Some(text) = choice.delta.content.as_deref() {
                            meter.stream_content(text);
                        }
                        for arguments in tool_call_arguments(&choice.delta.extra) {
                            meter.stream_content(arguments);
                        }
                    }
                    if let Some(usage) = chunk.usage.take() {
                        meter.stream_usage(&usage);
                    }
                    yield StreamEvent::Chunk(chunk);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "upstream stream failed after the response started");
                    meter.stream_failed(&err);
                    yield StreamEvent::Failed(GatewayError::from(err));
                    return;
                }
            }
        }
        yield StreamEvent::Finished(meter.settle_stream());
    }
}

/// A `text/event-stream` response around rendered SSE bytes.
pub fn sse_response(
    events: impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
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

/// OpenAI's SSE: each chunk with choices as `data:`; the client gets one final usage chunk,
/// carrying the request's cost, only if it asked. A failure after the first byte becomes a
/// final SSE error event, since the status line is already sent.
fn openai_sse(
    events: impl Stream<Item = StreamEvent> + Send + 'static,
    include_usage: bool,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    async_stream::stream! {
        let mut events = std::pin::pin!(events);
        let mut template: Option<ChatCompletionChunk> = None;
        while let Some(event) = events.next().await {
            match event {
                StreamEvent::Chunk(chunk) => {
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
                StreamEvent::Failed(err) => {
                    if let Ok(json) = serde_json::to_vec(&err.body()) {
                        yield Ok(sse_data(&json));
                    }
                    return;
                }
                StreamEvent::Finished(settlement) => {
                    if include_usage
                        && let Some(template) = template.take()
                        && let Ok(json) = serde_json::to_vec(&usage_chunk(template, &settlement))
                    {
                        yield Ok(sse_data(&json));
                    }
                    yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
                    return;
                }
            }
        }
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
