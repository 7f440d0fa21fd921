#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Config changes reach running edges: admin writes apply within seconds without a restart or a
//! failed request, and a snapshot the edge cannot apply is NACKed while the old one keeps
//! serving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::{
    GatewayClient, PROPAGATION_TIMEOUT, Stack, assert_chat_completion, chat_body, eventually,
};

/// How fast an admin write must be visible on a running edge.
const PUSH_DEADLINE: Duration = Duration::from_secs(2);

/// Requests sent continuously by a background task: when each successful one started and
/// ended, and what went wrong with the others.
#[derive(Default)]
struct TrafficStats {
    successes: Mutex<Vec<(Instant, Instant)>>,
    failures: Mutex<Vec<String>>,
}

impl TrafficStats {
    fn succeed(&self, started: Instant) {
        self.successes
            .lock()
            .unwrap()
            .push((started, Instant::now()));
    }

    fn fail(&self, failure: String) {
        self.failures.lock().unwrap().push(failure);
    }

    fn success_count(&self) -> usize {
        self.successes.lock().unwrap().len()
    }

    /// Successful requests that were in flight at `moment`.
    fn in_flight_at(&self, moment: Instant) -> usize {
        self.successes
            .lock()
            .unwrap()
            .iter()
            .filter(|(started, ended)| *started <= moment && moment <= *ended)
            .count()
    }
}

