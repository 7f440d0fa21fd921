//! The lease client: one task per edge that keeps every active counter supplied with units
//! leased from the control plane's `LimitService`. It calls once per interval while any counter
//! is active, and at once when a request misses, a counter runs low or a limit changes; calls
//! are made one at a time (single flight), so requests waiting for a renewal share one call.
//! A failed call is retried with capped, jittered backoff; a counter whose lease runs out
//! meanwhile falls back to the safe share, and the next successful call restores it.

use super::Limiter;
use super::counter::{Claim, Counter, Grant};
use super::spec::LimitKey;
use crate::config::RuntimeHolder;
use crate::config::client::Backoff;
use crate::config::link::ControlPlaneLink;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::limit_service_client::LimitServiceClient;
use tonic::transport::Channel;

pub const DEFAULT_LEASE_INTERVAL: Duration = Duration::from_millis(1_000);
/// A call that takes longer is abandoned; the lease's own TTL decides about fallback.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("invalid control plane URL: {0}")]
    Url(String),
    #[error("control plane refused the lease call: {0}")]
    Status(#[from] tonic::Status),
    #[error("control plane did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Debug)]
pub struct LeaseClient {
    pub control_plane: ControlPlaneLink,
    pub join_token: String,
    pub edge_id: String,
    /// Random per process: the plane keys the cumulative figures by it.
    pub session_id: String,
    pub interval: Duration,
    pub limiter: Arc<Limiter>,
    pub runtime: Arc<RuntimeHolder>,
    /// Where the known-edge count is kept across restarts (the state dir), if anywhere.
    pub state_dir: Option<PathBuf>,
}

impl LeaseClient {
    pub fn new(
        control_plane: ControlPlaneLink,
        join_token: String,
        edge_id: String,
        interval: Duration,
        limiter: Arc<Limiter>,
        runtime: Arc<RuntimeHolder>,
    ) -> Self {
        Self {
            control_plane,
            join_token,
            edge_id,
            session_id: uuid::Uuid::new_v4().to_string(),
            interval,
            limiter,
            runtime,
            state_dir: None,
        }
    }

    /// Keeps the known-edge count in `dir`, so a restart during a plane outage uses it.
    pub fn remembering_known_edges_in(mut self, dir: PathBuf) -> Self {
        self.state_dir = Some(dir);
        self
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let channel = match self.control_plane.endpoint() {
            Ok(endpoint) => endpoint.connect_lazy(),
            Err(err) => {
                tracing::error!(error = %err, "invalid control plane URL; limits enforce this edge's safe share");
                return;
            }
        };
        let mut client = LimitServiceClient::new(channel)
            .max_decoding_message_size(tollgate_contract::MAX_LEASE_RESPONSE_BYTES);
        let shared = Arc::clone(self.limiter.shared());
        let mut backoff = Backoff::default();
        loop {
            let failing = match self.round(&mut client).await {
                Ok(()) => {
                    backoff.reset();
                    false
                }
                Err(err) => {
                    tracing::warn!(error = %err, "lease call failed; will retry");
                    true
                }
            };
            // While failing, wait out the backoff: an urgent wake-up could not help.
            let delay = if failing {
                backoff.next_delay()
            } else {
                self.interval
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
                () = shared.urgent.notified(), if !failing => {}
            }
        }
    }

    /// One lease call with a claim per active counter (none: no call). Always marks a round
    /// done, so requests waiting for a renewal stop waiting.
    async fn round(&self, client: &mut LimitServiceClient<Channel>) -> Result<(), LeaseError> {
        let shared = Arc::clone(self.limiter.shared());
        let round = shared.calls_started.fetch_add(1, Ordering::AcqRel) + 1;
        let result = self.call(client).await;
        shared.calls_done.send_replace(round);
        result
    }

    async fn call(&self, client: &mut LimitServiceClient<Channel>) -> Result<(), LeaseError> {
        if let Some(runtime) = self.runtime.load() {
            self.limiter.sync(&runtime);
        }
        let now_ms = self.limiter.now_ms();
        let mut claimed: Vec<(Arc<Counter>, Claim)> = Vec::new();
        for counter in self.limiter.counters() {
            if let Some(claim) = counter.claim(now_ms) {
                counter.expire_lease(now_ms);
                claimed.push((counter, claim));
            }
        }
        if claimed.is_empty() {
            return Ok(());
        }
        let request = pb::LeaseRequest {
            edge_id: self.edge_id.clone(),
            session_id: self.session_id.clone(),
            claims: claimed
                .iter()
                .map(|(_, claim)| claim_to_wire(claim))
                .collect(),
        };
        let mut request = tonic::Request::new(request);
        let bearer = format!("Bearer {}", self.join_token)
            .parse()
            .map_err(|_| LeaseError::Url("join token contains invalid characters".to_owned()))?;
        request.metadata_mut().insert("authorization", bearer);
        let sent_ms = self.limiter.now_ms();
        let shared = self.limiter.shared();
        let answer = tokio::time::timeout(CALL_TIMEOUT, client.lease(request)).await;
        let response = match answer {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                shared.plane_reachable.store(false, Ordering::Relaxed);
                shared.metrics.lease_request(false);
                return Err(status.into());
            }
            Err(_) => {
                shared.plane_reachable.store(false, Ordering::Relaxed);
                shared.metrics.lease_request(false);
                return Err(LeaseError::Timeout(CALL_TIMEOUT));
            }
        };
        shared.metrics.lease_request(true);
        shared.plane_reachable.store(true, Ordering::Relaxed);
        let known_edges = response.known_edges.max(1);
        let previous = shared.known_edges.swap(known_edges, Ordering::Relaxed);
        if previous != known_edges {
            self.remember_known_edges(known_edges).await;
        }
        if response.lease_ttl_ms > 0 {
            shared
                .lease_ttl_ms
                .store(response.lease_ttl_ms, Ordering::Relaxed);
        }
        let lease_ttl_ms = shared.lease_ttl_ms.load(Ordering::Relaxed);
        let grants: HashMap<LimitKey, Grant> = response
            .grants
            .iter()
            .filter_map(|grant| {
                let key = LimitKey::from_wire(grant.key.as_ref()?)?;
                Some((key, grant_from_wire(grant)))
            })
            .collect();
        let now_ms = self.limiter.now_ms();
        for (counter, claim) in &claimed {
            // No grant: the limit is gone; the next sync drops the counter.
            if let Some(grant) = grants.get(&claim.key) {
                counter.apply_grant(grant, sent_ms, lease_ttl_ms, now_ms);
            }
        }
        Ok(())
    }
}

