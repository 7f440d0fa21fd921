//! The edge's virtual key table. Keys arrive apart from snapshots (a million keys would make
//! every snapshot ~200 MB and every revocation a full download), as changes from one key
//! revision to the next. The table is split into shards by key hash, each swapped whole, so a
//! revocation copies one shard (a few thousand entries at a million keys) instead of the table,
//! and a lookup is one lock-free load and one hash probe. A change that spans shards becomes
//! visible shard by shard; keys are independent, so no request can tell.

use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tollgate_proto::v1 as pb;

/// SHA-256 hashes are uniform, so the first byte spreads keys evenly over the shards.
const SHARDS: usize = 256;

/// A key as the plane describes it: ids only. Owners' names come from the snapshot when a
/// request uses the key, so a renamed team needs no key change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub key_hash: [u8; 32],
    pub prefix: String,
    /// Owner ids are shared by every key of the table that names them (a million keys under a
    /// few thousand projects hold a few thousand copies).
    pub org_id: Arc<str>,
    pub team_id: Arc<str>,
    pub project_id: Arc<str>,
    pub user_id: Option<Arc<str>>,
    /// Empty means every model.
    pub allowed_models: Arc<HashSet<String>>,
    pub expires_at_unix_ms: Option<i64>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyDeltaError {
    #[error("the change starts at key revision {from}, but this edge holds {held}")]
    Gap { from: u64, held: u64 },
    #[error(
        "a part of the change {from}..{to} arrived while the change {pending_from}..{pending_to} was incomplete"
    )]
    Interleaved {
        from: u64,
        to: u64,
        pending_from: u64,
        pending_to: u64,
    },
    #[error("the change goes back from key revision {from} to {to}")]
    Backwards { from: u64, to: u64 },
    #[error("virtual key '{id}': {reason}")]
    InvalidKey { id: String, reason: &'static str },
    #[error("a removed key hash is {0} bytes, not 32")]
    InvalidRemoval(usize),
}

impl TryFrom<pb::SnapshotVirtualKey> for KeyRecord {
    type Error = KeyDeltaError;

    fn try_from(wire: pb::SnapshotVirtualKey) -> Result<Self, Self::Error> {
        let invalid = |reason| KeyDeltaError::InvalidKey {
            id: wire.id.clone(),
            reason,
        };
        let key_hash: [u8; 32] = wire
            .key_hash
            .as_slice()
            .try_into()
            .map_err(|_| invalid("key hash must be 32 bytes"))?;
        if wire.id.is_empty()
            || wire.org_id.is_empty()
            || wire.team_id.is_empty()
            || wire.project_id.is_empty()
        {
            return Err(invalid("id, org, team and project must be set"));
        }
        Ok(Self {
            key_hash,
            prefix: wire.key_prefix,
            org_id: Arc::from(wire.org_id),
            team_id: Arc::from(wire.team_id),
            project_id: Arc::from(wire.project_id),
            user_id: (!wire.user_id.is_empty()).then(|| Arc::from(wire.user_id)),
            allowed_models: Arc::new(wire.allowed_models.into_iter().collect()),
            expires_at_unix_ms: (wire.expires_at_unix_ms != 0).then_some(wire.expires_at_unix_ms),
            id: wire.id,
        })
    }
}

impl From<&KeyRecord> for pb::SnapshotVirtualKey {
    fn from(key: &KeyRecord) -> Self {
        Self {
            id: key.id.clone(),
            key_hash: key.key_hash.to_vec(),
            key_prefix: key.prefix.clone(),
            org_id: key.org_id.to_string(),
            team_id: key.team_id.to_string(),
            project_id: key.project_id.to_string(),
            user_id: key
                .user_id
                .as_deref()
                .map(str::to_owned)
                .unwrap_or_default(),
            allowed_models: key.allowed_models.iter().cloned().collect(),
            expires_at_unix_ms: key.expires_at_unix_ms.unwrap_or(0),
        }
    }
}

