//! ConfigService: one long-lived stream per edge. The plane sends a full snapshot on connect and
//! a new one whenever the config version moves (pushed by `version_watch`, never polled by
//! edges), followed by what changed in the key table since the key revision the edge holds, and
//! records what each edge ACKs, NACKs and when it was last heard from.

use crate::auth::verify_join_token;
use crate::error::AdminError;
use crate::key_feed::KeyFeed;
use crate::snapshot::SnapshotBuilder;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::edge_message::Kind;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a snapshot that could not be built (database down) is tried again.
const BUILD_RETRY: Duration = Duration::from_secs(1);
const MAX_EDGE_ID_LEN: usize = 128;
const MAX_LABEL_LEN: usize = 64;
const MAX_NACK_REASON_LEN: usize = 2000;

#[derive(Debug, Clone)]
pub struct ConfigStreamService {
    pool: PgPool,
    builder: Arc<SnapshotBuilder>,
    keys: Arc<KeyFeed>,
    versions: watch::Receiver<u64>,
    shutdown: CancellationToken,
}

impl ConfigStreamService {
    pub fn new(
        pool: PgPool,
        builder: Arc<SnapshotBuilder>,
        keys: Arc<KeyFeed>,
        versions: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            pool,
            builder,
            keys,
            versions,
            shutdown,
        }
    }
}

/// The validated first message of a stream.
#[derive(Debug)]
struct EdgeHello {
    edge_id: String,
    region: String,
    build_version: String,
    config_version: i64,
    /// The key revision the edge holds, when it takes keys as deltas; `None` for an edge that
    /// takes keys in snapshots.
    key_revision: Option<u64>,
}

impl TryFrom<pb::EdgeHello> for EdgeHello {
    type Error = AdminError;

    fn try_from(hello: pb::EdgeHello) -> Result<Self, Self::Error> {
        let printable = |s: &str| s.chars().all(|c| !c.is_control());
        if hello.edge_id.is_empty()
            || hello.edge_id.len() > MAX_EDGE_ID_LEN
            || !printable(&hello.edge_id)
        {
            return Err(AdminError::invalid(
                "edge_id",
                format!("must be 1 to {MAX_EDGE_ID_LEN} printable characters"),
            ));
        }
        if hello.region.len() > MAX_LABEL_LEN || !printable(&hello.region) {
            return Err(AdminError::invalid("region", "too long or not printable"));
        }
        if hello.build_version.len() > MAX_LABEL_LEN || !printable(&hello.build_version) {
            return Err(AdminError::invalid(
                "build_version",
                "too long or not printable",
            ));
        }
        Ok(Self {
            edge_id: hello.edge_id,
            region: hello.region,
            build_version: hello.build_version,
            config_version: i64::try_from(hello.config_version)
                .map_err(|_| AdminError::invalid("config_version", "out of range"))?,
            key_revision: hello.key_deltas.then_some(hello.key_revision),
        })
    }
}

#[tonic::async_trait]
impl pb::config_service_server::ConfigService for ConfigStreamService {
    type SubscribeStream = ReceiverStream<Result<pb::ConfigUpdate, Status>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<pb::EdgeMessage>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        verify_join_token(&self.pool, request.metadata()).await?;
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::EdgeMessage {
                kind: Some(Kind::Hello(hello)),
            }))) => EdgeHello::try_from(hello)?,
            Ok(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "the first message on the stream must be an EdgeHello",
                ));
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no EdgeHello within 10s")),
        };
        let session = EdgeSession {
            pool: self.pool.clone(),
            builder: Arc::clone(&self.builder),
            keys: Arc::clone(&self.keys),
            versions: self.versions.clone(),
            shutdown: self.shutdown.clone(),
            edge_id: hello.edge_id.clone(),
            session_id: Uuid::new_v4(),
            sent_version: 0,
            sent_key_revision: hello.key_revision,
        };
        session.register(&hello).await.map_err(Status::from)?;
        tracing::info!(edge_id = %hello.edge_id, region = %hello.region, held_version = hello.config_version, held_key_revision = ?hello.key_revision, "edge connected");
        let (outbound, receiver) = mpsc::channel(4);
        tokio::spawn(session.run(inbound, outbound));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// One connected edge: owns its stream until either side ends it or the plane shuts down.
