//! One limit's counter on this edge. The hot path spends leased units with atomics only
//! (`available` by compare-and-swap); the lease metadata and the fallback pool sit behind a
//! small mutex that only the lease client and the fallback path take.
//!
//! Invariant, at rest: `available = granted_total − consumed_total − reserved`, whatever mode
//! the counter is in; every update is a delta, so concurrent reservations, settlements and
//! grants never lose each other's effect. While in fallback the lease is void and `available`
//! is not spent, but it keeps the invariant so the figures are right when the lease resumes.

use super::Shared;
use super::fallback::{self, CalendarPool, LastGrant};
use super::spec::{LimitKey, Window};
use super::window::SlidingWindow;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

const MODE_LEASED: u8 = 0;
const MODE_FALLBACK: u8 = 1;
/// No control plane (`--config` mode): the edge owns the whole limit (known edges 1).
const MODE_LOCAL: u8 = 2;
/// Removed by a snapshot; in-flight requests still settle into it, nothing claims it.
const MODE_RETIRED: u8 = 3;

/// Units idle this long are returned to the plane.
pub const IDLE_RETURN_MS: i64 = 60_000;
/// Shortest wait a rejection advertises.
const MIN_RETRY_MS: i64 = 1_000;

/// Which path admitted a reservation; settlement must undo the same path's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Leased,
    Fallback,
}

/// Why a counter refused a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss {
    /// When capacity is expected back.
    pub retry_after_ms: i64,
    /// An immediate lease renewal may help: leased mode, plane reachable, and the last grant
    /// showed free capacity.
    pub renewable: bool,
}

/// This edge's figures for one limit, as sent to the plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub key: LimitKey,
    pub period_start_unix_ms: i64,
    pub granted_total: i64,
    pub consumed_total: i64,
    pub reserved: i64,
    pub want_available: i64,
}

/// A grant from the plane, in domain form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub period_start_unix_ms: i64,
    pub period_end_unix_ms: i64,
    pub next_period_end_unix_ms: i64,
    pub granted_total: i64,
    pub limit: i64,
    pub used: i64,
    pub reset_ms: i64,
}

/// For the x-ratelimit-* headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateView {
    pub limit: i64,
    pub remaining: i64,
    pub reset_ms: i64,
}

#[derive(Debug, Default)]
struct LeaseState {
    granted_total: i64,
    period_start_ms: i64,
    next_period_end_ms: i64,
    used_at_last_grant: i64,
    granted_once: bool,
    last_want: i64,
    largest_recent: i64,
    largest_recent_at_ms: i64,
    pool: Option<CalendarPool>,
}

#[derive(Debug)]
pub struct Counter {
    pub key: LimitKey,
    window_kind: Window,
    shared: Arc<Shared>,
    enforced_limit: AtomicI64,
    /// Set when a snapshot changed the limit: everything held goes back at the next call.
    limit_changed: AtomicBool,
    available: AtomicI64,
    reserved: AtomicI64,
    consumed_total: AtomicI64,
    /// In-flight units admitted by the fallback path.
    fallback_reserved: AtomicI64,
    /// Calendar fallback: units settled against the current pool.
    fallback_spent: AtomicI64,
    mode: AtomicU8,
    valid_until_ms: AtomicI64,
    last_used_ms: AtomicI64,
    /// Units asked for since the last lease call, admitted or not.
    demand_units: AtomicI64,
    largest_reservation: AtomicI64,
    renew_requested: AtomicBool,
    low_water: AtomicI64,
    // Copies of the last grant the lock-free paths (misses, headers) read.
    free_at_last_grant: AtomicBool,
    free_units_at_last_grant: AtomicI64,
    granted_once: AtomicBool,
    reset_at_ms: AtomicI64,
    period_end_ms: AtomicI64,
    window: SlidingWindow,
    lease: Mutex<LeaseState>,
}

