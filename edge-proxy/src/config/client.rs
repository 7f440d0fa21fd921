//! The edge's side of the config stream: dial the control plane, say hello with the version we
//! hold, apply each snapshot (compile, swap, persist, ACK) or refuse it (NACK, keep serving the
//! old one), and reconnect with capped, jittered backoff whenever the stream breaks.

use super::RuntimeHolder;
use super::link::ControlPlaneLink;
use super::runtime::Runtime;
use super::snapshot::Snapshot;
use super::state::StateStore;
use crate::providers::clients::HttpClients;
use prost::Message;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::config_service_client::ConfigServiceClient;

const HEARTBEAT: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid control plane URL: {0}")]
    Url(String),
    #[error("cannot connect to the control plane: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("control plane refused the stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("control plane closed the stream")]
    Closed,
}

#[derive(Debug)]
pub struct ConfigClient {
    pub control_plane: ControlPlaneLink,
    pub join_token: String,
    pub edge_id: String,
    pub region: String,
    pub runtime: Arc<RuntimeHolder>,
    pub state: Option<Arc<StateStore>>,
    pub http: HttpClients,
}

/// Capped exponential backoff with full jitter, so a fleet of edges does not reconnect in step.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

impl ConfigClient {
    /// Runs until `shutdown`; never gives up on the control plane.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            let mut applied_any = false;
            match self.session(&shutdown, &mut applied_any).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "config stream down; serving the last good config")
                }
            }
            if applied_any {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(
        &self,
        shutdown: &CancellationToken,
        applied_any: &mut bool,
    ) -> Result<(), ClientError> {
        let endpoint = self.control_plane.endpoint().map_err(ClientError::Url)?;
        let channel = endpoint.connect().await?;
        let mut client = ConfigServiceClient::new(channel)
            .max_decoding_message_size(tollgate_contract::MAX_SNAPSHOT_BYTES);

        let (outbound, outbound_rx) = mpsc::channel(16);
        let hello = pb::EdgeHello {
            edge_id: self.edge_id.clone(),
            region: self.region.clone(),
            build_version: env!("CARGO_PKG_VERSION").to_owned(),
            config_version: self.runtime.version(),
        };
        // Cannot fail: the receiver is alive and the channel empty.
        let _ = outbound.try_send(edge_message(pb::edge_message::Kind::Hello(hello)));
        let mut request = tonic::Request::new(ReceiverStream::new(outbound_rx));
        let bearer = format!("Bearer {}", self.join_token)
            .parse()
            .map_err(|_| ClientError::Url("join token contains invalid characters".to_owned()))?;
        request.metadata_mut().insert("authorization", bearer);
        let mut inbound = client.subscribe(request).await?.into_inner();
        tracing::info!(control_plane = %self.control_plane.url(), edge_id = %self.edge_id, "config stream connected");

        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = heartbeat.tick() => {
                    let beat = pb::EdgeHeartbeat { config_version: self.runtime.version() };
                    if outbound.send(edge_message(pb::edge_message::Kind::Heartbeat(beat))).await.is_err() {
                        return Err(ClientError::Closed);
                    }
                }
                update = inbound.message() => match update? {
                    None => return Err(ClientError::Closed),
                    Some(pb::ConfigUpdate { kind: Some(pb::config_update::Kind::Snapshot(snapshot)) }) => {
                        let reply = self.apply(snapshot).await;
                        *applied_any = true;
                        if outbound.send(reply).await.is_err() {
                            return Err(ClientError::Closed);
                        }
                    }
                    Some(pb::ConfigUpdate { kind: None }) => {}
                },
            }
        }
    }

    /// Compiles and swaps in a snapshot, or explains why not. Returns the ACK or NACK to send.
    async fn apply(&self, wire: pb::ConfigSnapshot) -> pb::EdgeMessage {
        let version = wire.version;
        let encoded = wire.encode_to_vec();
        let compiled =
            Snapshot::try_from(wire).and_then(|snapshot| Runtime::compile(snapshot, &self.http));
        match compiled {
            Ok(runtime) => {
                self.runtime.store(runtime);
                tracing::info!(version, "applied config snapshot");
                if let Some(state) = &self.state {
                    persist(Arc::clone(state), encoded, version).await;
                }
                edge_message(pb::edge_message::Kind::Ack(pb::SnapshotAck {
                    config_version: version,
                }))
            }
            Err(err) => {
                tracing::error!(version, error = %err, "rejected config snapshot; still serving version {}", self.runtime.version());
                edge_message(pb::edge_message::Kind::Nack(pb::SnapshotNack {
                    config_version: version,
                    reason: err.to_string(),
                }))
            }
        }
    }
}

fn edge_message(kind: pb::edge_message::Kind) -> pb::EdgeMessage {
    pb::EdgeMessage { kind: Some(kind) }
}

/// Writes the snapshot off the async threads. A failed write is logged, not fatal: the edge
/// still serves, it just could not start from this version after a restart.
async fn persist(state: Arc<StateStore>, encoded: Vec<u8>, version: u64) {
    match tokio::task::spawn_blocking(move || state.save(&encoded, version)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = %err, "could not persist config snapshot"),
        Err(err) => tracing::error!(error = %err, "snapshot persist task failed"),
    }
}

/// Loads the snapshot saved by an earlier run, if any, and compiles it.
pub async fn restore(state: Arc<StateStore>, http: &HttpClients) -> Option<Runtime> {
    let loaded = tokio::task::spawn_blocking(move || {
        state
            .load()
            .map(|bytes| bytes.map(|bytes| (bytes, state.version_floor())))
    })
    .await;
    let (bytes, floor) = match loaded {
        Ok(Ok(Some(loaded))) => loaded,
        Ok(Ok(None)) => return None,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "ignoring saved config snapshot");
            return None;
        }
        Err(err) => {
            tracing::warn!(error = %err, "snapshot restore task failed");
            return None;
        }
    };
    let compiled = pb::ConfigSnapshot::decode(bytes.as_slice())
        .map_err(|err| err.to_string())
        .and_then(|wire| {
            if wire.version < floor {
                return Err(format!(
                    "it is version {}, older than version {floor} this edge already applied (a file put back?); a revoked key could work again",
                    wire.version
                ));
            }
            Ok(wire)
        })
        .and_then(|wire| Snapshot::try_from(wire).map_err(|err| err.to_string()))
        .and_then(|snapshot| Runtime::compile(snapshot, http).map_err(|err| err.to_string()));
    match compiled {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            tracing::warn!(error = %err, "saved config snapshot no longer compiles; ignoring it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first <= BACKOFF_START && first >= BACKOFF_START / 2);
        for _ in 0..20 {
            assert!(backoff.next_delay() <= BACKOFF_CAP);
        }
        assert!(backoff.next_delay() >= BACKOFF_CAP / 2);
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_START);
    }
}
