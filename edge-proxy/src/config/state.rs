//! The last good snapshot and key table on local disk, so an edge restarted while the control
//! plane is down still serves, and one restarted while it is up only fetches the keys that
//! changed since. It holds provider secrets, so it is encrypted (AES-256-GCM under a key derived
//! from the edge's join token; the GCM tag doubles as the checksum), written 0600, and replaced
//! atomically: temp file, fsync, rename, fsync of the directory.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"TGSTATE1";
const NONCE_LEN: usize = 12;
const SNAPSHOT_FILE: &str = "config-snapshot.bin";
const EDGE_ID_FILE: &str = "edge-id";
const KNOWN_EDGES_FILE: &str = "known-edges";
/// The highest config version this edge has saved: a snapshot file older than it (a backup put
/// back, a file copied from elsewhere) is refused at start, so a revoked key never works again.
const VERSION_FLOOR_FILE: &str = "version-floor";
/// The key table, as one whole-table KeyDelta, and its floor (the same rule as snapshots: a key
/// table older than one this edge saved is refused, so a revoked key never comes back).
const KEYS_FILE: &str = "virtual-keys.bin";
const KEY_REVISION_FLOOR_FILE: &str = "key-revision-floor";

/// Creates `dir` 0700, and makes it 0700 if it already existed with a wider mode.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Replaces `dir/name` with `parts` atomically and privately: a 0600 temp file, fsync, rename,
/// fsync of the directory. A reader never sees half of it, a crash never loses the old one.
fn write_private(dir: &Path, name: &str, parts: &[&[u8]]) -> Result<(), StateError> {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io_error(&temp))?;
    for part in parts {
        file.write_all(part).map_err(io_error(&temp))?;
    }
    file.sync_all().map_err(io_error(&temp))?;
    drop(file);
    fs::rename(&temp, &path).map_err(io_error(&path))?;
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir))
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is corrupt or was written under another join token")]
    Corrupt { path: String },
    #[error("encryption failed")]
    Encrypt,
}

pub struct StateStore {
    dir: PathBuf,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl StateStore {
    pub fn open(dir: &Path, join_token: &str) -> Result<Self, StateError> {
        private_dir(dir).map_err(io_error(dir))?;
        let mut hasher = Sha256::new();
        hasher.update(b"tollgate-edge-state-v1\0");
        hasher.update(join_token.as_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        Ok(Self {
            dir: dir.to_owned(),
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
        })
    }

    /// The highest config version saved so far (0 when none).
    pub fn version_floor(&self) -> u64 {
        self.floor(VERSION_FLOOR_FILE)
    }

    /// The highest key revision saved so far (0 when none).
    pub fn key_revision_floor(&self) -> u64 {
        self.floor(KEY_REVISION_FLOOR_FILE)
    }

    fn floor(&self, name: &str) -> u64 {
        fs::read_to_string(self.dir.join(name))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Blocking: call from `spawn_blocking`. Saves the snapshot of `version` and raises the
    /// version floor to it.
    pub fn save(&self, plaintext: &[u8], version: u64) -> Result<(), StateError> {
        self.seal(SNAPSHOT_FILE, plaintext)?;
        self.raise_floor(VERSION_FLOOR_FILE, version)
    }

    /// Blocking: call from `spawn_blocking`. Saves the key table at `revision` and raises the key
    /// revision floor to it.
    pub fn save_keys(&self, plaintext: &[u8], revision: u64) -> Result<(), StateError> {
        self.seal(KEYS_FILE, plaintext)?;
        self.raise_floor(KEY_REVISION_FLOOR_FILE, revision)
    }

    fn raise_floor(&self, name: &str, to: u64) -> Result<(), StateError> {
        if to > self.floor(name) {
            write_private(&self.dir, name, &[to.to_string().as_bytes()])?;
        }
        Ok(())
    }

    fn seal(&self, name: &str, plaintext: &[u8]) -> Result<(), StateError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: MAGIC,
                },
            )
            .map_err(|_| StateError::Encrypt)?;
        write_private(&self.dir, name, &[MAGIC, &nonce, &ciphertext])
    }

    /// Blocking: call from `spawn_blocking`. `None` when nothing was saved yet.
    pub fn load(&self) -> Result<Option<Vec<u8>>, StateError> {
        self.unseal(SNAPSHOT_FILE)
    }

