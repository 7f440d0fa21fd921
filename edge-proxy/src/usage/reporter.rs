//! Ships sealed spool segments to the control plane, oldest first, one segment per batch, and
//! deletes a segment only after `UsageService.Report` acknowledged it. A failed report is
//! retried with backoff forever: events wait on disk, they are never dropped. Re-sending after
//! a lost ack is safe because ingest is idempotent by event id.

use super::spool::{self, SpoolState};
use crate::config::client::Backoff;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::usage_service_client::UsageServiceClient;
use tonic::transport::{Channel, Endpoint};

const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// Re-check the spool at least this often, in case a wake-up was missed.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("invalid control plane URL: {0}")]
    Url(String),
    #[error("reading spool segment: {0}")]
    Spool(String),
    #[error("control plane refused the batch: {0}")]
    Status(#[from] tonic::Status),
    #[error("control plane did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Debug)]
pub struct UsageReporter {
    pub control_plane: String,
    pub join_token: String,
    pub edge_id: String,
    pub spool: Arc<SpoolState>,
}

impl UsageReporter {
    pub async fn run(self, shutdown: CancellationToken) {
        let channel = match Endpoint::from_shared(self.control_plane.clone()) {
            Ok(endpoint) => endpoint
                .connect_timeout(Duration::from_secs(5))
                .http2_keep_alive_interval(Duration::from_secs(10))
                .connect_lazy(),
            Err(err) => {
                tracing::error!(error = %err, "invalid control plane URL; usage stays in the spool");
                return;
            }
        };
        let mut client = UsageServiceClient::new(channel);
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            match self.ship_all(&mut client, &shutdown).await {
                Ok(()) => {
                    backoff.reset();
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.spool.sealed.notified() => {}
                        () = tokio::time::sleep(IDLE_RECHECK) => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, spooled_bytes = self.spool.bytes(), "usage report failed; will retry");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    /// Ships every sealed segment; stops at the first failure so order is kept.
    async fn ship_all(
        &self,
        client: &mut UsageServiceClient<Channel>,
        shutdown: &CancellationToken,
    ) -> Result<(), ReportError> {
        let dir = self.spool.dir().to_owned();
        let segments = tokio::task::spawn_blocking(move || spool::sealed_segments(&dir))
            .await
            .map_err(|err| ReportError::Spool(err.to_string()))?
            .map_err(|err| ReportError::Spool(err.to_string()))?;
        for (seq, path) in segments {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            self.ship(client, seq, path).await?;
        }
        Ok(())
    }

    async fn ship(
        &self,
        client: &mut UsageServiceClient<Channel>,
        seq: u64,
        path: PathBuf,
    ) -> Result<(), ReportError> {
        let read_path = path.clone();
        let (events, bytes) = tokio::task::spawn_blocking(move || read_segment(&read_path))
            .await
            .map_err(|err| ReportError::Spool(err.to_string()))??;
        let batch = pb::UsageBatch {
            edge_id: self.edge_id.clone(),
            batch_id: format!("{}-{seq:020}", self.edge_id),
            events,
        };
        let count = batch.events.len();
        let mut request = tonic::Request::new(batch);
        let bearer = format!("Bearer {}", self.join_token)
            .parse()
            .map_err(|_| ReportError::Url("join token contains invalid characters".to_owned()))?;
        request.metadata_mut().insert("authorization", bearer);
        let ack = tokio::time::timeout(REPORT_TIMEOUT, client.report(request))
            .await
            .map_err(|_| ReportError::Timeout(REPORT_TIMEOUT))??
            .into_inner();
        tracing::debug!(
            seq,
            count,
            accepted = ack.accepted,
            duplicates = ack.duplicates,
            rejected = ack.rejected,
            "usage batch acknowledged"
        );
        if ack.rejected > 0 {
            tracing::warn!(
                seq,
                rejected = ack.rejected,
                "control plane rejected usage events; they are kept in usage_rejected_events"
            );
        }
        let delete_path = path.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_file(&delete_path))
            .await
            .map_err(|err| ReportError::Spool(err.to_string()))?
            .map_err(|err| ReportError::Spool(format!("{}: {err}", path.display())))?;
        self.spool.forget_bytes(bytes);
        Ok(())
    }
}

/// Reads one segment. A line that does not parse can only be the torn tail of a write cut by an
/// OS crash (whole lines are written at once); it is logged and skipped.
fn read_segment(path: &std::path::Path) -> Result<(Vec<pb::UsageEvent>, u64), ReportError> {
    let text = std::fs::read(path)
        .map_err(|err| ReportError::Spool(format!("{}: {err}", path.display())))?;
    let bytes = text.len() as u64;
    let mut events = Vec::new();
    for line in text.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        match serde_json::from_slice::<super::UsageEvent>(line) {
            Ok(event) => events.push(event.into()),
            Err(err) => {
                tracing::error!(path = %path.display(), error = %err, "skipping a torn usage spool line")
            }
        }
    }
    Ok((events, bytes))
}