struct EdgeSession {
    pool: PgPool,
    builder: Arc<SnapshotBuilder>,
    keys: Arc<KeyFeed>,
    versions: watch::Receiver<u64>,
    shutdown: CancellationToken,
    edge_id: String,
    session_id: Uuid,
    sent_version: u64,
    /// The key revision the edge holds once it applied what was sent; `None` when it takes
    /// keys in snapshots.
    sent_key_revision: Option<u64>,
}

/// Whether the stream can still carry updates.
enum Sent {
    Done,
    StreamClosed,
}

type Outbound = mpsc::Sender<Result<pb::ConfigUpdate, Status>>;

impl EdgeSession {
    async fn register(&self, hello: &EdgeHello) -> Result<(), AdminError> {
        sqlx::query!(
            r#"INSERT INTO edges (edge_id, region, build_version, config_version, key_revision,
                                  connected, session_id, last_seen_at)
               VALUES ($1, $2, $3, $4, $5, TRUE, $6, now())
               ON CONFLICT (edge_id) DO UPDATE SET
                   region = EXCLUDED.region, build_version = EXCLUDED.build_version,
                   config_version = EXCLUDED.config_version,
                   key_revision = EXCLUDED.key_revision, connected = TRUE,
                   session_id = EXCLUDED.session_id, last_seen_at = now()"#,
            hello.edge_id,
            hello.region,
            hello.build_version,
            hello.config_version,
            i64::try_from(hello.key_revision.unwrap_or(0)).unwrap_or(i64::MAX),
            self.session_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn run(mut self, mut inbound: Streaming<pb::EdgeMessage>, outbound: Outbound) {
        let mut needs_send = true;
        loop {
            if needs_send {
                let wanted = *self.versions.borrow_and_update();
                match self.send_updates(wanted, &outbound).await {
                    Ok(Sent::Done) => needs_send = false,
                    Ok(Sent::StreamClosed) => break,
                    Err(err) => {
                        tracing::warn!(edge_id = %self.edge_id, error = %err, "could not build config update; retrying");
                    }
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = outbound.closed() => break,
                changed = self.versions.changed() => match changed {
                    Ok(()) => needs_send = true,
                    Err(_) => break,
                },
                () = tokio::time::sleep(BUILD_RETRY), if needs_send => {}
                message = inbound.message() => match message {
                    Ok(Some(message)) => self.record(message).await,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(edge_id = %self.edge_id, %status, "edge stream ended with an error");
                        break;
                    }
                },
            }
        }
        if let Err(err) = self.disconnect().await {
            tracing::warn!(edge_id = %self.edge_id, error = %err, "could not mark edge disconnected");
        }
        tracing::info!(edge_id = %self.edge_id, "edge disconnected");
    }

    /// Sends the snapshot at `wanted` (or newer) if the edge does not have it yet, then the key
    /// change that brings the edge's key table there: snapshot first, so the orgs, teams and
    /// projects a new key belongs to are on the edge before the key is.
    async fn send_updates(&mut self, wanted: u64, outbound: &Outbound) -> Result<Sent, AdminError> {
        let snapshot = self.builder.snapshot(wanted).await?;
        if snapshot.version > self.sent_version {
            let wire = match self.sent_key_revision {
                Some(_) => (*snapshot).clone(),
                None => self.with_keys(&snapshot).await?,
            };
            let update = pb::ConfigUpdate {
                kind: Some(pb::config_update::Kind::Snapshot(wire)),
            };
            if outbound.send(Ok(update)).await.is_err() {
                return Ok(Sent::StreamClosed);
            }
            self.sent_version = snapshot.version;
        }
        let Some(held) = self.sent_key_revision else {
            return Ok(Sent::Done);
        };
        let change = self.keys.change(held, snapshot.version).await?;
        if !change.advances(held) {
            return Ok(Sent::Done);
        }
        for part in &change.parts {
            let update = pb::ConfigUpdate {
                kind: Some(pb::config_update::Kind::KeyDelta(part.clone())),
            };
            if outbound.send(Ok(update)).await.is_err() {
                return Ok(Sent::StreamClosed);
            }
        }
        tracing::debug!(edge_id = %self.edge_id, from = change.from_revision, to = change.to_revision, reset = change.reset, parts = change.parts.len(), "sent key change");
        self.sent_key_revision = Some(change.to_revision);
        Ok(Sent::Done)
    }

    /// The snapshot with every usable key in it, for an edge that does not take key deltas (one
    /// older than the plane, during a rolling upgrade).
    async fn with_keys(
        &self,
        snapshot: &pb::ConfigSnapshot,
    ) -> Result<pb::ConfigSnapshot, AdminError> {
        let table = self.keys.change(0, snapshot.version).await?;
        let mut wire = snapshot.clone();
        wire.virtual_keys = table.keys().cloned().collect();
        wire.keys_by_delta = false;
        Ok(wire)
    }

    async fn record(&self, message: pb::EdgeMessage) {
        let result = match message.kind {
            Some(Kind::Ack(ack)) => {
                tracing::info!(edge_id = %self.edge_id, version = ack.config_version, "edge applied snapshot");
                self.record_version(ack.config_version).await
            }
            Some(Kind::Heartbeat(beat)) => self.record_version(beat.config_version).await,
            Some(Kind::Nack(nack)) => {
                tracing::warn!(edge_id = %self.edge_id, version = nack.config_version, reason = %nack.reason, "edge rejected snapshot");
                self.record_nack(nack.config_version, &nack.reason).await
            }
            Some(Kind::KeysAck(ack)) => {
                tracing::debug!(edge_id = %self.edge_id, key_revision = ack.key_revision, "edge applied key change");
                self.record_key_revision(ack.key_revision).await
            }
            Some(Kind::KeysNack(nack)) => {
                tracing::warn!(edge_id = %self.edge_id, key_revision = nack.key_revision, reason = %nack.reason, "edge rejected key change");
                self.record_nack(nack.key_revision, &format!("virtual keys: {}", nack.reason))
                    .await
            }
            Some(Kind::Hello(_)) | None => Ok(()),
        };
        if let Err(err) = result {
            tracing::warn!(edge_id = %self.edge_id, error = %err, "could not record edge state");
        }
    }

    async fn record_version(&self, version: u64) -> Result<(), sqlx::Error> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        sqlx::query!(
            "UPDATE edges SET config_version = $2, last_seen_at = now() WHERE edge_id = $1 AND session_id = $3",
            self.edge_id,
            version,
            self.session_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_key_revision(&self, revision: u64) -> Result<(), sqlx::Error> {
        let revision = i64::try_from(revision).unwrap_or(i64::MAX);
        sqlx::query!(
            "UPDATE edges SET key_revision = $2, last_seen_at = now() WHERE edge_id = $1 AND session_id = $3",
            self.edge_id,
            revision,
            self.session_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A refused snapshot (by config version) or key change (by key revision, its reason
    /// prefixed), the latest shown in the edges listing.
    async fn record_nack(&self, version: u64, reason: &str) -> Result<(), sqlx::Error> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        let reason: String = reason.chars().take(MAX_NACK_REASON_LEN).collect();
        sqlx::query!(
            r#"UPDATE edges SET last_nack_version = $2, last_nack_reason = $3, last_nack_at = now(),
                                last_seen_at = now()
               WHERE edge_id = $1"#,
            self.edge_id,
            version,
            reason
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn disconnect(&self) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "UPDATE edges SET connected = FALSE, last_seen_at = now() WHERE edge_id = $1 AND session_id = $2",
            self.edge_id,
            self.session_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
