//! `POST /v1/messages`: Anthropic's Messages API on the edge, routed to any provider. The same
//! phases as chat (`run_chat`), with Anthropic's parse, Anthropic's rendering and Anthropic's
//! error shape; status codes and headers are the chat endpoint's.

use super::AppState;
use super::chat::{ChatOutcome, RequestId, StreamEvent, metered, run_chat, sse_response};
use super::pipeline::{Caller, usage_headers};
use crate::api::messages::{self, MessageStream};
use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;

/// Anything else under `/v1/messages/` (e.g. the SDK's `count_tokens`): a 404 in Anthropic's
/// shape, since the caller is an Anthropic client.
pub async fn unknown(request: axum::extract::Request) -> Response {
    crate::error::GatewayError::UnknownRoute(tollgate_contract::usage::client_text(
        request.uri().path(),
        super::MAX_ECHOED_PATH_BYTES,
    ))
    .into_anthropic_response()
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match Caller::authenticate(&state, &headers) {
        Ok(caller) => caller,
        Err(err) => return err.into_anthropic_response(),
    };
    // The name the client asked for, which every rendered message carries.
    let mut model = String::new();
    let outcome = run_chat(&state, &caller, &request_id, &headers, body, |body| {
        let request = messages::parse_within(body, &state.parse_limits)?;
        model.clone_from(&request.model);
        Ok(request)
    })
    .await;
    let mut response = match outcome {
        Ok(ChatOutcome::Complete {
            completion,
            settlement,
        }) => {
            let message = messages::render(&completion, &model, &settlement.usage);
            let mut response = Json(message).into_response();
            usage_headers(response.headers_mut(), &settlement);
            response
        }
        Ok(ChatOutcome::Stream {
            upstream, meter, ..
        }) => {
            let prompt_tokens = meter.stream_settlement().usage.input_tokens;
            let renderer =
                MessageStream::new(model, fallback_message_id(&request_id), prompt_tokens);
            sse_response(anthropic_sse(metered(upstream, meter), renderer))
        }
        Err(err) => err.into_anthropic_response(),
    };
    caller.add_rate_headers(response.headers_mut());
    response
}

/// A message id for a stream that ends before the upstream named it.
fn fallback_message_id(request_id: &RequestId) -> String {
    let id = &request_id.0;
    format!("msg_{}", id.strip_prefix("req_").unwrap_or(id))
}

/// Anthropic's SSE: each event as `event: <type>` + `data: <json>`. A failure after the first
/// byte becomes a final `error` event in Anthropic's error shape, as Anthropic sends it, since
/// the status line is already out.
fn anthropic_sse(
    events: impl Stream<Item = StreamEvent> + Send + 'static,
    mut renderer: MessageStream,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    async_stream::stream! {
        let mut events = std::pin::pin!(events);
        let mut rendered = Vec::new();
        while let Some(event) = events.next().await {
            let last = match event {
                StreamEvent::Chunk(chunk) => {
                    renderer.on_chunk(&chunk, &mut rendered);
                    false
                }
                StreamEvent::Finished(settlement) => {
                    renderer.on_finished(&settlement.usage, &mut rendered);
                    true
                }
                StreamEvent::Failed(err) => {
                    if let Some(bytes) = sse_event("error", &err.anthropic_body()) {
                        yield Ok(bytes);
                    }
                    return;
                }
            };
            for event in rendered.drain(..) {
                if let Some(bytes) = sse_event(event.name(), &event) {
                    yield Ok(bytes);
                }
            }
            if last {
                return;
            }
        }
    }
}

fn sse_event(name: &str, data: &impl Serialize) -> Option<Bytes> {
    let json = match serde_json::to_vec(data) {
        Ok(json) => json,
        Err(err) => {
            tracing::error!(error = %err, event = name, "could not encode a stream event");
            return None;
        }
    };
    let mut event = Vec::with_capacity(json.len() + name.len() + 16);
    event.extend_from_slice(b"event: ");
    event.extend_from_slice(name.as_bytes());
    event.extend_from_slice(b"\ndata: ");
    event.extend_from_slice(&json);
    event.extend_from_slice(b"\n\n");
    Some(Bytes::from(event))
}

#[cfg(test)]
#[path = "messages_golden.rs"]
mod golden;

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
