//! Ships sealed spool segments to the control plane, oldest first, one segment per batch, and
//! deletes a segment only after `UsageService.Report` acknowledged it. A failed report is
//! retried with backoff forever: events wait on disk, they are never dropped. Re-sending after
//! a lost ack is safe because ingest is idempotent by event id.

use super::segment::{self, SpooledEvent};
use super::spool::{self, SpoolState};
use crate::config::client::Backoff;
use crate::config::link::ControlPlaneLink;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::usage_service_client::UsageServiceClient;
use tonic::transport::Channel;

const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// Re-check the spool at least this often, in case a wake-up was missed.
const IDLE_RECHECK: Duration = Duration::from_secs(1);
/// Where records go that even the plane's quarantine refused (inside the spool directory).
const LOCAL_QUARANTINE_DIR: &str = "quarantine";

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
    pub control_plane: ControlPlaneLink,
    pub join_token: String,
    pub edge_id: String,
    pub spool: Arc<SpoolState>,
}

impl UsageReporter {
    pub async fn run(self, shutdown: CancellationToken) {
        let channel = match self.control_plane.endpoint() {
            Ok(endpoint) => endpoint.connect_lazy(),
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

    /// Ships one segment as one or more reports and deletes it. A report the plane refuses as
    /// malformed, and lines that are not events, go to the plane's quarantine instead, so a bad
    /// record never holds up the events behind it. Only a transient failure (the plane or its
    /// database unreachable) stops here, to be retried: re-sending the parts already
    /// acknowledged is harmless, ingest is idempotent.
    async fn ship(
        &self,
        client: &mut UsageServiceClient<Channel>,
        seq: u64,
        path: PathBuf,
    ) -> Result<(), ReportError> {
        let read_path = path.clone();
        let segment = tokio::task::spawn_blocking(move || segment::read(&read_path))
            .await
            .map_err(|err| ReportError::Spool(err.to_string()))?
            .map_err(|err| ReportError::Spool(format!("{}: {err}", path.display())))?;
        let mut quarantine = segment.unreadable;
        for (part, events) in segment::reports(&segment.events).into_iter().enumerate() {
            let batch_id = format!("{seq:020}-{part}");
            match self.report(client, &batch_id, events).await {
                Ok(()) => {}
                Err(ReportError::Status(status)) if refused_for_good(&status) => {
                    tracing::error!(seq, part, %status, "control plane refused a usage report as malformed; quarantining its events");
                    let reason = format!("report refused: {}", status.message());
                    quarantine.extend(events.iter().map(|event| {
                        segment::quarantined(&event.line, &reason, &event.wire.event_id)
                    }));
                }
                Err(err) => return Err(err),
            }
        }
        if !quarantine.is_empty() {
            self.quarantine(client, seq, &quarantine).await?;
        }
        let delete_path = path.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_file(&delete_path))
            .await
            .map_err(|err| ReportError::Spool(err.to_string()))?
            .map_err(|err| ReportError::Spool(format!("{}: {err}", path.display())))?;
        self.spool.forget_bytes(segment.bytes);
        Ok(())
    }

    async fn report(
        &self,
        client: &mut UsageServiceClient<Channel>,
        batch_id: &str,
        events: &[SpooledEvent],
    ) -> Result<(), ReportError> {
        let batch = pb::UsageBatch {
            edge_id: self.edge_id.clone(),
            batch_id: batch_id.to_owned(),
            events: events.iter().map(|event| event.wire.clone()).collect(),
        };
        let request = self.authorized(batch)?;
        let ack = tokio::time::timeout(REPORT_TIMEOUT, client.report(request))
            .await
            .map_err(|_| ReportError::Timeout(REPORT_TIMEOUT))??
            .into_inner();
        tracing::debug!(
            batch_id,
            count = events.len(),
            accepted = ack.accepted,
            duplicates = ack.duplicates,
            rejected = ack.rejected,
            "usage batch acknowledged"
        );
        if ack.rejected > 0 {
            tracing::warn!(
                batch_id,
                rejected = ack.rejected,
                "control plane rejected usage events; they are kept in usage_rejected_events"
            );
        }
        Ok(())
    }

    /// Hands records to the plane's quarantine. If the plane refuses even that, the records
    /// are written to `quarantine/` in the spool directory and logged: kept, never dropped,
    /// and no longer in the way.
    async fn quarantine(
        &self,
        client: &mut UsageServiceClient<Channel>,
        seq: u64,
        records: &[pb::QuarantinedRecord],
    ) -> Result<(), ReportError> {
        for (part, records) in segment::quarantine_batches(records).into_iter().enumerate() {
            let batch = pb::QuarantineBatch {
                edge_id: self.edge_id.clone(),
                batch_id: format!("{seq:020}-q{part}"),
                records: records.to_vec(),
            };
            let request = self.authorized(batch)?;
            match tokio::time::timeout(REPORT_TIMEOUT, client.quarantine(request)).await {
                Err(_) => return Err(ReportError::Timeout(REPORT_TIMEOUT)),
                Ok(Ok(ack)) => {
                    let ack = ack.into_inner();
                    tracing::warn!(
                        seq,
                        stored = ack.stored,
                        duplicates = ack.duplicates,
                        "usage records quarantined in the control plane (usage_rejected_events)"
                    );
                }
                Ok(Err(status)) if refused_for_good(&status) => {
                    tracing::error!(seq, %status, "control plane refused quarantined usage records; keeping them on local disk");
                    let dir = self.spool.dir().join(LOCAL_QUARANTINE_DIR);
                    let file = dir.join(format!("{seq:020}-{part}.jsonl"));
                    let lines: Vec<u8> = records
                        .iter()
                        .flat_map(|record| record.raw.iter().copied().chain([b'\n']))
                        .collect();
                    tokio::task::spawn_blocking(move || {
                        use std::io::Write;
                        use std::os::unix::fs::OpenOptionsExt;
                        crate::config::state::private_dir(&dir)?;
                        std::fs::OpenOptions::new()
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .mode(0o600)
                            .open(&file)?
                            .write_all(&lines)
                    })
                    .await
                    .map_err(|err| ReportError::Spool(err.to_string()))?
                    .map_err(|err| ReportError::Spool(format!("local quarantine: {err}")))?;
                }
                Ok(Err(status)) => return Err(ReportError::Status(status)),
            }
        }
        Ok(())
    }

    fn authorized<T>(&self, message: T) -> Result<tonic::Request<T>, ReportError> {
        let mut request = tonic::Request::new(message);
        let bearer = format!("Bearer {}", self.join_token)
            .parse()
            .map_err(|_| ReportError::Url("join token contains invalid characters".to_owned()))?;
        request.metadata_mut().insert("authorization", bearer);
        Ok(request)
    }
}

/// Whether the plane refused the content itself, so sending it again can never succeed:
/// a malformed batch (INVALID_ARGUMENT) or one too big to decode (OUT_OF_RANGE). Everything
/// else (unreachable, unavailable, a timeout, a bad join token) may pass later.
/// A message that did not decode (on either side of the link) is not a verdict on the events.
fn refused_for_good(status: &tonic::Status) -> bool {
    let undecodable = status
        .message()
        .starts_with(tollgate_proto::codec::MALFORMED_MESSAGE_PREFIX);
    matches!(
        status.code(),
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange
    ) && !undecodable
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::usage::spool::tests::event;
    use std::sync::Mutex;
    use tollgate_proto::v1::usage_service_server::{UsageService, UsageServiceServer};

    /// A control plane that refuses every report holding the event `poison` as malformed, and
    /// records what it accepted and what it quarantined.
    #[derive(Default, Clone)]
    struct Plane {
        reported: Arc<Mutex<Vec<String>>>,
        quarantined: Arc<Mutex<Vec<pb::QuarantinedRecord>>>,
    }

    #[tonic::async_trait]
    impl UsageService for Plane {
        async fn report(
            &self,
            request: tonic::Request<pb::UsageBatch>,
        ) -> Result<tonic::Response<pb::UsageAck>, tonic::Status> {
            let batch = request.into_inner();
            if batch.events.iter().any(|event| event.event_id == "poison") {
                return Err(tonic::Status::invalid_argument("events: malformed"));
            }
            let mut reported = self.reported.lock().unwrap();
            reported.extend(batch.events.into_iter().map(|event| event.event_id));
            Ok(tonic::Response::new(pb::UsageAck::default()))
        }

        async fn quarantine(
            &self,
            request: tonic::Request<pb::QuarantineBatch>,
        ) -> Result<tonic::Response<pb::QuarantineAck>, tonic::Status> {
            let mut quarantined = self.quarantined.lock().unwrap();
            quarantined.extend(request.into_inner().records);
            Ok(tonic::Response::new(pb::QuarantineAck::default()))
        }
    }

    fn write_segment(dir: &std::path::Path, seq: u64, lines: &[Vec<u8>]) {
        let text: Vec<u8> = lines
            .iter()
            .flat_map(|l| l.iter().copied().chain([b'\n']))
            .collect();
        std::fs::write(dir.join(format!("{seq:020}.jsonl")), text).unwrap();
    }

    #[tokio::test]
    async fn a_refused_segment_is_quarantined_and_the_segments_behind_it_still_ship() {
        let plane = Plane::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(UsageServiceServer::new(plane.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);

        let dir = tempfile::tempdir().unwrap();
        let line = |id: &str| serde_json::to_vec(&event(id)).unwrap();
        write_segment(
            dir.path(),
            1,
            &[line("a"), line("poison"), b"{torn".to_vec()],
        );
        write_segment(dir.path(), 2, &[line("b")]);
        let (_sink, spool, _writer) =
            spool::open(spool::SpoolConfig::new(dir.path().to_owned())).unwrap();
        let reporter = UsageReporter {
            control_plane: ControlPlaneLink::plaintext(&format!("http://{address}")),
            join_token: "token".into(),
            edge_id: "e".into(),
            spool: Arc::clone(&spool),
        };
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(reporter.run(shutdown.clone()));

        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !spool::sealed_segments(dir.path()).unwrap().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "segments never shipped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        running.await.unwrap();

        assert_eq!(*plane.reported.lock().unwrap(), ["b"]);
        let quarantined = plane.quarantined.lock().unwrap();
        let mut ids: Vec<(&str, bool)> = quarantined
            .iter()
            .map(|r| (r.event_id.as_str(), r.reason.starts_with("report refused")))
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, [("", false), ("a", true), ("poison", true)]);
        assert!(!dir.path().join(LOCAL_QUARANTINE_DIR).exists());
    }
}
