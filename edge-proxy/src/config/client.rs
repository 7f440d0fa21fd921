//! The edge's side of the config stream: dial the control plane, say hello with the config
//! version and key revision we hold, apply each snapshot (compile, swap, persist, ACK) or refuse
//! it (NACK, keep serving the old one), apply each complete key change (swap the shards it
//! touches, ACK, save the table soon) or refuse it (NACK and reconnect, so the plane starts again
//! from what we hold), and reconnect with capped, jittered backoff whenever the stream breaks.

use super::RuntimeHolder;
use super::keys::{DeltaAssembler, KeyChange, KeyDeltaError, KeyTable};
use super::link::ControlPlaneLink;
use super::snapshot::Snapshot;
use super::state::StateStore;
use crate::providers::clients::HttpClients;
use prost::Message;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::config_service_client::ConfigServiceClient;

const HEARTBEAT: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// How long after a key change the table is saved: at a million keys one save encodes,
/// encrypts and writes ~200 MB, so a burst of revocations must cost one save, not one each.
const KEY_SAVE_DELAY: Duration = Duration::from_secs(5);

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
    #[error("refused a key change: {0}")]
    Keys(#[from] KeyDeltaError),
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
        let key_saver = self.state.as_ref().map(|state| {
            spawn_key_saver(
                Arc::clone(state),
                Arc::clone(self.runtime.keys()),
                shutdown.clone(),
            )
        });
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            let mut applied_any = false;
            match self
                .session(&shutdown, &mut applied_any, key_saver.as_deref())
                .await
            {
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
        key_saver: Option<&Notify>,
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
            key_deltas: true,
            key_revision: self.runtime.keys().revision(),
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
        let mut key_parts = DeltaAssembler::default();
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
                    Some(pb::ConfigUpdate { kind: Some(pb::config_update::Kind::KeyDelta(part)) }) => {
                        let held = self.runtime.keys().revision();
                        let change = match key_parts.accept(part, held) {
                            Ok(None) => continue,
                            Ok(Some(change)) => change,
                            Err(err) => {
                                tracing::error!(error = %err, held, "refused a key change; reconnecting to start again from the revision held");
                                let nack = pb::KeysNack { key_revision: held, reason: err.to_string() };
                                let _ = outbound.send(edge_message(pb::edge_message::Kind::KeysNack(nack))).await;
                                return Err(err.into());
                            }
                        };
                        let revision = apply_keys(Arc::clone(self.runtime.keys()), change).await;
                        *applied_any = true;
                        if let Some(saver) = key_saver {
                            saver.notify_one();
                        }
                        let ack = pb::KeysAck { key_revision: revision };
                        if outbound.send(edge_message(pb::edge_message::Kind::KeysAck(ack))).await.is_err() {
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
        let installed = Snapshot::try_from(wire)
            .and_then(|snapshot| self.runtime.install(snapshot, &self.http));
        match installed {
            Ok(()) => {
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

/// Applies a complete key change off the async threads (a whole table of a million keys takes
/// about a second to index); returns the key revision now held.
async fn apply_keys(table: Arc<KeyTable>, change: KeyChange) -> u64 {
    let (reset, upserts, removed) = (change.reset, change.upserts.len(), change.removed.len());
    let applying = Arc::clone(&table);
    if let Err(err) = tokio::task::spawn_blocking(move || applying.apply(change)).await {
        tracing::error!(error = %err, "key change task failed");
    }
    let revision = table.revision();
    tracing::info!(
        revision,
        reset,
        upserts,
        removed,
        keys = table.len(),
        "applied key change"
    );
    revision
}

/// Saves the key table: at once the first time (so an edge restarted soon after its first sync
/// has it), then `KEY_SAVE_DELAY` after a change, so a burst of changes costs one save and a
/// save never competes with the change it follows; once more at shutdown. Returns what wakes it.
fn spawn_key_saver(
    state: Arc<StateStore>,
    table: Arc<KeyTable>,
    shutdown: CancellationToken,
) -> Arc<Notify> {
    let wake = Arc::new(Notify::new());
    let woken = Arc::clone(&wake);
    tokio::spawn(async move {
        let mut saved_revision = None;
        loop {
            tokio::select! {
                () = woken.notified() => {}
                () = shutdown.cancelled() => {}
            }
            if saved_revision.is_some() {
                tokio::select! {
                    () = tokio::time::sleep(KEY_SAVE_DELAY) => {}
                    () = shutdown.cancelled() => {}
                }
            }
            let revision = table.revision();
            if saved_revision != Some(revision) {
                let (state, table) = (Arc::clone(&state), Arc::clone(&table));
                let saved = tokio::task::spawn_blocking(move || {
                    let wire = table.to_wire();
                    state.save_keys(&wire.encode_to_vec(), wire.to_revision)
                })
                .await;
                match saved {
                    Ok(Ok(())) => saved_revision = Some(revision),
                    Ok(Err(err)) => tracing::error!(error = %err, "could not save the key table"),
                    Err(err) => tracing::error!(error = %err, "key table save task failed"),
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    });
    wake
}

/// Installs the snapshot and key table saved by an earlier run, if any. Returns the config
/// version restored.
pub async fn restore(
    state: Arc<StateStore>,
    holder: &RuntimeHolder,
    http: &HttpClients,
) -> Option<u64> {
    let keys_state = Arc::clone(&state);
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
    let installed = pb::ConfigSnapshot::decode(bytes.as_slice())
        .map_err(|err| err.to_string())
        .and_then(|wire| refuse_older(wire.version, floor).map(|()| wire))
        .and_then(|wire| Snapshot::try_from(wire).map_err(|err| err.to_string()))
        .and_then(|snapshot| {
            let keys_by_delta = snapshot.keys.is_none();
            let version = snapshot.version;
            holder
                .install(snapshot, http)
                .map(|()| (version, keys_by_delta))
                .map_err(|err| err.to_string())
        });
    match installed {
        Ok((version, true)) => {
            restore_keys(keys_state, holder).await;
            Some(version)
        }
        Ok((version, false)) => Some(version),
        Err(err) => {
            tracing::warn!(error = %err, "saved config snapshot no longer compiles; ignoring it");
            None
        }
    }
}

/// Installs the saved key table; without it the edge starts with no keys and asks the plane
/// for the whole table.
async fn restore_keys(state: Arc<StateStore>, holder: &RuntimeHolder) {
    let table = Arc::clone(holder.keys());
    let restored = tokio::task::spawn_blocking(move || {
        let bytes = state
            .load_keys()
            .map_err(|err| err.to_string())?
            .ok_or_else(|| "none saved".to_owned())?;
        let wire = pb::KeyDelta::decode(bytes.as_slice()).map_err(|err| err.to_string())?;
        refuse_older(wire.to_revision, state.key_revision_floor())?;
        let change = KeyChange::from_wire_table(wire).map_err(|err| err.to_string())?;
        table.apply(change);
        Ok::<_, String>((table.revision(), table.len()))
    })
    .await;
    match restored {
        Ok(Ok((revision, keys))) => {
            tracing::info!(revision, keys, "restored the saved key table");
        }
        Ok(Err(err)) => tracing::warn!(error = %err, "not using a saved key table"),
        Err(err) => tracing::warn!(error = %err, "key table restore task failed"),
    }
}

/// A saved file older than what this edge already saved was put back (a backup, a copy): using
/// it could make a revoked key work again.
fn refuse_older(version: u64, floor: u64) -> Result<(), String> {
    if version < floor {
        return Err(format!(
            "it is version {version}, older than version {floor} this edge already applied (a file put back?); a revoked key could work again"
        ));
    }
    Ok(())
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
