//! The cost of limit checks on the hot path: admit + settle over five counters (org, team,
//! project, user, key) whose leases hold plenty, from two threads at once, so the shared
//! org/team/project counters see real contention. Prints p50/p99/p999 per call in µs.
//!
//! Run: `cargo bench -p tollgate-edge-proxy --bench limits`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_edge_proxy::config::runtime::Runtime;
use tollgate_edge_proxy::config::snapshot::Snapshot;
use tollgate_edge_proxy::limits::Limiter;
use tollgate_edge_proxy::limits::clock::SystemClock;
use tollgate_edge_proxy::limits::counter::Grant;
use tollgate_edge_proxy::limits::headers::RateHeaders;
use tollgate_edge_proxy::limits::spec::Demand;
use tollgate_edge_proxy::metrics::Metrics;
use tollgate_proto::v1 as pb;

const THREADS: usize = 2;
const CALLS_PER_THREAD: usize = 500_000;
const WARMUP: usize = 50_000;

fn limit(scope: pb::LimitScope, id: &str, metric: pb::LimitMetric) -> pb::SnapshotLimit {
    pb::SnapshotLimit {
        key: Some(pb::LimitKey {
            scope: scope as i32,
            scope_id: id.into(),
            metric: metric as i32,
        }),
        limit: i64::MAX / 4,
        soft_threshold_pct: 80,
        hard_threshold_pct: 100,
        scope_name: id.into(),
    }
}

fn snapshot() -> pb::ConfigSnapshot {
    pb::ConfigSnapshot {
        version: 1,
        generated_at_unix_ms: 0,
        orgs: vec![pb::SnapshotOrg {
            id: "o1".into(),
            name: "acme".into(),
            time_zone: "UTC".into(),
        }],
        teams: vec![pb::SnapshotTeam {
            id: "t1".into(),
            org_id: "o1".into(),
            name: "platform".into(),
        }],
        projects: vec![pb::SnapshotProject {
            id: "p1".into(),
            team_id: "t1".into(),
            name: "bot".into(),
        }],
        users: vec![pb::SnapshotUser {
            id: "u1".into(),
            org_id: "o1".into(),
            name: "ada".into(),
        }],
        virtual_keys: vec![pb::SnapshotVirtualKey {
            id: "k1".into(),
            key_hash: vec![7; 32],
            key_prefix: "tg_0707".into(),
            org_id: "o1".into(),
            team_id: "t1".into(),
            project_id: "p1".into(),
            user_id: "u1".into(),
            allowed_models: vec![],
            expires_at_unix_ms: 0,
        }],
        providers: vec![],
        models: vec![],
        keys_by_delta: false,
        limits: vec![
            limit(pb::LimitScope::Org, "o1", pb::LimitMetric::TokensPerMonth),
            limit(
                pb::LimitScope::Team,
                "t1",
                pb::LimitMetric::RequestsPerMinute,
            ),
            limit(
                pb::LimitScope::Project,
                "p1",
                pb::LimitMetric::BudgetMicrosPerMonth,
            ),
            limit(pb::LimitScope::User, "u1", pb::LimitMetric::TokensPerMinute),
            limit(
                pb::LimitScope::Key,
                "k1",
                pb::LimitMetric::ConcurrentRequests,
            ),
        ],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let snapshot = Snapshot::try_from(snapshot()).unwrap();
    let key = Arc::new(
        snapshot
            .owners
            .resolve(&snapshot.keys.as_ref().unwrap()[0])
            .unwrap(),
    );
    let runtime = Runtime::compile(
        snapshot,
        &tollgate_edge_proxy::providers::clients::HttpClients::new(),
    )
    .unwrap();
    let limiter = Arc::new(Limiter::new(
        true,
        Arc::new(SystemClock),
        Arc::new(Metrics::new()),
    ));
    limiter.sync(&runtime);
    let now = limiter.now_ms();
    for counter in limiter.counters() {
        counter.apply_grant(
            &Grant {
                period_start_unix_ms: 0,
                period_end_unix_ms: 0,
                next_period_end_unix_ms: 0,
                granted_total: i64::MAX / 8,
                limit: i64::MAX / 4,
                used: 0,
                reset_ms: 0,
            },
            now,
            3_600_000,
            now,
        );
    }
    let runtime = Arc::new(runtime);
    let demand = Demand {
        tokens: 1_200,
        cost_micros: 900,
    };
    let actual = Demand {
        tokens: 450,
        cost_micros: 310,
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            let runtime = Arc::clone(&runtime);
            let key = Arc::clone(&key);
            std::thread::spawn(move || {
                let mut latencies = Vec::with_capacity(CALLS_PER_THREAD);
                for i in 0..CALLS_PER_THREAD + WARMUP {
                    let started = Instant::now();
                    // What the request path does: bind the key's counters, admit, settle,
                    // and compute the x-ratelimit-* headers of the response.
                    let limits = limiter.bind(&runtime, &key);
                    let admission = limits.try_admit(demand).unwrap();
                    admission.settle(actual);
                    std::hint::black_box(RateHeaders::for_key(&limits).pairs());
                    let elapsed = started.elapsed();
                    if i >= WARMUP {
                        latencies.push(elapsed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect();
    all.sort();
    println!(
        "limits: bind + admit + settle + rate headers over 5 counters, {THREADS} threads, {} calls",
        all.len()
    );
    println!(
        "  p50 {:.2} µs   p99 {:.2} µs   p999 {:.2} µs   max {:.2} µs",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        percentile(&all, 1.0),
    );
}
