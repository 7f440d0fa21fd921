//! The lease arithmetic of one counter, free of I/O: the store loads a counter's state under its
//! row lock, these functions decide what changes, and the store writes the changes back. Times
//! are Unix milliseconds of the plane's clock, passed in, so every rule is testable.
//!
//! The invariant they keep: capacity is granted only from `free = enforced_limit − used`, where
//! `used` counts every reported spend and every live lease's unspent grant, and an expired lease
//! counts as fully spent. So the units edges may spend never exceed the limit.

use super::Window;
use std::collections::BTreeMap;

/// Sliding windows count reports placed at seconds newer than `now − WINDOW_COUNT_MS`: the 60-s
/// window plus one second, because a report is filed under the start of the second it arrived.
pub const WINDOW_COUNT_MS: i64 = 61_000;
/// Window rows older than this are deleted: they no longer count and nothing reads them.
pub const WINDOW_KEEP_MS: i64 = 120_000;
/// `reset_ms` for concurrency: a slot frees when a request ends, so check back in a second.
pub const CONCURRENCY_RESET_MS: i64 = 1_000;

/// A session's cumulative figures for one counter, as the edge claims them (validated: none is
/// negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClaimFigures {
    pub granted_total: i64,
    pub consumed_total: i64,
    pub reserved: i64,
    pub want_available: i64,
}

/// One edge session's lease on a counter (a `limit_leases` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub session_id: String,
    pub edge_id: String,
    pub granted_total: i64,
    pub consumed_total: i64,
    pub reserved: i64,
    pub want_available: i64,
    pub expires_at_ms: i64,
    pub expired_charge: i64,
    /// Changed since loaded: the store writes only these rows back.
    pub dirty: bool,
}

impl Lease {
    /// Units granted and not yet spent, which count as used while the lease lives. For
    /// concurrency every slot held counts (nothing is ever "consumed").
    pub fn outstanding(&self, window: Window) -> i64 {
        match window {
            Window::Concurrent => self.granted_total.max(0),
            Window::Calendar(_) | Window::SlidingMinute => {
                (self.granted_total - self.consumed_total).max(0)
            }
        }
    }

    /// How much more the session wants on hand than it holds free now.
    pub fn want_extra(&self) -> i64 {
        want_extra(
            self.want_available,
            self.granted_total,
            self.consumed_total,
            self.reserved,
        )
    }

    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_at_ms >= now_ms
    }
}

/// `max(0, want_available − max(0, granted − consumed − reserved))`.
pub fn want_extra(want_available: i64, granted: i64, consumed: i64, reserved: i64) -> i64 {
    let free_on_hand = granted
        .saturating_sub(consumed)
        .saturating_sub(reserved)
        .max(0);
    want_available.saturating_sub(free_on_hand).max(0)
}

/// This claim's share of `free` capacity: all it wants if every live session's extra demand
/// fits, else a share proportional to its demand (rounded down, so the shares never sum to more
/// than `free`).
pub fn split_grant(free: i64, this_want_extra: i64, total_want_extra: i64) -> i64 {
    let free = free.max(0);
    let this = this_want_extra.max(0);
    if total_want_extra <= free {
        return this.min(free);
    }
    let share = i128::from(free) * i128::from(this) / i128::from(total_want_extra);
    i64::try_from(share).unwrap_or(0).clamp(0, free)
}

/// Start of the plane-clock second `now_ms` falls in: where a report arriving now is filed.
pub fn second_of(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000) * 1000
}

/// A counter's state under its row lock, and the changes made to it.
#[derive(Debug, Clone)]
pub struct CounterState {
    pub window: Window,
    pub enforced_limit: i64,
    /// Calendar periods: units spent in the period.
    pub consumed: i64,
    /// Sliding windows: units per second (start of the second, Unix ms), loaded for the seconds
    /// that still count, plus what this request added.
    pub window_usage: BTreeMap<i64, i64>,
    /// Units this request added to `window_usage`, per second: the store upserts these.
    pub window_added: BTreeMap<i64, i64>,
    pub leases: Vec<Lease>,
}

/// What a claim was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// The session's new cumulative grant.
    pub granted_total: i64,
    /// Units added by this call.
    pub grant: i64,
    /// Global use after the grant, counting all live outstanding leases.
    pub used: i64,
}

