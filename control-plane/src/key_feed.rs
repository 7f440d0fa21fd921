//! The virtual key table as edges take it: what changed since the key revision an edge holds, or
//! the whole table when it holds none, cut into parts of bounded size. A million keys do not fit
//! in every snapshot (and a revocation must not cost every edge a 200 MB download), so keys
//! travel apart from it. Each change is read in one repeatable-read transaction with the config
//! version it reaches, and the newest few are cached: a fleet of edges at the same revision
//! costs one query, a fleet joining at once one read of the table.

use crate::db;
use crate::error::AdminError;
use crate::snapshot::unix_ms_or_zero;
use futures::TryStreamExt;
use sqlx::PgPool;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Mutex;
use tollgate_proto::v1 as pb;

/// Keys (changed or removed) per KeyDelta part: ~2 MB at ~200 bytes a key, far below what an
/// edge decodes, and small enough that no single message holds up the stream.
pub const KEYS_PER_PART: usize = 10_000;
/// Increments kept for reuse (edges a revision or two behind the newest find theirs).
const CACHED_INCREMENTS: usize = 4;

/// The key table's change from one revision to another, ready to send.
#[derive(Debug)]
pub struct KeyChange {
    /// The revision an edge must hold for this change to apply; 0 for the whole table.
    pub from_revision: u64,
    pub to_revision: u64,
    /// The change is the whole table.
    pub reset: bool,
    /// At least one; the last is marked `last_part`.
    pub parts: Vec<pb::KeyDelta>,
}

impl KeyChange {
    /// Whether an edge holding `held` needs to be sent this change.
    pub fn advances(&self, held: u64) -> bool {
        self.reset || self.to_revision > held
    }

    /// Every usable key of a whole-table change, for edges that take keys in snapshots.
    pub fn keys(&self) -> impl Iterator<Item = &pb::SnapshotVirtualKey> {
        self.parts.iter().flat_map(|part| part.upserts.iter())
    }
}

/// The whole table and the increments are cached and built under separate locks: reading a
/// million keys for a joining edge takes seconds, and must not hold up a revocation meanwhile.
#[derive(Debug)]
pub struct KeyFeed {
    pool: PgPool,
    whole_table: Mutex<Option<Arc<KeyChange>>>,
    increments: Mutex<VecDeque<Arc<KeyChange>>>,
}

impl KeyFeed {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            whole_table: Mutex::new(None),
            increments: Mutex::new(VecDeque::new()),
        }
    }

    /// The change an edge holding key revision `held` (0: none) needs to reach at least config
    /// version `at_least`. The whole table when `held` is 0 or ahead of the plane (a database
    /// restored from a backup: the edge may hold keys the plane no longer has).
    pub async fn change(&self, held: u64, at_least: u64) -> Result<Arc<KeyChange>, AdminError> {
        if held == 0 {
            return self.whole_table(at_least).await;
        }
        let mut increments = self.increments.lock().await;
        if let Some(change) = increments
            .iter()
            .find(|change| change.from_revision == held && change.to_revision >= at_least)
        {
            return Ok(Arc::clone(change));
        }
        let built = Arc::new(self.read(held).await?);
        if built.reset {
            // The edge is ahead of the plane; the next edge like it may share this table.
            *self.whole_table.lock().await = Some(Arc::clone(&built));
            return Ok(built);
        }
        if increments.len() >= CACHED_INCREMENTS {
            increments.pop_front();
        }
        increments.push_back(Arc::clone(&built));
        Ok(built)
    }

    async fn whole_table(&self, at_least: u64) -> Result<Arc<KeyChange>, AdminError> {
        let mut cached = self.whole_table.lock().await;
        if let Some(table) = cached.as_ref()
            && table.to_revision >= at_least
        {
            return Ok(Arc::clone(table));
        }
        let built = Arc::new(self.read(0).await?);
        *cached = Some(Arc::clone(&built));
        Ok(built)
    }

    async fn read(&self, held: u64) -> Result<KeyChange, AdminError> {
        let (mut tx, version) = db::read_at_config_version(&self.pool).await?;
        let reset = held == 0 || held > version;
        let after = if reset {
            -1
        } else {
            i64::try_from(held).unwrap_or(i64::MAX)
        };
        let mut rows = sqlx::query!(
            r#"SELECT id, key_hash, key_prefix, org_id, team_id, project_id, user_id,
                      allowed_models, expires_at,
                      revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
                          AS "usable!"
               FROM virtual_keys
               WHERE revision > $1
                 AND (NOT $2 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())))"#,
            after,
            reset
        )
        .fetch(&mut *tx);
        let mut parts = PartWriter::new(held, version, reset);
        while let Some(row) = rows.try_next().await? {
            if row.usable {
                parts.upsert(pb::SnapshotVirtualKey {
                    id: row.id.to_string(),
                    key_hash: row.key_hash,
                    key_prefix: row.key_prefix,
                    org_id: row.org_id.to_string(),
                    team_id: row.team_id.to_string(),
                    project_id: row.project_id.to_string(),
                    user_id: row.user_id.map(|id| id.to_string()).unwrap_or_default(),
                    allowed_models: row.allowed_models,
                    expires_at_unix_ms: unix_ms_or_zero(row.expires_at),
                });
            } else {
                parts.remove(row.key_hash);
            }
        }
        drop(rows);
        tx.commit().await?;
        Ok(parts.finish())
    }
}

