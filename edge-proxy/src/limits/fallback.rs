//! What an edge may spend alone when its lease has run out (the plane is unreachable): its
//! "safe share" of each limit, never unlimited. Pure arithmetic, so the rules in the design are
//! tested directly:
//! - sliding windows and concurrency: `floor(limit / known_edges)` per 60 s or in flight;
//! - calendar limits: `floor(max(0, limit − used_at_last_grant) / known_edges)` for the rest of
//!   the period; after `period_end`, `floor(limit / known_edges)` until `next_period_end`, then
//!   that same share once more, with no further reset (conservative: the edge does not know
//!   later boundaries).

/// `floor(limit / known_edges)`; a plane that never answered counts as one edge.
pub fn safe_share(limit: i64, known_edges: u32) -> i64 {
    limit.max(0) / i64::from(known_edges.max(1))
}

/// The part of a calendar limit this edge may still spend in the current period.
pub fn remaining_share(limit: i64, used_at_last_grant: i64, known_edges: u32) -> i64 {
    safe_share(limit.saturating_sub(used_at_last_grant.max(0)), known_edges)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The rest of the period the last grant was for.
    CurrentPeriod,
    /// The following period, whose end the last grant announced.
    NextPeriod,
    /// Beyond what the edge knows: one last share with no reset.
    Beyond,
}

/// The pool a calendar counter spends from while in fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalendarPool {
    /// Units this edge may spend from the pool's start to `until_ms`.
    pub pool: i64,
    /// When the pool resets to a fresh share; `None` never.
    pub until_ms: Option<i64>,
    stage: Stage,
    next_period_end_ms: i64,
}

/// What the last grant said about a calendar counter, if there was one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastGrant {
    pub used: i64,
    pub period_end_ms: i64,
    pub next_period_end_ms: i64,
}

fn end(ms: i64) -> Option<i64> {
    (ms > 0).then_some(ms)
}

impl CalendarPool {
    /// The pool when fallback starts at `now_ms`, rolled forward if periods already ended.
    pub fn enter(limit: i64, last: Option<LastGrant>, known_edges: u32, now_ms: i64) -> Self {
        let mut pool = match last {
            Some(last) => Self {
                pool: remaining_share(limit, last.used, known_edges),
                until_ms: end(last.period_end_ms),
                stage: Stage::CurrentPeriod,
                next_period_end_ms: last.next_period_end_ms,
            },
            // Never granted: no period is known, so one share with no reset.
            None => Self {
                pool: safe_share(limit, known_edges),
                until_ms: None,
                stage: Stage::Beyond,
                next_period_end_ms: 0,
            },
        };
        pool.roll(limit, known_edges, now_ms);
        pool
    }

    /// Moves to the next pool when a period ended. Returns true if it did (the caller then
    /// restarts the pool's spending at 0).
    pub fn roll(&mut self, limit: i64, known_edges: u32, now_ms: i64) -> bool {
        let mut rolled = false;
        while let Some(until) = self.until_ms {
            if now_ms < until {
                break;
            }
            rolled = true;
            self.pool = safe_share(limit, known_edges);
            match self.stage {
                Stage::CurrentPeriod => {
                    self.stage = Stage::NextPeriod;
                    self.until_ms = end(self.next_period_end_ms).filter(|&next| next > until);
                    if self.until_ms.is_none() {
                        self.stage = Stage::Beyond;
                    }
                }
                Stage::NextPeriod | Stage::Beyond => {
                    self.stage = Stage::Beyond;
                    self.until_ms = None;
                }
            }
        }
        rolled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_floored_and_never_unlimited() {
        assert_eq!(safe_share(100, 3), 33);
        assert_eq!(safe_share(100, 0), 100);
        assert_eq!(safe_share(2, 3), 0);
        assert_eq!(safe_share(-5, 1), 0);
        assert_eq!(remaining_share(1_000, 400, 3), 200);
        assert_eq!(remaining_share(1_000, 1_500, 2), 0);
    }

    #[test]
    fn a_calendar_pool_covers_the_rest_of_the_period_then_one_share_per_known_period() {
        let last = LastGrant {
            used: 700,
            period_end_ms: 10_000,
            next_period_end_ms: 20_000,
        };
        let mut pool = CalendarPool::enter(1_000, Some(last), 3, 5_000);
        assert_eq!((pool.pool, pool.until_ms), (100, Some(10_000)));
        assert!(!pool.roll(1_000, 3, 9_999));
        assert!(pool.roll(1_000, 3, 10_000));
        assert_eq!((pool.pool, pool.until_ms), (333, Some(20_000)));
        assert!(pool.roll(1_000, 3, 25_000));
        assert_eq!((pool.pool, pool.until_ms), (333, None));
        assert!(!pool.roll(1_000, 3, 99_000_000));
    }

    #[test]
    fn a_pool_entered_after_the_period_ended_starts_in_the_next_period() {
        let last = LastGrant {
            used: 999,
            period_end_ms: 10_000,
            next_period_end_ms: 20_000,
        };
        let pool = CalendarPool::enter(1_000, Some(last), 2, 12_000);
        assert_eq!((pool.pool, pool.until_ms), (500, Some(20_000)));
    }

    #[test]
    fn never_granted_counters_get_one_share_without_reset() {
        let pool = CalendarPool::enter(900, None, 1, 0);
        assert_eq!((pool.pool, pool.until_ms), (900, None));
    }
}
