#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a measurement prints its figures
//! A measurement, not a test (ignored; it prints figures and asserts only correctness): loads
//! `TOLLGATE_SCALE_KEYS` virtual keys (default 1,000,000), connects `TOLLGATE_SCALE_EDGES` edges
//! (default 10), and prints the snapshot and key delta sizes, the time for the whole key table
//! to reach every edge, the time for a revocation to reach every edge, and resident memory.
//!
//! ```sh
//! cargo build --release -p tollgate-control-plane -p tollgate-edge-proxy --bins
//! TOLLGATE_E2E_BIN_DIR=target/release \
//!   cargo nextest run -p tollgate-e2e --test key_scale --run-ignored only --no-capture
//! ```

use prost::Message;
use std::time::{Duration, Instant};
use tollgate_e2e::fake_edge::FakeEdge;
use tollgate_e2e::{Edge, Stack};
use tollgate_proto::v1 as pb;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of a process (VmRSS), in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// The key count an edge's /readyz reports (0 when not ready).
async fn edge_keys(edge: &Edge) -> usize {
    let Ok(response) = reqwest::get(edge.url("/readyz")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.rsplit_once('(')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of minutes; run it on purpose (see the module docs)"]
async fn measure_keys_at_scale() {
    let keys = env_or("TOLLGATE_SCALE_KEYS", 1_000_000);
    let edge_count = env_or("TOLLGATE_SCALE_EDGES", 10).max(1);
    let mut stack = Stack::start().await;

    let loading = Instant::now();
    stack.db.insert_bulk_keys("scale-key-", keys).await;
    println!(
        "inserted {keys} keys in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    let total_keys = keys + 1;

    // Sizes, as an edge receives them.
    let mut probe = FakeEdge::connect_with(
        &stack.cp,
        pb::EdgeHello {
            edge_id: "scale-probe".into(),
            key_deltas: true,
            ..Default::default()
        },
    )
    .await;
    let pb::config_update::Kind::Snapshot(snapshot) = probe.next().await else {
        panic!("the snapshot comes first");
    };
    let started = Instant::now();
    let table = probe.key_change().await;
    let table_bytes: usize = table.iter().map(Message::encoded_len).sum();
    println!(
        "snapshot without keys: {} bytes; whole key table: {} parts, {:.1} MiB ({} bytes/key), read by one client in {:.1} s",
        snapshot.encoded_len(),
        table.len(),
        mib(table_bytes),
        table_bytes / total_keys,
        started.elapsed().as_secs_f64()
    );
    let held = table[0].to_revision;
    drop(table);

    // The whole table to every edge (the first edge got it when it had 2 keys; its delta now).
    let mut join_tokens = Vec::new();
    for _ in 1..edge_count {
        let join = stack.cp.ctl_json(&["join-tokens", "create"]).await;
        join_tokens.push(join["token"].as_str().unwrap().to_owned());
    }
    let started = Instant::now();
    let mut edges = Vec::new();
    for token in &join_tokens {
        edges.push(Edge::connect(&stack.cp, token, &[]).await);
    }
    loop {
        let mut synced = usize::from(edge_keys(&stack.edge).await == total_keys);
        for edge in &edges {
            synced += usize::from(edge_keys(edge).await == total_keys);
        }
        if synced == edge_count {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{synced}/{edge_count} edges synced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{total_keys} keys on {edge_count} edges (the first by delta, {} new by whole table) in {:.1} s",
        edge_count - 1,
        started.elapsed().as_secs_f64()
    );

    // Steady state first: every edge has saved its table (at a million keys a save is seconds
    // of CPU, which would otherwise be measured as revocation time on two cores).
    let all_edges: Vec<&Edge> = std::iter::once(&stack.edge).chain(edges.iter()).collect();
    let settle = async || {
        let revision = stack.db.config_version().await;
        for edge in &all_edges {
            edge.wait_state_floor("key-revision-floor", revision, Duration::from_secs(300))
                .await;
        }
    };
    settle().await;

    // Revocations, committed straight in the database: how long until every edge refuses the
    // key, and the size of the delta that carries it.
    let mut held = held;
    let mut times_ms = Vec::new();
    for sample in 1..=5 {
        let plaintext = format!("scale-key-{sample}");
        for edge in &all_edges {
            let status = edge.client().models(Some(&plaintext)).await.unwrap().status;
            assert_eq!(status, 200, "key {sample} works before its revocation");
        }
        let started = Instant::now();
        sqlx::query("UPDATE virtual_keys SET revoked_at = now() WHERE name = $1")
            .bind(&plaintext)
            .execute(stack.db.pool())
            .await
            .unwrap();
        let mut pending = all_edges.clone();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for edge in pending {
                let status = edge
                    .client()
                    .models(Some(&plaintext))
                    .await
                    .map_or(0, |reply| reply.status);
                if status != 401 {
                    still.push(edge);
                }
            }
            pending = still;
            assert!(started.elapsed() < Duration::from_secs(120));
        }
        times_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let delta = probe.key_change().await;
        let delta_bytes: usize = delta.iter().map(Message::encoded_len).sum();
        assert_eq!(delta[0].from_revision, held);
        assert_eq!(delta[0].removed_key_hashes.len(), 1);
        held = delta[0].to_revision;
        println!(
            "revocation {sample}: delta of {delta_bytes} bytes, refused by all {edge_count} edges {:.0} ms after its commit",
            times_ms[times_ms.len() - 1]
        );
        settle().await;
    }
    println!(
        "revocation refused by all {edge_count} edges, ms after its commit: {:?}",
        times_ms
            .iter()
            .map(|ms| format!("{ms:.0}"))
            .collect::<Vec<_>>()
    );
    let edge_rss: Vec<u64> = std::iter::once(&stack.edge)
        .chain(edges.iter())
        .filter_map(|edge| edge.pid())
        .map(rss_mib)
        .collect();
    println!(
        "edge RSS with {total_keys} keys: {edge_rss:?} MiB; control plane RSS: {} MiB",
        stack.cp.pid().map_or(0, rss_mib)
    );
    drop(probe);
    stack.edge.assert_running();
}
