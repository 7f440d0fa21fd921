//! The lease client against an in-process fake `LimitService` (a real tonic server on
//! loopback): grants applied, single flight, fallback when the fake stops answering, recovery.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::snapshot::Snapshot;
use crate::config::snapshot::tests::{wire_limit, wire_snapshot};
use crate::limits::clock::SystemClock;
use crate::limits::spec::{Demand, Level, Metric};
use crate::metrics::Metrics;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use tollgate_proto::v1::limit_service_server::{LimitService, LimitServiceServer};

/// Grants every claim exactly what it wants on hand; can be told to fail or to be slow.
#[derive(Debug, Default)]
struct FakePlane {
    calls: AtomicUsize,
    failing: AtomicBool,
    delay_ms: AtomicU64,
    known_edges: u32,
    lease_ttl_ms: i64,
    requests: Mutex<Vec<pb::LeaseRequest>>,
    bearer: Mutex<Option<String>>,
}

/// The tonic service around the shared fake.
struct FakeService(Arc<FakePlane>);

#[tonic::async_trait]
impl LimitService for FakeService {
    async fn lease(
        &self,
        request: tonic::Request<pb::LeaseRequest>,
    ) -> Result<tonic::Response<pb::LeaseResponse>, tonic::Status> {
        self.0.answer(request).await
    }
}

impl FakePlane {
    async fn answer(
        &self,
        request: tonic::Request<pb::LeaseRequest>,
    ) -> Result<tonic::Response<pb::LeaseResponse>, tonic::Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.bearer.lock().unwrap() = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("plane down"));
        }
        let request = request.into_inner();
        let grants = request
            .claims
            .iter()
            .map(|claim| pb::LeaseGrant {
                key: claim.key.clone(),
                period_start_unix_ms: 0,
                period_end_unix_ms: 0,
                next_period_end_unix_ms: 0,
                granted_total: claim.consumed_total + claim.reserved + claim.want_available,
                limit: 1_000,
                used: claim.consumed_total + claim.reserved + claim.want_available,
                reset_ms: 60_000,
            })
            .collect();
        self.requests.lock().unwrap().push(request);
        Ok(tonic::Response::new(pb::LeaseResponse {
            grants,
            known_edges: self.known_edges,
            server_time_unix_ms: crate::auth::now_unix_ms(),
            lease_ttl_ms: self.lease_ttl_ms,
        }))
    }
}

struct Harness {
    plane: Arc<FakePlane>,
    limiter: Arc<Limiter>,
    metrics: Arc<Metrics>,
    runtime: Arc<RuntimeHolder>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A fake plane, a runtime whose key `k1` has a requests-per-minute limit of 10 on its team,
/// and a running lease client.
async fn harness(plane: FakePlane, interval: Duration) -> Harness {
    let plane = Arc::new(plane);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tonic::transport::Server::builder()
        .add_service(LimitServiceServer::new(FakeService(Arc::clone(&plane))))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.clone().cancelled_owned(),
        );
    tokio::spawn(server);

    let mut wire = wire_snapshot();
    wire.limits = vec![wire_limit(
        pb::LimitScope::Team,
        "t1",
        pb::LimitMetric::RequestsPerMinute,
        10,
    )];
    let runtime = Arc::new(RuntimeHolder::new());
    runtime
        .install(
            Snapshot::try_from(wire).unwrap(),
            &crate::providers::test_http_clients(),
        )
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let limiter = Arc::new(Limiter::new(
        true,
        Arc::new(SystemClock),
        Arc::clone(&metrics),
    ));
    let client = LeaseClient::new(
        crate::config::link::ControlPlaneLink::plaintext(&format!("http://{address}")),
        "tgj_test".to_owned(),
        "edge-test".to_owned(),
        interval,
        Arc::clone(&limiter),
        Arc::clone(&runtime),
    );
    tokio::spawn(client.run(shutdown.clone()));
    Harness {
        plane,
        limiter,
        metrics,
        runtime,
        shutdown,
    }
}

impl Harness {
    fn key_limits(&self) -> crate::limits::admission::KeyLimits {
        let runtime = self.runtime.load().unwrap();
        let record = self.runtime.keys().get(&[7; 32]).unwrap();
        let key = runtime.resolve_key(&record).unwrap();
        self.limiter.bind(&runtime, &key)
    }

