//! The fake's HTTP server: routes each provider's paths to its wire format, records every
//! request, and runs the one request flow all formats share (authenticate, read, misbehave as
//! scripted, answer).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequest, Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt as _;
use bytes::Bytes;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::anthropic::Anthropic;
use super::azure::Azure;
use super::gemini::{self, Gemini};
use super::openai::{self, OpenAi};
use super::reply::Reply;
use super::script::{Behavior, DisconnectGuard, Pacing, paced_body};
use super::wire::{Incoming, StreamBody, Wire};
use super::{RecordedRequest, Shared};

/// Binds an ephemeral port on 127.0.0.1 and serves until the task is aborted.
pub(crate) async fn serve(shared: Arc<Shared>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the fake provider");
    let addr = listener.local_addr().expect("fake provider address");
    let counter = Arc::clone(&shared);
    let listener = listener.tap_io(move |stream| {
        counter.connections.fetch_add(1, Ordering::SeqCst);
        // A real provider's chunks are not held back by Nagle; nor may the fake's be, or the
        // edge's own pacing could not be tested.
        let _ = stream.set_nodelay(true);
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/embeddings", post(openai_embeddings))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure_chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure_embeddings),
        )
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1beta/models/{model_method}", post(gemini_method))
        .route("/v1/models/{model_method}", post(gemini_method))
        .fallback(not_found)
        .with_state(shared);
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("e2e: fake provider stopped: {error}");
        }
    });
    (addr, server)
}

/// The request line, headers and body of one call, as the handlers received them.
struct Raw {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// Every handler takes the whole request this way (the body last, as axum requires).
impl<S: Send + Sync> FromRequest<S> for Raw {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let body = Bytes::from_request(axum::extract::Request::new(body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Raw {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }
}

impl Raw {
    fn path(&self) -> String {
        self.uri
            .path_and_query()
            .map_or_else(|| self.uri.path().to_owned(), ToString::to_string)
    }

    fn incoming(&self, path_model: Option<String>, operation: &str) -> Incoming {
        let query = self
            .uri
            .query()
            .map(|query| {
                url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Incoming {
            headers: self.headers.clone(),
            query,
            path_model,
            operation: operation.to_owned(),
        }
    }
}

async fn openai_chat(State(shared): State<Arc<Shared>>, raw: Raw) -> Response {
    let incoming = raw.incoming(None, "chat");
    handle(shared, &OpenAi, incoming, raw).await
}

async fn openai_embeddings(State(shared): State<Arc<Shared>>, raw: Raw) -> Response {
    let incoming = raw.incoming(None, "embeddings");
    handle(shared, &OpenAi, incoming, raw).await
}

async fn azure_chat(
    State(shared): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    raw: Raw,
) -> Response {
    let incoming = raw.incoming(Some(deployment), "chat");
    handle(shared, &Azure, incoming, raw).await
}

async fn azure_embeddings(
    State(shared): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    raw: Raw,
) -> Response {
    let incoming = raw.incoming(Some(deployment), "embeddings");
    handle(shared, &Azure, incoming, raw).await
}

async fn anthropic_messages(State(shared): State<Arc<Shared>>, raw: Raw) -> Response {
    let incoming = raw.incoming(None, "chat");
    handle(shared, &Anthropic, incoming, raw).await
}

/// `models/{model}:{method}`: the method decides chat, stream or embeddings.
async fn gemini_method(
    State(shared): State<Arc<Shared>>,
    Path(model_method): Path<String>,
    raw: Raw,
) -> Response {
    let known = [
        "generateContent",
        "streamGenerateContent",
        "embedContent",
        "batchEmbedContents",
    ];
    match model_method.rsplit_once(':') {
        Some((model, operation)) if known.contains(&operation) && !model.is_empty() => {
            let incoming = raw.incoming(Some(model.to_owned()), operation);
            handle(shared, &Gemini, incoming, raw).await
        }
        _ => {
            record(&shared, &raw);
            gemini::error(
                StatusCode::NOT_FOUND,
                &format!("The fake provider has no Gemini method {}", raw.uri.path()),
                serde_json::json!([]),
            )
        }
    }
}

async fn not_found(State(shared): State<Arc<Shared>>, raw: Raw) -> Response {
    record(&shared, &raw);
    openai::error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        &format!("the fake provider has no route {} {}", raw.method, raw.uri),
    )
}

fn record(shared: &Shared, raw: &Raw) -> Option<Value> {
    let parsed: Option<Value> = serde_json::from_slice(&raw.body).ok();
    shared.record(RecordedRequest {
        method: raw.method.to_string(),
        path: raw.path(),
        headers: raw.headers.clone(),
        body: parsed.clone().unwrap_or(Value::Null),
        raw_body: raw.body.clone(),
        at: Instant::now(),
    });
    parsed
}

/// The flow every format shares. The guard records a disconnect if this future (waiting out
/// scripted latency) or the streamed body is dropped before the response finished.
async fn handle(
    shared: Arc<Shared>,
    wire: &'static dyn Wire,
    incoming: Incoming,
    raw: Raw,
) -> Response {
    let parsed = record(&shared, &raw);
    let mut guard = DisconnectGuard::new(Arc::clone(&shared), raw.path());
    match answer(&shared, wire, &incoming, parsed).await {
        Answer::Done(response) => {
            guard.disarm();
            response
        }
        Answer::Paced {
            content_type,
            events,
            pacing,
        } => (
            [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
            paced_body(events, pacing, guard),
        )
            .into_response(),
    }
}

enum Answer {
    /// A response whose body is complete already.
    Done(Response),
    /// A 200 whose body pieces go out as `pacing` says.
    Paced {
        content_type: &'static str,
        events: super::wire::Events,
        pacing: Pacing,
    },
}

async fn answer(
    shared: &Shared,
    wire: &'static dyn Wire,
    incoming: &Incoming,
    parsed: Option<Value>,
) -> Answer {
    if let Err(response) = wire.authenticate(incoming, shared.api_key().as_deref()) {
        return Answer::Done(response);
    }
    let Some(body) = parsed else {
        return Answer::Done(wire.error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request.",
        ));
    };
    let behavior = shared.behavior();
    match &behavior {
        Behavior::Status { code, body } => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Answer::Done(
                (status, [(CONTENT_TYPE, "application/json")], body.clone()).into_response(),
            );
        }
        Behavior::Error { status, message } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Answer::Done(wire.error(status, message));
        }
        Behavior::RateLimited { retry_after_secs } => {
            return Answer::Done(wire.rate_limited(*retry_after_secs));
        }
        Behavior::ErrorEventAfter {
            status, message, ..
        } if incoming.is_embeddings() => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Answer::Done(wire.error(status, message));
        }
        _ => {}
    }

