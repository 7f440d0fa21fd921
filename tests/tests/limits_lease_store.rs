#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The control plane's lease transaction against real Postgres: grants never exceed a limit,
//! not even with two pools ("replicas") hammering one counter from many sessions; calls are
//! idempotent; returns, expiry, period rollover, ledger seeding and alerts behave as the design
//! says. Time is injected (`now`), so expiry and rollover need no waiting. The last tests go
//! through gRPC (an in-process `LimitService`) and the alert webhook task.

use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tollgate_control_plane::db::MIGRATOR;
use tollgate_control_plane::limits::alerts::{self, AlertKind};
use tollgate_control_plane::limits::grant::ClaimFigures;
use tollgate_control_plane::limits::lease::{LeaseClaim, LeaseGrant, LeaseRequest, LimitKey};
use tollgate_control_plane::limits::metrics::Metrics;
use tollgate_control_plane::limits::service::LeaseService;
use tollgate_control_plane::limits::store::{LeaseOutcome, process_lease};
use tollgate_control_plane::limits::{Level, Metric};
use tollgate_e2e::TestDb;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

const TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// One org (time zone given) with a team, a project, a user and a key, all as plain rows.
struct World {
    db: TestDb,
    org: Uuid,
    team: Uuid,
    project: Uuid,
    user: Uuid,
    key: Uuid,
}

impl World {
    async fn create(time_zone: &str) -> World {
        let db = TestDb::create().await;
        MIGRATOR.run(db.pool()).await.expect("migrate");
        let pool = db.pool();
        let org: Uuid = sqlx::query_scalar(
            "INSERT INTO orgs (name, time_zone) VALUES ('acme', $1) RETURNING id",
        )
        .bind(time_zone)
        .fetch_one(pool)
        .await
        .unwrap();
        let team: Uuid =
            sqlx::query_scalar("INSERT INTO teams (org_id, name) VALUES ($1, 'ml') RETURNING id")
                .bind(org)
                .fetch_one(pool)
                .await
                .unwrap();
        let project: Uuid = sqlx::query_scalar(
            "INSERT INTO projects (team_id, name) VALUES ($1, 'chatbot') RETURNING id",
        )
        .bind(team)
        .fetch_one(pool)
        .await
        .unwrap();
        let user: Uuid = sqlx::query_scalar(
            "INSERT INTO users (org_id, name) VALUES ($1, 'alice') RETURNING id",
        )
        .bind(org)
        .fetch_one(pool)
        .await
        .unwrap();
        let key: Uuid = sqlx::query_scalar(
            "INSERT INTO virtual_keys (key_hash, key_prefix, org_id, team_id, project_id, user_id)
             VALUES ($1, 'tg-test', $2, $3, $4, $5) RETURNING id",
        )
        .bind(vec![7u8; 32])
        .bind(org)
        .bind(team)
        .bind(project)
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap();
        World {
            db,
            org,
            team,
            project,
            user,
            key,
        }
    }

    fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// Sets a limit on the team.
    async fn team_limit(&self, metric: Metric, value: i64, soft: i32, hard: i32) -> LimitKey {
        sqlx::query(
            "INSERT INTO limits (scope_kind, scope_id, org_id, metric, limit_value,
                                 soft_threshold_pct, hard_threshold_pct)
             VALUES ('team', $1, $2, $3, $4, $5, $6)",
        )
        .bind(self.team)
        .bind(self.org)
        .bind(metric.as_str())
        .bind(value)
        .bind(soft)
        .bind(hard)
        .execute(self.pool())
        .await
        .unwrap();
        LimitKey {
            scope: Level::Team,
            scope_id: self.team,
            metric,
        }
    }

    /// A usage event in the ledger for this world's key.
    async fn usage_event(&self, at: DateTime<Utc>, input: i64, output: i64, cost: Option<i64>) {
        sqlx::query(
            "INSERT INTO usage_events (event_id, request_id, event_time, org_id, team_id,
                 project_id, user_id, key_id, requested_model, model, provider, input_tokens,
                 output_tokens, cost_micros, latency_ms, status, http_status, edge_id,
                 config_version, usage_source)
             VALUES ($1, 'req', $2, $3, $4, $5, $6, $7, 'gpt', 'gpt', 'mock', $8, $9, $10, 5,
                     'ok', 200, 'edge-a', 1, 'provider')",
        )
        .bind(Uuid::new_v4())
        .bind(at)
        .bind(self.org)
        .bind(self.team)
        .bind(self.project)
        .bind(self.user)
        .bind(self.key)
        .bind(input)
        .bind(output)
        .bind(cost)
        .execute(self.pool())
        .await
        .unwrap();
    }
}

