//! LimitService: edges renew their leases here about once a second. Authenticated by join
//! token like every edge-facing service; the request is validated at the boundary
//! (`lease::LeaseRequest::try_from`) and processed in one transaction (`store`).

use super::lease::LeaseRequest;
use super::metrics::{LeaseCallOutcome, Metrics};
use super::store::{LeaseOutcome, process_lease};
use crate::auth::verify_join_token;
use crate::error::AdminError;
use sqlx::PgPool;
use std::time::Duration;
use tollgate_proto::v1 as pb;
use tonic::{Request, Response, Status};

/// Default lifetime of a grant that is not renewed (`--lease-ttl-ms`).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct LeaseService {
    pool: PgPool,
    lease_ttl: Duration,
    metrics: Metrics,
}

impl LeaseService {
    pub fn new(pool: PgPool, lease_ttl: Duration, metrics: Metrics) -> Self {
        Self {
            pool,
            lease_ttl,
            metrics,
        }
    }

    pub fn into_server(self) -> pb::limit_service_server::LimitServiceServer<Self> {
        pb::limit_service_server::LimitServiceServer::new(self)
    }

    async fn handle(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<pb::LeaseResponse, AdminError> {
        verify_join_token(&self.pool, request.metadata()).await?;
        let request = LeaseRequest::try_from(request.into_inner())?;
        // The database's clock, not this replica's: replicas with skewed clocks must agree on
        // when a lease expires and which period a claim belongs to.
        let now = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
            .fetch_one(&self.pool)
            .await?;
        let outcome = process_lease(&self.pool, &request, now, self.lease_ttl).await?;
        self.metrics.lease_claims(request.claims.len());
        for (kind, metric) in &outcome.alerts_recorded {
            self.metrics.alert_recorded(*kind, *metric);
            tracing::info!(
                kind = kind.as_str(),
                metric = metric.as_str(),
                "limit alert recorded"
            );
        }
        Ok(response(outcome, now.timestamp_millis(), self.lease_ttl))
    }
}

fn response(outcome: LeaseOutcome, now_ms: i64, lease_ttl: Duration) -> pb::LeaseResponse {
    pb::LeaseResponse {
        grants: outcome.grants.into_iter().map(Into::into).collect(),
        known_edges: outcome.known_edges,
        server_time_unix_ms: now_ms,
        lease_ttl_ms: i64::try_from(lease_ttl.as_millis()).unwrap_or(i64::MAX),
    }
}

fn outcome_of<T>(result: &Result<T, AdminError>) -> LeaseCallOutcome {
    match result {
        Ok(_) => LeaseCallOutcome::Ok,
        Err(AdminError::InvalidArgument { .. }) => LeaseCallOutcome::InvalidArgument,
        Err(AdminError::Unauthenticated(_)) => LeaseCallOutcome::Unauthenticated,
        Err(_) => LeaseCallOutcome::Error,
    }
}

#[tonic::async_trait]
impl pb::limit_service_server::LimitService for LeaseService {
    async fn lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let result = self.handle(request).await;
        self.metrics.lease_call(outcome_of(&result));
        Ok(Response::new(result?))
    }
}
