//! Limits, quotas and budgets on the edge. A long-lived `Limiter` (owned by `AppState`, it
//! outlives config swaps) holds one `Counter` per limit; requests reserve against their key's
//! counters with atomics only, and the lease client keeps each counter supplied with units
//! leased from the control plane. Cut off from the plane, a counter falls back to this edge's
//! safe share — never to unlimited.

pub mod admission;
pub mod clock;
pub mod counter;
pub mod fallback;
pub mod headers;
pub mod lease_client;
pub mod spec;
pub mod window;

use crate::config::runtime::Runtime;
use crate::config::snapshot::VirtualKey;
use crate::metrics::Metrics;
use admission::KeyLimits;
use arc_swap::ArcSwap;
use clock::Clock;
use counter::Counter;
use spec::LimitKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The plane's default lease TTL, assumed until its first answer says otherwise.
pub const DEFAULT_LEASE_TTL_MS: i64 = 10_000;
/// How long a request that missed waits for an immediate lease renewal before its one retry.
pub const RENEWAL_WAIT: Duration = Duration::from_millis(200);

/// State every counter and the lease client share.
#[derive(Debug)]
pub struct Shared {
    /// Leases from a control plane; false in `--config` mode (the edge owns its limits alone).
    pub(crate) leasing: bool,
    /// Edges the plane last reported (1 if it never answered).
    pub(crate) known_edges: AtomicU32,
    pub(crate) lease_ttl_ms: AtomicI64,
    pub(crate) plane_reachable: AtomicBool,
    /// Wakes the lease client for an immediate call (a miss, a low counter, a limit change).
    pub(crate) urgent: Notify,
    pub(crate) calls_started: AtomicU64,
    pub(crate) calls_done: watch::Sender<u64>,
    pub(crate) metrics: Arc<Metrics>,
}

/// The counters of one config version.
#[derive(Debug, Default)]
struct CounterSet {
    version: Option<u64>,
    by_key: HashMap<LimitKey, Arc<Counter>>,
}

#[derive(Debug)]
pub struct Limiter {
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    counters: ArcSwap<CounterSet>,
    /// Serialises syncs (rare: once per config version), never taken by requests otherwise.
    sync_lock: Mutex<()>,
}

impl Limiter {
    /// `leasing`: true with a control plane, false in `--config` mode.
    pub fn new(leasing: bool, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        Self {
            clock,
            shared: Arc::new(Shared {
                leasing,
                known_edges: AtomicU32::new(1),
                lease_ttl_ms: AtomicI64::new(DEFAULT_LEASE_TTL_MS),
                // Optimistic until a call fails, so the first requests wait for the first grant.
                plane_reachable: AtomicBool::new(true),
                urgent: Notify::new(),
                calls_started: AtomicU64::new(0),
                calls_done: watch::Sender::new(0),
                metrics,
            }),
            counters: ArcSwap::from_pointee(CounterSet::default()),
            sync_lock: Mutex::new(()),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.unix_ms()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn known_edges(&self) -> u32 {
        self.shared.known_edges.load(Ordering::Relaxed)
    }

    /// Starts from the edge count remembered from an earlier run, until the plane answers.
    pub fn assume_known_edges(&self, count: u32) {
        self.shared
            .known_edges
            .store(count.max(1), Ordering::Relaxed);
    }

    /// Brings the counter set in line with a (newer) runtime's limits: counters of unchanged
    /// limits carry over with their state, new ones start empty, a changed value is flagged so
    /// the lease is returned, removed limits are dropped. Older runtimes change nothing.
    pub fn sync(&self, runtime: &Runtime) {
        let current = self.counters.load();
        if current
            .version
            .is_some_and(|version| version >= runtime.version)
        {
            return;
        }
        let _guard = self
            .sync_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.counters.load_full();
        if current
            .version
            .is_some_and(|version| version >= runtime.version)
        {
            return;
        }
        let now_ms = self.now_ms();
        let mut by_key = HashMap::with_capacity(runtime.limits().len());
        for spec in runtime.limits() {
            let counter = match current.by_key.get(&spec.key) {
                Some(existing) => {
                    existing.set_limit(spec.enforced_limit);
                    Arc::clone(existing)
                }
                None => Arc::new(Counter::new(
                    spec.key.clone(),
                    spec.enforced_limit,
                    Arc::clone(&self.shared),
                    now_ms,
                )),
            };
            by_key.insert(spec.key.clone(), counter);
        }
        for (key, counter) in &current.by_key {
            if !by_key.contains_key(key) {
                counter.retire();
            }
        }
        self.counters.store(Arc::new(CounterSet {
            version: Some(runtime.version),
            by_key,
        }));
    }

    /// The counters of every limit that applies to `key` (org, team, project, user, key), in
    /// the runtime's order. Syncs first if this runtime is newer than the counter set.
    pub fn bind(&self, runtime: &Runtime, key: &VirtualKey) -> KeyLimits {
        let specs = runtime.limits_for(key);
        if specs.is_empty() {
            return KeyLimits::empty(Arc::clone(&self.clock));
        }
        if self
            .counters
            .load()
            .version
            .is_none_or(|version| version < runtime.version)
        {
            self.sync(runtime);
        }
        let set = self.counters.load();
        let entries = specs
            .iter()
            .filter_map(|spec| {
                set.by_key
                    .get(&spec.key)
                    .map(|counter| (Arc::clone(spec), Arc::clone(counter)))
            })
            .collect();
        KeyLimits::new(entries, Arc::clone(&self.clock))
    }

    /// Every counter of the current config version.
    pub fn counters(&self) -> Vec<Arc<Counter>> {
        self.counters.load().by_key.values().cloned().collect()
    }

    pub fn counter(&self, key: &LimitKey) -> Option<Arc<Counter>> {
        self.counters.load().by_key.get(key).cloned()
    }

    /// Asks the lease client for an immediate call and waits (at most `max_wait`) until a call
    /// that started after this request's miss has completed. Every waiting request shares the
    /// same call: the client makes one at a time.
    pub async fn await_renewal(&self, max_wait: Duration) {
        if !self.shared.leasing {
            return;
        }
        let target = self.shared.calls_started.load(Ordering::Acquire) + 1;
        let mut done = self.shared.calls_done.subscribe();
        self.shared.urgent.notify_one();
        let _ =
            tokio::time::timeout(max_wait, done.wait_for(|&completed| completed >= target)).await;
    }
}