    fn counter(&self) -> Arc<Counter> {
        self.limiter
            .counter(&LimitKey {
                level: Level::Team,
                scope_id: Arc::from("t1"),
                metric: Metric::RequestsPerMinute,
            })
            .unwrap()
    }
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn one_request() -> Demand {
    Demand::default()
}

#[tokio::test]
async fn a_miss_gets_an_immediate_grant_from_the_plane() {
    let h = harness(
        FakePlane {
            known_edges: 2,
            lease_ttl_ms: 10_000,
            ..FakePlane::default()
        },
        Duration::from_secs(30),
    )
    .await;
    let limits = h.key_limits();
    let refusal = limits.try_admit(one_request()).unwrap_err();
    assert!(
        refusal.renewable,
        "nothing granted yet, plane not known down"
    );
    h.limiter.await_renewal(Duration::from_secs(5)).await;
    let admission = limits.try_admit(one_request()).unwrap();
    admission.settle(one_request());

    let counter = h.counter();
    assert!(counter.granted_total() >= 1);
    assert_eq!(h.limiter.known_edges(), 2);
    let requests = h.plane.requests.lock().unwrap().clone();
    let claim = &requests.last().unwrap().claims[0];
    assert_eq!(claim.key.as_ref().unwrap().scope_id, "t1");
    assert!(claim.want_available >= 1);
    assert_eq!(requests.last().unwrap().edge_id, "edge-test");
    assert_eq!(
        h.plane.bearer.lock().unwrap().as_deref(),
        Some("Bearer tgj_test")
    );
    assert!(
        h.metrics
            .encode()
            .contains(r#"tollgate_lease_requests_total{outcome="ok"}"#)
    );
}

#[tokio::test]
async fn requests_waiting_for_a_renewal_share_one_call() {
    let h = harness(
        FakePlane {
            known_edges: 1,
            lease_ttl_ms: 10_000,
            delay_ms: AtomicU64::new(100),
            ..FakePlane::default()
        },
        Duration::from_secs(30),
    )
    .await;
    let limits = Arc::new(h.key_limits());
    assert!(limits.try_admit(one_request()).is_err());
    // Let the client's first (empty-handed) round finish, then count from a quiet point.
    h.limiter.await_renewal(Duration::from_secs(5)).await;
    let before = h.plane.calls.load(Ordering::SeqCst);
    let mut waiters = Vec::new();
    for _ in 0..20 {
        let limiter = Arc::clone(&h.limiter);
        waiters.push(tokio::spawn(async move {
            limiter.await_renewal(Duration::from_secs(5)).await;
        }));
    }
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let calls = h.plane.calls.load(Ordering::SeqCst) - before;
    assert!(
        (1..=2).contains(&calls),
        "20 waiting requests made {calls} calls"
    );
}

#[tokio::test]
async fn a_lease_that_is_not_renewed_falls_back_and_the_next_answer_restores_it() {
    let h = harness(
        FakePlane {
            known_edges: 2,
            // Long enough that a slow first round trip on a loaded machine never expires the
            // grant before the test uses it.
            lease_ttl_ms: 2_000,
            ..FakePlane::default()
        },
        Duration::from_millis(50),
    )
    .await;
    let limits = h.key_limits();
    assert!(limits.try_admit(one_request()).is_err());
    h.limiter.await_renewal(Duration::from_secs(5)).await;
    limits
        .try_admit(one_request())
        .unwrap()
        .settle(one_request());
    let counter = h.counter();
    assert!(!counter.in_fallback());

    h.plane.failing.store(true, Ordering::SeqCst);
    eventually("the counter falls back after the lease TTL", || {
        counter.in_fallback()
    })
    .await;
    assert_eq!(h.metrics.fallback_active(), 1);
    // Safe share: floor(10 / 2) = 5 per minute, one already in the window.
    let mut admitted = 0;
    while let Ok(admission) = limits.try_admit(one_request()) {
        admission.settle(one_request());
        admitted += 1;
        assert!(admitted <= 5, "fallback must never be unlimited");
    }
    assert_eq!(admitted, 4);
    assert!(
        h.metrics
            .encode()
            .contains(r#"tollgate_lease_requests_total{outcome="error"}"#)
    );

    h.plane.failing.store(false, Ordering::SeqCst);
    eventually("the next successful call leaves fallback", || {
        !counter.in_fallback()
    })
    .await;
    assert_eq!(h.metrics.fallback_active(), 0);
    let requests = h.plane.requests.lock().unwrap().clone();
    let claim = &requests.last().unwrap().claims[0];
    assert!(claim.consumed_total >= 5, "fallback spending is reported");
}
