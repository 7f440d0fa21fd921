//! The lease transaction: one Postgres transaction per `LeaseRequest` that finds or creates each
//! claimed limit's counter for the current period, locks the counters in id order, expires stale
//! leases, applies the claims, grants from free capacity (the arithmetic is in `grant`) and
//! records threshold alerts. Several control-plane replicas serialise on the counter row locks,
//! so they never grant the same capacity twice.

use super::alerts::AlertKind;
use super::grant::{self, CounterState, Lease};
use super::lease::{LeaseClaim, LeaseGrant, LeaseRequest, LimitKey};
use super::period::{self, PeriodError};
use super::{Level, Metric, Window};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use uuid::Uuid;

/// An edge counts as known while its config stream is connected or it was seen this recently.
pub const KNOWN_EDGE_WINDOW: Duration = Duration::from_secs(30);
/// Lease rows of sliding windows and concurrency that expired this long ago are deleted: their
/// charge has aged out of the window, and a session gone this long is not coming back.
pub const STALE_LEASE_KEEP: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("database unavailable or failed")]
    Database(#[from] sqlx::Error),
    #[error("limit period of org {org_id}: {source}")]
    Period { org_id: Uuid, source: PeriodError },
    #[error("time {0} ms is out of range")]
    TimeOutOfRange(i64),
}

/// What a lease call produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOutcome {
    /// One per claim whose key has a limit, in claim order.
    pub grants: Vec<LeaseGrant>,
    /// Edges connected or seen recently; at least 1.
    pub known_edges: u32,
    /// Alerts this call recorded (first time their threshold was reached in the period).
    pub alerts_recorded: Vec<(AlertKind, Metric)>,
}

/// A configured limit, as the claim's key found it.
#[derive(Debug, Clone)]
struct LimitRow {
    org_id: Uuid,
    limit_value: i64,
    soft_threshold_pct: u32,
    hard_threshold_pct: u32,
    time_zone: String,
}

/// The counter a claim works on, and the period it belongs to.
#[derive(Debug, Clone, Copy)]
struct CurrentPeriod {
    start_ms: i64,
    /// None for sliding windows and concurrency.
    end_ms: Option<i64>,
    next_end_ms: Option<i64>,
}

type CounterKey = (LimitKey, i64);

fn to_time(ms: i64) -> Result<DateTime<Utc>, LeaseError> {
    DateTime::from_timestamp_millis(ms).ok_or(LeaseError::TimeOutOfRange(ms))
}