impl CounterState {
    pub fn new(window: Window, enforced_limit: i64, consumed: i64) -> Self {
        Self {
            window,
            enforced_limit,
            consumed,
            window_usage: BTreeMap::new(),
            window_added: BTreeMap::new(),
            leases: Vec::new(),
        }
    }

    fn add_window_units(&mut self, now_ms: i64, units: i64) {
        if units <= 0 {
            return;
        }
        let second = second_of(now_ms);
        *self.window_usage.entry(second).or_default() += units;
        *self.window_added.entry(second).or_default() += units;
    }

    /// Records `units` as spent now: into the period total or the current second.
    fn spend(&mut self, now_ms: i64, units: i64) {
        match self.window {
            Window::Calendar(_) => self.consumed = self.consumed.saturating_add(units),
            Window::SlidingMinute => self.add_window_units(now_ms, units),
            Window::Concurrent => {}
        }
    }

    /// Charges every lease that expired unreported with its unspent part, as if spent now, so
    /// an edge that vanished never frees capacity it may still be using. Concurrency slots are
    /// simply freed (an expired lease is no longer live). Returns the total charged.
    pub fn expire_stale(&mut self, now_ms: i64) -> i64 {
        let window = self.window;
        let mut charged = Vec::new();
        for lease in &mut self.leases {
            if lease.expires_at_ms >= now_ms || lease.expired_charge != 0 {
                continue;
            }
            let charge = match window {
                Window::Concurrent => 0,
                Window::Calendar(_) | Window::SlidingMinute => lease.outstanding(window),
            };
            if charge > 0 {
                lease.expired_charge = charge;
                lease.dirty = true;
                charged.push(charge);
            }
        }
        let total: i64 = charged
            .iter()
            .fold(0, |sum, charge| sum.saturating_add(*charge));
        self.spend(now_ms, total);
        total
    }

    fn lease_index(&self, session_id: &str) -> Option<usize> {
        self.leases.iter().position(|l| l.session_id == session_id)
    }

    /// Applies a claim for this counter's period: creates the session's lease if missing
    /// (counting all its claimed consumption as new), undoes an expiry charge if the session
    /// came back, adds the consumption since the last figures, and takes back returned units.
    /// Returns the index of the session's lease.
    pub fn apply_claim(
        &mut self,
        session_id: &str,
        edge_id: &str,
        claim: &ClaimFigures,
        now_ms: i64,
    ) -> usize {
        let index = match self.lease_index(session_id) {
            Some(index) => index,
            None => {
                self.leases.push(Lease {
                    session_id: session_id.to_owned(),
                    edge_id: edge_id.to_owned(),
                    granted_total: claim.granted_total,
                    consumed_total: 0,
                    reserved: 0,
                    want_available: 0,
                    expires_at_ms: now_ms,
                    expired_charge: 0,
                    dirty: true,
                });
                self.leases.len() - 1
            }
        };
        let window = self.window;
        let charge = self.leases[index].expired_charge;
        if charge > 0 {
            let lease = &mut self.leases[index];
            match window {
                // The real figures follow in this claim; the charge stood in for them.
                Window::Calendar(_) => self.consumed = self.consumed.saturating_sub(charge),
                // The charge stays in the window (it ages out within a minute); the grant
                // is cut to what the edge has spent or holds, so the charged units are not
                // also counted as outstanding.
                Window::SlidingMinute => {
                    lease.granted_total = claim.consumed_total.saturating_add(claim.reserved);
                }
                Window::Concurrent => {}
            }
            lease.expired_charge = 0;
            lease.dirty = true;
        }
        let delta = (claim.consumed_total - self.leases[index].consumed_total).max(0);
        {
            let lease = &mut self.leases[index];
            // Cumulative consumption never goes down within a period: an older, delayed copy of
            // a request must not make the next one count the same units again.
            lease.consumed_total = lease.consumed_total.max(claim.consumed_total);
            // Returns lower the grant; but never below what the edge has spent and holds in
            // flight. Spend beyond the grant (a safe share spent while cut off, or a provider
            // reporting more than the reservation) is already counted as consumed; leaving the
            // grant below it would hide the reservations in flight and leave the edge in debt.
            lease.granted_total = lease
                .granted_total
                .min(claim.granted_total)
                .max(claim.consumed_total.saturating_add(claim.reserved));
            lease.edge_id = edge_id.to_owned();
            lease.reserved = claim.reserved;
            lease.want_available = claim.want_available;
            lease.dirty = true;
        }
        self.spend(now_ms, delta);
        index
    }

