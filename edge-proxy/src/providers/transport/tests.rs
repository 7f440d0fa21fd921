//! The transport against scripted in-process upstreams that speak raw HTTP/1.1, so each test
//! controls exactly when headers and body pieces go out: every deadline fires in its own
//! phase, dropping a stream closes the upstream connection, and error bodies reach the client
//! extracted and redacted. Deadlines are short (hundreds of ms); assertions only bound them
//! generously from above.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::api::chat::ChatCompletionRequest;
use crate::providers::openai::OpenAiProvider;
use crate::providers::{Deadlines, Provider};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const SECRET: &str = "sk-transport-secret-42";
/// Long enough never to fire in these tests.
const NEVER: Duration = Duration::from_secs(30);

/// Serves one connection with `script`; returns the base URL.
async fn upstream<F, Fut>(script: F) -> String
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        read_request(&mut socket).await;
        script(socket).await;
    });
    format!("http://{address}/v1")
}

/// Reads one request: head, then as many body bytes as its content-length says.
async fn read_request(socket: &mut TcpStream) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = socket.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the client closed before sending a request");
        received.extend_from_slice(&buffer[..n]);
        let Some(head_end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().unwrap());
        if received.len() >= head_end + 4 + length {
            return;
        }
    }
}

async fn stream_head(socket: &mut TcpStream) {
    socket
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
}

/// One piece of a chunked body.
async fn piece(
    socket: &mut (impl tokio::io::AsyncWrite + Unpin),
    data: &str,
) -> std::io::Result<()> {
    socket
        .write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())
        .await?;
    socket.flush().await
}