impl Counter {
    /// A new counter holds nothing. With leasing it waits one lease TTL for its first grant
    /// before it falls back to the safe share.
    pub(crate) fn new(
        key: LimitKey,
        enforced_limit: i64,
        shared: Arc<Shared>,
        now_ms: i64,
    ) -> Self {
        let (mode, valid_until) = if shared.leasing {
            (
                MODE_LEASED,
                now_ms + shared.lease_ttl_ms.load(Ordering::Relaxed),
            )
        } else {
            (MODE_LOCAL, i64::MAX)
        };
        Self {
            window_kind: key.metric.window(),
            key,
            shared,
            enforced_limit: AtomicI64::new(enforced_limit),
            limit_changed: AtomicBool::new(false),
            available: AtomicI64::new(0),
            reserved: AtomicI64::new(0),
            consumed_total: AtomicI64::new(0),
            fallback_reserved: AtomicI64::new(0),
            fallback_spent: AtomicI64::new(0),
            mode: AtomicU8::new(mode),
            valid_until_ms: AtomicI64::new(valid_until),
            last_used_ms: AtomicI64::new(i64::MIN / 2),
            demand_units: AtomicI64::new(0),
            largest_reservation: AtomicI64::new(0),
            renew_requested: AtomicBool::new(false),
            low_water: AtomicI64::new(0),
            free_at_last_grant: AtomicBool::new(true),
            free_units_at_last_grant: AtomicI64::new(0),
            granted_once: AtomicBool::new(false),
            reset_at_ms: AtomicI64::new(0),
            period_end_ms: AtomicI64::new(0),
            window: SlidingWindow::default(),
            lease: Mutex::new(LeaseState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LeaseState> {
        self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn enforced_limit(&self) -> i64 {
        self.enforced_limit.load(Ordering::Relaxed)
    }

    /// A snapshot changed the limit: enforce the new value and return the lease at the next
    /// call (the plane re-splits the new limit).
    pub(crate) fn set_limit(&self, enforced_limit: i64) {
        if self.enforced_limit.swap(enforced_limit, Ordering::Relaxed) != enforced_limit {
            self.limit_changed.store(true, Ordering::Relaxed);
            if self.shared.leasing {
                self.shared.urgent.notify_one();
            }
        }
    }

    /// The snapshot no longer has this limit: stop counting it as in fallback.
    pub(crate) fn retire(&self) {
        let _lease = self.lock();
        if self.mode.swap(MODE_RETIRED, Ordering::AcqRel) == MODE_FALLBACK {
            self.shared.metrics.fallback_left();
        }
    }

    pub fn in_fallback(&self) -> bool {
        self.mode.load(Ordering::Acquire) == MODE_FALLBACK
    }

    pub fn available(&self) -> i64 {
        self.available.load(Ordering::Acquire)
    }

    pub fn reserved(&self) -> i64 {
        self.reserved.load(Ordering::Acquire)
    }

    pub fn consumed_total(&self) -> i64 {
        self.consumed_total.load(Ordering::Acquire)
    }

    pub fn granted_total(&self) -> i64 {
        self.lock().granted_total
    }

    /// Takes `units`, or says when to come back. Never blocks on the network.
    pub(crate) fn reserve(&self, units: i64, now_ms: i64) -> Result<Path, Miss> {
        self.note_demand(units, now_ms);
        match self.mode.load(Ordering::Acquire) {
            MODE_LEASED if now_ms <= self.valid_until_ms.load(Ordering::Acquire) => {
                match self.reserve_leased(units, now_ms) {
                    Err(_) if !self.shared.plane_reachable.load(Ordering::Relaxed) => {
                        self.enter_fallback(now_ms, "lease ran out while the plane is unreachable");
                        self.reserve_local(units, now_ms)
                    }
                    reserved => reserved,
                }
            }
            // The lease lapsed (an idle counter is not renewed). While the plane answers, ask
            // for a new one rather than spend a safe share that ignores the other edges' use.
            MODE_LEASED if self.shared.plane_reachable.load(Ordering::Relaxed) => {
                self.shared.urgent.notify_one();
                Err(Miss {
                    retry_after_ms: MIN_RETRY_MS,
                    renewable: true,
                })
            }
            MODE_LEASED => {
                self.expire_lease(now_ms);
                self.reserve_local(units, now_ms)
            }
            _ => self.reserve_local(units, now_ms),
        }
    }

    /// Counts a request's need as demand (admitted or not), so the next lease call asks for
    /// it and the counter stays active.
    pub(crate) fn note_demand(&self, units: i64, now_ms: i64) {
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
        self.demand_units.fetch_add(units, Ordering::Relaxed);
        self.largest_reservation.fetch_max(units, Ordering::Relaxed);
    }

    fn reserve_leased(&self, units: i64, now_ms: i64) -> Result<Path, Miss> {
        let mut current = self.available.load(Ordering::Acquire);
        loop {
            if current < units {
                return Err(self.leased_miss(now_ms));
            }
            match self.available.compare_exchange_weak(
                current,
                current - units,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.reserved.fetch_add(units, Ordering::AcqRel);
        // Renew ahead of need, once per grant.
        if current - units < self.low_water.load(Ordering::Relaxed)
            && self.free_at_last_grant.load(Ordering::Relaxed)
            && !self.renew_requested.swap(true, Ordering::AcqRel)
        {
            self.shared.urgent.notify_one();
        }
        Ok(Path::Leased)
    }

    fn leased_miss(&self, now_ms: i64) -> Miss {
        let free = self.free_at_last_grant.load(Ordering::Relaxed);
        let retry_after_ms = match self.window_kind {
            Window::SlidingMinute if self.granted_once.load(Ordering::Relaxed) && !free => {
                self.reset_at_ms.load(Ordering::Relaxed) - now_ms
            }
            Window::Calendar(_) if !free => self.period_end_ms.load(Ordering::Relaxed) - now_ms,
            _ => MIN_RETRY_MS,
        };
        Miss {
            retry_after_ms: retry_after_ms.max(MIN_RETRY_MS),
            renewable: free && self.shared.plane_reachable.load(Ordering::Relaxed),
        }
    }

    fn known_edges(&self) -> u32 {
        if self.mode.load(Ordering::Relaxed) == MODE_LOCAL {
            1
        } else {
            self.shared.known_edges.load(Ordering::Relaxed)
        }
    }

    /// The lease's validity passed with no renewal: switch to the safe share (logged once).
    /// Returns true if this call made the switch.
    pub(crate) fn expire_lease(&self, now_ms: i64) -> bool {
        if now_ms <= self.valid_until_ms.load(Ordering::Acquire) {
            return false;
        }
        self.enter_fallback(now_ms, "lease expired without renewal")
    }

    /// Switches to the safe share. Besides an expired lease, a lease that runs dry while the
    /// plane is unreachable gets here early: no renewal can come, and the units it still held
    /// stay counted at the plane (charged as spent when it expires), so spending the share now
    /// instead of after the TTL does not widen the bound; it only spares the clients 429s.
    fn enter_fallback(&self, now_ms: i64, reason: &'static str) -> bool {
        if self.mode.load(Ordering::Acquire) != MODE_LEASED {
            return false;
        }
        let mut lease = self.lock();
        if self.mode.load(Ordering::Acquire) != MODE_LEASED {
            return false;
        }
        let known_edges = self.known_edges();
        if self.window_kind.is_calendar() {
            let last = lease.granted_once.then(|| LastGrant {
                used: lease.used_at_last_grant,
                period_end_ms: self.period_end_ms.load(Ordering::Relaxed),
                next_period_end_ms: lease.next_period_end_ms,
            });
            lease.pool = Some(CalendarPool::enter(
                self.enforced_limit(),
                last,
                known_edges,
                now_ms,
            ));
            self.fallback_spent.store(0, Ordering::Relaxed);
        }
        self.mode.store(MODE_FALLBACK, Ordering::Release);
        drop(lease);
        self.shared.metrics.fallback_entered();
        tracing::warn!(
            limit = %self.key,
            known_edges,
            reason,
            "enforcing this edge's safe share of the limit"
        );
        true
    }

    /// Fallback and `--config` mode: the edge's own share, checked and taken under the lock so
    /// concurrent requests cannot both take the last units.
    fn reserve_local(&self, units: i64, now_ms: i64) -> Result<Path, Miss> {
        let mut lease = self.lock();
        // A grant may have landed since the caller read the mode: then the lease decides.
        if self.mode.load(Ordering::Acquire) == MODE_LEASED
            && now_ms <= self.valid_until_ms.load(Ordering::Acquire)
        {
            drop(lease);
            return self.reserve_leased(units, now_ms);
        }
        let known_edges = self.known_edges();
        let limit = self.enforced_limit();
        let reserved = self.reserved.load(Ordering::Acquire);
        let (fits, retry_after_ms) = match self.window_kind {
            Window::SlidingMinute => {
                let used = self.window.sum(now_ms) + reserved;
                (
                    used + units <= fallback::safe_share(limit, known_edges),
                    self.window.reset_after_ms(now_ms),
                )
            }
            Window::Concurrent => (
                reserved + units <= fallback::safe_share(limit, known_edges),
                MIN_RETRY_MS,
            ),
            Window::Calendar(_) => {
                let pool = lease
                    .pool
                    .get_or_insert_with(|| CalendarPool::enter(limit, None, known_edges, now_ms));
                if pool.roll(limit, known_edges, now_ms) {
                    self.fallback_spent.store(0, Ordering::Relaxed);
                }
                let used = self.fallback_spent.load(Ordering::Acquire)
                    + self.fallback_reserved.load(Ordering::Acquire);
                (
                    used + units <= pool.pool,
                    pool.until_ms.map_or(IDLE_RETURN_MS, |until| until - now_ms),
                )
            }
        };
        if !fits {
            return Err(Miss {
                retry_after_ms: retry_after_ms.max(MIN_RETRY_MS),
                renewable: false,
            });
        }
        self.reserved.fetch_add(units, Ordering::AcqRel);
        self.available.fetch_sub(units, Ordering::AcqRel);
        self.fallback_reserved.fetch_add(units, Ordering::AcqRel);
        drop(lease);
        Ok(Path::Fallback)
    }

    /// Would `units` be admitted now? Read-only; used to find every limit a request misses.
    pub(crate) fn would_miss(&self, units: i64, now_ms: i64) -> Option<Miss> {
        let leased = self.mode.load(Ordering::Acquire) == MODE_LEASED
            && now_ms <= self.valid_until_ms.load(Ordering::Acquire);
        let reachable = self.shared.plane_reachable.load(Ordering::Relaxed);
        if leased {
            if self.available.load(Ordering::Acquire) >= units {
                return None;
            }
            if reachable {
                return Some(self.leased_miss(now_ms));
            }
            self.enter_fallback(now_ms, "lease ran out while the plane is unreachable");
        } else if self.mode.load(Ordering::Acquire) == MODE_LEASED && reachable {
            return Some(Miss {
                retry_after_ms: MIN_RETRY_MS,
                renewable: true,
            });
        } else {
            self.expire_lease(now_ms);
        }
        match self.reserve_local(units, now_ms) {
            Ok(path) => {
                self.release(units, path);
                None
            }
            Err(miss) => Some(miss),
        }
    }

    /// Gives back a reservation that never ran (another limit refused the request).
    pub(crate) fn release(&self, units: i64, path: Path) {
        self.settle(units, 0, path, i64::MIN);
    }

    /// Settles a reservation to what was actually spent (may exceed the reservation).
    pub(crate) fn settle(&self, reserved: i64, actual: i64, path: Path, now_ms: i64) {
        let actual = match self.window_kind {
            Window::Concurrent => 0,
            _ => actual.max(0),
        };
        self.consumed_total.fetch_add(actual, Ordering::AcqRel);
        self.available
            .fetch_add(reserved - actual, Ordering::AcqRel);
        self.reserved.fetch_sub(reserved, Ordering::AcqRel);
        if path == Path::Fallback {
            self.fallback_reserved.fetch_sub(reserved, Ordering::AcqRel);
            if self.window_kind.is_calendar() {
                self.fallback_spent.fetch_add(actual, Ordering::AcqRel);
            }
        }
        if self.window_kind == Window::SlidingMinute && now_ms != i64::MIN {
            self.window.record(now_ms, actual);
        }
    }

    /// Best estimate of what is left, for the x-ratelimit-* headers: global free capacity at
    /// the last grant plus what this edge holds; in fallback, what is left of its share.
    pub fn rate_view(&self, now_ms: i64) -> RateView {
        let limit = self.enforced_limit();
        let leased = self.mode.load(Ordering::Acquire) == MODE_LEASED
            && now_ms <= self.valid_until_ms.load(Ordering::Acquire);
        if leased {
            if !self.granted_once.load(Ordering::Relaxed) {
                return RateView {
                    limit,
                    remaining: limit,
                    reset_ms: 0,
                };
            }
            let remaining = self.free_units_at_last_grant.load(Ordering::Relaxed)
                + self.available.load(Ordering::Relaxed).max(0);
            let plane_reset_ms = (self.reset_at_ms.load(Ordering::Relaxed) - now_ms).max(0);
            // The plane's figure lags this edge's latest spend by up to a lease round; this
            // edge's own window knows when that spend leaves the minute.
            let reset_ms = if self.window_kind == Window::SlidingMinute {
                plane_reset_ms.max(self.window.reset_after_ms(now_ms))
            } else {
                plane_reset_ms
            };
            return RateView {
                limit,
                remaining: remaining.min(limit),
                reset_ms,
            };
        }
        let share = fallback::safe_share(limit, self.known_edges());
        let used = self.window.sum(now_ms) + self.reserved.load(Ordering::Relaxed);
        RateView {
            limit,
            remaining: (share - used).max(0),
            reset_ms: self.window.reset_after_ms(now_ms),
        }
    }
}

mod lease;

#[cfg(test)]
mod tests;
