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
            Window::Calendar if !free => self.period_end_ms.load(Ordering::Relaxed) - now_ms,
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
        if self.window_kind == Window::Calendar {
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
            Window::Calendar => {
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
            if self.window_kind == Window::Calendar {
                self.fallback_spent.fetch_add(actual, Ordering::AcqRel);
            }
        }
        if self.window_kind == Window::SlidingMinute && now_ms != i64::MIN {
            self.window.record(now_ms, actual);
        }
    }

    /// Used in the last minute, holding units, or in fallback (the next answer restores it):
    /// worth a claim.
    fn is_active(&self, now_ms: i64) -> bool {
        now_ms - self.last_used_ms.load(Ordering::Relaxed) < IDLE_RETURN_MS
            || self.mode.load(Ordering::Relaxed) == MODE_FALLBACK
            || self.reserved.load(Ordering::Relaxed) > 0
            || self.available.load(Ordering::Relaxed) > 0
            || self.limit_changed.load(Ordering::Relaxed)
    }

    /// This edge's figures for the next lease call, or `None` when the counter is idle and
    /// holds nothing. Returns idle units (60 s unused) and everything after a limit change,
    /// by claiming a lower `granted_total`.
    pub(crate) fn claim(&self, now_ms: i64) -> Option<Claim> {
        let mode = self.mode.load(Ordering::Relaxed);
        if mode == MODE_LOCAL || mode == MODE_RETIRED || !self.is_active(now_ms) {
            return None;
        }
        let mut lease = self.lock();
        let idle = now_ms - self.last_used_ms.load(Ordering::Relaxed) >= IDLE_RETURN_MS;
        let changed = self.limit_changed.swap(false, Ordering::Relaxed);
        if idle || changed {
            let returned = self.take_available();
            lease.granted_total -= returned;
        }
        let demand = self.demand_units.swap(0, Ordering::Relaxed);
        let largest = self.largest_reservation.swap(0, Ordering::Relaxed);
        if largest >= lease.largest_recent || now_ms - lease.largest_recent_at_ms >= IDLE_RETURN_MS
        {
            lease.largest_recent = largest;
            lease.largest_recent_at_ms = now_ms;
        }
        // Two intervals of demand (this one's, and the renewal's latency), at least the largest
        // recent single reservation, at most the limit. Concurrency demand is a level: the
        // requests that started in the interval, not twice that.
        let want = if idle {
            0
        } else {
            let horizon = if self.window_kind == Window::Concurrent {
                demand
            } else {
                demand.saturating_mul(2)
            };
            horizon
                .max(lease.largest_recent)
                .min(self.enforced_limit())
                .max(0)
        };
        // Units held beyond what this interval or the last one wanted go back, so capacity
        // follows demand between edges instead of sitting idle on one of them.
        if !(idle || changed) {
            let keep = want.max(lease.last_want);
            lease.granted_total -= self.take_available_above(keep);
        }
        lease.last_want = want;
        Some(Claim {
            key: self.key.clone(),
            period_start_unix_ms: if self.window_kind == Window::Calendar {
                lease.period_start_ms
            } else {
                0
            },
            granted_total: lease.granted_total,
            consumed_total: self.consumed_total.load(Ordering::Acquire),
            reserved: self.reserved.load(Ordering::Acquire),
            want_available: want,
        })
    }

    /// Takes every spendable unit (never a debt) for returning.
    fn take_available(&self) -> i64 {
        self.take_available_above(0)
    }

    /// Takes the spendable units beyond `keep` (never a debt) for returning.
    fn take_available_above(&self, keep: i64) -> i64 {
        let mut current = self.available.load(Ordering::Acquire);
        while current > keep {
            match self.available.compare_exchange_weak(
                current,
                keep,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return current - keep,
                Err(actual) => current = actual,
            }
        }
        0
    }

    /// Applies the plane's answer to a call sent at `sent_ms`; the grant is valid for
    /// `lease_ttl_ms` from then. A grant for a new period restarts the figures (consumed 0).
    /// Leaves fallback. Returns true if the counter was in fallback.
    pub fn apply_grant(&self, grant: &Grant, sent_ms: i64, lease_ttl_ms: i64, now_ms: i64) -> bool {
        let mut lease = self.lock();
        if matches!(self.mode.load(Ordering::Acquire), MODE_LOCAL | MODE_RETIRED) {
            return false;
        }
        // The first grant adopts its period without restarting: the plane counted what this
        // edge spent before it (claimed with no period) into the current period.
        let rollover = self.window_kind == Window::Calendar
            && lease.period_start_ms != 0
            && grant.period_start_unix_ms != lease.period_start_ms;
        let mut delta = grant.granted_total - lease.granted_total;
        if rollover {
            // available = G − C − R: with C restarting at 0 it grows by the old C.
            delta += self.consumed_total.swap(0, Ordering::AcqRel);
        }
        if self.window_kind == Window::Calendar {
            lease.period_start_ms = grant.period_start_unix_ms;
        }
        self.available.fetch_add(delta, Ordering::AcqRel);
        lease.granted_total = grant.granted_total;
        lease.next_period_end_ms = grant.next_period_end_unix_ms;
        lease.used_at_last_grant = grant.used;
        lease.granted_once = true;
        lease.pool = None;
        self.period_end_ms
            .store(grant.period_end_unix_ms, Ordering::Relaxed);
        self.reset_at_ms
            .store(now_ms + grant.reset_ms.max(0), Ordering::Relaxed);
        self.free_units_at_last_grant
            .store((grant.limit - grant.used).max(0), Ordering::Relaxed);
        self.free_at_last_grant
            .store(grant.used < grant.limit, Ordering::Relaxed);
        self.granted_once.store(true, Ordering::Relaxed);
        self.low_water.store(lease.last_want / 4, Ordering::Relaxed);
        self.renew_requested.store(false, Ordering::Release);
        self.valid_until_ms
            .store(sent_ms.saturating_add(lease_ttl_ms), Ordering::Release);
        let was_fallback = self.mode.swap(MODE_LEASED, Ordering::AcqRel) == MODE_FALLBACK;
        if was_fallback {
            self.fallback_spent.store(0, Ordering::Relaxed);
        }
        drop(lease);
        if was_fallback {
            self.shared.metrics.fallback_left();
            tracing::info!(limit = %self.key, "lease renewed; leaving the safe share");
        }
        was_fallback
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
            return RateView {
                limit,
                remaining: remaining.min(limit),
                reset_ms: (self.reset_at_ms.load(Ordering::Relaxed) - now_ms).max(0),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::limits::Limiter;
    use crate::limits::clock::ManualClock;
    use crate::limits::spec::{Level, Metric};
    use crate::metrics::Metrics;

    const T0: i64 = 1_700_000_000_000;
    const TTL: i64 = 10_000;

    struct Fixture {
        limiter: Limiter,
        metrics: Arc<Metrics>,
    }

    fn fixture(known_edges: u32) -> Fixture {
        let metrics = Arc::new(Metrics::new());
        let limiter = Limiter::new(true, Arc::new(ManualClock::new(T0)), Arc::clone(&metrics));
        limiter
            .shared()
            .known_edges
            .store(known_edges, Ordering::Relaxed);
        Fixture { limiter, metrics }
    }

    impl Fixture {
        /// The lease client's last call failed: lapsed leases fall back instead of waiting.
        fn plane_down(&self) {
            self.limiter
                .shared()
                .plane_reachable
                .store(false, Ordering::Relaxed);
        }

        fn counter(&self, metric: Metric, limit: i64) -> Counter {
            let key = LimitKey {
                level: Level::Team,
                scope_id: Arc::from("t1"),
                metric,
            };
            Counter::new(key, limit, Arc::clone(self.limiter.shared()), T0)
        }
    }

    fn grant(granted_total: i64, limit: i64, used: i64) -> Grant {
        Grant {
            period_start_unix_ms: 0,
            period_end_unix_ms: 0,
            next_period_end_unix_ms: 0,
            granted_total,
            limit,
            used,
            reset_ms: 20_000,
        }
    }

    fn invariant(counter: &Counter) {
        assert_eq!(
            counter.available(),
            counter.granted_total() - counter.consumed_total() - counter.reserved(),
            "available = granted − consumed − reserved"
        );
    }

    #[test]
    fn grants_reservations_and_settlements_keep_available_exact() {
        let f = fixture(1);
        let tpm = f.counter(Metric::TokensPerMinute, 10_000);
        assert!(tpm.reserve(10, T0).is_err(), "a new counter holds nothing");
        tpm.apply_grant(&grant(1_000, 10_000, 1_000), T0, TTL, T0);
        assert_eq!(tpm.available(), 1_000);
        assert_eq!(tpm.reserve(300, T0), Ok(Path::Leased));
        assert_eq!((tpm.available(), tpm.reserved()), (700, 300));
        invariant(&tpm);
        tpm.settle(300, 120, Path::Leased, T0);
        assert_eq!((tpm.available(), tpm.consumed_total()), (880, 120));
        invariant(&tpm);
        // Actual above the reservation leaves a debt the next grant covers first.
        assert_eq!(tpm.reserve(800, T0), Ok(Path::Leased));
        tpm.settle(800, 1_000, Path::Leased, T0);
        assert_eq!(tpm.available(), -120);
        invariant(&tpm);
        tpm.apply_grant(&grant(1_500, 10_000, 2_000), T0 + 1_000, TTL, T0 + 1_000);
        assert_eq!(tpm.available(), 380);
        invariant(&tpm);
        assert_eq!(tpm.window.sum(T0), 1_120);
    }

    #[test]
    fn idle_units_go_back_by_claiming_a_lower_granted_total() {
        let f = fixture(1);
        let rpm = f.counter(Metric::RequestsPerMinute, 60);
        rpm.apply_grant(&grant(10, 60, 10), T0, TTL, T0);
        rpm.reserve(1, T0).unwrap();
        rpm.settle(1, 1, Path::Leased, T0);
        let busy = rpm.claim(T0 + 1_000).unwrap();
        // Demand was one request: it wants two on hand and gives back the other seven.
        assert_eq!(busy.want_available, 2);
        assert_eq!((busy.granted_total, busy.consumed_total), (3, 1));
        assert_eq!(rpm.available(), 2);
        invariant(&rpm);

        let idle = rpm.claim(T0 + IDLE_RETURN_MS).unwrap();
        assert_eq!(idle.granted_total, 1, "the unspent units go back");
        assert_eq!(idle.want_available, 0);
        assert_eq!(rpm.available(), 0);
        invariant(&rpm);
        // Holding nothing and idle: no more claims.
        rpm.apply_grant(
            &grant(1, 60, 1),
            T0 + IDLE_RETURN_MS,
            TTL,
            T0 + IDLE_RETURN_MS,
        );
        assert!(rpm.claim(T0 + IDLE_RETURN_MS + 1_000).is_none());
    }

    #[test]
    fn a_changed_limit_returns_everything_at_the_next_call() {
        let f = fixture(1);
        let tpm = f.counter(Metric::TokensPerMinute, 10_000);
        tpm.apply_grant(&grant(5_000, 10_000, 5_000), T0, TTL, T0);
        tpm.reserve(1_000, T0).unwrap();
        tpm.set_limit(2_000);
        let claim = tpm.claim(T0 + 500).unwrap();
        assert_eq!(
            claim.granted_total, 1_000,
            "only the in-flight reservation is kept"
        );
        assert_eq!(claim.reserved, 1_000);
        assert!(
            claim.want_available <= 2_000,
            "want is capped at the new limit"
        );
        invariant(&tpm);
    }

    #[test]
    fn want_counts_rejected_attempts_and_the_largest_recent_reservation() {
        let f = fixture(1);
        let tpm = f.counter(Metric::TokensPerMinute, 1_000);
        for _ in 0..3 {
            assert!(tpm.reserve(50, T0).is_err());
        }
        assert_eq!(tpm.claim(T0).unwrap().want_available, 300);
        assert!(tpm.reserve(900, T0 + 1).is_err());
        assert_eq!(
            tpm.claim(T0 + 1_000).unwrap().want_available,
            1_000,
            "capped"
        );
        // A quiet interval still wants the largest recent reservation.
        assert_eq!(tpm.claim(T0 + 2_000).unwrap().want_available, 900);
    }

    #[test]
    fn an_expired_lease_falls_back_to_the_safe_share_and_the_next_grant_restores_it() {
        let f = fixture(3);
        f.plane_down();
        let rpm = f.counter(Metric::RequestsPerMinute, 30);
        rpm.apply_grant(&grant(30, 30, 30), T0, TTL, T0);
        assert_eq!(rpm.reserve(1, T0 + TTL), Ok(Path::Leased));
        rpm.settle(1, 1, Path::Leased, T0 + TTL);
        let after = T0 + TTL + 1;
        // Safe share = floor(30 / 3) = 10, one of which the window already holds.
        for _ in 0..9 {
            assert_eq!(rpm.reserve(1, after), Ok(Path::Fallback));
            rpm.settle(1, 1, Path::Fallback, after);
        }
        assert!(rpm.in_fallback());
        assert_eq!(f.metrics.fallback_active(), 1);
        let miss = rpm.reserve(1, after).unwrap_err();
        assert!(!miss.renewable);
        // The oldest second leaves the 61-bucket window 61 s after it began.
        assert_eq!(miss.retry_after_ms, 61_000 - 1);
        invariant(&rpm);

        assert!(rpm.apply_grant(&grant(40, 30, 30), after + 5, TTL, after + 5));
        assert!(!rpm.in_fallback());
        assert_eq!(f.metrics.fallback_active(), 0);
        assert_eq!(rpm.available(), 30);
        invariant(&rpm);
        assert_eq!(rpm.reserve(1, after + 10), Ok(Path::Leased));
    }

    #[test]
    fn a_lease_that_runs_dry_while_the_plane_is_unreachable_falls_back_before_its_ttl() {
        let f = fixture(2);
        let rpm = f.counter(Metric::RequestsPerMinute, 20);
        rpm.apply_grant(&grant(2, 20, 2), T0, TTL, T0);
        for _ in 0..2 {
            assert_eq!(rpm.reserve(1, T0 + 1), Ok(Path::Leased));
            rpm.settle(1, 1, Path::Leased, T0 + 1);
        }
        // Reachable: a dry lease is a miss that a renewal may cure.
        assert!(rpm.reserve(1, T0 + 2).unwrap_err().renewable);
        assert!(!rpm.in_fallback());

        // Unreachable: the safe share (20 / 2 = 10, two of which the window holds) at once.
        f.limiter
            .shared()
            .plane_reachable
            .store(false, Ordering::Relaxed);
        for _ in 0..8 {
            assert_eq!(rpm.reserve(1, T0 + 3), Ok(Path::Fallback));
            rpm.settle(1, 1, Path::Fallback, T0 + 3);
        }
        assert!(rpm.in_fallback());
        assert!(!rpm.reserve(1, T0 + 3).unwrap_err().renewable);
        invariant(&rpm);
    }

    #[test]
    fn a_lapsed_lease_asks_for_a_renewal_while_the_plane_answers() {
        let f = fixture(3);
        let rpm = f.counter(Metric::RequestsPerMinute, 30);
        rpm.apply_grant(&grant(5, 30, 30), T0, TTL, T0);
        // Idle past the TTL (an idle counter is not renewed), the plane still answering.
        let miss = rpm.reserve(1, T0 + TTL + 1).unwrap_err();
        assert!(miss.renewable);
        assert!(!rpm.in_fallback());
        assert_eq!(f.metrics.fallback_active(), 0);
        // The renewal arrives: leased again, no safe share spent meanwhile.
        rpm.apply_grant(&grant(10, 30, 30), T0 + TTL + 2, TTL, T0 + TTL + 2);
        assert_eq!(rpm.reserve(1, T0 + TTL + 3), Ok(Path::Leased));
        invariant(&rpm);
    }

    #[test]
    fn concurrency_falls_back_to_a_share_of_the_slots() {
        let f = fixture(2);
        f.plane_down();
        let slots = f.counter(Metric::ConcurrentRequests, 5);
        // Never granted: after one TTL of waiting it enforces floor(5 / 2) = 2 slots.
        let later = T0 + TTL + 1;
        assert_eq!(slots.reserve(1, later), Ok(Path::Fallback));
        assert_eq!(slots.reserve(1, later), Ok(Path::Fallback));
        assert!(slots.reserve(1, later).is_err());
        slots.settle(1, 0, Path::Fallback, later);
        assert_eq!(slots.reserve(1, later), Ok(Path::Fallback));
        assert_eq!(slots.consumed_total(), 0);
    }

    #[test]
    fn calendar_fallback_spends_the_remaining_share_then_the_next_periods_share() {
        let f = fixture(2);
        f.plane_down();
        let day = f.counter(Metric::TokensPerDay, 1_000);
        let period_end = T0 + 3_600_000;
        day.apply_grant(
            &Grant {
                period_start_unix_ms: T0 - 3_600_000,
                period_end_unix_ms: period_end,
                next_period_end_unix_ms: period_end + 86_400_000,
                granted_total: 100,
                limit: 1_000,
                used: 400,
                reset_ms: 3_600_000,
            },
            T0,
            TTL,
            T0,
        );
        let cut_off = T0 + TTL + 1;
        // floor((1000 − 400) / 2) = 300 for the rest of the period.
        assert_eq!(day.reserve(250, cut_off), Ok(Path::Fallback));
        day.settle(250, 200, Path::Fallback, cut_off);
        assert_eq!(day.reserve(100, cut_off), Ok(Path::Fallback));
        let miss = day.reserve(1, cut_off).unwrap_err();
        assert_eq!(miss.retry_after_ms, period_end - cut_off);
        day.settle(100, 100, Path::Fallback, cut_off);
        // The next period: floor(1000 / 2) = 500.
        assert_eq!(day.reserve(500, period_end), Ok(Path::Fallback));
        assert!(day.reserve(1, period_end).is_err());
        invariant(&day);
    }

    #[test]
    fn a_grant_for_a_new_period_restarts_consumption() {
        let f = fixture(1);
        let month = f.counter(Metric::BudgetMicrosPerMonth, 1_000_000);
        let mut first = grant(1_000, 1_000_000, 1_000);
        first.period_start_unix_ms = T0;
        month.apply_grant(&first, T0, TTL, T0);
        month.reserve(400, T0).unwrap();
        month.settle(400, 300, Path::Leased, T0);
        month.reserve(200, T0).unwrap();
        let claim = month.claim(T0 + 1).unwrap();
        assert_eq!(claim.period_start_unix_ms, T0);
        assert_eq!(claim.consumed_total, 300);

        let mut next = grant(500, 1_000_000, 500);
        next.period_start_unix_ms = T0 + 1_000;
        month.apply_grant(&next, T0 + 1_000, TTL, T0 + 1_000);
        assert_eq!(month.consumed_total(), 0);
        // 500 granted in the new period, 200 still reserved by the request in flight.
        assert_eq!(month.available(), 300);
        invariant(&month);
        assert_eq!(
            month.claim(T0 + 1_001).unwrap().period_start_unix_ms,
            T0 + 1_000
        );
    }

    #[test]
    fn headers_estimate_global_free_capacity_plus_what_the_edge_holds() {
        let f = fixture(1);
        let rpm = f.counter(Metric::RequestsPerMinute, 60);
        assert_eq!(
            rpm.rate_view(T0),
            RateView {
                limit: 60,
                remaining: 60,
                reset_ms: 0
            }
        );
        rpm.apply_grant(&grant(10, 60, 25), T0, TTL, T0);
        rpm.reserve(1, T0).unwrap();
        assert_eq!(
            rpm.rate_view(T0 + 5_000),
            RateView {
                limit: 60,
                remaining: 35 + 9,
                reset_ms: 15_000
            }
        );
    }
}