impl LeaseClient {
    async fn remember_known_edges(&self, count: u32) {
        let Some(dir) = self.state_dir.clone() else {
            return;
        };
        let saved = tokio::task::spawn_blocking(move || {
            crate::config::state::save_known_edges(&dir, count)
        })
        .await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot store the known-edge count"),
            Err(err) => tracing::warn!(error = %err, "storing the known-edge count panicked"),
        }
    }
}

fn claim_to_wire(claim: &Claim) -> pb::LeaseClaim {
    pb::LeaseClaim {
        key: Some(claim.key.to_wire()),
        period_start_unix_ms: claim.period_start_unix_ms,
        granted_total: claim.granted_total,
        consumed_total: claim.consumed_total,
        reserved: claim.reserved,
        want_available: claim.want_available,
    }
}

fn grant_from_wire(grant: &pb::LeaseGrant) -> Grant {
    Grant {
        period_start_unix_ms: grant.period_start_unix_ms,
        period_end_unix_ms: grant.period_end_unix_ms,
        next_period_end_unix_ms: grant.next_period_end_unix_ms,
        granted_total: grant.granted_total.max(0),
        limit: grant.limit,
        used: grant.used,
        reset_ms: grant.reset_ms,
    }
}

#[cfg(test)]
mod tests;