/// One complete change of the key table, every part of it validated.
#[derive(Debug, Default)]
pub struct KeyChange {
    /// The change is the whole table.
    pub reset: bool,
    pub from_revision: u64,
    pub to_revision: u64,
    pub upserts: Vec<KeyRecord>,
    pub removed: Vec<[u8; 32]>,
}

impl KeyChange {
    /// The whole table as `keys`, at `revision`.
    pub fn whole(keys: Vec<KeyRecord>, revision: u64) -> Self {
        Self {
            reset: true,
            from_revision: 0,
            to_revision: revision,
            upserts: keys,
            removed: Vec::new(),
        }
    }

    /// Validates a persisted or received whole-table delta.
    pub fn from_wire_table(wire: pb::KeyDelta) -> Result<Self, KeyDeltaError> {
        let mut assembler = DeltaAssembler::default();
        let change = assembler.accept(
            pb::KeyDelta {
                reset: true,
                last_part: true,
                ..wire
            },
            0,
        )?;
        Ok(change.unwrap_or_default())
    }
}

type Shard = HashMap<[u8; 32], Arc<KeyRecord>>;

#[derive(Debug)]
pub struct KeyTable {
    shards: Box<[ArcSwap<Shard>]>,
    revision: AtomicU64,
    /// Set by the first change: until then the edge cannot tell a bad key from one it has not
    /// been sent yet, so it is not ready.
    loaded: AtomicBool,
    /// Changes are applied one at a time, so two never copy the same shard from the same base.
    /// The writer also holds what keys share: owner ids and the empty model list.
    writer: Mutex<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    owner_ids: HashSet<Arc<str>>,
    every_model: Arc<HashSet<String>>,
}

impl Shared {
    fn intern(&mut self, id: &mut Arc<str>) {
        match self.owner_ids.get(id) {
            Some(shared) => *id = Arc::clone(shared),
            None => {
                self.owner_ids.insert(Arc::clone(id));
            }
        }
    }

    fn share(&mut self, key: &mut KeyRecord) {
        self.intern(&mut key.org_id);
        self.intern(&mut key.team_id);
        self.intern(&mut key.project_id);
        if let Some(user_id) = &mut key.user_id {
            self.intern(user_id);
        }
        if key.allowed_models.is_empty() {
            key.allowed_models = Arc::clone(&self.every_model);
        }
    }
}

impl Default for KeyTable {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| ArcSwap::default()).collect(),
            revision: AtomicU64::new(0),
            loaded: AtomicBool::new(false),
            writer: Mutex::new(Shared::default()),
        }
    }
}

fn shard_of(key_hash: &[u8; 32]) -> usize {
    usize::from(key_hash[0]) % SHARDS
}

impl KeyTable {
    pub fn get(&self, key_hash: &[u8; 32]) -> Option<Arc<KeyRecord>> {
        self.shards[shard_of(key_hash)]
            .load()
            .get(key_hash)
            .cloned()
    }

    /// The key revision the table holds (0: keys did not come as deltas, or none yet).
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.load().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Blocking for a large change (a whole table of a million keys takes about a second):
    /// call it off the async threads.
    pub fn apply(&self, change: KeyChange) {
        let mut shared = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if change.reset {
            shared.owner_ids.clear();
        }
        let mut touched: HashMap<usize, (Vec<KeyRecord>, Vec<[u8; 32]>)> = HashMap::new();
        for mut key in change.upserts {
            shared.share(&mut key);
            touched
                .entry(shard_of(&key.key_hash))
                .or_default()
                .0
                .push(key);
        }
        for key_hash in change.removed {
            touched
                .entry(shard_of(&key_hash))
                .or_default()
                .1
                .push(key_hash);
        }
        for (index, shard) in self.shards.iter().enumerate() {
            let changes = touched.remove(&index);
            if !change.reset && changes.is_none() {
                continue;
            }
            let (upserts, removed) = changes.unwrap_or_default();
            let mut next = if change.reset {
                Shard::with_capacity(upserts.len())
            } else {
                Shard::clone(&shard.load())
            };
            for key_hash in removed {
                next.remove(&key_hash);
            }
            for key in upserts {
                next.insert(key.key_hash, Arc::new(key));
            }
            shard.store(Arc::new(next));
        }
        self.revision.store(change.to_revision, Ordering::Release);
        self.loaded.store(true, Ordering::Release);
    }