    /// Units counted against the limit now, before any grant of this call.
    pub fn used(&self, now_ms: i64) -> i64 {
        let outstanding: i64 = self
            .leases
            .iter()
            .filter(|l| l.is_live(now_ms))
            .map(|l| l.outstanding(self.window))
            .fold(0, i64::saturating_add);
        self.consumed_in_window(now_ms).saturating_add(outstanding)
    }

    fn consumed_in_window(&self, now_ms: i64) -> i64 {
        match self.window {
            Window::Calendar(_) => self.consumed,
            Window::SlidingMinute => self
                .window_usage
                .range(now_ms - WINDOW_COUNT_MS + 1..)
                .map(|(_, units)| *units)
                .fold(0, i64::saturating_add),
            Window::Concurrent => 0,
        }
    }

    /// Renews the lease at `index` until `now + lease_ttl` and grants it its share of the free
    /// capacity.
    pub fn grant(&mut self, index: usize, now_ms: i64, lease_ttl_ms: i64) -> Granted {
        self.leases[index].expires_at_ms = now_ms.saturating_add(lease_ttl_ms);
        self.leases[index].dirty = true;
        let used = self.used(now_ms);
        let free = self.enforced_limit.saturating_sub(used).max(0);
        let total_want_extra: i64 = self
            .leases
            .iter()
            .filter(|l| l.is_live(now_ms))
            .map(Lease::want_extra)
            .fold(0, i64::saturating_add);
        let grant = split_grant(free, self.leases[index].want_extra(), total_want_extra);
        let lease = &mut self.leases[index];
        lease.granted_total = lease.granted_total.saturating_add(grant);
        Granted {
            granted_total: lease.granted_total,
            grant,
            used: used.saturating_add(grant),
        }
    }

    /// Time until the window or period frees capacity: sliding, until the oldest counted second
    /// leaves the window (0 if none counts); calendar, until the period ends.
    pub fn reset_ms(&self, now_ms: i64, period_end_ms: Option<i64>) -> i64 {
        match self.window {
            Window::Calendar(_) => period_end_ms.map_or(0, |end| (end - now_ms).max(0)),
            Window::SlidingMinute => self
                .window_usage
                .range(now_ms - WINDOW_COUNT_MS + 1..)
                .find(|(_, units)| **units > 0)
                .map_or(0, |(second, _)| (second + WINDOW_COUNT_MS - now_ms).max(0)),
            Window::Concurrent => CONCURRENCY_RESET_MS,
        }
    }
}

/// Applies a claim whose figures belong to an earlier period to that period's counter: its
/// consumption since the last figures counts there (undoing an expiry charge first), and the
/// session holds nothing more in that period. Returns false when the session has no lease there.
pub fn apply_to_old_period(
    state: &mut CounterState,
    session_id: &str,
    claim: &ClaimFigures,
) -> bool {
    let Some(index) = state.lease_index(session_id) else {
        return false;
    };
    let lease = &mut state.leases[index];
    let mut consumed = state.consumed.saturating_sub(lease.expired_charge);
    lease.expired_charge = 0;
    let delta = (claim.consumed_total - lease.consumed_total).max(0);
    consumed = consumed.saturating_add(delta);
    lease.consumed_total = lease.consumed_total.max(claim.consumed_total);
    lease.granted_total = lease.granted_total.min(lease.consumed_total);
    lease.reserved = 0;
    lease.want_available = 0;
    lease.dirty = true;
    state.consumed = consumed;
    true
}

/// Which threshold alerts a calendar counter has reached: soft when the period's spend reaches
/// `limit × soft% / 100`, hard when `used` (spend plus outstanding leases) reaches the enforced
/// limit, i.e. no capacity is left to grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    pub soft: bool,
    pub hard: bool,
}