fn pct(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

fn current_period(
    key: &LimitKey,
    limit: &LimitRow,
    now_ms: i64,
) -> Result<CurrentPeriod, LeaseError> {
    match key.metric.window() {
        Window::SlidingMinute | Window::Concurrent => Ok(CurrentPeriod {
            start_ms: 0,
            end_ms: None,
            next_end_ms: None,
        }),
        Window::Calendar(unit) => {
            let now = jiff::Timestamp::from_millisecond(now_ms)
                .map_err(|_| LeaseError::TimeOutOfRange(now_ms))?;
            let period = period::current_period(unit, &limit.time_zone, now).map_err(|source| {
                LeaseError::Period {
                    org_id: limit.org_id,
                    source,
                }
            })?;
            Ok(CurrentPeriod {
                start_ms: period.start.as_millisecond(),
                end_ms: Some(period.end.as_millisecond()),
                next_end_ms: Some(period.next_end.as_millisecond()),
            })
        }
    }
}

/// Processes one lease call at plane time `now` in one transaction, exactly as the design's
/// leasing steps say. `lease_ttl` is how long a grant lives unrenewed.
pub async fn process_lease(
    pool: &PgPool,
    request: &LeaseRequest,
    now: DateTime<Utc>,
    lease_ttl: Duration,
) -> Result<LeaseOutcome, LeaseError> {
    let mut attempt = 1;
    loop {
        let result = async {
            let mut tx = pool.begin().await?;
            let outcome = process_in(&mut tx, request, now, lease_ttl).await?;
            tx.commit().await?;
            Ok(outcome)
        }
        .await;
        match result {
            Err(LeaseError::Database(err)) if attempt < MAX_ATTEMPTS && is_retryable(&err) => {
                tracing::debug!(error = %err, attempt, "lease transaction retried");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Counters are created in key order and locked in id order, so deadlocks should not happen;
/// if Postgres still reports one (or a serialisation failure), the whole call is retried, which
/// is safe because a lease call is idempotent.
const MAX_ATTEMPTS: u32 = 3;

fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

async fn process_in(
    conn: &mut PgConnection,
    request: &LeaseRequest,
    now: DateTime<Utc>,
    lease_ttl: Duration,
) -> Result<LeaseOutcome, LeaseError> {
    let now_ms = now.timestamp_millis();
    let lease_ttl_ms = i64::try_from(lease_ttl.as_millis()).unwrap_or(i64::MAX);
    let known_edges = known_edges(conn, now).await?;

    // 1. The limits the claims name; a claim without one gets no grant.
    let limits = load_limits(conn, &request.claims).await?;
    let mut claims: Vec<(&LeaseClaim, &LimitRow, CurrentPeriod)> = Vec::new();
    for claim in &request.claims {
        if let Some(limit) = limits.get(&claim.key) {
            claims.push((claim, limit, current_period(&claim.key, limit, now_ms)?));
        }
    }
    if claims.is_empty() {
        return Ok(LeaseOutcome {
            grants: Vec::new(),
            known_edges,
            alerts_recorded: Vec::new(),
        });
    }

    // Counters wanted: each claim's current one, and the earlier period's for a calendar claim
    // whose figures belong to a period that has ended.
    let mut current: Vec<CounterKey> = Vec::new();
    let mut old: Vec<CounterKey> = Vec::new();
    for (claim, _, period) in &claims {
        current.push((claim.key, period.start_ms));
        // 0: the session never had a grant for this limit, so no earlier figures exist.
        if is_old_period(claim, period) && claim.period_start_ms != 0 {
            old.push((claim.key, claim.period_start_ms));
        }
    }
    let mut ids = find_counters(conn, current.iter().chain(&old)).await?;
    let missing: Vec<(CounterKey, Option<i64>)> = claims
        .iter()
        .filter(|(claim, _, period)| !ids.contains_key(&(claim.key, period.start_ms)))
        .map(|(claim, _, period)| ((claim.key, period.start_ms), period.end_ms))
        .collect();
    let created = create_counters(conn, &missing).await?;
    ids.extend(created.iter().map(|(key, id)| (*key, *id)));
    if created.len() < missing.len() {
        // Another transaction created some at the same moment: they are committed now.
        let raced: Vec<CounterKey> = missing
            .iter()
            .map(|(key, _)| *key)
            .filter(|key| !created.contains_key(key))
            .collect();
        ids.extend(find_counters(conn, raced.iter()).await?);
    }

    // 2. Lock every counter touched, in id order, so concurrent calls cannot deadlock.
    let current_ids: Vec<i64> = current
        .iter()
        .filter_map(|key| ids.get(key))
        .copied()
        .collect();
    let old_ids: Vec<i64> = old.iter().filter_map(|key| ids.get(key)).copied().collect();
    let mut all_ids: Vec<i64> = current_ids.iter().chain(&old_ids).copied().collect();
    all_ids.sort_unstable();
    all_ids.dedup();
    let locked_consumed = lock_counters(conn, &all_ids).await?;

    // A calendar counter just created where none came before: the limit was just set, so the
    // period's spend so far comes from the usage ledger.
    let mut seeded: HashMap<i64, i64> = HashMap::new();
    for ((key, start_ms), id) in &created {
        if let Window::Calendar(_) = key.metric.window()
            && !follows_a_counted_period(conn, key, *start_ms).await?
        {
            let spent = ledger_spend(conn, key, to_time(*start_ms)?, now).await?;
            seeded.insert(*id, spent);
        }
    }

    let mut states: HashMap<i64, CounterState> = HashMap::new();
    for (claim, limit, period) in &claims {
        let window = claim.key.metric.window();
        let enforced = claim
            .key
            .metric
            .enforced_limit(limit.limit_value, limit.hard_threshold_pct);
        let ids_here = [ids.get(&(claim.key, period.start_ms))]
            .into_iter()
            .chain(
                is_old_period(claim, period).then(|| ids.get(&(claim.key, claim.period_start_ms))),
            )
            .flatten();
        for id in ids_here {
            let consumed = seeded
                .get(id)
                .or_else(|| locked_consumed.get(id))
                .copied()
                .unwrap_or(0);
            states
                .entry(*id)
                .or_insert_with(|| CounterState::new(window, enforced, consumed));
        }
    }
    let original_consumed = locked_consumed;
    load_leases(
        conn,
        &mut states,
        &current_ids,
        &old_ids,
        &request.session_id,
    )
    .await?;
    let sliding_ids: Vec<i64> = current_ids
        .iter()
        .copied()
        .filter(|id| {
            states
                .get(id)
                .is_some_and(|s| s.window == Window::SlidingMinute)
        })
        .collect();
    load_window_usage(conn, &mut states, &sliding_ids, now_ms).await?;

    // 3-5. Expire, apply, grant: per counter, under its lock.
    let mut grants = Vec::with_capacity(claims.len());
    let mut alerts: Vec<NewAlert> = Vec::new();
    for (claim, limit, period) in &claims {
        let Some(&id) = ids.get(&(claim.key, period.start_ms)) else {
            continue;
        };
        let old_period = is_old_period(claim, period);
        if old_period
            && let Some(old_id) = ids.get(&(claim.key, claim.period_start_ms))
            && let Some(old_state) = states.get_mut(old_id)
        {
            grant::apply_to_old_period(old_state, &request.session_id, &claim.figures);
        }
        let Some(state) = states.get_mut(&id) else {
            continue;
        };
        state.expire_stale(now_ms);
        // A session new to this period starts from nothing here.
        let figures = if old_period {
            grant::ClaimFigures {
                granted_total: 0,
                consumed_total: 0,
                ..claim.figures
            }
        } else {
            claim.figures
        };
        let index = state.apply_claim(&request.session_id, &request.edge_id, &figures, now_ms);
        let granted = state.grant(index, now_ms, lease_ttl_ms);
        grants.push(LeaseGrant {
            key: claim.key,
            period_start_ms: period.start_ms,
            period_end_ms: period.end_ms.unwrap_or(0),
            next_period_end_ms: period.next_end_ms.unwrap_or(0),
            granted_total: granted.granted_total,
            limit: state.enforced_limit,
            used: granted.used,
            reset_ms: state.reset_ms(now_ms, period.end_ms),
        });
        if let Some(end_ms) = period.end_ms {
            let reached = grant::thresholds_reached(
                limit.limit_value,
                limit.soft_threshold_pct,
                state.consumed,
                granted.used,
                state.enforced_limit,
            );
            let base = NewAlert {
                key: claim.key,
                org_id: limit.org_id,
                kind: AlertKind::Soft,
                threshold_pct: limit.soft_threshold_pct,
                used: state.consumed,
                limit_value: limit.limit_value,
                period_start_ms: period.start_ms,
                period_end_ms: end_ms,
            };
            if reached.soft {
                alerts.push(base.clone());
            }
            if reached.hard {
                alerts.push(NewAlert {
                    kind: AlertKind::Hard,
                    threshold_pct: limit.hard_threshold_pct,
                    used: granted.used,
                    ..base
                });
            }
        }
    }

    // Write back what changed.
    let changed: Vec<(i64, i64)> = states
        .iter()
        .filter(|(id, state)| original_consumed.get(id) != Some(&state.consumed))
        .map(|(id, state)| (*id, state.consumed))
        .collect();
    update_consumed(conn, changed).await?;
    upsert_leases(conn, &states, now).await?;
    add_window_usage(conn, &states).await?;
    let stale_before = to_time(now_ms - grant::WINDOW_KEEP_MS)?;
    sqlx::query!(
        "DELETE FROM limit_window_usage WHERE counter_id = ANY($1) AND second < $2",
        &sliding_ids,
        stale_before,
    )
    .execute(&mut *conn)
    .await?;
    let non_calendar: Vec<i64> = current_ids
        .iter()
        .copied()
        .filter(|id| {
            states
                .get(id)
                .is_some_and(|s| !matches!(s.window, Window::Calendar(_)))
        })
        .collect();
    let keep_ms = i64::try_from(STALE_LEASE_KEEP.as_millis()).unwrap_or(i64::MAX);
    sqlx::query!(
        "DELETE FROM limit_leases WHERE counter_id = ANY($1) AND expires_at < $2",
        &non_calendar,
        to_time(now_ms.saturating_sub(keep_ms))?,
    )
    .execute(&mut *conn)
    .await?;
    let alerts_recorded = record_alerts(conn, &alerts, now).await?;

    Ok(LeaseOutcome {
        grants,
        known_edges,
        alerts_recorded,
    })
}

/// A claim for a calendar period that has ended. A claim naming no period (0: the edge has had
/// no grant yet, e.g. it started while the plane was down and spent its safe share) belongs to
/// the current period, so that spend is counted rather than dropped.
fn is_old_period(claim: &LeaseClaim, period: &CurrentPeriod) -> bool {
    period.end_ms.is_some()
        && claim.period_start_ms != 0
        && claim.period_start_ms != period.start_ms
}

async fn known_edges(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<u32, LeaseError> {
    let recent = now
        - chrono::Duration::from_std(KNOWN_EDGE_WINDOW).unwrap_or(chrono::Duration::seconds(30));
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM edges WHERE connected OR last_seen_at >= $1"#,
        recent
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX).max(1))
}

/// Columns of a set of limit keys, for `UNNEST`.
fn key_columns<'a>(
    keys: impl Iterator<Item = &'a LimitKey>,
) -> (Vec<&'static str>, Vec<Uuid>, Vec<&'static str>) {
    let mut kinds = Vec::new();
    let mut ids = Vec::new();
    let mut metrics = Vec::new();
    for key in keys {
        kinds.push(key.scope.as_str());
        ids.push(key.scope_id);
        metrics.push(key.metric.as_str());
    }
    (kinds, ids, metrics)
}

fn parse_key(kind: &str, scope_id: Uuid, metric: &str) -> Option<LimitKey> {
    Some(LimitKey {
        scope: Level::parse(kind)?,
        scope_id,
        metric: Metric::parse(metric)?,
    })
}

async fn load_limits(
    conn: &mut PgConnection,
    claims: &[LeaseClaim],
) -> Result<HashMap<LimitKey, LimitRow>, LeaseError> {
    let (kinds, ids, metrics) = key_columns(claims.iter().map(|c| &c.key));
    let rows = sqlx::query!(
        r#"SELECT l.scope_kind, l.scope_id, l.metric, l.limit_value, l.soft_threshold_pct,
                  l.hard_threshold_pct, l.org_id, o.time_zone
           FROM UNNEST($1::text[], $2::uuid[], $3::text[]) AS k(scope_kind, scope_id, metric)
           JOIN limits l ON l.scope_kind = k.scope_kind AND l.scope_id = k.scope_id
                        AND l.metric = k.metric
           JOIN orgs o ON o.id = l.org_id"#,
        &kinds as &[&str],
        &ids,
        &metrics as &[&str],
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let key = parse_key(&row.scope_kind, row.scope_id, &row.metric)?;
            Some((
                key,
                LimitRow {
                    org_id: row.org_id,
                    limit_value: row.limit_value,
                    soft_threshold_pct: pct(row.soft_threshold_pct),
                    hard_threshold_pct: pct(row.hard_threshold_pct),
                    time_zone: row.time_zone,
                },
            ))
        })
        .collect())
}

async fn find_counters<'a>(
    conn: &mut PgConnection,
    keys: impl Iterator<Item = &'a CounterKey>,
) -> Result<HashMap<CounterKey, i64>, LeaseError> {
    let keys: Vec<&CounterKey> = keys.collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (kinds, ids, metrics) = key_columns(keys.iter().map(|(key, _)| key));
    let starts = keys
        .iter()
        .map(|(_, start)| to_time(*start))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = sqlx::query!(
        r#"SELECT c.id, c.scope_kind, c.scope_id, c.metric, c.period_start
           FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::timestamptz[])
                AS k(scope_kind, scope_id, metric, period_start)
           JOIN limit_counters c ON c.scope_kind = k.scope_kind AND c.scope_id = k.scope_id
                                AND c.metric = k.metric AND c.period_start = k.period_start"#,
        &kinds as &[&str],
        &ids,
        &metrics as &[&str],
        &starts,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let key = parse_key(&row.scope_kind, row.scope_id, &row.metric)?;
            Some(((key, row.period_start.timestamp_millis()), row.id))
        })
        .collect())
}