    /// Blocking: call from `spawn_blocking`. `None` when no key table was saved yet.
    pub fn load_keys(&self) -> Result<Option<Vec<u8>>, StateError> {
        self.unseal(KEYS_FILE)
    }

    fn unseal(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.dir.join(name);
        let sealed = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_error(&path)(err)),
        };
        let corrupt = || StateError::Corrupt {
            path: path.display().to_string(),
        };
        let rest = sealed.strip_prefix(MAGIC.as_slice()).ok_or_else(corrupt)?;
        if rest.len() <= NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: MAGIC,
                },
            )
            .map(Some)
            .map_err(|_| corrupt())
    }
}

/// A stable id for this edge: the one stored in `dir`, or a new one stored there.
pub fn edge_id(dir: &Path) -> Result<String, StateError> {
    let path = dir.join(EDGE_ID_FILE);
    if let Ok(existing) = fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(existing.to_owned());
        }
    }
    private_dir(dir).map_err(io_error(dir))?;
    let id = format!("edge-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    write_private(dir, EDGE_ID_FILE, &[id.as_bytes()])?;
    Ok(id)
}

/// The number of edges the plane last reported, kept so an edge restarted while the plane is
/// down falls back to `limit / known edges` rather than assuming it is alone. `None` if never
/// stored or unreadable (the caller then assumes one edge).
pub fn known_edges(dir: &Path) -> Option<u32> {
    fs::read_to_string(dir.join(KNOWN_EDGES_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&count| count > 0)
}

/// Stores the known-edge count (temp file + rename, so a reader never sees half a number).
pub fn save_known_edges(dir: &Path, count: u32) -> Result<(), StateError> {
    private_dir(dir).map_err(io_error(dir))?;
    write_private(dir, KNOWN_EDGES_FILE, &[count.to_string().as_bytes()])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trips_privately_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), "tgj_a").unwrap();
        assert!(store.load().unwrap().is_none());
        store.save(b"snapshot with sk-secret", 1).unwrap();
        assert_eq!(store.load().unwrap().unwrap(), b"snapshot with sk-secret");

        let path = dir.path().join(SNAPSHOT_FILE);
        let on_disk = fs::read(&path).unwrap();
        assert!(!on_disk.windows(9).any(|w| w == b"sk-secret"));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut tampered = on_disk.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        fs::write(&path, &tampered).unwrap();
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));

        fs::write(&path, &on_disk).unwrap();
        let other = StateStore::open(dir.path(), "tgj_b").unwrap();
        assert!(other.load().is_err());
    }

    #[test]
    fn known_edges_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(known_edges(dir.path()), None);
        save_known_edges(dir.path(), 3).unwrap();
        assert_eq!(known_edges(dir.path()), Some(3));
        fs::write(dir.path().join(KNOWN_EDGES_FILE), "garbage").unwrap();
        assert_eq!(known_edges(dir.path()), None);
    }

    /// Before: an existing state dir kept its 0755 and the edge id was written 0644.
    #[test]
    fn an_existing_state_dir_is_made_private_and_its_files_are_0600() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        edge_id(&dir).unwrap();
        save_known_edges(&dir, 2).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(EDGE_ID_FILE)), 0o600);
        assert_eq!(mode(&dir.join(KNOWN_EDGES_FILE)), 0o600);
        let store = StateStore::open(&dir, "tgj").unwrap();
        store.save(b"v5", 5).unwrap();
        assert_eq!(mode(&dir.join(VERSION_FLOOR_FILE)), 0o600);
    }

    #[test]
    fn the_version_floors_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), "tgj").unwrap();
        assert_eq!(store.version_floor(), 0);
        store.save(b"v7", 7).unwrap();
        store.save(b"v3", 3).unwrap();
        assert_eq!(store.version_floor(), 7);
        assert_eq!(store.key_revision_floor(), 0);
        assert!(store.load_keys().unwrap().is_none());
        store.save_keys(b"keys at 9", 9).unwrap();
        store.save_keys(b"keys at 8", 8).unwrap();
        assert_eq!(store.key_revision_floor(), 9);
        assert_eq!(store.load_keys().unwrap().unwrap(), b"keys at 8");
        assert_eq!(store.version_floor(), 7);
    }

    #[test]
    fn edge_id_is_stable_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = edge_id(dir.path()).unwrap();
        assert_eq!(edge_id(dir.path()).unwrap(), first);
    }
}
