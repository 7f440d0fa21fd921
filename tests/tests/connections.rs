#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Slow and idle clients: every connection has a bounded life and a bounded number of them are
//! open at once, so holding sockets never stops the edge serving anyone else.
//!
//! Each timeout is set to 1 s and a connection must be gone well within `GONE_WITHIN`: a bound
//! thirty times the timeout, so a busy CI machine never flakes it, while before the limits
//! existed these connections were kept forever.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_e2e::{Stack, chat_body};

const GONE_WITHIN: Duration = Duration::from_secs(30);

async fn stack_with(args: &[&str]) -> Stack {
    Stack::start_with_edge_args(args).await
}

/// Reads until the edge closes the connection; returns what it sent. Panics after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the edge kept the connection open for {within:?}"
    );
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_one_line_at_a_time_are_cut_off() {
    let stack = stack_with(&[
        "--header-read-timeout-secs",
        "1",
        "--idle-timeout-secs",
        "3600",
    ])
    .await;
    let mut stream = TcpStream::connect(("127.0.0.1", stack.edge.port()))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut line = 0;
    // A header every 200 ms, forever: each arrives long before any per-read timeout would fire.
    while started.elapsed() < GONE_WITHIN {
        let header = format!("x-slow-{line}: {line}\r\n");
        if stream.write_all(header.as_bytes()).await.is_err() {
            break;
        }
        line += 1;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            break;
        }
    }
    assert!(
        started.elapsed() < GONE_WITHIN,
        "the edge was still reading headers after {line} lines"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let stack = stack_with(&["--idle-timeout-secs", "1"]).await;
    let mut stream = TcpStream::connect(("127.0.0.1", stack.edge.port()))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut stream, GONE_WITHIN).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_body_gets_a_408_in_openai_form() {
    let stack = stack_with(&["--body-read-timeout-secs", "1"]).await;
    let mut stream = TcpStream::connect(("127.0.0.1", stack.edge.port()))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: edge\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\":",
        stack.demo.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let received = read_until_closed(&mut stream, GONE_WITHIN).await;
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    let body = &received[received.find("\r\n\r\n").expect("a body") + 4..];
    let error: serde_json::Value = serde_json::from_str(body).expect(body);
    assert_eq!(error["error"]["code"], "request_timeout", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_sockets_never_keeps_out_health_checks_or_requests() {
    const CAP: usize = 20;
    let stack = stack_with(&["--max-connections", "20", "--idle-timeout-secs", "3600"]).await;
    let mut idle = Vec::new();
    for _ in 0..CAP * 5 {
        idle.push(
            TcpStream::connect(("127.0.0.1", stack.edge.port()))
                .await
                .unwrap(),
        );
    }
    let health = tollgate_e2e::http_client()
        .get(stack.edge.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let reply = stack
        .client()
        .chat(Some(&stack.demo.key), &chat_body("mock-small", "hi"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);

    let metrics = stack.edge.metrics().await.unwrap();
    let open = metrics
        .value("tollgate_http_connections_open", &[])
        .unwrap();
    assert!(open <= CAP as f64, "{open} connections open, cap {CAP}");
    let evicted = metrics
        .value(
            "tollgate_http_connections_shed_total",
            &[("reason", "evicted")],
        )
        .unwrap();
    assert!(evicted >= (CAP * 4) as f64, "{evicted}");
}
