#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What the control plane does with gRPC input that is not what it claims to be, sent by hand
//! over HTTP/2 (as any client that can reach the port could).

use futures::StreamExt;
use std::time::Duration;
use tollgate_e2e::{ControlPlane, TestDb};

const REPORT: &str = "/tollgate.v1.UsageService/Report";

fn h2c() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A gRPC frame: uncompressed flag, big-endian length, then the bytes.
fn frame(declared_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&declared_len.to_be_bytes());
    framed.extend_from_slice(payload);
    framed
}

async fn grpc_status(response: reqwest::Response) -> (String, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (header("grpc-status"), header("grpc-message"))
}

async fn plane() -> (TestDb, ControlPlane, String) {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    let join_token = cp.seed_demo().await.join_token;
    (db, cp, join_token)
}

/// Before: junk protobuf was INTERNAL, as if the plane had failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_protobuf_is_invalid_argument() {
    let (_db, cp, join_token) = plane().await;
    let junk = [0xff_u8; 16];
    let response = h2c()
        .post(format!("{}{REPORT}", cp.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {join_token}"))
        .body(frame(junk.len() as u32, &junk))
        .send()
        .await
        .unwrap();
    let (status, message) = grpc_status(response).await;
    assert_eq!(status, "3", "{message}");
    assert!(message.contains("malformed"), "{message}");
}

/// Before: the plane read and decoded a report before checking its join token, so a caller
/// without one could make it buffer 16 MiB; here it declares 16 MiB and never sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_without_a_join_token_is_refused_before_its_body_is_read() {
    let (_db, cp, _join_token) = plane().await;
    let head = frame(16 << 20, b"partial");
    let never_finished = futures::stream::once(async move { Ok::<_, std::io::Error>(head) })
        .chain(futures::stream::pending());
    let response = h2c()
        .post(format!("{}{REPORT}", cp.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(reqwest::Body::wrap_stream(never_finished))
        .send()
        .await
        .expect("answered without waiting for the body");
    let (status, message) = grpc_status(response).await;
    assert_eq!(status, "16", "{message}");
}
