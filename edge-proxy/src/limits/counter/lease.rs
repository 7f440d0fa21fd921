//! The lease side of a counter: the figures it claims from the plane (returning what it does not
//! need) and the grants it applies. Only the lease client calls these, once per round.

use super::*;

impl Counter {
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
            period_start_unix_ms: if self.window_kind.is_calendar() {
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
        let rollover = self.window_kind.is_calendar()
            && lease.period_start_ms != 0
            && grant.period_start_unix_ms != lease.period_start_ms;
        let mut delta = grant.granted_total - lease.granted_total;
        if rollover {
            // available = G − C − R: with C restarting at 0 it grows by the old C.
            delta += self.consumed_total.swap(0, Ordering::AcqRel);
        }
        if self.window_kind.is_calendar() {
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
}