fn figures(granted: i64, consumed: i64, reserved: i64, want: i64) -> ClaimFigures {
    ClaimFigures {
        granted_total: granted,
        consumed_total: consumed,
        reserved,
        want_available: want,
    }
}

fn request(session: &str, claims: Vec<(LimitKey, i64, ClaimFigures)>) -> LeaseRequest {
    LeaseRequest {
        edge_id: format!("edge-{session}"),
        session_id: session.to_owned(),
        claims: claims
            .into_iter()
            .map(|(key, period_start_ms, figures)| LeaseClaim {
                key,
                period_start_ms,
                figures,
            })
            .collect(),
    }
}

async fn lease_at(
    pool: &PgPool,
    session: &str,
    key: LimitKey,
    period_start_ms: i64,
    claim: ClaimFigures,
    now: DateTime<Utc>,
) -> LeaseGrant {
    let outcome = process_lease(
        pool,
        &request(session, vec![(key, period_start_ms, claim)]),
        now,
        TTL,
    )
    .await
    .unwrap();
    assert_eq!(outcome.grants.len(), 1, "{outcome:?}");
    outcome.grants[0]
}

fn mid_november() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 15, 12, 0, 0).unwrap()
}

async fn scalar(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// Everything the lease state holds, for before/after comparisons.
async fn lease_state(pool: &PgPool) -> String {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT concat_ws(' ', 'counter', id, scope_kind, metric, period_start, consumed)
           FROM limit_counters
         UNION ALL
         SELECT concat_ws(' ', 'lease', counter_id, session_id, granted_total, consumed_total,
                          reserved, want_available, expires_at, expired_charge)
           FROM limit_leases
         UNION ALL
         SELECT concat_ws(' ', 'window', counter_id, second, units) FROM limit_window_usage
         UNION ALL
         SELECT concat_ws(' ', 'alert', metric, kind, used) FROM limit_alerts
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(row,)| row)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn limits_lease_grants_never_exceed_the_enforced_limit() {
    let world = World::create("UTC").await;
    // 1000 micro-dollars at a 90 % hard threshold: 900 may be granted.
    let key = world
        .team_limit(Metric::BudgetMicrosPerMonth, 1_000, 80, 90)
        .await;
    let now = mid_november();
    let a = lease_at(world.pool(), "a", key, 0, figures(0, 0, 0, 5_000), now).await;
    assert_eq!(a.granted_total, 900);
    assert_eq!(a.limit, 900);
    assert_eq!(a.used, 900);
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    assert_eq!(a.period_start_ms, start.timestamp_millis());
    assert_eq!(a.period_end_ms, end.timestamp_millis());
    assert_eq!(
        a.next_period_end_ms,
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp_millis()
    );
    assert_eq!(a.reset_ms, (end - now).num_milliseconds());
    let b = lease_at(world.pool(), "b", key, 0, figures(0, 0, 0, 10), now).await;
    assert_eq!(b.granted_total, 0);
    assert_eq!(b.used, 900);
}

#[tokio::test]
async fn limits_lease_unknown_limit_gets_no_grant() {
    let world = World::create("UTC").await;
    let limited = world
        .team_limit(Metric::RequestsPerMinute, 10, 80, 100)
        .await;
    let unlimited = LimitKey {
        scope: Level::Project,
        scope_id: world.project,
        metric: Metric::RequestsPerMinute,
    };
    let outcome = process_lease(
        world.pool(),
        &request(
            "a",
            vec![
                (unlimited, 0, figures(0, 0, 0, 5)),
                (limited, 0, figures(0, 0, 0, 5)),
            ],
        ),
        mid_november(),
        TTL,
    )
    .await
    .unwrap();
    assert_eq!(outcome.grants.len(), 1);
    assert_eq!(outcome.grants[0].key, limited);
    assert_eq!(outcome.grants[0].granted_total, 5);
    assert_eq!(outcome.known_edges, 1);
    assert_eq!(
        scalar(
            world.pool(),
            "SELECT count(*) FROM limit_counters WHERE scope_kind = 'project'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn limits_lease_a_retried_identical_request_is_a_no_op() {
    let world = World::create("Europe/Berlin").await;
    let budget = world
        .team_limit(Metric::TokensPerDay, 10_000, 80, 100)
        .await;
    let rpm = world
        .team_limit(Metric::RequestsPerMinute, 100, 80, 100)
        .await;
    let now = mid_november();
    let first = process_lease(
        world.pool(),
        &request(
            "a",
            vec![
                (budget, 0, figures(0, 0, 0, 1_000)),
                (rpm, 0, figures(0, 0, 0, 10)),
            ],
        ),
        now,
        TTL,
    )
    .await
    .unwrap();
    let period = first.grants[0].period_start_ms;
    let second = request(
        "a",
        vec![
            (budget, period, figures(1_000, 400, 50, 1_000)),
            (rpm, 0, figures(10, 7, 1, 10)),
        ],
    );
    let later = now + Duration::seconds(1);
    let answer = process_lease(world.pool(), &second, later, TTL)
        .await
        .unwrap();
    let state = lease_state(world.pool()).await;
    // The answer was lost; the edge sends the same figures again.
    let again = process_lease(world.pool(), &second, later, TTL)
        .await
        .unwrap();
    assert_eq!(answer, again);
    assert_eq!(lease_state(world.pool()).await, state);
    assert_eq!(
        scalar(
            world.pool(),
            "SELECT consumed FROM limit_counters WHERE metric = 'tokens_per_day'"
        )
        .await,
        400
    );
    assert_eq!(
        scalar(
            world.pool(),
            "SELECT sum(units)::int8 FROM limit_window_usage"
        )
        .await,
        7
    );
}

#[tokio::test]
async fn limits_lease_a_return_frees_capacity_for_another_session() {
    let world = World::create("UTC").await;
    let key = world
        .team_limit(Metric::TokensPerMinute, 1_000, 80, 100)
        .await;
    let now = mid_november();
    assert_eq!(
        lease_at(world.pool(), "a", key, 0, figures(0, 0, 0, 1_000), now)
            .await
            .granted_total,
        1_000
    );
    assert_eq!(
        lease_at(world.pool(), "b", key, 0, figures(0, 0, 0, 300), now)
            .await
            .granted_total,
        0
    );
    // a spent 200 and keeps 300: it returns 500.
    let a = lease_at(
        world.pool(),
        "a",
        key,
        0,
        figures(500, 200, 0, 0),
        now + Duration::seconds(1),
    )
    .await;
    assert_eq!(a.granted_total, 500);
    assert_eq!(a.used, 500);
    let b = lease_at(
        world.pool(),
        "b",
        key,
        0,
        figures(0, 0, 0, 300),
        now + Duration::seconds(2),
    )
    .await;
    assert_eq!(b.granted_total, 300);
    assert_eq!(b.used, 800);
}

#[tokio::test]
async fn limits_lease_an_expired_calendar_lease_is_charged_and_undone_when_its_session_returns() {
    let world = World::create("UTC").await;
    let key = world
        .team_limit(Metric::TokensPerHour, 1_000, 80, 100)
        .await;
    let now = mid_november();
    let a = lease_at(world.pool(), "a", key, 0, figures(0, 0, 0, 600), now).await;
    let period = a.period_start_ms;
    lease_at(
        world.pool(),
        "a",
        key,
        period,
        figures(600, 100, 0, 500),
        now,
    )
    .await;
    // a goes silent past its TTL: its 500 unspent count as spent.
    let later = now + Duration::seconds(11);
    let b = lease_at(world.pool(), "b", key, 0, figures(0, 0, 0, 1_000), later).await;
    assert_eq!(b.granted_total, 400);
    assert_eq!(
        scalar(world.pool(), "SELECT consumed FROM limit_counters").await,
        600
    );
    assert_eq!(
        scalar(
            world.pool(),
            "SELECT expired_charge FROM limit_leases WHERE session_id = 'a'"
        )
        .await,
        500
    );
    // a comes back: it had spent 150 in all and returns everything else.
    let back = lease_at(
        world.pool(),
        "a",
        key,
        period,
        figures(150, 150, 0, 0),
        later + Duration::seconds(1),
    )
    .await;
    assert_eq!(back.granted_total, 150);
    assert_eq!(
        scalar(world.pool(), "SELECT consumed FROM limit_counters").await,
        150
    );
    assert_eq!(back.used, 150 + 400);
    assert_eq!(
        scalar(
            world.pool(),
            "SELECT expired_charge FROM limit_leases WHERE session_id = 'a'"
        )
        .await,
        0
    );
    // The freed capacity is grantable again.
    let b = lease_at(
        world.pool(),
        "b",
        key,
        period,
        figures(400, 0, 0, 1_000),
        later + Duration::seconds(2),
    )
    .await;
    assert_eq!(b.granted_total, 850);
}

#[tokio::test]
async fn limits_lease_period_rollover_restarts_a_sessions_figures() {
    let world = World::create("Asia/Kolkata").await;
    let key = world
        .team_limit(Metric::TokensPerHour, 1_000, 80, 100)
        .await;
    // 10:50 UTC is 16:20 in Kolkata: the hour runs 10:30–11:30 UTC.
    let now = Utc.with_ymd_and_hms(2026, 11, 15, 10, 50, 0).unwrap();
    let first = lease_at(world.pool(), "a", key, 0, figures(0, 0, 0, 700), now).await;
    let hour = Utc.with_ymd_and_hms(2026, 11, 15, 10, 30, 0).unwrap();
    assert_eq!(first.period_start_ms, hour.timestamp_millis());
    assert_eq!(first.granted_total, 700);
    // Past 11:30 UTC: the edge still reports figures of the old hour (spent 650 there).
    let next = Utc.with_ymd_and_hms(2026, 11, 15, 11, 30, 5).unwrap();
    let rolled = lease_at(
        world.pool(),
        "a",
        key,
        first.period_start_ms,
        figures(700, 650, 0, 300),
        next,
    )
    .await;
    assert_eq!(
        rolled.period_start_ms,
        Utc.with_ymd_and_hms(2026, 11, 15, 11, 30, 0)
            .unwrap()
            .timestamp_millis()
    );
    assert_eq!(rolled.granted_total, 300, "fresh in the new hour");
    assert_eq!(rolled.used, 300);
    let consumed: Vec<(DateTime<Utc>, i64)> =
        sqlx::query_as("SELECT period_start, consumed FROM limit_counters ORDER BY period_start")
            .fetch_all(world.pool())
            .await
            .unwrap();
    assert_eq!(consumed, vec![(hour, 650), (hour + Duration::hours(1), 0)]);
    // The next call is in the new period's terms.
    let renewed = lease_at(
        world.pool(),
        "a",
        key,
        rolled.period_start_ms,
        figures(300, 100, 0, 300),
        next + Duration::seconds(1),
    )
    .await;
    assert_eq!(renewed.granted_total, 400);
    assert_eq!(renewed.used, 400);
}

/// An edge that started while the plane was down spent its safe share with no period known; its
/// first claim (period 0) must count that spend in the current period, not drop it.
#[tokio::test]
async fn limits_lease_spend_claimed_before_any_grant_counts_in_the_current_period() {
    let world = World::create("UTC").await;
    let key = world.team_limit(Metric::TokensPerDay, 1_000, 80, 100).await;
    let now = mid_november();
    let first = lease_at(world.pool(), "a", key, 0, figures(0, 250, 0, 100), now).await;
    assert_eq!(
        first.used, 350,
        "250 spent before the grant + 100 granted now"
    );
    // The grant covers what was spent (no debt) plus the 100 the edge wants on hand.
    assert_eq!(first.granted_total, 350);
    assert_eq!(
        scalar(world.pool(), "SELECT consumed FROM limit_counters").await,
        250
    );
}

/// A time-zone change moves the period's bounds; the new period's counter must not start from
/// zero but count what the ledger holds since the new start.
#[tokio::test]
async fn limits_lease_a_time_zone_change_keeps_the_months_spend() {
    let world = World::create("UTC").await;
    let budget = world
        .team_limit(Metric::BudgetMicrosPerMonth, 100_000, 80, 100)
        .await;
    let now = mid_november();
    // The budget was in use under UTC: a grant, then 40_000 µ$ spent, as the ledger also shows.
    let utc = lease_at(world.pool(), "a", budget, 0, figures(0, 0, 0, 50_000), now).await;
    world
        .usage_event(now + Duration::seconds(1), 10, 10, Some(40_000))
        .await;
    lease_at(
        world.pool(),
        "a",
        budget,
        utc.period_start_ms,
        figures(utc.granted_total, 40_000, 0, 0),
        now + Duration::seconds(2),
    )
    .await;

    sqlx::query("UPDATE orgs SET time_zone = 'America/New_York' WHERE id = $1")
        .bind(world.org)
        .execute(world.pool())
        .await
        .unwrap();
    let later = now + Duration::seconds(3);
    let ny = lease_at(world.pool(), "b", budget, 0, figures(0, 0, 0, 0), later).await;
    assert_ne!(ny.period_start_ms, utc.period_start_ms, "the period moved");
    assert_eq!(
        ny.used, 40_000,
        "the month's spend carried into the new zone's period"
    );
}

#[tokio::test]
async fn limits_lease_ledger_seeding_counts_usage_already_in_the_period() {
    let world = World::create("America/New_York").await;
    let now = mid_november();
    // In November (New York): 300 + 200 tokens, 5_000 + 2_000 µ$; one unpriced event.
    world
        .usage_event(
            Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap(),
            200,
            100,
            Some(5_000),
        )
        .await;
    world
        .usage_event(
            Utc.with_ymd_and_hms(2026, 11, 14, 9, 0, 0).unwrap(),
            150,
            50,
            Some(2_000),
        )
        .await;
    world
        .usage_event(
            Utc.with_ymd_and_hms(2026, 11, 14, 10, 0, 0).unwrap(),
            1,
            1,
            None,
        )
        .await;
    // 03:00 UTC on November 1st is still October in New York; and one after `now`.
    world
        .usage_event(
            Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap(),
            1_000,
            0,
            Some(9_999),
        )
        .await;
    world
        .usage_event(now + Duration::hours(1), 1_000, 0, Some(9_999))
        .await;
    let budget = world
        .team_limit(Metric::BudgetMicrosPerMonth, 100_000, 80, 100)
        .await;
    let tokens = world
        .team_limit(Metric::TokensPerMonth, 10_000, 80, 100)
        .await;
    let b = lease_at(world.pool(), "a", budget, 0, figures(0, 0, 0, 0), now).await;
    assert_eq!(b.used, 7_000);
    let t = lease_at(world.pool(), "a", tokens, 0, figures(0, 0, 0, 0), now).await;
    assert_eq!(t.used, 502);
    // Seeding happens once: later periods start at 0 even with usage in them.
    let december = Utc.with_ymd_and_hms(2026, 12, 10, 12, 0, 0).unwrap();
    world
        .usage_event(december - Duration::days(1), 500, 500, Some(1_000))
        .await;
    let d = lease_at(
        world.pool(),
        "a",
        budget,
        b.period_start_ms,
        figures(0, 0, 0, 0),
        december,
    )
    .await;
    assert_eq!(d.used, 0);
}

#[tokio::test]
async fn limits_lease_soft_and_hard_alerts_are_recorded_once_each() {
    let world = World::create("UTC").await;
    let key = world
        .team_limit(Metric::BudgetMicrosPerMonth, 1_000, 50, 100)
        .await;
    let now = mid_november();
    let first = process_lease(
        world.pool(),
        &request("a", vec![(key, 0, figures(0, 0, 0, 400))]),
        now,
        TTL,
    )
    .await
    .unwrap();
    assert!(first.alerts_recorded.is_empty());
    let period = first.grants[0].period_start_ms;
    // Spent 400 (40 %): no alert yet.
    let second = process_lease(
        world.pool(),
        &request("a", vec![(key, period, figures(400, 400, 0, 100))]),
        now + Duration::seconds(1),
        TTL,
    )
    .await
    .unwrap();
    assert!(second.alerts_recorded.is_empty(), "{second:?}");
    // Spent 500 (50 %): soft. Wants everything: the grant exhausts the limit: hard.
    let third = process_lease(
        world.pool(),
        &request("a", vec![(key, period, figures(500, 500, 0, 10_000))]),
        now + Duration::seconds(2),
        TTL,
    )
    .await
    .unwrap();
    assert_eq!(
        third.alerts_recorded.len(),
        2,
        "{:?}",
        third.alerts_recorded
    );
    assert!(
        third
            .alerts_recorded
            .contains(&(AlertKind::Soft, Metric::BudgetMicrosPerMonth))
    );
    assert!(
        third
            .alerts_recorded
            .contains(&(AlertKind::Hard, Metric::BudgetMicrosPerMonth))
    );
    let fourth = process_lease(
        world.pool(),
        &request("a", vec![(key, period, figures(1_000, 900, 0, 10_000))]),
        now + Duration::seconds(3),
        TTL,
    )
    .await
    .unwrap();
    assert!(fourth.alerts_recorded.is_empty());
    let alerts: Vec<(String, i32, i64, i64)> = sqlx::query_as(
        "SELECT kind, threshold_pct, used, limit_value FROM limit_alerts ORDER BY kind",
    )
    .fetch_all(world.pool())
    .await
    .unwrap();
    assert_eq!(
        alerts,
        vec![
            ("hard".to_owned(), 100, 1_000, 1_000),
            ("soft".to_owned(), 50, 500, 1_000)
        ]
    );
}

/// One simulated edge session: spends from what it holds, sometimes returns some, and renews.
struct Session {
    name: String,
    granted: i64,
    consumed: i64,
    period: i64,
}

async fn hammer(
    pools: [PgPool; 2],
    key: LimitKey,
    limit: i64,
    sessions: usize,
    rounds: usize,
) -> Vec<Session> {
    let violations = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for index in 0..sessions {
        let pool = pools[index % 2].clone();
        let violations = violations.clone();
        tasks.push(tokio::spawn(async move {
            let mut session = Session {
                name: format!("s{index}"),
                granted: 0,
                consumed: 0,
                period: 0,
            };
            for round in 0..rounds {
                let available = session.granted - session.consumed;
                // Spend a varying part of what is on hand; every third round return half of
                // the rest.
                let spend = available * ((index + round) % 4) as i64 / 3;
                session.consumed += spend.min(available);
                let mut claimed = session.granted;
                if round % 3 == 2 {
                    claimed -= (session.granted - session.consumed) / 2;
                }
                let want = 5 + ((index * 7 + round * 3) % 20) as i64;
                let grant = lease_at(
                    &pool,
                    &session.name,
                    key,
                    session.period,
                    figures(claimed, session.consumed, 0, want),
                    Utc::now(),
                )
                .await;
                if grant.used > limit {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
                session.granted = grant.granted_total;
                session.period = grant.period_start_ms;
            }
            session
        }));
    }
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await.unwrap());
    }
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a grant reported used > limit"
    );
    done
}

async fn second_pool(world: &World) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect(world.db.url())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_lease_two_replicas_never_grant_more_than_a_calendar_budget() {
    let world = World::create("UTC").await;
    let limit = 500;
    let key = world.team_limit(Metric::TokensPerDay, limit, 80, 100).await;
    let pools = [world.pool().clone(), second_pool(&world).await];
    let sessions = hammer(pools, key, limit, 8, 25).await;
    let granted: i64 = sessions.iter().map(|s| s.granted).sum();
    let consumed: i64 = sessions.iter().map(|s| s.consumed).sum();
    assert!(granted <= limit, "granted {granted} > {limit}");
    assert!(consumed <= limit, "consumed {consumed} > {limit}");
    assert!(
        consumed > limit / 2,
        "demand far above the limit spent only {consumed}"
    );
    // The plane's own books agree: reported spend plus outstanding within the limit.
    let plane_granted = scalar(
        world.pool(),
        "SELECT sum(granted_total)::int8 FROM limit_leases",
    )
    .await;
    assert_eq!(
        plane_granted, granted,
        "the plane's figures are the sessions' figures"
    );
    let counter = scalar(world.pool(), "SELECT consumed FROM limit_counters").await;
    let outstanding = scalar(
        world.pool(),
        "SELECT sum(greatest(granted_total - consumed_total, 0))::int8 FROM limit_leases
         WHERE expires_at >= now()",
    )
    .await;
    assert!(counter + outstanding <= limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_lease_two_replicas_never_grant_more_than_a_sliding_window() {
    let world = World::create("UTC").await;
    let limit = 300;
    let key = world
        .team_limit(Metric::RequestsPerMinute, limit, 80, 100)
        .await;
    let pools = [world.pool().clone(), second_pool(&world).await];
    let started = Utc::now();
    let sessions = hammer(pools, key, limit, 8, 25).await;
    assert!(
        Utc::now() - started < Duration::seconds(50),
        "the test assumes all spending falls in one window"
    );
    let consumed: i64 = sessions.iter().map(|s| s.consumed).sum();
    assert!(
        consumed <= limit,
        "spent {consumed} > {limit} in one minute"
    );
    let window = scalar(
        world.pool(),
        "SELECT sum(units)::int8 FROM limit_window_usage",
    )
    .await;
    // Equal unless a session's lease expired before the end (then its unspent part is charged).
    assert!(window >= consumed);
    let outstanding = scalar(
        world.pool(),
        "SELECT sum(greatest(granted_total - consumed_total, 0))::int8 FROM limit_leases
         WHERE expires_at >= now()",
    )
    .await;
    assert!(window + outstanding <= limit);
}

#[tokio::test]
async fn limits_lease_service_checks_the_join_token_and_names_bad_fields() {
    use tokio_stream::wrappers::TcpListenerStream;
    use tollgate_proto::v1::limit_service_client::LimitServiceClient;

    let world = World::create("UTC").await;
    let key = world
        .team_limit(Metric::ConcurrentRequests, 3, 80, 100)
        .await;
    let token = "join-secret";
    sqlx::query("INSERT INTO edge_join_tokens (token_hash) VALUES ($1)")
        .bind(tollgate_control_plane::secrets::sha256(token).to_vec())
        .execute(world.pool())
        .await
        .unwrap();
    let metrics = Metrics::new();
    let service = LeaseService::new(world.pool().clone(), TTL, metrics.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = LimitServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let wire = |scope_id: String, want: i64| pb::LeaseRequest {
        edge_id: "edge-a".into(),
        session_id: "s1".into(),
        claims: vec![pb::LeaseClaim {
            key: Some(pb::LimitKey {
                scope: pb::LimitScope::Team.into(),
                scope_id,
                metric: pb::LimitMetric::ConcurrentRequests.into(),
            }),
            want_available: want,
            ..Default::default()
        }],
    };
    let with_token = |message: pb::LeaseRequest, token: &str| {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };

    let denied = client
        .lease(with_token(wire(key.scope_id.to_string(), 2), "wrong"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);

    let bad = client
        .lease(with_token(wire("not-a-uuid".into(), 2), token))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message().contains("claims.key.scope_id"),
        "{}",
        bad.message()
    );

    let negative = client
        .lease(with_token(wire(key.scope_id.to_string(), -1), token))
        .await
        .unwrap_err();
    assert_eq!(negative.code(), tonic::Code::InvalidArgument);
    assert!(
        negative.message().contains("want_available"),
        "{}",
        negative.message()
    );

    let answer = client
        .lease(with_token(wire(key.scope_id.to_string(), 2), token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.lease_ttl_ms, 10_000);
    assert_eq!(answer.known_edges, 1);
    assert_eq!(answer.grants.len(), 1);
    let grant = &answer.grants[0];
    assert_eq!(grant.granted_total, 2);
    assert_eq!(grant.limit, 3);
    assert_eq!(grant.reset_ms, 1_000);
    assert_eq!(grant.period_start_unix_ms, 0);
    assert_eq!(
        grant.key.as_ref().unwrap().scope_id,
        key.scope_id.to_string()
    );

    let text = metrics.encode();
    assert!(
        text.contains(r#"tollgate_lease_requests_total{outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tollgate_lease_requests_total{outcome="invalid_argument"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tollgate_lease_requests_total{outcome="unauthenticated"} 1"#),
        "{text}"
    );
    assert!(text.contains("tollgate_lease_claims_total 1"), "{text}");
}

#[tokio::test]
async fn limits_alert_webhook_retries_with_backoff_until_delivered() {
    use axum::Json;
    use axum::http::StatusCode;
    use axum::routing::post;
    use tokio::sync::Mutex;

    let world = World::create("UTC").await;
    let key = world.team_limit(Metric::TokensPerMonth, 100, 80, 100).await;
    let now = mid_november();
    let outcome: LeaseOutcome = process_lease(
        world.pool(),
        &request("a", vec![(key, 0, figures(0, 0, 0, 100))]),
        now,
        TTL,
    )
    .await
    .unwrap();
    assert_eq!(
        outcome.alerts_recorded,
        vec![(AlertKind::Hard, Metric::TokensPerMonth)]
    );
    let created: DateTime<Utc> = sqlx::query_scalar("SELECT created_at FROM limit_alerts")
        .fetch_one(world.pool())
        .await
        .unwrap();

    // A receiver that fails the first call and accepts the next.
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        post({
            let received = received.clone();
            let calls = calls.clone();
            move |Json(body): Json<serde_json::Value>| async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                received.lock().await.push(body);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: url::Url = format!("http://{}/hook", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();

    let round = alerts::deliver_due(world.pool(), &client, &url, created)
        .await
        .unwrap();
    assert_eq!((round.delivered, round.failed), (0, 1));
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("SELECT webhook_attempts, webhook_last_error FROM limit_alerts")
            .fetch_one(world.pool())
            .await
            .unwrap();
    assert_eq!(attempts, 1);
    assert!(error.unwrap().contains("500"));
    // Not due again until a second has passed.
    let round = alerts::deliver_due(
        world.pool(),
        &client,
        &url,
        created + Duration::milliseconds(500),
    )
    .await
    .unwrap();
    assert_eq!((round.delivered, round.failed), (0, 0));
    let at = created + Duration::seconds(1);
    let round = alerts::deliver_due(world.pool(), &client, &url, at)
        .await
        .unwrap();
    assert_eq!((round.delivered, round.failed), (1, 0));
    let round = alerts::deliver_due(world.pool(), &client, &url, at + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(round, alerts::Round::default());

    let bodies = received.lock().await;
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert_eq!(body["kind"], "hard");
    assert_eq!(body["metric"], "tokens_per_month");
    assert_eq!(body["scope_kind"], "team");
    assert_eq!(body["scope_id"], world.team.to_string());
    assert_eq!(body["org_id"], world.org.to_string());
    assert_eq!(body["limit"], 100);
    assert_eq!(body["used"], 100);
    assert_eq!(body["threshold_pct"], 100);
    assert_eq!(body["period_start"], "2026-11-01T00:00:00Z");
    let delivered: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT webhook_delivered_at FROM limit_alerts")
            .fetch_one(world.pool())
            .await
            .unwrap();
    assert_eq!(delivered, Some(at));
}