/// Creates the missing counters in one statement, in key order (so two calls creating the same
/// counters wait on each other in the same order). Returns those this call created; a counter
/// another call created first is left out.
async fn create_counters(
    conn: &mut PgConnection,
    missing: &[(CounterKey, Option<i64>)],
) -> Result<HashMap<CounterKey, i64>, LeaseError> {
    if missing.is_empty() {
        return Ok(HashMap::new());
    }
    let (kinds, ids, metrics) = key_columns(missing.iter().map(|((key, _), _)| key));
    let starts = missing
        .iter()
        .map(|((_, start), _)| to_time(*start))
        .collect::<Result<Vec<_>, _>>()?;
    let ends = missing
        .iter()
        .map(|(_, end)| end.map(to_time).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let rows = sqlx::query!(
        r#"INSERT INTO limit_counters (scope_kind, scope_id, metric, period_start, period_end)
           SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::timestamptz[],
                                $5::timestamptz[])
           ORDER BY 1, 2, 3, 4
           ON CONFLICT (scope_kind, scope_id, metric, period_start) DO NOTHING
           RETURNING id, scope_kind, scope_id, metric, period_start"#,
        &kinds as &[&str],
        &ids,
        &metrics as &[&str],
        &starts,
        &ends as &[Option<DateTime<Utc>>],
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let key = parse_key(&row.scope_kind, row.scope_id, &row.metric)?;
            Some(((key, row.period_start.timestamp_millis()), row.id))
        })
        .collect())
}

