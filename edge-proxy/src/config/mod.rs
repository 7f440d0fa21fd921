//! Configuration on the edge: a snapshot (from the control plane or a TOML file) is validated
//! into domain types, compiled into an immutable `Runtime`, and swapped in whole.

pub mod client;
pub mod file;
pub mod link;
pub mod runtime;
pub mod snapshot;
pub mod state;

use arc_swap::ArcSwapOption;
use runtime::Runtime;
use std::sync::Arc;

/// The runtime every request reads: lock-free, replaced whole, absent until the first config.
#[derive(Debug, Default)]
pub struct RuntimeHolder {
    current: ArcSwapOption<Runtime>,
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

    /// Version of the config being served, 0 when none is loaded.
    pub fn version(&self) -> u64 {
        self.current
            .load()
            .as_ref()
            .map_or(0, |runtime| runtime.version)
    }
}
