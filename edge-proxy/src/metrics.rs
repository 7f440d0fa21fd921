//! The edge's Prometheus metrics, served on `GET /metrics`. One `Metrics` value lives in
//! `AppState` (and is shared with the limiter); nothing is registered in a global.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    /// The level (org, team, project, user, key), never an id: bounded cardinality.
    scope: &'static str,
    metric: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    fallback_active: Gauge,
    lease_requests: Family<OutcomeLabels, Counter>,
    limit_rejections: Family<RejectionLabels, Counter>,
    open_connections: Gauge,
    shed_connections: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let fallback_active = Gauge::default();
        registry.register(
            "tollgate_limits_fallback_active",
            "Limit counters enforcing this edge's safe share because their lease expired",
            fallback_active.clone(),
        );
        let lease_requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "tollgate_lease_requests",
            "Lease calls to the control plane, by outcome (ok or error)",
            lease_requests.clone(),
        );
        let limit_rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "tollgate_limit_rejections",
            "Requests refused with 429 by a limit, by level and metric",
            limit_rejections.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "tollgate_http_connections_open",
            "Client connections the edge holds open",
            open_connections.clone(),
        );
        let shed_connections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tollgate_http_connections_shed",
            "Client connections closed by the edge's connection limits, by reason (idle, evicted, refused)",
            shed_connections.clone(),
        );
        Self {
            open_connections,
            shed_connections,
            registry,
            fallback_active,
            lease_requests,
            limit_rejections,
        }
    }

    pub fn fallback_entered(&self) {
        self.fallback_active.inc();
    }

    pub fn fallback_left(&self) {
        self.fallback_active.dec();
    }

    pub fn fallback_active(&self) -> i64 {
        self.fallback_active.get()
    }

    pub fn lease_request(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.lease_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Exports the usage spool's signals: whether its disk refuses writes, and events lost.
    pub fn watch_spool(&mut self, spool: &crate::usage::SpoolState) {
        let (write_failing, lost_events) = spool.gauges();
        self.registry.register(
            "tollgate_usage_spool_write_failing",
            "1 while the usage spool cannot write to its disk (its full policy then applies)",
            write_failing,
        );
        self.registry.register(
            "tollgate_usage_events_lost",
            "Usage events that could not be queued for the spool's disk",
            lost_events,
        );
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// `reason`: `idle`, `evicted` or `refused`.
    pub fn connection_shed(&self, reason: &'static str) {
        self.shed_connections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn limit_rejected(&self, scope: &'static str, metric: &'static str) {
        self.limit_rejections
            .get_or_create(&RejectionLabels { scope, metric })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %err, "could not encode metrics");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_limit_metrics_by_name() {
        let metrics = Metrics::new();
        metrics.fallback_entered();
        metrics.lease_request(true);
        metrics.lease_request(false);
        metrics.limit_rejected("team", "requests_per_minute");
        let text = metrics.encode();
        assert!(text.contains("tollgate_limits_fallback_active 1"), "{text}");
        assert!(
            text.contains(r#"tollgate_lease_requests_total{outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tollgate_lease_requests_total{outcome="error"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tollgate_limit_rejections_total{scope="team",metric="requests_per_minute"} 1"#
            ),
            "{text}"
        );
    }
}