    if incoming.is_embeddings() {
        let result = wire.embeddings(incoming, &body);
        pause(behavior.before_headers(false)).await;
        return match result {
            Ok(json) => json_answer(&json, &behavior),
            Err(response) => Answer::Done(response),
        };
    }

    let ask = match wire.chat_ask(incoming, &body) {
        Ok(ask) => ask,
        Err(response) => return Answer::Done(response),
    };
    pause(behavior.before_headers(ask.stream)).await;
    if let Behavior::ErrorEventAfter {
        status, message, ..
    } = &behavior
        && !ask.stream
    {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Answer::Done(wire.error(status, message));
    }
    let reply = Reply::new(shared.next_id(), &ask, &behavior);
    if !ask.stream {
        return json_answer(&wire.completion(&reply), &behavior);
    }
    let StreamBody {
        content_type,
        mut events,
    } = wire.stream(reply, &ask, incoming);
    if let Behavior::ErrorEventAfter {
        events: before,
        status,
        message,
    } = &behavior
    {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let error = wire.error_event(status, message);
        events = Box::new(events.take(*before).chain(std::iter::once(error)));
    }
    if behavior == Behavior::MalformedJson {
        let first = events.next();
        events = Box::new(
            first
                .into_iter()
                .chain(std::iter::once(wire.malformed_event()))
                .chain(events),
        );
    }
    Answer::Paced {
        content_type,
        events,
        pacing: behavior.pacing(true),
    }
}

/// Scripted latency before the headers (the caller's guard stays armed meanwhile).
async fn pause(delay: std::time::Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// A JSON body as scripted: whole, broken, cut half-way, or late.
fn json_answer(json: &Value, behavior: &Behavior) -> Answer {
    let text = json.to_string();
    let half = || Bytes::from(text.as_bytes()[..text.len() / 2].to_vec());
    match behavior {
        Behavior::MalformedJson => Answer::Done(
            (StatusCode::OK, [(CONTENT_TYPE, "application/json")], half()).into_response(),
        ),
        Behavior::CutStreamAfter(_) => Answer::Paced {
            content_type: "application/json",
            events: Box::new(std::iter::once(half())),
            pacing: Pacing {
                cut_after: Some(1),
                ..Pacing::default()
            },
        },
        Behavior::FirstEventDelay(_) | Behavior::GapAfter { .. } => Answer::Paced {
            content_type: "application/json",
            events: Box::new(std::iter::once(Bytes::from(text))),
            pacing: behavior.pacing(false),
        },
        _ => Answer::Done(
            (StatusCode::OK, [(CONTENT_TYPE, "application/json")], text).into_response(),
        ),
    }
}