/// Cuts a change into parts of at most `KEYS_PER_PART` entries.
struct PartWriter {
    template: pb::KeyDelta,
    done: Vec<pb::KeyDelta>,
    current: pb::KeyDelta,
}

impl PartWriter {
    fn new(held: u64, to_revision: u64, reset: bool) -> Self {
        let template = pb::KeyDelta {
            from_revision: if reset { 0 } else { held },
            to_revision,
            reset,
            ..Default::default()
        };
        Self {
            current: template.clone(),
            template,
            done: Vec::new(),
        }
    }

    fn upsert(&mut self, key: pb::SnapshotVirtualKey) {
        self.current.upserts.push(key);
        self.cut_if_full();
    }

    fn remove(&mut self, key_hash: Vec<u8>) {
        self.current.removed_key_hashes.push(key_hash);
        self.cut_if_full();
    }

    fn cut_if_full(&mut self) {
        if self.current.upserts.len() + self.current.removed_key_hashes.len() >= KEYS_PER_PART {
            let full = std::mem::replace(&mut self.current, self.template.clone());
            self.done.push(full);
        }
    }

    fn finish(mut self) -> KeyChange {
        // An empty last part still tells the edge the revision it reached.
        if !self.current.upserts.is_empty()
            || !self.current.removed_key_hashes.is_empty()
            || self.done.is_empty()
        {
            self.done.push(self.current);
        }
        if let Some(last) = self.done.last_mut() {
            last.last_part = true;
        }
        KeyChange {
            from_revision: self.template.from_revision,
            to_revision: self.template.to_revision,
            reset: self.template.reset,
            parts: self.done,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(n: u8) -> pb::SnapshotVirtualKey {
        pb::SnapshotVirtualKey {
            id: n.to_string(),
            key_hash: vec![n; 32],
            ..Default::default()
        }
    }

    #[test]
    fn parts_are_bounded_and_only_the_last_is_marked() {
        let mut writer = PartWriter::new(5, 9, false);
        for n in 0..KEYS_PER_PART + 3 {
            if n % 2 == 0 {
                writer.upsert(key(1));
            } else {
                writer.remove(vec![2; 32]);
            }
        }
        let change = writer.finish();
        assert_eq!(change.parts.len(), 2);
        assert_eq!(
            change.parts[0].upserts.len() + change.parts[0].removed_key_hashes.len(),
            KEYS_PER_PART
        );
        assert!(!change.parts[0].last_part && change.parts[1].last_part);
        assert!(
            change
                .parts
                .iter()
                .all(|part| part.from_revision == 5 && part.to_revision == 9 && !part.reset)
        );
    }

    #[test]
    fn an_empty_change_is_one_empty_last_part() {
        let change = PartWriter::new(0, 3, true).finish();
        assert_eq!(change.parts.len(), 1);
        assert!(change.parts[0].last_part && change.parts[0].reset);
        assert!(change.parts[0].upserts.is_empty());
        assert!(change.advances(3));
        let increment = PartWriter::new(3, 3, false).finish();
        assert!(!increment.advances(3));
    }
}