/// Sends chat requests (alternately plain and streaming) with `key`, back to back, until
/// `stop` is set.
fn spawn_traffic(
    client: GatewayClient,
    key: String,
    stop: Arc<AtomicBool>,
    stats: Arc<TrafficStats>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut streaming = false;
        while !stop.load(Ordering::SeqCst) {
            let mut request = chat_body("mock-small", "keep going");
            let started = Instant::now();
            if streaming {
                request["stream"] = json!(true);
                match client.chat_stream(Some(&key), &request).await {
                    Ok(reply)
                        if reply.status == 200
                            && reply.has_done()
                            && reply.transport_error.is_none() =>
                    {
                        stats.succeed(started);
                    }
                    Ok(reply) => stats.fail(format!(
                        "stream: status {}, transport error {:?}:\n{}",
                        reply.status, reply.transport_error, reply.raw
                    )),
                    Err(error) => stats.fail(format!("stream: {error:#}")),
                }
            } else {
                match client.chat(Some(&key), &request).await {
                    Ok(reply) if reply.status == 200 => stats.succeed(started),
                    Ok(reply) => {
                        stats.fail(format!("chat: status {}: {}", reply.status, reply.body))
                    }
                    Err(error) => stats.fail(format!("chat: {error:#}")),
                }
            }
            streaming = !streaming;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_write_reaches_running_edge_within_2s_without_failed_requests() {
    let stack = Stack::start().await;
    let client = stack.client();
    let doomed_key = stack.create_key(&["--name", "doomed"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(TrafficStats::default());
    let traffic = spawn_traffic(
        client.clone(),
        stack.demo.key.clone(),
        Arc::clone(&stop),
        Arc::clone(&stats),
    );
    eventually(PROPAGATION_TIMEOUT, async || stats.success_count() >= 2).await;

    // A new model on the running edge.
    stack
        .cp
        .ctl_json(&[
            "models",
            "create",
            "mock-fresh",
            "--provider",
            "mock",
            "--input-price",
            "0.50",
            "--output-price",
            "1.50",
        ])
        .await;
    let model_written = Instant::now();
    let reply = eventually(PUSH_DEADLINE, async || {
        let reply = client
            .chat(Some(&stack.demo.key), &chat_body("mock-fresh", "hi"))
            .await?;
        anyhow::ensure!(
            reply.status == 200,
            "mock-fresh: {} {}",
            reply.status,
            reply.body
        );
        Ok::<_, anyhow::Error>(reply)
    })
    .await;
    eprintln!(
        "new model served {:?} after the write",
        model_written.elapsed()
    );
    assert_chat_completion(&reply.json(), Some("mock-fresh"));

    // A revoked key on the running edge.
    stack.cp.ctl_json(&["keys", "revoke", &doomed_key.id]).await;
    let revoke_written = Instant::now();
    eventually(PUSH_DEADLINE, async || {
        let status = client
            .chat_status(&doomed_key.plaintext, "mock-small")
            .await?;
        anyhow::ensure!(status == 401, "revoked key answered {status}");
        Ok::<_, anyhow::Error>(())
    })
    .await;
    let revoke_applied = Instant::now();
    eprintln!(
        "revocation applied {:?} after the write",
        revoke_applied - revoke_written
    );

    // Let the traffic run a little past the last change, then stop it.
    let after_changes = stats.success_count();
    eventually(PROPAGATION_TIMEOUT, async || {
        stats.success_count() >= after_changes + 2
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();

    let failures = stats.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "requests failed during config changes:\n{}",
        failures.join("\n")
    );
    // The traffic ran back to back from before the first write to after the last change was
    // visible, so every moment in between had a request in flight, and none failed.
    let spans = stats.successes.lock().unwrap().clone();
    assert!(
        spans.iter().any(|(started, _)| *started < model_written),
        "traffic must have started before the first write"
    );
    assert!(
        spans.iter().any(|(_, ended)| *ended > revoke_applied),
        "traffic must have continued after the last change"
    );
    eprintln!(
        "{} requests succeeded; in flight at the model write: {}, at the revocation: {}",
        spans.len(),
        stats.in_flight_at(model_written),
        stats.in_flight_at(revoke_written)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_snapshot_is_nacked_and_old_config_keeps_serving() {
    let mut stack = Stack::start().await;
    let edge_id = stack.edge.edge_id().to_owned();
    let client = stack.client();

    let good_version = eventually(PROPAGATION_TIMEOUT, async || {
        let edges = stack.cp.edges().await;
        let edge = edges.edge(&edge_id)?;
        (edge.config_version == edges.current_config_version).then_some(edge.config_version)
    })
    .await;

    // A provider kind this edge does not know, written behind the admin API's back.
    let mut tx = stack.db.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO providers (name, kind) VALUES ('future', 'quantum')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let bad_version: i64 = sqlx::query_scalar("SELECT tollgate_bump_config_version()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let bad_version = u64::try_from(bad_version).unwrap();

    let nacked = eventually(PROPAGATION_TIMEOUT, async || {
        let edges = stack.cp.edges().await;
        let edge = edges.edge(&edge_id)?.clone();
        (edge.last_nack_version == bad_version && edge.last_nack_reason.contains("quantum"))
            .then_some(edge)
    })
    .await;
    assert_eq!(
        nacked.config_version, good_version,
        "the edge keeps its old config: {nacked:?}"
    );
    assert!(nacked.last_nack_at_unix_ms > 0, "{nacked:?}");

    // The old config still serves.
    let reply = client
        .chat(
            Some(&stack.demo.key),
            &chat_body("mock-small", "still there?"),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_chat_completion(&reply.json(), Some("mock-small"));
    assert_eq!(stack.edge.readyz_status().await.unwrap(), 200);
    stack.edge.assert_running();
    let edges = stack.cp.edges().await;
    assert_eq!(edges.current_config_version, bad_version);
    assert_eq!(edges.edge(&edge_id).unwrap().config_version, good_version);

    // Removing the bad row lets the edge move on to the next version.
    sqlx::query("DELETE FROM providers WHERE name = 'future'")
        .execute(stack.db.pool())
        .await
        .unwrap();
    let fixed_version = u64::try_from(stack.db.bump_config_version().await).unwrap();
    eventually(PROPAGATION_TIMEOUT, async || {
        let edges = stack.cp.edges().await;
        let edge = edges.edge(&edge_id)?;
        (edge.config_version == fixed_version).then_some(())
    })
    .await;
}

/// Before: tonic's 4 MiB default on the edge's config client held ~21k keys; past it no
/// snapshot reached the edge, so revocations silently stopped. Now keys travel as deltas in
/// parts of 10k keys, and a revocation as one removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_thousand_keys_reach_the_edge_and_a_revocation_after_them() {
    const KEYS: usize = 30_000;
    let stack = Stack::start().await;
    let doomed = stack.create_key(&[]).await;
    stack.db.insert_bulk_keys("bulk-key-", KEYS).await;
    stack.db.bump_config_version().await;
    stack
        .revoke_key_and_wait(&doomed, Duration::from_secs(60))
        .await;
}
