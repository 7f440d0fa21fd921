//! The upstream stub: a fixed OpenAI chat reply, JSON or a 21-chunk SSE stream, served as fast
//! as a static file server would (the body is built once), so the measurement is of the proxy
//! in front of it and not of the stub.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Events in the streamed reply: the role, 18 content pieces, the finish reason and the usage.
pub const STREAM_EVENTS: usize = 21;
const CONTENT_PIECES: usize = STREAM_EVENTS - 3;

/// Starts the stub on an ephemeral loopback port; it serves until the process ends.
pub async fn start() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let replies = Replies {
        json: Bytes::from(json_reply()),
        sse: Bytes::from(sse_reply()),
    };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let replies = replies.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let replies = replies.clone();
                    async move { Ok::<_, Infallible>(replies.answer(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

#[derive(Clone)]
struct Replies {
    json: Bytes,
    sse: Bytes,
}

impl Replies {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match request.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let (content_type, reply) = if wants_stream(&body) {
            ("text/event-stream", self.sse.clone())
        } else {
            ("application/json", self.json.clone())
        };
        let mut response = Response::new(Full::new(reply));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    }
}

/// Whether the request body asks for a stream (`"stream": true`, any spacing).
fn wants_stream(body: &[u8]) -> bool {
    let Some(at) = body
        .windows(b"\"stream\"".len())
        .position(|window| window == b"\"stream\"")
    else {
        return false;
    };
    let rest = &body[at + b"\"stream\"".len()..];
    let rest = rest.trim_ascii_start().strip_prefix(b":").unwrap_or(rest);
    rest.trim_ascii_start().starts_with(b"true")
}

const CREATED: u64 = 1_765_000_000;

fn json_reply() -> String {
    serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-4o-mini",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content_pieces().concat()},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 14, "completion_tokens": CONTENT_PIECES, "total_tokens": 14 + CONTENT_PIECES}
    })
    .to_string()
}

fn content_pieces() -> Vec<String> {
    (0..CONTENT_PIECES)
        .map(|index| format!("word{index} "))
        .collect()
}

fn sse_reply() -> String {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        serde_json::json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
    };
    let mut events = vec![chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
    )];
    for piece in content_pieces() {
        events.push(chunk(serde_json::json!({"content": piece}), None));
    }
    events.push(chunk(serde_json::json!({}), Some("stop")));
    events.push(serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {"prompt_tokens": 14, "completion_tokens": CONTENT_PIECES, "total_tokens": 14 + CONTENT_PIECES}
    }));
    debug_assert_eq!(events.len(), STREAM_EVENTS);
    let mut body: String = events
        .iter()
        .map(|event| format!("data: {event}\n\n"))
        .collect();
    body.push_str("data: [DONE]\n\n");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_asked_for_with_any_spacing() {
        assert!(wants_stream(br#"{"model":"m","stream":true}"#));
        assert!(wants_stream(br#"{"model":"m", "stream" : true}"#));
        assert!(!wants_stream(br#"{"model":"m","stream":false}"#));
        assert!(!wants_stream(br#"{"model":"m"}"#));
    }

    #[test]
    fn the_stream_has_21_events_and_an_end_marker() {
        let body = sse_reply();
        assert_eq!(body.matches("data: ").count(), STREAM_EVENTS + 1);
        assert!(body.ends_with("data: [DONE]\n\n"));
    }
}
