//! The HTTP surface: OpenAI-compatible endpoints plus health and readiness probes.

pub mod body;
mod chat;
mod embeddings;
pub mod errors;
mod messages;
mod models;
mod pipeline;
pub mod server;

use crate::api::json::ParseLimits;
use crate::config::RuntimeHolder;
use crate::error::GatewayError;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::usage::SpoolState;
use crate::usage::meter::MeterContext;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use body::BodyBudget;
use chat::RequestId;
use std::sync::Arc;
use tollgate_contract::usage::client_text;
use tracing::Instrument;

/// Longest request path echoed in an error or a log line.
const MAX_ECHOED_PATH_BYTES: usize = 256;
/// Most request headers the edge reads; hyper itself stops at `HYPER_MAX_HEADERS`, past which
/// its bare 431 is the answer, so the JSON one covers everything in between.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values in one request.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct AppState {
    pub runtime: Arc<RuntimeHolder>,
    pub max_body_bytes: usize,
    /// How much JSON one body may hold (values, messages or inputs).
    pub parse_limits: ParseLimits,
    /// Bytes of request bodies held at once across all requests.
    pub body_budget: BodyBudget,
    pub meter: MeterContext,
    pub spool: Arc<SpoolState>,
    /// Limit counters; outlives config swaps.
    pub limiter: Arc<Limiter>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models::list))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/messages", post(messages::create))
        .route("/v1/messages/{*rest}", any(messages::unknown))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(bounded_headers))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Alive as long as the process answers.
async fn healthz() -> &'static str {
    "ok"
}

/// Ready only once a config is loaded: before that every API call would fail.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let keys = state.runtime.keys();
    match state.runtime.load() {
        Some(runtime) if keys.is_loaded() => format!(
            "ready: config version {}, key revision {} ({} keys)\n",
            runtime.version,
            keys.revision(),
            keys.len()
        )
        .into_response(),
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the virtual keys\n",
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no config loaded\n",
        )
            .into_response(),
    }
}

/// Prometheus text exposition of the edge's metrics.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn unknown_route(request: Request) -> GatewayError {
    GatewayError::UnknownRoute(client_text(request.uri().path(), MAX_ECHOED_PATH_BYTES))
}

async fn method_not_allowed(request: Request) -> GatewayError {
    GatewayError::MethodNotAllowed {
        method: client_text(request.method().as_str(), MAX_ECHOED_PATH_BYTES),
        path: client_text(request.uri().path(), MAX_ECHOED_PATH_BYTES),
    }
}

/// Oversized headers get the OpenAI-style 431 (hyper's own answer has no body).
async fn bounded_headers(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return GatewayError::HeadersTooLarge {
            max_headers: MAX_HEADERS,
            max_bytes: MAX_HEADER_BYTES,
        }
        .into_response();
    }
    next.run(request).await
}

/// Every response carries an `x-request-id`, the handle to find a request in logs and usage.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = format!("req_{}", crate::ids::random_uuid().simple());
    request.extensions_mut().insert(RequestId(id.clone()));
    let path = client_text(request.uri().path(), MAX_ECHOED_PATH_BYTES);
    let span =
        tracing::info_span!("request", request_id = %id, method = %request.method(), path = %path);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests;
