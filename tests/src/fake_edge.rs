//! A config-stream client speaking the edge's side of the protocol directly, so a test sees
//! exactly the updates edges receive (secrets decrypted with the plane's own master key) and
//! controls what it says back.

use crate::{ControlPlane, PROPAGATION_TIMEOUT};
use tollgate_proto::v1 as pb;

pub struct FakeEdge {
    updates: tonic::Streaming<pb::ConfigUpdate>,
    // Dropping the sender ends the stream; the plane then marks the edge disconnected.
    outbound: tokio::sync::mpsc::Sender<pb::EdgeMessage>,
}

impl FakeEdge {
    /// An edge that takes keys in snapshots (one older than key deltas).
    pub async fn connect(cp: &ControlPlane) -> FakeEdge {
        FakeEdge::connect_with(cp, pb::EdgeHello::default()).await
    }

    /// Says `hello` (its edge id defaulted) with a fresh join token.
    pub async fn connect_with(cp: &ControlPlane, mut hello: pb::EdgeHello) -> FakeEdge {
        let join = cp.ctl_json(&["join-tokens", "create"]).await;
        let token = join["token"].as_str().unwrap();
        if hello.edge_id.is_empty() {
            hello.edge_id = "fake-edge".to_owned();
        }
        let channel = tonic::transport::Endpoint::from_shared(cp.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let (outbound, receiver) = tokio::sync::mpsc::channel(4);
        outbound
            .send(pb::EdgeMessage {
                kind: Some(pb::edge_message::Kind::Hello(hello)),
            })
            .await
            .unwrap();
        let mut request =
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let updates = pb::config_service_client::ConfigServiceClient::new(channel)
            .max_decoding_message_size(tollgate_contract::MAX_SNAPSHOT_BYTES)
            .subscribe(request)
            .await
            .unwrap()
            .into_inner();
        FakeEdge { updates, outbound }
    }

    /// The next update, within the propagation deadline.
    pub async fn next(&mut self) -> pb::config_update::Kind {
        let update = tokio::time::timeout(PROPAGATION_TIMEOUT, self.updates.message())
            .await
            .expect("no config update within the deadline")
            .unwrap()
            .expect("the config stream ended");
        update.kind.expect("an update without a kind")
    }

    /// The next snapshot pushed whose version is at least `version`.
    pub async fn snapshot_at_least(&mut self, version: u64) -> pb::ConfigSnapshot {
        loop {
            if let pb::config_update::Kind::Snapshot(snapshot) = self.next().await
                && snapshot.version >= version
            {
                return snapshot;
            }
        }
    }

    /// Every part of the next key change, skipping snapshots.
    pub async fn key_change(&mut self) -> Vec<pb::KeyDelta> {
        let mut parts = Vec::new();
        loop {
            if let pb::config_update::Kind::KeyDelta(part) = self.next().await {
                let last = part.last_part;
                parts.push(part);
                if last {
                    return parts;
                }
            }
        }
    }

    pub async fn send(&self, kind: pb::edge_message::Kind) {
        self.outbound
            .send(pb::EdgeMessage { kind: Some(kind) })
            .await
            .unwrap();
    }
}
