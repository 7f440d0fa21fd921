#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The control plane is not on the request path: edges keep serving while it is down, restart
//! from their last good snapshot on disk, and converge once it is back.

use std::time::Duration;

use tollgate_e2e::{PROPAGATION_TIMEOUT, Stack, assert_chat_completion, chat_body, eventually};
use uuid::Uuid;

/// How long an edge may take to notice the control plane is back (reconnect backoff included).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_survives_control_plane_outage_and_converges_when_it_returns() {
    let mut stack = Stack::start().await;
    let edge_id = stack.edge.edge_id().to_owned();
    let key = stack.demo.key.clone();

    // Converged before the outage.
    let version_before = eventually(PROPAGATION_TIMEOUT, async || {
        let edges = stack.cp.edges().await;
        let edge = edges.edge(&edge_id)?;
        (edge.connected && edge.config_version == edges.current_config_version)
            .then_some(edge.config_version)
    })
    .await;

    // 1. Control plane down: the edge keeps serving.
    stack.cp.stop();
    let client = stack.client();
    for _ in 0..3 {
        let reply = client
            .chat(Some(&key), &chat_body("mock-small", "are you there?"))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_chat_completion(&reply.json(), Some("mock-small"));
    }
    assert_eq!(stack.edge.readyz_status().await.unwrap(), 200);

    // 2. Edge restarted while the control plane is still down: it serves from its disk snapshot.
    stack.edge.restart().await;
    stack.edge.wait_ready().await;
    let client = stack.client();
    let reply = client
        .chat(Some(&key), &chat_body("mock-small", "back from disk?"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_chat_completion(&reply.json(), Some("mock-small"));

    // 3. A config change lands in the database while the control plane is down.
    let mut tx = stack.db.pool().begin().await.unwrap();
    let model_id: Uuid = sqlx::query_scalar(
        "INSERT INTO models (name, provider_id, upstream_model) \
         SELECT 'mock-late', id, 'mock-late' FROM providers WHERE name = 'mock' RETURNING id",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO model_prices \
         (model_id, version, input_price_micros_per_mtok, output_price_micros_per_mtok) \
         VALUES ($1, 1, 100000, 400000)",
    )
    .bind(model_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    let new_version: i64 = sqlx::query_scalar("SELECT tollgate_bump_config_version()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let new_version = u64::try_from(new_version).unwrap();
    assert!(new_version > version_before);
    let reply = client
        .chat(Some(&key), &chat_body("mock-late", "too early"))
        .await
        .unwrap();
    assert_eq!(
        reply.status, 404,
        "the edge cannot know mock-late yet: {}",
        reply.body
    );

    // 4. Control plane back: the edge reconnects and converges.
    stack.cp.restart().await;
    eventually(RECONNECT_TIMEOUT, async || {
        let status = client.chat_status(&key, "mock-late").await?;
        anyhow::ensure!(status == 200, "mock-late answered {status}");
        Ok::<_, anyhow::Error>(())
    })
    .await;
    let converged = eventually(PROPAGATION_TIMEOUT, async || {
        let edges = stack.cp.edges().await;
        let edge = edges.edge(&edge_id)?.clone();
        (edge.connected
            && edges.current_config_version == new_version
            && edge.config_version == new_version)
            .then_some(edge)
    })
    .await;
    assert_eq!(
        converged.last_nack_version, 0,
        "nothing was rejected: {converged:?}"
    );
    stack.edge.assert_running();
}
