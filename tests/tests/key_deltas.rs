#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Virtual keys travel apart from snapshots, as changes from the key revision an edge holds:
//! the whole table for an edge that holds none, then only what changed, in bounded parts,
//! ACKed by revision; edges that do not ask for deltas still get keys in snapshots; a restarted
//! edge fetches only what changed while it was down; a key table put back from an older copy is
//! refused.

use tollgate_e2e::fake_edge::FakeEdge;
use tollgate_e2e::{ControlPlane, PROPAGATION_TIMEOUT, Stack, TestDb, eventually};
use tollgate_proto::v1 as pb;
use uuid::Uuid;

async fn key_hash(db: &TestDb, key_id: &str) -> Vec<u8> {
    sqlx::query_scalar("SELECT key_hash FROM virtual_keys WHERE id = $1")
        .bind(Uuid::parse_str(key_id).unwrap())
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// Log text without ANSI colour codes (they sit between a field's name and its value).
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for end in chars.by_ref() {
                if end.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

fn delta_hello(edge_id: &str, key_revision: u64) -> pb::EdgeHello {
    pb::EdgeHello {
        edge_id: edge_id.to_owned(),
        key_deltas: true,
        key_revision,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_travel_as_deltas_from_the_revision_the_edge_holds() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    let demo = cp.seed_demo().await;
    let demo_hash = key_hash(&db, &demo.key_id).await;

    // A new edge: a snapshot without keys, then the whole table.
    let mut edge = FakeEdge::connect_with(&cp, delta_hello("delta-edge", 0)).await;
    let pb::config_update::Kind::Snapshot(snapshot) = edge.next().await else {
        panic!("the snapshot comes first");
    };
    assert!(snapshot.keys_by_delta && snapshot.virtual_keys.is_empty());
    let table = edge.key_change().await;
    assert_eq!(table.len(), 1);
    assert!(table[0].reset && table[0].last_part);
    assert!(table[0].upserts.iter().any(|key| key.key_hash == demo_hash));
    let start = table[0].to_revision;
    assert!(start >= snapshot.version);
    edge.send(pb::edge_message::Kind::KeysAck(pb::KeysAck {
        key_revision: start,
    }))
    .await;
    eventually(PROPAGATION_TIMEOUT, async || {
        let edges = cp.edges().await;
        let seen = edges.edge("delta-edge").map(|edge| edge.key_revision);
        anyhow::ensure!(seen == Some(start), "key revision {seen:?}, want {start}");
        Ok::<_, anyhow::Error>(())
    })
    .await;

    // 25k keys in one transaction: one revision, three parts of at most 10k, only the last
    // marked, none of them a reset.
    db.insert_bulk_keys("bulk-key-", 25_000).await;
    let revisions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT revision) FROM virtual_keys WHERE name LIKE 'bulk-key-%'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(revisions, 1, "one transaction, one revision");
    let grown = edge.key_change().await;
    let sizes: Vec<usize> = grown.iter().map(|part| part.upserts.len()).collect();
    assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
    assert!(
        grown
            .iter()
            .all(|part| !part.reset && part.from_revision == start)
    );
    assert_eq!(
        grown.iter().filter(|part| part.last_part).count(),
        1,
        "only the last part is marked"
    );
    let after_bulk = grown[0].to_revision;

    // A revocation is one removal, not another table.
    cp.ctl_json(&["keys", "revoke", &demo.key_id]).await;
    let revoked = edge.key_change().await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].from_revision, after_bulk);
    assert!(revoked[0].upserts.is_empty());
    assert_eq!(revoked[0].removed_key_hashes, vec![demo_hash.clone()]);
    let after_revocation = revoked[0].to_revision;

    // An edge that comes back holding the revision after the bulk insert gets only the
    // revocation; one ahead of the plane (a database restored from a backup) gets the table.
    let mut returning = FakeEdge::connect_with(&cp, delta_hello("returning", after_bulk)).await;
    let change = returning.key_change().await;
    assert_eq!(change.len(), 1);
    assert!(!change[0].reset);
    assert_eq!(change[0].removed_key_hashes, vec![demo_hash.clone()]);
    assert_eq!(change[0].to_revision, after_revocation);
    let mut ahead =
        FakeEdge::connect_with(&cp, delta_hello("ahead", after_revocation + 1000)).await;
    let table = ahead.key_change().await;
    assert!(table[0].reset);
    assert_eq!(
        table.iter().map(|part| part.upserts.len()).sum::<usize>(),
        25_000
    );

    // An edge that does not ask for deltas gets the usable keys in its snapshot.
    let mut legacy = FakeEdge::connect(&cp).await;
    let snapshot = legacy.snapshot_at_least(after_revocation).await;
    assert!(!snapshot.keys_by_delta);
    assert_eq!(snapshot.virtual_keys.len(), 25_000);
    assert!(
        snapshot
            .virtual_keys
            .iter()
            .all(|key| key.key_hash != demo_hash)
    );

    // Keys are revoked, never deleted: a deletion would never reach edges.
    let deleted = sqlx::query("DELETE FROM virtual_keys WHERE name = 'bulk-key-1'")
        .execute(db.pool())
        .await;
    assert!(deleted.is_err());
}

/// The key table on disk lets a restarted edge ask only for what changed while it was down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_edge_fetches_only_the_keys_changed_while_it_was_down() {
    let mut stack = Stack::start().await;
    stack.wait_state_saved("key-revision-floor").await;

    stack.edge.stop();
    let created_meanwhile = stack.cp.create_key(&stack.demo, &[]).await;
    stack.edge.restart().await;
    stack.edge.wait_ready().await;
    stack.wait_key_accepted(&created_meanwhile.plaintext).await;
    stack.wait_key_accepted(&stack.demo.key).await;
    let logs = without_colours(&stack.edge.logs());
    let restart = logs
        .rfind("restored the saved key table")
        .unwrap_or_else(|| panic!("no restored key table in:\n{logs}"));
    let after_restart = &logs[restart..];
    let applied = after_restart
        .find("applied key change")
        .map(|at| &after_restart[at..])
        .and_then(|line| line.lines().next())
        .unwrap_or_else(|| panic!("no key change after the restart in:\n{logs}"));
    assert!(applied.contains("reset=false"), "{applied}");
    assert!(applied.contains("upserts=1"), "{applied}");
}

/// The key table has its own floor: an older copy put back (one that still holds a key revoked
/// since) is refused at start, so the revoked key does not work while the plane is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_key_table_put_back_is_refused_on_restart() {
    let mut stack = Stack::start().await;
    let status = stack
        .restart_on_state_from_before_a_revocation("virtual-keys.bin", "key-revision-floor")
        .await;
    assert_ne!(
        status, 200,
        "the revoked key works again from the old table"
    );
    let logs = stack.edge.logs();
    assert!(logs.contains("not using a saved key table"), "{logs}");
}
