//! Configuration on the edge: a snapshot (from the control plane or a TOML file) is validated
//! into domain types, compiled into an immutable `Runtime`, and swapped in whole. Virtual keys
//! live beside it in a `KeyTable` that changes by deltas.

pub mod client;
pub mod file;
pub mod keys;
pub mod link;
pub mod runtime;
pub mod snapshot;
pub mod state;

use crate::providers::clients::HttpClients;
use arc_swap::ArcSwapOption;
use keys::{KeyChange, KeyTable};
use runtime::Runtime;
use snapshot::{Snapshot, SnapshotError};
use std::sync::Arc;

/// The runtime every request reads: lock-free, replaced whole, absent until the first config;
/// and the key table, changed by deltas.
#[derive(Debug, Default)]
pub struct RuntimeHolder {
    current: ArcSwapOption<Runtime>,
    keys: Arc<KeyTable>,
}

impl RuntimeHolder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The runtime to use for one whole request; later swaps do not affect it.
    pub fn load(&self) -> Option<Arc<Runtime>> {
        self.current.load_full()
    }

    pub fn store(&self, runtime: Runtime) {
        self.current.store(Some(Arc::new(runtime)));
    }

    /// Compiles and swaps in a snapshot; the keys it carries, if any, replace the key table
    /// (which then holds no key revision: keys did not come as deltas). Blocking for a snapshot
    /// with many keys.
    pub fn install(&self, mut snapshot: Snapshot, http: &HttpClients) -> Result<(), SnapshotError> {
        let keys = snapshot.keys.take();
        let runtime = Runtime::compile(snapshot, http)?;
        self.store(runtime);
        if let Some(keys) = keys {
            self.keys.apply(KeyChange::whole(keys, 0));
        }
        Ok(())
    }

    pub fn keys(&self) -> &Arc<KeyTable> {
        &self.keys
    }

    /// Version of the config being served, 0 when none is loaded.
    pub fn version(&self) -> u64 {
        self.current
            .load()
            .as_ref()
            .map_or(0, |runtime| runtime.version)
    }
}