pub fn thresholds_reached(
    limit: i64,
    soft_threshold_pct: u32,
    consumed: i64,
    used: i64,
    enforced_limit: i64,
) -> Thresholds {
    Thresholds {
        soft: i128::from(consumed) * 100 >= i128::from(limit) * i128::from(soft_threshold_pct),
        hard: used >= enforced_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CalendarUnit;

    const TTL: i64 = 10_000;
    const T0: i64 = 1_800_000_000_000;
    const CAL: Window = Window::Calendar(CalendarUnit::Month);

    fn claim(granted: i64, consumed: i64, reserved: i64, want: i64) -> ClaimFigures {
        ClaimFigures {
            granted_total: granted,
            consumed_total: consumed,
            reserved,
            want_available: want,
        }
    }

    /// Applies `claim` for `session` and grants, as the store does.
    fn lease(state: &mut CounterState, session: &str, c: ClaimFigures, now: i64) -> Granted {
        state.expire_stale(now);
        let index = state.apply_claim(session, "edge", &c, now);
        state.grant(index, now, TTL)
    }

    #[test]
    fn want_extra_counts_only_what_is_free_on_hand() {
        assert_eq!(want_extra(100, 0, 0, 0), 100);
        assert_eq!(want_extra(100, 60, 10, 20), 70);
        assert_eq!(want_extra(100, 200, 10, 20), 0);
        // Spent more than granted (fallback): nothing on hand, not a negative amount.
        assert_eq!(want_extra(100, 10, 50, 0), 100);
        assert_eq!(want_extra(0, 0, 0, 0), 0);
    }

    #[test]
    fn split_by_demand_never_exceeds_free() {
        assert_eq!(split_grant(100, 30, 50), 30);
        assert_eq!(split_grant(100, 30, 300), 10);
        assert_eq!(split_grant(0, 30, 300), 0);
        assert_eq!(split_grant(-5, 30, 30), 0);
        for free in [0, 1, 7, 99, 1_000] {
            for demands in [
                vec![1, 1, 1],
                vec![5, 50, 500],
                vec![3, 0, 9, 27],
                vec![1_000_000],
            ] {
                let total: i64 = demands.iter().sum();
                let granted: i64 = demands.iter().map(|d| split_grant(free, *d, total)).sum();
                assert!(
                    granted <= free,
                    "free {free} demands {demands:?} granted {granted}"
                );
            }
        }
        assert_eq!(split_grant(i64::MAX, i64::MAX, i64::MAX), i64::MAX);
    }

    #[test]
    fn grants_share_free_capacity_and_stop_at_the_limit() {
        let mut state = CounterState::new(CAL, 100, 0);
        let a = lease(&mut state, "a", claim(0, 0, 0, 60), T0);
        assert_eq!(
            a,
            Granted {
                granted_total: 60,
                grant: 60,
                used: 60
            }
        );
        // b wants 60 but only 40 are free.
        let b = lease(&mut state, "b", claim(0, 0, 0, 60), T0);
        assert_eq!(b.granted_total, 40);
        assert_eq!(b.used, 100);
        // Nothing left for a's renewal.
        let a = lease(&mut state, "a", claim(60, 60, 0, 60), T0 + 1);
        assert_eq!(a.grant, 0);
        assert_eq!(state.consumed, 60);
        assert_eq!(state.used(T0 + 1), 100);
    }

    #[test]
    fn contended_capacity_is_split_by_demand() {
        let mut state = CounterState::new(Window::SlidingMinute, 100, 0);
        // Both sessions first register their demand with nothing free.
        state.leases.push(Lease {
            session_id: "x".into(),
            edge_id: "e".into(),
            granted_total: 100,
            consumed_total: 0,
            reserved: 0,
            want_available: 100,
            expires_at_ms: T0 + TTL,
            expired_charge: 0,
            dirty: false,
        });
        state.leases.push(Lease {
            session_id: "b".into(),
            edge_id: "e".into(),
            granted_total: 0,
            consumed_total: 0,
            reserved: 0,
            want_available: 300,
            expires_at_ms: T0 + TTL,
            expired_charge: 0,
            dirty: false,
        });
        // x returns everything: 100 free; a wants 100, b's 300 is still pending.
        let a = lease(&mut state, "x", claim(0, 0, 0, 100), T0);
        assert_eq!(a.grant, 25);
        let b = lease(&mut state, "b", claim(0, 0, 0, 300), T0);
        assert_eq!(b.grant, 75 * 300 / 375);
        assert!(state.used(T0) <= 100);
    }

    #[test]
    fn a_return_lowers_outstanding_and_frees_capacity() {
        let mut state = CounterState::new(CAL, 100, 0);
        lease(&mut state, "a", claim(0, 0, 0, 100), T0);
        assert_eq!(lease(&mut state, "b", claim(0, 0, 0, 10), T0).grant, 0);
        // a spent 30 and keeps only what it spent.
        let a = lease(&mut state, "a", claim(30, 30, 0, 0), T0 + 1);
        assert_eq!(a.granted_total, 30);
        assert_eq!(state.used(T0 + 1), 30);
        assert_eq!(lease(&mut state, "b", claim(0, 0, 0, 10), T0 + 1).grant, 10);
    }

    #[test]
    fn a_retried_claim_changes_nothing() {
        let mut state = CounterState::new(CAL, 1_000, 0);
        lease(&mut state, "a", claim(0, 0, 0, 100), T0);
        let first = lease(&mut state, "a", claim(100, 40, 5, 100), T0 + 1);
        let after_first = (state.consumed, state.leases.clone());
        // The answer was lost: the edge still holds 100 and sends the same figures again.
        let second = lease(&mut state, "a", claim(100, 40, 5, 100), T0 + 1);
        assert_eq!(first, second);
        assert_eq!((state.consumed, state.leases.clone()), after_first);
    }

    #[test]
    fn an_expired_calendar_lease_counts_as_spent_until_its_session_returns() {
        let mut state = CounterState::new(CAL, 100, 0);
        lease(&mut state, "a", claim(0, 0, 0, 80), T0);
        lease(&mut state, "a", claim(80, 20, 0, 60), T0 + 1);
        assert_eq!(state.consumed, 20);
        // a falls silent; after the TTL its 60 unspent units count as spent.
        let later = T0 + 1 + TTL + 1;
        assert_eq!(state.expire_stale(later), 60);
        assert_eq!(state.consumed, 80);
        assert_eq!(state.used(later), 80);
        // Charging is once only.
        assert_eq!(state.expire_stale(later + 5), 0);
        // b gets only the rest.
        assert_eq!(lease(&mut state, "b", claim(0, 0, 0, 100), later).grant, 20);
        // a comes back having spent 30 in all, holding 80: the charge is undone, the real
        // figures count, and a's 50 unspent are outstanding again.
        let back = lease(&mut state, "a", claim(80, 30, 0, 0), later + 1);
        assert_eq!(state.consumed, 30);
        assert_eq!(back.granted_total, 80);
        assert_eq!(state.used(later + 1), 100);
    }

    #[test]
    fn an_expired_sliding_lease_is_charged_into_the_window_and_not_counted_twice() {
        let mut state = CounterState::new(Window::SlidingMinute, 100, 0);
        lease(&mut state, "a", claim(0, 0, 0, 50), T0);
        let later = T0 + TTL + 1;
        assert_eq!(state.expire_stale(later), 50);
        assert_eq!(state.used(later), 50);
        // a returns having spent 10 and holding 5 reserved: the charge stays in the window, and
        // a's outstanding is what it still holds reserved, not the charged units again.
        let back = lease(&mut state, "a", claim(50, 10, 5, 0), later + 1);
        assert_eq!(back.granted_total, 15);
        assert_eq!(state.used(later + 1), 50 + 10 + 5);
        // The charge ages out with the window (and a's lease, not renewed, expired).
        assert_eq!(state.used(later + 1 + WINDOW_COUNT_MS), 0);
    }

    #[test]
    fn sliding_window_counts_the_last_minute_only() {
        let mut state = CounterState::new(Window::SlidingMinute, 10, 0);
        lease(&mut state, "a", claim(0, 0, 0, 10), T0);
        lease(&mut state, "a", claim(10, 10, 0, 0), T0 + 500);
        assert_eq!(state.used(T0 + 500), 10);
        assert_eq!(
            lease(&mut state, "b", claim(0, 0, 0, 5), T0 + 1_000).grant,
            0
        );
        let filed = second_of(T0 + 500);
        let reset = state.reset_ms(T0 + 1_000, None);
        assert_eq!(reset, filed + WINDOW_COUNT_MS - (T0 + 1_000));
        // Once the reported second leaves the window, capacity is back.
        let after = filed + WINDOW_COUNT_MS;
        assert_eq!(state.used(after), 0);
        assert_eq!(lease(&mut state, "b", claim(0, 0, 0, 5), after).grant, 5);
        assert_eq!(state.reset_ms(after, None), 0);
    }

    #[test]
    fn concurrency_counts_slots_held_and_expiry_frees_them() {
        let mut state = CounterState::new(Window::Concurrent, 4, 0);
        let a = lease(&mut state, "a", claim(0, 0, 0, 3), T0);
        assert_eq!(a.granted_total, 3);
        // a uses 2 of its 3 slots and wants 2 free: it gets 1 more (the last one).
        let a = lease(&mut state, "a", claim(3, 0, 2, 2), T0 + 1);
        assert_eq!(a.granted_total, 4);
        assert_eq!(lease(&mut state, "b", claim(0, 0, 0, 1), T0 + 1).grant, 0);
        // a releases down to 1 slot.
        lease(&mut state, "a", claim(1, 0, 1, 0), T0 + 2);
        assert_eq!(lease(&mut state, "b", claim(0, 0, 0, 5), T0 + 2).grant, 3);
        // b vanishes: its slots are free once its lease expires, with no charge.
        let later = T0 + 2 + TTL + 1;
        assert_eq!(state.expire_stale(later), 0);
        assert_eq!(state.used(later), 0);
        assert_eq!(state.reset_ms(later, None), CONCURRENCY_RESET_MS);
    }

    #[test]
    fn consumption_is_the_difference_from_the_last_figures_and_never_goes_back() {
        let mut state = CounterState::new(CAL, 1_000, 0);
        lease(&mut state, "a", claim(0, 0, 0, 100), T0);
        lease(&mut state, "a", claim(100, 30, 0, 100), T0 + 1);
        lease(&mut state, "a", claim(130, 50, 0, 100), T0 + 2);
        assert_eq!(state.consumed, 50);
        // A delayed older copy does not lower the figures.
        lease(&mut state, "a", claim(130, 30, 0, 100), T0 + 3);
        lease(&mut state, "a", claim(130, 50, 0, 100), T0 + 4);
        assert_eq!(state.consumed, 50);
    }

    #[test]
    fn an_unknown_session_counts_all_its_claimed_consumption() {
        let mut state = CounterState::new(CAL, 1_000, 100);
        let a = lease(&mut state, "a", claim(40, 25, 0, 0), T0);
        assert_eq!(state.consumed, 125);
        assert_eq!(a.granted_total, 40);
        assert_eq!(state.used(T0), 125 + 15);
    }

    #[test]
    fn old_period_claims_apply_consumption_and_undo_the_charge() {
        let mut old = CounterState::new(CAL, 100, 0);
        lease(&mut old, "a", claim(0, 0, 0, 50), T0);
        lease(&mut old, "a", claim(50, 10, 0, 40), T0 + 1);
        old.expire_stale(T0 + TTL + 100);
        assert_eq!(old.consumed, 50);
        assert!(apply_to_old_period(&mut old, "a", &claim(50, 35, 0, 10)));
        assert_eq!(old.consumed, 35);
        assert_eq!(old.leases[0].granted_total, 35);
        // Again (a retry): nothing more.
        assert!(apply_to_old_period(&mut old, "a", &claim(50, 35, 0, 10)));
        assert_eq!(old.consumed, 35);
        assert!(!apply_to_old_period(&mut old, "b", &claim(5, 5, 0, 0)));
    }

    #[test]
    fn calendar_reset_is_the_time_to_the_period_end() {
        let state = CounterState::new(CAL, 10, 0);
        assert_eq!(state.reset_ms(T0, Some(T0 + 3_600_000)), 3_600_000);
        assert_eq!(state.reset_ms(T0, Some(T0 - 5)), 0);
    }

    #[test]
    fn thresholds_use_spend_for_soft_and_used_for_hard() {
        assert_eq!(
            thresholds_reached(1_000, 80, 799, 1_000, 1_000),
            Thresholds {
                soft: false,
                hard: true
            }
        );
        assert_eq!(
            thresholds_reached(1_000, 80, 800, 900, 1_000),
            Thresholds {
                soft: true,
                hard: false
            }
        );
    }
}
