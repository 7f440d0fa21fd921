//! The control plane's Prometheus metrics for limits, served as text on `GET /metrics` at
//! `--metrics-listen`. One [`Metrics`] value is created by `serve` and handed to the services
//! that count; nothing lives in a static.

use super::Metric;
use super::alerts::AlertKind;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    kind: &'static str,
    metric: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// How a lease call ended, for `tollgate_lease_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseCallOutcome {
    Ok,
    InvalidArgument,
    Unauthenticated,
    Error,
}

impl LeaseCallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::InvalidArgument => "invalid_argument",
            Self::Unauthenticated => "unauthenticated",
            Self::Error => "error",
        }
    }
}

/// Counters of the limits machinery. Cheap to clone: clones share the same series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    alerts: Family<AlertLabels, Counter>,
    lease_requests: Family<OutcomeLabels, Counter>,
    lease_claims: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let alerts = Family::<AlertLabels, Counter>::default();
        let lease_requests = Family::<OutcomeLabels, Counter>::default();
        let lease_claims = Counter::default();
        // The text encoding appends `_total` to counter names.
        registry.register(
            "tollgate_limit_alerts",
            "Limit threshold alerts recorded by this replica",
            alerts.clone(),
        );
        registry.register(
            "tollgate_lease_requests",
            "Lease calls answered, by outcome",
            lease_requests.clone(),
        );
        registry.register(
            "tollgate_lease_claims",
            "Claims processed in successful lease calls",
            lease_claims.clone(),
        );
        Self {
            registry: Arc::new(registry),
            alerts,
            lease_requests,
            lease_claims,
        }
    }

    pub fn alert_recorded(&self, kind: AlertKind, metric: Metric) {
        self.alerts
            .get_or_create(&AlertLabels {
                kind: kind.as_str(),
                metric: metric.as_str(),
            })
            .inc();
    }

    pub fn lease_call(&self, outcome: LeaseCallOutcome) {
        self.lease_requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn lease_claims(&self, claims: usize) {
        self.lease_claims
            .inc_by(u64::try_from(claims).unwrap_or(u64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %err, "cannot encode metrics");
        }
        text
    }
}

/// Binds the metrics listener now, so a bad `--metrics-listen` fails at startup.
pub async fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// Serves `GET /metrics` on `listener` until `shutdown` is cancelled.
pub fn spawn(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "metrics server failed");
        }
    })
}

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels() {
        let metrics = Metrics::new();
        metrics.alert_recorded(AlertKind::Soft, Metric::BudgetMicrosPerMonth);
        metrics.lease_call(LeaseCallOutcome::Ok);
        metrics.lease_call(LeaseCallOutcome::Ok);
        metrics.lease_claims(3);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"tollgate_limit_alerts_total{kind="soft",metric="budget_micros_per_month"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"tollgate_lease_requests_total{outcome="ok"} 2"#),
            "{text}"
        );
        assert!(text.contains("tollgate_lease_claims_total 3"), "{text}");
    }
}