    /// Whether any key table (even an empty one) was applied.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The whole table as one delta, for the state file. Blocking: call it off the async
    /// threads.
    pub fn to_wire(&self) -> pb::KeyDelta {
        let revision = self.revision();
        let upserts = self
            .shards
            .iter()
            .flat_map(|shard| {
                shard
                    .load()
                    .values()
                    .map(|key| pb::SnapshotVirtualKey::from(&**key))
                    .collect::<Vec<_>>()
            })
            .collect();
        pb::KeyDelta {
            from_revision: 0,
            to_revision: revision,
            reset: true,
            upserts,
            removed_key_hashes: Vec::new(),
            last_part: true,
        }
    }
}

/// Collects the parts of one change until its last part is in.
#[derive(Debug, Default)]
pub struct DeltaAssembler {
    pending: Option<KeyChange>,
}

impl DeltaAssembler {
    /// Adds one part for an edge holding key revision `held`; the whole change once its last
    /// part is in. On an error the incomplete change is dropped.
    pub fn accept(
        &mut self,
        part: pb::KeyDelta,
        held: u64,
    ) -> Result<Option<KeyChange>, KeyDeltaError> {
        let result = self.add(part, held);
        if result.is_err() {
            self.pending = None;
        }
        result
    }

    fn add(&mut self, part: pb::KeyDelta, held: u64) -> Result<Option<KeyChange>, KeyDeltaError> {
        if !part.reset && part.to_revision < part.from_revision {
            return Err(KeyDeltaError::Backwards {
                from: part.from_revision,
                to: part.to_revision,
            });
        }
        let change = match &mut self.pending {
            Some(pending) => {
                if pending.reset != part.reset
                    || pending.from_revision != part.from_revision
                    || pending.to_revision != part.to_revision
                {
                    return Err(KeyDeltaError::Interleaved {
                        from: part.from_revision,
                        to: part.to_revision,
                        pending_from: pending.from_revision,
                        pending_to: pending.to_revision,
                    });
                }
                pending
            }
            None => {
                if !part.reset && part.from_revision != held {
                    return Err(KeyDeltaError::Gap {
                        from: part.from_revision,
                        held,
                    });
                }
                self.pending.insert(KeyChange {
                    reset: part.reset,
                    from_revision: part.from_revision,
                    to_revision: part.to_revision,
                    ..KeyChange::default()
                })
            }
        };
        change.upserts.reserve(part.upserts.len());
        for key in part.upserts {
            change.upserts.push(KeyRecord::try_from(key)?);
        }
        for key_hash in part.removed_key_hashes {
            let len = key_hash.len();
            change.removed.push(
                key_hash
                    .try_into()
                    .map_err(|_| KeyDeltaError::InvalidRemoval(len))?,
            );
        }
        Ok(if part.last_part {
            self.pending.take()
        } else {
            None
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn wire_key(n: u16) -> pb::SnapshotVirtualKey {
        let mut key_hash = vec![0; 32];
        key_hash[..2].copy_from_slice(&n.to_be_bytes());
        key_hash.rotate_left(1);
        pb::SnapshotVirtualKey {
            id: format!("k{n}"),
            key_hash,
            key_prefix: "tg_".into(),
            org_id: "o1".into(),
            team_id: "t1".into(),
            project_id: "p1".into(),
            ..Default::default()
        }
    }

    fn part(
        from: u64,
        to: u64,
        reset: bool,
        keys: &[u16],
        removed: &[u16],
        last: bool,
    ) -> pb::KeyDelta {
        pb::KeyDelta {
            from_revision: from,
            to_revision: to,
            reset,
            upserts: keys.iter().map(|&n| wire_key(n)).collect(),
            removed_key_hashes: removed.iter().map(|&n| wire_key(n).key_hash).collect(),
            last_part: last,
        }
    }

    fn hash(n: u16) -> [u8; 32] {
        wire_key(n).key_hash.try_into().unwrap()
    }

    #[test]
    fn a_change_applies_only_once_every_part_is_in() {
        let table = KeyTable::default();
        let mut assembler = DeltaAssembler::default();
        assert!(
            assembler
                .accept(part(0, 5, true, &[1, 2], &[], false), 0)
                .unwrap()
                .is_none()
        );
        let change = assembler
            .accept(part(0, 5, true, &[3], &[], true), 0)
            .unwrap()
            .unwrap();
        assert!(table.get(&hash(1)).is_none());
        table.apply(change);
        assert_eq!((table.len(), table.revision()), (3, 5));

        let change = assembler
            .accept(part(5, 8, false, &[4], &[1, 99], true), 5)
            .unwrap()
            .unwrap();
        table.apply(change);
        assert_eq!((table.len(), table.revision()), (3, 8));
        assert!(table.get(&hash(1)).is_none());
        assert_eq!(table.get(&hash(4)).unwrap().id, "k4");

        // A reset drops what was there.
        let change = assembler
            .accept(part(0, 9, true, &[7], &[], true), 8)
            .unwrap()
            .unwrap();
        table.apply(change);
        assert_eq!((table.len(), table.revision()), (1, 9));
    }

    #[test]
    fn gaps_interleaving_and_malformed_keys_are_refused_and_forgotten() {
        let mut assembler = DeltaAssembler::default();
        assert!(matches!(
            assembler.accept(part(4, 8, false, &[1], &[], true), 5),
            Err(KeyDeltaError::Gap { from: 4, held: 5 })
        ));
        assert!(
            assembler
                .accept(part(5, 8, false, &[1], &[], false), 5)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            assembler.accept(part(5, 9, false, &[2], &[], true), 5),
            Err(KeyDeltaError::Interleaved { .. })
        ));
        // The broken change is gone: the next change starts clean.
        let change = assembler
            .accept(part(5, 9, false, &[2], &[], true), 5)
            .unwrap()
            .unwrap();
        assert_eq!(change.upserts.len(), 1);

        let mut bad = part(5, 9, false, &[], &[], true);
        bad.upserts.push(pb::SnapshotVirtualKey {
            key_hash: vec![1, 2, 3],
            ..wire_key(3)
        });
        assert!(matches!(
            assembler.accept(bad, 5),
            Err(KeyDeltaError::InvalidKey { .. })
        ));
        let mut bad = part(5, 9, false, &[], &[], true);
        bad.removed_key_hashes.push(vec![0; 31]);
        assert!(matches!(
            assembler.accept(bad, 5),
            Err(KeyDeltaError::InvalidRemoval(31))
        ));
        assert!(matches!(
            assembler.accept(part(9, 5, false, &[], &[], true), 9),
            Err(KeyDeltaError::Backwards { .. })
        ));
    }

    #[test]
    fn the_table_round_trips_through_its_wire_form() {
        let table = KeyTable::default();
        let keys = (0..300)
            .map(|n| KeyRecord::try_from(wire_key(n)).unwrap())
            .collect();
        table.apply(KeyChange::whole(keys, 42));
        let restored = KeyTable::default();
        restored.apply(KeyChange::from_wire_table(table.to_wire()).unwrap());
        assert_eq!((restored.len(), restored.revision()), (300, 42));
        assert_eq!(restored.get(&hash(299)), table.get(&hash(299)));
        // Keys share their owners' ids and the empty model list.
        let (first, last) = (
            restored.get(&hash(0)).unwrap(),
            restored.get(&hash(299)).unwrap(),
        );
        assert!(Arc::ptr_eq(&first.team_id, &last.team_id));
        assert!(Arc::ptr_eq(&first.allowed_models, &last.allowed_models));
    }
}
