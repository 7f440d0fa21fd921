//! The read model behind `LimitStatus`: how much of each limit of a scope is used right now,
//! across every edge, computed from the lease service's tables the same way it computes free
//! capacity (consumed in the window or period, plus units leased to edges and not yet spent).
//! Read-only: it never creates counters or charges expired leases; those are the lease
//! service's writes.

use super::period;
use super::policy::{self, ConfiguredLimit, LimitFilter};
use super::{CalendarUnit, Level, Metric, Window};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// A sliding window counts reports of the last 60 s; the extra second covers the partial
/// second at each end, as the lease service does.
const SLIDING_WINDOW_SECS: i64 = 61;

/// Use of one configured limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUse {
    pub metric: Metric,
    pub limit: i64,
    pub enforced_limit: i64,
    /// Spent in the current window or period, as edges reported it (0 for concurrency).
    pub consumed: i64,
    /// Granted to edges with a live lease and not yet spent; for concurrency, slots held.
    pub leased: i64,
    /// `enforced_limit − consumed − leased`, never negative.
    pub remaining: i64,
    /// The calendar period now; `None` for sliding windows and concurrency.
    pub period: Option<Period>,
    /// Edges holding a live lease on this limit.
    pub edges: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A scope's configured limits and their use, read in one consistent snapshot.
#[derive(Debug, Clone)]
pub struct ScopeStatus {
    pub limits: Vec<ConfiguredLimit>,
    pub uses: Vec<LimitUse>,
}

/// Reads every limit of the scope and its current use. A limit no edge has leased yet shows
/// zero use, with the calendar period computed from the org's time zone.
pub async fn scope_status(
    pool: &PgPool,
    kind: Level,
    scope_id: Uuid,
    org_id: Uuid,
) -> Result<ScopeStatus, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let now = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(&mut *tx)
        .await?;
    let limits = policy::load(&mut tx, LimitFilter::Scope(kind, scope_id)).await?;
    let time_zone = sqlx::query_scalar!("SELECT time_zone FROM orgs WHERE id = $1", org_id)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or_else(|| "UTC".to_owned());

    let metrics: Vec<String> = limits
        .iter()
        .map(|limit| limit.metric.as_str().to_owned())
        .collect();
    // The counter whose period holds now: the calendar period's row, or the epoch row of a
    // sliding window or concurrency limit.
    let counters = sqlx::query!(
        r#"SELECT id, metric, period_start, period_end, consumed
           FROM limit_counters
           WHERE scope_kind = $1 AND scope_id = $2 AND metric = ANY($3)
             AND period_start <= $4 AND (period_end IS NULL OR period_end > $4)"#,
        kind.as_str(),
        scope_id,
        &metrics,
        now
    )
    .fetch_all(&mut *tx)
    .await?;
    let counter_ids: Vec<i64> = counters.iter().map(|counter| counter.id).collect();
    let leases: HashMap<i64, LeaseTotals> = sqlx::query!(
        r#"SELECT counter_id,
                  SUM(GREATEST(0, granted_total - consumed_total))::bigint AS "outstanding!",
                  SUM(granted_total)::bigint AS "granted!",
                  COUNT(DISTINCT edge_id) AS "edges!"
           FROM limit_leases
           WHERE counter_id = ANY($1) AND expires_at >= $2
           GROUP BY counter_id"#,
        &counter_ids,
        now
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|row| {
        let totals = LeaseTotals {
            outstanding: row.outstanding,
            granted: row.granted,
            edges: u32::try_from(row.edges).unwrap_or(u32::MAX),
        };
        (row.counter_id, totals)
    })
    .collect();
    let window_usage: HashMap<i64, i64> = sqlx::query!(
        r#"SELECT counter_id, SUM(units)::bigint AS "units!"
           FROM limit_window_usage
           WHERE counter_id = ANY($1) AND second > $2
           GROUP BY counter_id"#,
        &counter_ids,
        now - chrono::TimeDelta::seconds(SLIDING_WINDOW_SECS)
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|row| (row.counter_id, row.units))
    .collect();
    tx.commit().await?;

    let uses = limits
        .iter()
        .map(|limit| {
            let counter = counters
                .iter()
                .find(|counter| counter.metric == limit.metric.as_str());
            let figures = match counter {
                None => CounterFigures::default(),
                Some(counter) => CounterFigures {
                    calendar_consumed: counter.consumed,
                    window_units: window_usage.get(&counter.id).copied().unwrap_or(0),
                    leases: leases.get(&counter.id).copied().unwrap_or_default(),
                    period: counter.period_end.map(|end| Period {
                        start: counter.period_start,
                        end,
                    }),
                },
            };
            limit_use(limit, &figures, &time_zone, now)
        })
        .collect();
    Ok(ScopeStatus { limits, uses })
}