fn chunk_event(text: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

/// Keeps the socket open (and unanswered) until the test ends.
async fn hold(socket: TcpStream) {
    tokio::time::sleep(NEVER).await;
    drop(socket);
}

fn provider(base_url: &str) -> OpenAiProvider {
    OpenAiProvider::new(
        "upstream".to_owned(),
        base_url,
        ApiKey::new(SECRET.to_owned()),
    )
}

fn target(deadlines: Deadlines) -> ModelTarget {
    ModelTarget {
        deadlines,
        ..crate::providers::test_target("public", "gpt-4o-mini")
    }
}

fn deadlines(first_token_ms: u64, idle_ms: u64, total_ms: u64) -> Deadlines {
    Deadlines {
        connect: NEVER,
        first_token: Duration::from_millis(first_token_ms),
        idle: Duration::from_millis(idle_ms),
        total: Duration::from_millis(total_ms),
    }
}

fn request(stream: bool) -> ChatCompletionRequest {
    let body = format!(
        r#"{{"model":"public","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
    );
    ChatCompletionRequest::parse(body.as_bytes()).unwrap()
}

fn assert_timeout(err: &ProviderError, expected: TimeoutPhase) {
    match err {
        ProviderError::Timeout { phase, .. } => assert_eq!(*phase, expected, "{err}"),
        other => panic!("expected a {} timeout, got {other:?}", expected.as_str()),
    }
}

/// Collects a stream's chunks until its first error, which must come within `bound`.
async fn run_to_error(stream: ChunkStream, bound: Duration) -> (usize, ProviderError) {
    tokio::time::timeout(bound, async move {
        let mut stream = stream;
        let mut chunks = 0;
        while let Some(item) = stream.next().await {
            match item {
                Ok(_) => chunks += 1,
                Err(err) => return (chunks, err),
            }
        }
        panic!("the stream ended without an error after {chunks} chunks");
    })
    .await
    .expect("the deadline did not fire in time")
}

#[tokio::test]
async fn a_stream_whose_headers_never_come_times_out_in_first_token() {
    let url = upstream(hold).await;
    let started = Instant::now();
    let Err(err) = provider(&url)
        .chat_stream(&target(deadlines(200, 10_000, 20_000)), &request(true))
        .await
    else {
        panic!("the stream started without headers");
    };
    assert_timeout(&err, TimeoutPhase::FirstToken);
    assert!(started.elapsed() < Duration::from_secs(5));
    let gateway = crate::error::GatewayError::from(err);
    assert_eq!(gateway.status().as_u16(), 504);
}

#[tokio::test]
async fn a_stream_with_headers_but_no_first_chunk_times_out_in_first_token() {
    let url = upstream(|mut socket| async move {
        stream_head(&mut socket).await;
        // Keep-alive comments and Azure's prompt-filter event are body, but not a first token.
        piece(&mut socket, ": keep-alive\n\n").await.unwrap();
        piece(
            &mut socket,
            "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[]}\n\n",
        )
        .await
        .unwrap();
        hold(socket).await;
    })
    .await;
    let stream = provider(&url)
        .chat_stream(&target(deadlines(300, 10_000, 20_000)), &request(true))
        .await
        .unwrap();
    let (chunks, err) = run_to_error(stream, Duration::from_secs(5)).await;
    assert_eq!(chunks, 0);
    assert_timeout(&err, TimeoutPhase::FirstToken);
}

#[tokio::test]
async fn a_gap_between_chunks_times_out_in_idle() {
    let url = upstream(|mut socket| async move {
        stream_head(&mut socket).await;
        piece(&mut socket, &chunk_event("one")).await.unwrap();
        piece(&mut socket, &chunk_event(" two")).await.unwrap();
        hold(socket).await;
    })
    .await;
    let stream = provider(&url)
        .chat_stream(&target(deadlines(10_000, 200, 20_000)), &request(true))
        .await
        .unwrap();
    let (chunks, err) = run_to_error(stream, Duration::from_secs(5)).await;
    assert_eq!(chunks, 2);
    assert_timeout(&err, TimeoutPhase::Idle);
}

#[tokio::test]
async fn a_stream_that_runs_too_long_times_out_in_total() {
    let url = upstream(|mut socket| async move {
        stream_head(&mut socket).await;
        // A chunk every 20 ms, for ever: neither first-token nor idle fire.
        while piece(&mut socket, &chunk_event("x")).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let stream = provider(&url)
        .chat_stream(&target(deadlines(5_000, 5_000, 400)), &request(true))
        .await
        .unwrap();
    let (chunks, err) = run_to_error(stream, Duration::from_secs(5)).await;
    assert!(chunks > 1, "{chunks}");
    assert_timeout(&err, TimeoutPhase::Total);
}

#[tokio::test]
async fn a_slow_complete_body_times_out_in_total() {
    let url = upstream(|mut socket| async move {
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"id\":")
            .await
            .unwrap();
        hold(socket).await;
    })
    .await;
    let err = provider(&url)
        .chat(&target(deadlines(100, 100, 400)), &request(false))
        .await
        .unwrap_err();
    // First-token and idle bound streams only: a complete call has the total deadline.
    assert_timeout(&err, TimeoutPhase::Total);
}

#[tokio::test]
async fn complete_call_headers_that_never_come_time_out_in_total() {
    let url = upstream(hold).await;
    let err = provider(&url)
        .chat(&target(deadlines(100, 100, 300)), &request(false))
        .await
        .unwrap_err();
    assert_timeout(&err, TimeoutPhase::Total);
}

#[tokio::test]
async fn a_tls_handshake_that_never_completes_times_out_in_connect() {
    // Accepts TCP, never says a word of TLS.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        hold(socket).await;
    });
    let connect = Duration::from_millis(200);
    let http = crate::providers::test_http_clients()
        .with_connect_timeout(connect)
        .unwrap();
    let target = ModelTarget {
        deadlines: Deadlines {
            connect,
            ..deadlines(10_000, 10_000, 20_000)
        },
        http,
        ..crate::providers::test_target("public", "gpt-4o-mini")
    };
    let started = Instant::now();
    let err = provider(&format!("https://{address}/v1"))
        .chat(&target, &request(false))
        .await
        .unwrap_err();
    assert_timeout(&err, TimeoutPhase::Connect);
    assert!(started.elapsed() < Duration::from_secs(5));
    let gateway = crate::error::GatewayError::from(err);
    assert_eq!(gateway.body().error.code, Some("upstream_connect_timeout"));
}