/// Locks the counters (in id order) and returns each one's period spend.
async fn lock_counters(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<HashMap<i64, i64>, LeaseError> {
    let rows = sqlx::query!(
        "SELECT id, consumed FROM limit_counters WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.consumed)).collect())
}

/// Whether the period just before this one was counted (its counter ends where this one
/// starts). Then this period starts at zero: its spend arrives through leases. Otherwise (the
/// limit is new, came back after a gap, or the org changed time zone) the ledger says what was
/// already spent since the period began.
async fn follows_a_counted_period(
    conn: &mut PgConnection,
    key: &LimitKey,
    start_ms: i64,
) -> Result<bool, LeaseError> {
    let earlier = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM limit_counters
                          WHERE scope_kind = $1 AND scope_id = $2 AND metric = $3
                            AND period_end = $4) AS "earlier!""#,
        key.scope.as_str(),
        key.scope_id,
        key.metric.as_str(),
        to_time(start_ms)?,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(earlier)
}

/// What the usage ledger recorded for the scope in `[from, to)`: tokens (input + output), or
/// micro-dollars for budgets (unpriced events count 0, as they reserve 0).
async fn ledger_spend(
    conn: &mut PgConnection,
    key: &LimitKey,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64, LeaseError> {
    let budget = key.metric == Metric::BudgetMicrosPerMonth;
    let spent = sqlx::query_scalar!(
        r#"SELECT COALESCE(SUM(CASE WHEN $1 THEN COALESCE(cost_micros, 0)
                                    ELSE input_tokens + output_tokens END), 0)::int8 AS "spent!"
           FROM usage_events
           WHERE event_time >= $2 AND event_time < $3
             AND CASE $4::text
                     WHEN 'org' THEN org_id = $5
                     WHEN 'team' THEN team_id = $5
                     WHEN 'project' THEN project_id = $5
                     WHEN 'user' THEN user_id = $5
                     ELSE key_id = $5
                 END"#,
        budget,
        from,
        to,
        key.scope.as_str(),
        key.scope_id,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(spent)
}

/// Loads every lease of the current counters, and only this session's lease of old-period
/// counters (nothing else of an ended period is touched).
async fn load_leases(
    conn: &mut PgConnection,
    states: &mut HashMap<i64, CounterState>,
    current_ids: &[i64],
    old_ids: &[i64],
    session_id: &str,
) -> Result<(), LeaseError> {
    let rows = sqlx::query!(
        r#"SELECT counter_id, session_id, edge_id, granted_total, consumed_total, reserved,
                  want_available, expires_at, expired_charge
           FROM limit_leases
           WHERE counter_id = ANY($1) OR (counter_id = ANY($2) AND session_id = $3)
           ORDER BY counter_id, session_id"#,
        current_ids,
        old_ids,
        session_id,
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        if let Some(state) = states.get_mut(&row.counter_id) {
            state.leases.push(Lease {
                session_id: row.session_id,
                edge_id: row.edge_id,
                granted_total: row.granted_total,
                consumed_total: row.consumed_total,
                reserved: row.reserved,
                want_available: row.want_available,
                expires_at_ms: row.expires_at.timestamp_millis(),
                expired_charge: row.expired_charge,
                dirty: false,
            });
        }
    }
    Ok(())
}

async fn load_window_usage(
    conn: &mut PgConnection,
    states: &mut HashMap<i64, CounterState>,
    sliding_ids: &[i64],
    now_ms: i64,
) -> Result<(), LeaseError> {
    if sliding_ids.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query!(
        "SELECT counter_id, second, units FROM limit_window_usage
         WHERE counter_id = ANY($1) AND second > $2",
        sliding_ids,
        to_time(now_ms - grant::WINDOW_COUNT_MS)?,
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        if let Some(state) = states.get_mut(&row.counter_id) {
            *state
                .window_usage
                .entry(row.second.timestamp_millis())
                .or_default() += row.units;
        }
    }
    Ok(())
}

async fn update_consumed(
    conn: &mut PgConnection,
    mut changed: Vec<(i64, i64)>,
) -> Result<(), LeaseError> {
    if changed.is_empty() {
        return Ok(());
    }
    changed.sort_unstable();
    let (ids, consumed): (Vec<i64>, Vec<i64>) = changed.into_iter().unzip();
    sqlx::query!(
        "UPDATE limit_counters c SET consumed = u.consumed
         FROM UNNEST($1::int8[], $2::int8[]) AS u(id, consumed)
         WHERE c.id = u.id",
        &ids,
        &consumed,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn upsert_leases(
    conn: &mut PgConnection,
    states: &HashMap<i64, CounterState>,
    now: DateTime<Utc>,
) -> Result<(), LeaseError> {
    let mut rows: Vec<(i64, &Lease)> = states
        .iter()
        .flat_map(|(id, state)| {
            state
                .leases
                .iter()
                .filter(|l| l.dirty)
                .map(move |l| (*id, l))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    rows.sort_by(|a, b| (a.0, &a.1.session_id).cmp(&(b.0, &b.1.session_id)));
    let mut counter_ids = Vec::with_capacity(rows.len());
    let mut sessions = Vec::with_capacity(rows.len());
    let mut edges = Vec::with_capacity(rows.len());
    let mut granted = Vec::with_capacity(rows.len());
    let mut consumed = Vec::with_capacity(rows.len());
    let mut reserved = Vec::with_capacity(rows.len());
    let mut want = Vec::with_capacity(rows.len());
    let mut expires = Vec::with_capacity(rows.len());
    let mut charges = Vec::with_capacity(rows.len());
    for (id, lease) in rows {
        counter_ids.push(id);
        sessions.push(lease.session_id.as_str());
        edges.push(lease.edge_id.as_str());
        granted.push(lease.granted_total);
        consumed.push(lease.consumed_total);
        reserved.push(lease.reserved);
        want.push(lease.want_available);
        expires.push(to_time(lease.expires_at_ms)?);
        charges.push(lease.expired_charge);
    }
    sqlx::query!(
        r#"INSERT INTO limit_leases (counter_id, session_id, edge_id, granted_total,
                                     consumed_total, reserved, want_available, expires_at,
                                     expired_charge, updated_at)
           SELECT u.*, $10::timestamptz
           FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[],
                       $7::int8[], $8::timestamptz[], $9::int8[])
                AS u(counter_id, session_id, edge_id, granted_total, consumed_total, reserved,
                     want_available, expires_at, expired_charge)
           ON CONFLICT (counter_id, session_id) DO UPDATE SET
               edge_id = EXCLUDED.edge_id,
               granted_total = EXCLUDED.granted_total,
               consumed_total = EXCLUDED.consumed_total,
               reserved = EXCLUDED.reserved,
               want_available = EXCLUDED.want_available,
               expires_at = EXCLUDED.expires_at,
               expired_charge = EXCLUDED.expired_charge,
               updated_at = EXCLUDED.updated_at"#,
        &counter_ids,
        &sessions as &[&str],
        &edges as &[&str],
        &granted,
        &consumed,
        &reserved,
        &want,
        &expires,
        &charges,
        now,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn add_window_usage(
    conn: &mut PgConnection,
    states: &HashMap<i64, CounterState>,
) -> Result<(), LeaseError> {
    let mut ids = Vec::new();
    let mut seconds = Vec::new();
    let mut units = Vec::new();
    let sorted: BTreeMap<i64, &CounterState> = states.iter().map(|(id, s)| (*id, s)).collect();
    for (id, state) in sorted {
        for (second, added) in &state.window_added {
            ids.push(id);
            seconds.push(to_time(*second)?);
            units.push(*added);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "INSERT INTO limit_window_usage AS w (counter_id, second, units)
         SELECT * FROM UNNEST($1::int8[], $2::timestamptz[], $3::int8[])
         ON CONFLICT (counter_id, second) DO UPDATE SET units = w.units + EXCLUDED.units",
        &ids,
        &seconds,
        &units,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An alert whose threshold a calendar counter has reached.
#[derive(Debug, Clone)]
struct NewAlert {
    key: LimitKey,
    org_id: Uuid,
    kind: AlertKind,
    threshold_pct: u32,
    used: i64,
    limit_value: i64,
    period_start_ms: i64,
    period_end_ms: i64,
}

/// Records alerts once per kind, limit and period; returns those recorded by this call.
async fn record_alerts(
    conn: &mut PgConnection,
    alerts: &[NewAlert],
    now: DateTime<Utc>,
) -> Result<Vec<(AlertKind, Metric)>, LeaseError> {
    if alerts.is_empty() {
        return Ok(Vec::new());
    }
    let (kinds, ids, metrics) = key_columns(alerts.iter().map(|a| &a.key));
    let orgs: Vec<Uuid> = alerts.iter().map(|a| a.org_id).collect();
    let alert_kinds: Vec<&str> = alerts.iter().map(|a| a.kind.as_str()).collect();
    let thresholds: Vec<i32> = alerts
        .iter()
        .map(|a| i32::try_from(a.threshold_pct).unwrap_or(i32::MAX))
        .collect();
    let used: Vec<i64> = alerts.iter().map(|a| a.used).collect();
    let limits: Vec<i64> = alerts.iter().map(|a| a.limit_value).collect();
    let starts = alerts
        .iter()
        .map(|a| to_time(a.period_start_ms))
        .collect::<Result<Vec<_>, _>>()?;
    let ends = alerts
        .iter()
        .map(|a| to_time(a.period_end_ms))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = sqlx::query!(
        r#"INSERT INTO limit_alerts (scope_kind, scope_id, org_id, metric, kind, threshold_pct,
                                     used, limit_value, period_start, period_end, created_at,
                                     webhook_next_attempt_at)
           SELECT u.*, $11::timestamptz, $11::timestamptz
           FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int4[],
                       $7::int8[], $8::int8[], $9::timestamptz[], $10::timestamptz[])
                AS u(scope_kind, scope_id, org_id, metric, kind, threshold_pct, used,
                     limit_value, period_start, period_end)
           ORDER BY 1, 2, 4, 5
           ON CONFLICT (scope_kind, scope_id, metric, period_start, kind) DO NOTHING
           RETURNING kind, metric"#,
        &kinds as &[&str],
        &ids,
        &orgs,
        &metrics as &[&str],
        &alert_kinds as &[&str],
        &thresholds,
        &used,
        &limits,
        &starts,
        &ends,
        now,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Some((AlertKind::parse(&row.kind)?, Metric::parse(&row.metric)?)))
        .collect())
}
