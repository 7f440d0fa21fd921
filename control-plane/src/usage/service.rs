//! UsageService: edges report spooled usage here in batches and delete a batch only once this
//! answered OK, so the answer must mean "stored" (or "refused for good, and kept aside").

use super::batch::UsageBatch;
use super::ingest::ingest;
use super::quarantine::{self, QuarantineBatch};
use crate::edge_gate::EdgeGate;
use chrono::Utc;
use sqlx::PgPool;
use std::time::Instant;
use tollgate_proto::v1 as pb;
use tonic::{Request, Response, Status};

/// Largest encoded batch accepted (the contract's bound; edges keep theirs far below it).
pub use tollgate_contract::usage::MAX_BATCH_BYTES;

/// Authenticates edges by join token and ingests their batches.
///
/// Accepted, duplicate and rejected counts are logged per batch with `tracing` (target
/// `tollgate_control_plane::usage::service`); they become Prometheus counters when the control
/// plane gets its metrics exporter.
#[derive(Debug, Clone)]
pub struct UsageIngestService {
    pool: PgPool,
}

impl UsageIngestService {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The tonic server for this service, sized for the largest batch we accept, behind the
    /// join-token gate (a caller without a token never gets its batch decoded).
    pub fn into_server(
        self,
        require_client_cert: bool,
    ) -> EdgeGate<pb::usage_service_server::UsageServiceServer<Self>> {
        let pool = self.pool.clone();
        let server = pb::usage_service_server::UsageServiceServer::new(self)
            .max_decoding_message_size(MAX_BATCH_BYTES);
        EdgeGate::new(server, pool, require_client_cert)
    }
}

#[tonic::async_trait]
impl pb::usage_service_server::UsageService for UsageIngestService {
    async fn report(
        &self,
        request: Request<pb::UsageBatch>,
    ) -> Result<Response<pb::UsageAck>, Status> {
        let started = Instant::now();
        let batch = UsageBatch::from_wire(request.into_inner(), Utc::now())?;
        let outcome = ingest(&self.pool, &batch).await?;
        tracing::info!(
            edge_id = %batch.edge_id,
            batch_id = %batch.batch_id,
            accepted = outcome.accepted,
            duplicates = outcome.duplicates,
            rejected = outcome.rejected,
            elapsed_ms = started.elapsed().as_millis(),
            "usage batch ingested"
        );
        for rejected in &batch.rejected {
            tracing::warn!(
                edge_id = %batch.edge_id,
                batch_id = %batch.batch_id,
                event_id = %rejected.event_id,
                reason = %rejected.reason,
                "usage event rejected; kept in usage_rejected_events"
            );
        }
        Ok(Response::new(pb::UsageAck {
            batch_id: batch.batch_id,
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
            rejected: outcome.rejected,
        }))
    }

    async fn quarantine(
        &self,
        request: Request<pb::QuarantineBatch>,
    ) -> Result<Response<pb::QuarantineAck>, Status> {
        let batch = QuarantineBatch::from_wire(request.into_inner())?;
        let stored = quarantine::store(&self.pool, &batch).await?;
        let total = u32::try_from(batch.records.len()).unwrap_or(u32::MAX);
        tracing::warn!(
            edge_id = %batch.edge_id,
            batch_id = %batch.batch_id,
            records = total,
            stored,
            "edge quarantined usage records; kept in usage_rejected_events"
        );
        Ok(Response::new(pb::QuarantineAck {
            stored,
            duplicates: total.saturating_sub(stored),
        }))
    }
}