#[tokio::test]
async fn dropping_a_stream_closes_the_upstream_connection() {
    let (closed_tx, closed_rx) = oneshot::channel::<Instant>();
    let url = upstream(|mut socket| async move {
        stream_head(&mut socket).await;
        let (mut reader, mut writer) = socket.split();
        let event = chunk_event("x");
        let mut buffer = [0u8; 64];
        loop {
            tokio::select! {
                // The client sends nothing more: a read returns only when it closes.
                read = reader.read(&mut buffer) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        break;
                    }
                }
                written = piece(&mut writer, &event) => {
                    if written.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        let _ = closed_tx.send(Instant::now());
    })
    .await;
    let mut stream = provider(&url)
        .chat_stream(&target(deadlines(5_000, 5_000, 20_000)), &request(true))
        .await
        .unwrap();
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    let dropped = Instant::now();
    drop(stream);
    // Without the close the upstream would write forever; 20 s only spares a loaded machine.
    let closed = tokio::time::timeout(Duration::from_secs(20), closed_rx)
        .await
        .expect("the upstream did not see the connection close within 20 s")
        .unwrap();
    assert!(closed >= dropped);
}

/// Answers one request with `status`, `headers` and `body`.
async fn answer(status: &'static str, headers: &'static str, body: String) -> String {
    upstream(move |mut socket| async move {
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{headers}\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        hold(socket).await;
    })
    .await
}

async fn status_error(status: &'static str, headers: &'static str, body: &str) -> ProviderError {
    let url = answer(status, headers, body.to_owned()).await;
    provider(&url)
        .chat(&target(deadlines(5_000, 5_000, 10_000)), &request(false))
        .await
        .unwrap_err()
}

fn upstream_status(err: ProviderError) -> (u16, String, Option<u64>) {
    match err {
        ProviderError::UpstreamStatus {
            status,
            message,
            retry_after_secs,
            ..
        } => (status, message, retry_after_secs),
        other => panic!("expected an upstream status, got {other:?}"),
    }
}

#[tokio::test]
async fn error_messages_are_extracted_and_the_key_redacted() {
    let body = format!(
        r#"{{"error":{{"message":"Key {SECRET} may not use this model.","type":"invalid_request_error"}}}}"#
    );
    let (status, message, _) = upstream_status(
        status_error(
            "400 Bad Request",
            "content-type: application/json\r\n",
            &body,
        )
        .await,
    );
    assert_eq!(status, 400);
    assert_eq!(message, "Key [redacted] may not use this model.");

    // Gemini answers some errors as a one-element array.
    let (_, message, _) = upstream_status(
        status_error(
            "500 Internal Server Error",
            "",
            r#"[{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}]"#,
        )
        .await,
    );
    assert_eq!(message, "Internal error encountered.");

    // Not JSON: the text itself, cut to a readable length, still redacted.
    let long = format!("{SECRET} {}", "x".repeat(2_000));
    let (_, message, _) = upstream_status(status_error("502 Bad Gateway", "", &long).await);
    assert!(message.starts_with("[redacted] xxx"), "{message}");
    assert!(message.chars().count() <= MAX_ERROR_MESSAGE_CHARS + "[redacted]".len());

    // A key straddling the length cut leaves no prefix behind.
    let straddling = format!(
        "{}{SECRET} and more",
        "y".repeat(MAX_ERROR_MESSAGE_CHARS - 5)
    );
    let (_, message, _) = upstream_status(status_error("502 Bad Gateway", "", &straddling).await);
    assert!(!message.contains(&SECRET[..5]), "{message}");

    // Nothing at all: the status's reason.
    let (_, message, _) = upstream_status(status_error("503 Service Unavailable", "", "").await);
    assert_eq!(message, "Service Unavailable");
}

#[tokio::test]
async fn a_trickling_error_body_is_read_no_longer_than_the_total_deadline() {
    let url = upstream(|mut socket| async move {
        socket
            .write_all(b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        // One byte every 50 ms: never idle, but the whole body would take a minute.
        for _ in 0..1_200 {
            if piece(&mut socket, "z").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let started = Instant::now();
    let err = provider(&url)
        .chat(&target(deadlines(5_000, 5_000, 500)), &request(false))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, message, _) = upstream_status(err);
    assert_eq!(status, 500);
    assert!(message.starts_with('z'), "{message}");
}

#[tokio::test]
async fn auth_failures_never_echo_the_upstream_body() {
    for status in ["401 Unauthorized", "403 Forbidden"] {
        let body = format!(r#"{{"error":{{"message":"Incorrect API key provided: {SECRET}."}}}}"#);
        let err = status_error(status, "content-type: application/json\r\n", &body).await;
        let text = crate::error::GatewayError::from(err.clone())
            .body()
            .error
            .message;
        let (_, message, _) = upstream_status(err);
        assert!(
            !message.contains("Incorrect") && !text.contains(SECRET),
            "{text}"
        );
    }
}

#[tokio::test]
async fn geminis_400_for_a_bad_key_is_the_gateways_credential_problem() {
    let body = format!(
        r#"[{{"error":{{"code":400,"message":"API key not valid: {SECRET}","status":"INVALID_ARGUMENT",
            "details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}}]}}}}]"#
    );
    let err = status_error(
        "400 Bad Request",
        "content-type: application/json\r\n",
        &body,
    )
    .await;
    let gateway = crate::error::GatewayError::from(err.clone());
    assert_eq!(gateway.status(), 502);
    let (status, message, _) = upstream_status(err);
    assert_eq!(status, 401);
    assert!(!message.contains(SECRET), "{message}");
}

#[tokio::test]
async fn a_success_body_over_the_cap_is_an_invalid_response() {
    // A content-length far beyond the cap; the transport stops reading at the cap.
    let url = upstream(move |mut socket| async move {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY_BYTES + 10
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let block = vec![b' '; 1 << 20];
        for _ in 0..=(MAX_BODY_BYTES >> 20) {
            if socket.write_all(&block).await.is_err() {
                return;
            }
        }
        hold(socket).await;
    })
    .await;
    let err = provider(&url)
        .chat(&target(deadlines(5_000, 5_000, 60_000)), &request(false))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::InvalidResponse { reason, .. } if reason.contains("exceeds")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_429_carries_the_upstream_retry_after() {
    let err = status_error(
        "429 Too Many Requests",
        "retry-after: 20\r\n",
        r#"{"error":{"message":"Rate limit reached","type":"tokens","code":"rate_limit_exceeded"}}"#,
    )
    .await;
    let gateway = crate::error::GatewayError::from(err.clone());
    assert_eq!(upstream_status(err).2, Some(20));
    let response = axum::response::IntoResponse::into_response(gateway);
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "20");
}

#[tokio::test]
async fn an_unreadable_success_body_is_an_invalid_response_without_the_key() {
    let url = answer(
        "200 OK",
        "content-type: application/json\r\n",
        format!("not json {SECRET}"),
    )
    .await;
    let err = provider(&url)
        .chat(&target(deadlines(5_000, 5_000, 10_000)), &request(false))
        .await
        .unwrap_err();
    match &err {
        ProviderError::InvalidResponse { reason, .. } => {
            assert!(reason.starts_with("not a chat completion"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains(SECRET));
}

#[test]
fn gemini_retry_info_in_the_body_gives_a_retry_delay() {
    let error = serde_json::json!({"error": {"code": 429, "message": "quota", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "29s"}
    ]}});
    assert_eq!(body_retry_delay_secs(&error), Some(29));
    let sub_second = serde_json::json!({"error": {"details": [{"retryDelay": "0.4s"}]}});
    assert_eq!(body_retry_delay_secs(&sub_second), Some(1));
    assert_eq!(
        body_retry_delay_secs(&serde_json::json!({"error": {}})),
        None
    );
}

#[test]
fn retry_after_is_read_in_whole_seconds() {
    let mut headers = reqwest::header::HeaderMap::new();
    assert_eq!(retry_after_secs(&headers), None);
    headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
    assert_eq!(retry_after_secs(&headers), Some(7));
    headers.insert(reqwest::header::RETRY_AFTER, "0.2".parse().unwrap());
    assert_eq!(retry_after_secs(&headers), Some(1));
    headers.insert(
        reqwest::header::RETRY_AFTER,
        "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
    );
    assert_eq!(retry_after_secs(&headers), None);
}
