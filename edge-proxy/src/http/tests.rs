//! The endpoints served in process against the mock runtime: chat with limits (the reserve
//! phase, the 429 it answers, the x-ratelimit-* headers, and the usage event a rejection
//! records), and embeddings (`embeddings.rs`).

#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::snapshot::Snapshot;
use crate::config::snapshot::tests::{wire_limit, wire_snapshot};
use crate::limits::clock::SystemClock;
use crate::tokens::TokenCounter;
use crate::usage::spool::{self, SpoolConfig};
use crate::usage::{UsageEvent, UsageSink};
use sha2::{Digest, Sha256};
use std::sync::mpsc::Receiver;
use std::time::Duration;
use tollgate_proto::v1 as pb;

mod embeddings;

pub(super) struct Served {
    pub(super) url: String,
    pub(super) events: Receiver<UsageEvent>,
    metrics: Arc<Metrics>,
    _spool_dir: tempfile::TempDir,
}

/// An edge in `--config`-like mode (it owns its limits alone) whose key `tg_limited` has the
/// given limits.
pub(super) async fn serve(limits: Vec<pb::SnapshotLimit>) -> Served {
    let mut wire = wire_snapshot();
    wire.limits = limits;
    serve_snapshot(wire).await
}

/// An edge serving `wire` (key `tg_limited` replaces its first key's hash).
pub(super) async fn serve_snapshot(mut wire: pb::ConfigSnapshot) -> Served {
    wire.virtual_keys[0].key_hash = Sha256::digest(b"tg_limited").to_vec();
    let http = crate::providers::test_http_clients();
    let runtime = Arc::new(RuntimeHolder::new());
    runtime
        .install(Snapshot::try_from(wire).unwrap(), &http)
        .unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let (_sink, spool_state, _writer) =
        spool::open(SpoolConfig::new(spool_dir.path().join("spool"))).unwrap();
    let (sender, events) = std::sync::mpsc::sync_channel(64);
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(AppState {
        runtime,
        max_body_bytes: 1 << 20,
        parse_limits: Default::default(),
        body_budget: Default::default(),
        meter: MeterContext {
            sink: UsageSink::from_sender(sender),
            counter: TokenCounter::new(),
            edge_id: "edge-test".to_owned(),
        },
        spool: spool_state,
        limiter: Arc::new(Limiter::new(
            false,
            Arc::new(SystemClock),
            Arc::clone(&metrics),
        )),
        metrics: Arc::clone(&metrics),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Served {
        url: format!("http://{address}"),
        events,
        metrics,
        _spool_dir: spool_dir,
    }
}

async fn chat(url: &str, body: serde_json::Value) -> reqwest::Response {
    crate::providers::test_http_client()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("tg_limited")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn hello() -> serde_json::Value {
    serde_json::json!({
        "model": "mock-small",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 16
    })
}

#[tokio::test]
async fn requests_over_a_team_rpm_limit_get_429_with_retry_after_and_rate_headers() {
    let edge = serve(vec![wire_limit(
        pb::LimitScope::Team,
        "t1",
        pb::LimitMetric::RequestsPerMinute,
        2,
    )])
    .await;
    let first = chat(&edge.url, hello()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "1");
    assert!(first.headers().contains_key("x-ratelimit-reset-requests"));
    assert!(!first.headers().contains_key("x-ratelimit-limit-tokens"));
    assert_eq!(chat(&edge.url, hello()).await.status(), 200);

    let refused = chat(&edge.url, hello()).await;
    assert_eq!(refused.status(), 429);
    let headers = refused.headers().clone();
    assert_eq!(headers["x-tollgate-limit-scope"], "team");
    assert_eq!(headers["x-tollgate-limit-metric"], "requests_per_minute");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=61).contains(&retry_after), "{retry_after}");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Rate limit reached for requests per minute on team 'ml': limit 2."),
        "{message}"
    );

    let statuses: Vec<(String, u16)> = (0..3)
        .map(|_| {
            let event = edge.events.recv_timeout(Duration::from_secs(5)).unwrap();
            (event.status.as_str().to_owned(), event.http_status)
        })
        .collect();
    assert_eq!(statuses[2], ("rejected".to_owned(), 429));
    assert!(edge.metrics.encode().contains(
        r#"tollgate_limit_rejections_total{scope="team",metric="requests_per_minute"} 1"#
    ));
}

#[tokio::test]
async fn a_token_quota_reserves_the_worst_case_and_settles_to_actual_use() {
    // 100 tokens a day: a request capped at 16 output tokens fits, one asking for 4 choices of
    // 64 does not, whatever it would actually use.
    let edge = serve(vec![wire_limit(
        pb::LimitScope::Org,
        "o1",
        pb::LimitMetric::TokensPerDay,
        100,
    )])
    .await;
    assert_eq!(chat(&edge.url, hello()).await.status(), 200);
    let event = edge.events.recv_timeout(Duration::from_secs(5)).unwrap();
    let spent = event.input_tokens + event.output_tokens;
    assert!(spent > 0 && spent < 100);

    let mut greedy = hello();
    greedy["max_tokens"] = 64.into();
    greedy["n"] = 4.into();
    let refused = chat(&edge.url, greedy).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["x-tollgate-limit-metric"],
        "tokens_per_day"
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert_eq!(body["error"]["code"], "insufficient_quota");
    // No rpm/tpm limit: no x-ratelimit headers.
    let ok = chat(&edge.url, hello()).await;
    assert!(!ok.headers().contains_key("x-ratelimit-limit-requests"));
}

#[tokio::test]
async fn errors_after_authentication_carry_rate_headers_and_metrics_are_served() {
    let edge = serve(vec![wire_limit(
        pb::LimitScope::Key,
        "k1",
        pb::LimitMetric::TokensPerMinute,
        5_000,
    )])
    .await;
    let bad = chat(&edge.url, serde_json::json!({"model": "mock-small"})).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["x-ratelimit-limit-tokens"], "5000");
    assert_eq!(bad.headers()["x-ratelimit-remaining-tokens"], "5000");

    let metrics = crate::providers::test_http_client()
        .get(format!("{}/metrics", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("tollgate_limits_fallback_active 0"), "{text}");
}
