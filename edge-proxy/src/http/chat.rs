//! `POST /v1/chat/completions`, as the named phases of the design's data flow:
//! validate → authenticate → route → call. (Guard, reserve, cache and settle join as they land.)

use super::AppState;
use super::body::read_limited;
use crate::api::chat::ChatCompletionRequest;
use crate::auth;
use crate::config::runtime::ModelRoute;
use crate::error::GatewayError;
use crate::providers::{ChunkStream, ModelTarget};
use crate::routing;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;

pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    // One runtime for the whole request, however many swaps happen meanwhile.
    let runtime = state.runtime.load().ok_or(GatewayError::NotReady)?;
    let key = auth::authenticate(&runtime, &headers, auth::now_unix_ms())?;
    let body = read_limited(body, &headers, state.max_body_bytes).await?;
    let request = ChatCompletionRequest::parse(&body)?;
    let route = routing::resolve(&runtime, &key, &request.model)?;
    let target = ModelTarget {
        public_name: route.name.clone(),
        upstream_model: route.upstream_model.clone(),
    };
    if request.stream {
        call_streaming(&route, &target, &request).await
    } else {
        let completion = route.provider.chat(&target, &request).await?;
        Ok(Json(completion).into_response())
    }
}

/// Failures before the upstream's first byte are ordinary HTTP errors; after that the status is
/// already sent, so a failure becomes a final SSE error event (and no `[DONE]`).
async fn call_streaming(
    route: &ModelRoute,
    target: &ModelTarget,
    request: &ChatCompletionRequest,
) -> Result<Response, GatewayError> {
    let upstream = route.provider.chat_stream(target, request).await?;
    let events = sse_events(upstream, request.wants_stream_usage());
    let mut response = Body::from_stream(events).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn sse_data(json: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(json.len() + 8);
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(json);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// Usage is always requested upstream (for billing); the client sees it only if it asked.
fn sse_events(
    mut upstream: ChunkStream,
    include_usage: bool,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    async_stream::stream! {
        while let Some(item) = upstream.next().await {
            match item {
                Ok(mut chunk) => {
                    if !include_usage {
                        if chunk.is_usage_only() {
                            continue;
                        }
                        chunk.usage = None;
                    }
                    match serde_json::to_vec(&chunk) {
                        Ok(json) => yield Ok(sse_data(&json)),
                        Err(err) => {
                            tracing::error!(error = %err, "could not encode a stream chunk");
                            return;
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "upstream stream failed after the response started");
                    let body = GatewayError::from(err).body();
                    if let Ok(json) = serde_json::to_vec(&body) {
                        yield Ok(sse_data(&json));
                    }
                    return;
                }
            }
        }
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}
