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
    // Spend the plane has not heard of yet: this edge's window says when it leaves the minute
    // (the second it fell in, plus 61 s).
    rpm.settle(1, 1, Path::Leased, T0 + 5_000);
    assert_eq!(rpm.rate_view(T0 + 5_000).reset_ms, 61_000);
}