#[derive(Debug, Clone, Copy, Default)]
struct LeaseTotals {
    /// Σ max(0, granted − consumed) over live leases.
    outstanding: i64,
    /// Σ granted over live leases (slots held, for concurrency).
    granted: i64,
    edges: u32,
}

/// What the lease tables say about one limit's current counter (all zero when none exists).
#[derive(Debug, Clone, Copy, Default)]
struct CounterFigures {
    calendar_consumed: i64,
    window_units: i64,
    leases: LeaseTotals,
    period: Option<Period>,
}

fn limit_use(
    limit: &ConfiguredLimit,
    figures: &CounterFigures,
    time_zone: &str,
    now: DateTime<Utc>,
) -> LimitUse {
    let enforced_limit = limit.enforced_limit();
    let (consumed, leased, period) = match limit.metric.window() {
        Window::SlidingMinute => (figures.window_units, figures.leases.outstanding, None),
        Window::Calendar(unit) => (
            figures.calendar_consumed,
            figures.leases.outstanding,
            figures
                .period
                .or_else(|| calendar_period(unit, time_zone, now)),
        ),
        Window::Concurrent => (0, figures.leases.granted, None),
    };
    let remaining = enforced_limit
        .saturating_sub(consumed)
        .saturating_sub(leased)
        .max(0);
    LimitUse {
        metric: limit.metric,
        limit: limit.limit,
        enforced_limit,
        consumed,
        leased,
        remaining,
        period,
        edges: figures.leases.edges,
    }
}

/// The calendar period holding `now` in the org's zone, for a limit no edge has used yet (so no
/// counter row says it); the same computation the lease service uses to create counters.
fn calendar_period(unit: CalendarUnit, time_zone: &str, now: DateTime<Utc>) -> Option<Period> {
    let now = jiff::Timestamp::from_millisecond(now.timestamp_millis()).ok()?;
    let period = period::current_period(unit, time_zone, now)
        .inspect_err(|err| tracing::warn!(error = %err, "cannot compute a calendar period"))
        .ok()?;
    Some(Period {
        start: DateTime::<Utc>::from_timestamp_millis(period.start.as_millisecond())?,
        end: DateTime::<Utc>::from_timestamp_millis(period.end.as_millisecond())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::policy::{Scope, ScopeNames};

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn configured(metric: Metric, limit: i64, hard: u32) -> ConfiguredLimit {
        ConfiguredLimit {
            scope: Scope {
                kind: Level::Team,
                id: Uuid::nil(),
                org_id: Uuid::nil(),
                names: ScopeNames::default(),
            },
            metric,
            limit,
            soft_threshold_pct: 80,
            hard_threshold_pct: hard,
            updated_at: at("2026-11-01T00:00:00Z"),
        }
    }

    #[test]
    fn remaining_subtracts_consumption_and_outstanding_leases_from_the_enforced_limit() {
        let now = at("2026-11-15T12:00:00Z");
        let utc = "UTC";
        let figures = CounterFigures {
            calendar_consumed: 500,
            window_units: 40,
            leases: LeaseTotals {
                outstanding: 100,
                granted: 3,
                edges: 2,
            },
            period: None,
        };
        let budget = limit_use(
            &configured(Metric::BudgetMicrosPerMonth, 1_000, 90),
            &figures,
            utc,
            now,
        );
        assert_eq!(
            (
                budget.enforced_limit,
                budget.consumed,
                budget.leased,
                budget.remaining
            ),
            (900, 500, 100, 300)
        );
        assert_eq!(
            budget.period.map(|period| (period.start, period.end)),
            Some((at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z")))
        );
        assert_eq!(budget.edges, 2);

        let rpm = limit_use(
            &configured(Metric::RequestsPerMinute, 120, 100),
            &figures,
            utc,
            now,
        );
        assert_eq!((rpm.consumed, rpm.leased, rpm.remaining), (40, 100, 0));
        assert_eq!(rpm.period, None);

        let slots = limit_use(
            &configured(Metric::ConcurrentRequests, 10, 100),
            &figures,
            utc,
            now,
        );
        assert_eq!((slots.consumed, slots.leased, slots.remaining), (0, 3, 7));
    }

    #[test]
    fn an_unused_limit_shows_zero_use() {
        let now = at("2026-11-15T12:00:00Z");
        let used = limit_use(
            &configured(Metric::TokensPerDay, 5_000, 100),
            &CounterFigures::default(),
            "UTC",
            now,
        );
        assert_eq!(
            (used.consumed, used.leased, used.remaining, used.edges),
            (0, 0, 5_000, 0)
        );
    }
}
