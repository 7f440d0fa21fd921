//! Does spooling usage to disk add latency to requests? Serves the real router in process with
//! the mock provider (no latency) and measures client-side latency over loopback twice in the
//! same run: with the real spool (disk writes, fsync every 100 ms) and with a sink whose events
//! are drained and discarded. Prints p50/p99 of both and their ratio.
//!
//! Run: `cargo bench -p tollgate-edge-proxy --bench spool_latency`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_edge_proxy::config::runtime::Runtime;
use tollgate_edge_proxy::config::{RuntimeHolder, file};
use tollgate_edge_proxy::http::{self, AppState};
use tollgate_edge_proxy::tokens::TokenCounter;
use tollgate_edge_proxy::usage::meter::MeterContext;
use tollgate_edge_proxy::usage::spool::{self, SpoolConfig};
use tollgate_edge_proxy::usage::{SpoolState, UsageSink};

const CONFIG: &str = r#"
[[providers]]
name = "mock"
kind = "mock"
[providers.mock]
output_tokens = 16

[[models]]
name = "mock-small"
provider = "mock"
input_price_micros_per_mtok = 100_000
output_price_micros_per_mtok = 400_000

[[keys]]
key = "tg_bench"
org = "bench"
team = "bench"
project = "bench"
"#;

const REQUESTS: usize = 20_000;
const WARMUP: usize = 2_000;
const CONCURRENCY: usize = 8;

async fn serve(sink: UsageSink, spool: Arc<SpoolState>) -> String {
    let http_client = tollgate_edge_proxy::providers::clients::HttpClients::new();
    let runtime = Arc::new(RuntimeHolder::new());
    runtime.store(Runtime::compile(file::parse(CONFIG).unwrap(), &http_client).unwrap());
    let state = Arc::new(AppState {
        runtime,
        max_body_bytes: 1 << 20,
        parse_limits: Default::default(),
        body_budget: Default::default(),
        meter: MeterContext {
            sink,
            counter: TokenCounter::new(),
            edge_id: "bench".to_owned(),
        },
        spool,
        limiter: Arc::new(tollgate_edge_proxy::limits::Limiter::new(
            false,
            Arc::new(tollgate_edge_proxy::limits::clock::SystemClock),
            Arc::new(tollgate_edge_proxy::metrics::Metrics::new()),
        )),
        metrics: Arc::new(tollgate_edge_proxy::metrics::Metrics::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, http::router(state)).await });
    format!("http://{address}/v1/chat/completions")
}

async fn measure(url: &str) -> Vec<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let body = serde_json::json!({
        "model": "mock-small",
        "messages": [{"role": "user", "content": "How much latency does the usage spool add?"}]
    })
    .to_string();
    let per_worker = (REQUESTS + WARMUP) / CONCURRENCY;
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let client = client.clone();
        let url = url.to_owned();
        let body = body.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth("tg_bench")
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        let latencies = worker.await.unwrap();
        all.extend_from_slice(&latencies[WARMUP / CONCURRENCY..]);
    }
    all.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (sink, spool_state, _writer) =
            spool::open(SpoolConfig::new(dir.path().join("spool"))).unwrap();
        let with_spool = measure(&serve(sink, Arc::clone(&spool_state)).await).await;

        let (sender, receiver) = std::sync::mpsc::sync_channel(16 * 1024);
        std::thread::spawn(move || while receiver.recv().is_ok() {});
        let discard_dir = tempfile::tempdir().unwrap();
        let (_unused_sink, idle_state, _idle_writer) =
            spool::open(SpoolConfig::new(discard_dir.path().join("spool"))).unwrap();
        let without_spool = measure(&serve(UsageSink::from_sender(sender), idle_state).await).await;

        let segments = spool::sealed_segments(&dir.path().join("spool"))
            .unwrap()
            .len();
        println!(
            "requests per run: {} (after {WARMUP} warm-up), concurrency {CONCURRENCY}",
            with_spool.len()
        );
        for (label, latencies) in [
            ("without spool (discarding sink)", &without_spool),
            ("with disk spool", &with_spool),
        ] {
            println!(
                "{label:<32} p50 {:>8.1} µs   p99 {:>8.1} µs",
                percentile(latencies, 0.50).as_secs_f64() * 1e6,
                percentile(latencies, 0.99).as_secs_f64() * 1e6,
            );
        }
        println!(
            "ratio with/without: p50 {:.3}  p99 {:.3}   ({} spool segments, {} bytes written)",
            percentile(&with_spool, 0.50).as_secs_f64()
                / percentile(&without_spool, 0.50).as_secs_f64(),
            percentile(&with_spool, 0.99).as_secs_f64()
                / percentile(&without_spool, 0.99).as_secs_f64(),
            segments,
            spool_state.bytes(),
        );
    });
}
