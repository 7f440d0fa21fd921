#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What the usage ledger reports, for a small data set whose every number is worked out by hand
//! here: the SQL views documented in the README and `AdminService.UsageReport` (library and
//! gRPC, and `tollgatectl usage`).

mod usage_ingest_support;

use chrono::{DateTime, Datelike, Duration, DurationRound, Months, TimeZone, Utc};
use std::collections::BTreeMap;
use tollgate_control_plane::error::AdminError;
use tollgate_e2e::process::{base_command, binary_path, run_to_completion};
use tollgate_e2e::{ControlPlane, TestDb};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::admin_service_client::AdminServiceClient;
use tollgate_proto::v1::usage_service_client::UsageServiceClient;
use usage_ingest_support::{Scope, World, event, table_rows, with_cost, with_status, with_tokens};

/// The instants the data set is placed at, relative to now (UTC).
struct Clock {
    today: DateTime<Utc>,
    month_start: DateTime<Utc>,
    month_end: DateTime<Utc>,
    /// Today, at most half an hour ago (never in the future).
    t_today: DateTime<Utc>,
    /// Yesterday 10:15.
    t_yday: DateTime<Utc>,
    /// Ten days ago 01:00: outside the 7-day burn window.
    t_old: DateTime<Utc>,
}

impl Clock {
    fn now() -> Clock {
        let now = Utc::now();
        let today = now.duration_trunc(Duration::days(1)).unwrap();
        let month_start = Utc
            .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
            .unwrap();
        Clock {
            today,
            month_start,
            month_end: month_start.checked_add_months(Months::new(1)).unwrap(),
            t_today: (today + Duration::minutes(1)).max(now - Duration::minutes(30)),
            t_yday: today - Duration::days(1) + Duration::minutes(10 * 60 + 15),
            t_old: today - Duration::days(10) + Duration::hours(1),
        }
    }
}

/// One event of the data set, as the expectations need it.
struct Fact {
    org: &'static str,
    model: &'static str,
    at: DateTime<Utc>,
    cost: Option<i64>,
}

/// The data set. Every expectation below is computed by hand from this table:
///
/// | # | org/team/project      | user  | model  | when  | in   | out  | cost  | notes               |
/// |---|-----------------------|-------|--------|-------|------|------|-------|---------------------|
/// | 1 | acme/ml/chatbot       | alice | gpt-4o | yday  | 1000 | 500  | 2500  | 200 cached          |
/// | 2 | acme/ml/chatbot       | alice | gpt-4o | yday  | 3000 | 1000 | 7500  | cache hit, saved 7000 |
/// | 3 | acme/ml/search        | bob   | mini   | today | 400  | 100  | 120   | upstream_error      |
/// | 4 | acme/web/site         | -     | llama3 | today | 800  | 200  | -     | unpriced            |
/// | 5 | globex/core/api       | carol | mini   | today | 2000 | 600  | 660   |                     |
/// | 6 | globex/core/api       | carol | gpt-4o | old   | 100  | 10   | 35    |                     |
/// | 7 | acme/ml/chatbot       | alice | ""     | today | 0    | 0    | -     | client_error, failed before routing |
async fn ingest_data_set(w: &World, clock: &Clock) -> Vec<Fact> {
    let mut e1 = with_cost(
        with_tokens(
            event(&w.chatbot, &w.alice, "gpt-4o", clock.t_yday),
            1_000,
            200,
            500,
        ),
        2_500,
    );
    e1.stream = true;
    e1.ttft_ms = 80;
    let mut e2 = with_cost(
        with_tokens(
            event(&w.chatbot, &w.alice, "gpt-4o", clock.t_yday),
            3_000,
            0,
            1_000,
        ),
        7_500,
    );
    e2.cache_hit = true;
    e2.saved_cost_micros = 7_000;
    let e3 = with_status(
        with_cost(
            with_tokens(event(&w.search, &w.bob, "mini", clock.t_today), 400, 0, 100),
            120,
        ),
        "upstream_error",
        502,
    );
    let e4 = with_tokens(event(&w.site, "", "llama3", clock.t_today), 800, 0, 200);
    let e5 = with_cost(
        with_tokens(
            event(&w.api, &w.carol, "mini", clock.t_today),
            2_000,
            0,
            600,
        ),
        660,
    );
    let e6 = with_cost(
        with_tokens(event(&w.api, &w.carol, "gpt-4o", clock.t_old), 100, 0, 10),
        35,
    );
    let mut e7 = with_status(
        event(&w.chatbot, &w.alice, "", clock.t_today),
        "client_error",
        404,
    );
    e7.requested_model = "no-such-model".to_owned();
    let outcome = w.ingest(&[e1, e2, e3, e4, e5, e6, e7]).await;
    assert_eq!((outcome.accepted, outcome.rejected), (7, 0), "{outcome:?}");
    vec![
        Fact {
            org: "acme",
            model: "gpt-4o",
            at: clock.t_yday,
            cost: Some(2_500),
        },
        Fact {
            org: "acme",
            model: "gpt-4o",
            at: clock.t_yday,
            cost: Some(7_500),
        },
        Fact {
            org: "acme",
            model: "mini",
            at: clock.t_today,
            cost: Some(120),
        },
        Fact {
            org: "acme",
            model: "llama3",
            at: clock.t_today,
            cost: None,
        },
        Fact {
            org: "globex",
            model: "mini",
            at: clock.t_today,
            cost: Some(660),
        },
        Fact {
            org: "globex",
            model: "gpt-4o",
            at: clock.t_old,
            cost: Some(35),
        },
        Fact {
            org: "acme",
            model: "",
            at: clock.t_today,
            cost: None,
        },
    ]
}

fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// `x` rounded half up to two decimals, as Postgres' round(numeric, 2) does for positives.
fn pct(part: i64, whole: i64) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    let hundredths = (part * 10_000 * 2 + whole) / (2 * whole);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

fn usd(micros: i64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

async fn sorted_rows(pool: &sqlx::PgPool, sql: &str) -> Vec<String> {
    let mut rows = table_rows(pool, sql).await;
    rows.sort();
    rows
}

fn sorted(rows: Vec<String>) -> Vec<String> {
    let mut rows = rows;
    rows.sort();
    rows
}

const DAILY_COLUMNS: &str = "requests::text, input_tokens::text, output_tokens::text, \
    cost_micros::text, cost_usd::text, unpriced_requests::text, \
    coalesce(avg_cost_micros_per_request::text, '-'), coalesce(output_per_input_token::text, '-')";

#[tokio::test]
async fn usage_ingest_reporting_views_return_the_hand_computed_numbers() {
    let world = World::create().await;
    let clock = Clock::now();
    let facts = ingest_data_set(&world, &clock).await;
    let pool = world.pool();
    let (old, yday, today) = (day(clock.t_old), day(clock.t_yday), day(clock.t_today));
    let day_sql = "to_char(day AT TIME ZONE 'UTC', 'YYYY-MM-DD')";

    let by_team = sorted_rows(
        pool,
        &format!(
            "SELECT concat_ws('|', {day_sql}, org, team, {DAILY_COLUMNS}) FROM usage_daily_by_team"
        ),
    )
    .await;
    assert_eq!(
        by_team,
        sorted(vec![
            format!("{old}|globex|core|1|100|10|35|0.000035|0|35.00|0.1000"),
            format!("{yday}|acme|ml|2|4000|1500|10000|0.010000|0|5000.00|0.3750"),
            // #3 and #7: the failed-before-routing request is unpriced, so the average is over #3.
            format!("{today}|acme|ml|2|400|100|120|0.000120|1|120.00|0.2500"),
            format!("{today}|acme|web|1|800|200|0|0.000000|1|-|0.2500"),
            format!("{today}|globex|core|1|2000|600|660|0.000660|0|660.00|0.3000"),
        ])
    );

    let by_project = sorted_rows(pool, &format!(
        "SELECT concat_ws('|', {day_sql}, org, team, project, {DAILY_COLUMNS}) FROM usage_daily_by_project"
    ))
    .await;
    assert_eq!(
        by_project,
        sorted(vec![
            format!("{old}|globex|core|api|1|100|10|35|0.000035|0|35.00|0.1000"),
            format!("{yday}|acme|ml|chatbot|2|4000|1500|10000|0.010000|0|5000.00|0.3750"),
            format!("{today}|acme|ml|chatbot|1|0|0|0|0.000000|1|-|-"),
            format!("{today}|acme|ml|search|1|400|100|120|0.000120|0|120.00|0.2500"),
            format!("{today}|acme|web|site|1|800|200|0|0.000000|1|-|0.2500"),
            format!("{today}|globex|core|api|1|2000|600|660|0.000660|0|660.00|0.3000"),
        ])
    );

    let by_user = sorted_rows(pool, &format!(
        "SELECT concat_ws('|', {day_sql}, org, coalesce(\"user\", '(none)'), {DAILY_COLUMNS}) FROM usage_daily_by_user"
    ))
    .await;
    assert_eq!(
        by_user,
        sorted(vec![
            format!("{old}|globex|carol|1|100|10|35|0.000035|0|35.00|0.1000"),
            format!("{yday}|acme|alice|2|4000|1500|10000|0.010000|0|5000.00|0.3750"),
            format!("{today}|acme|alice|1|0|0|0|0.000000|1|-|-"),
            format!("{today}|acme|bob|1|400|100|120|0.000120|0|120.00|0.2500"),
            format!("{today}|acme|(none)|1|800|200|0|0.000000|1|-|0.2500"),
            format!("{today}|globex|carol|1|2000|600|660|0.000660|0|660.00|0.3000"),
        ])
    );

    let by_model = sorted_rows(
        pool,
        &format!(
            "SELECT concat_ws('|', {day_sql}, model, {DAILY_COLUMNS}) FROM usage_daily_by_model"
        ),
    )
    .await;
    assert_eq!(
        by_model,
        sorted(vec![
            format!("{old}|gpt-4o|1|100|10|35|0.000035|0|35.00|0.1000"),
            format!("{yday}|gpt-4o|2|4000|1500|10000|0.010000|0|5000.00|0.3750"),
            format!("{today}||1|0|0|0|0.000000|1|-|-"),
            format!("{today}|llama3|1|800|200|0|0.000000|1|-|0.2500"),
            // 700 / 2400 = 0.291666...
            format!("{today}|mini|2|2400|700|780|0.000780|0|390.00|0.2917"),
        ])
    );

    let savings = sorted_rows(
        pool,
        &format!(
            "SELECT concat_ws('|', {day_sql}, org, team, requests, cache_hits, hit_rate_pct, \
                saved_cost_micros, saved_usd) FROM usage_cache_savings_daily"
        ),
    )
    .await;
    assert_eq!(
        savings,
        sorted(vec![
            format!("{old}|globex|core|1|0|0.00|0|0.000000"),
            format!("{yday}|acme|ml|2|1|50.00|7000|0.007000"),
            format!("{today}|acme|ml|2|0|0.00|0|0.000000"),
            format!("{today}|acme|web|1|0|0.00|0|0.000000"),
            format!("{today}|globex|core|1|0|0.00|0|0.000000"),
        ])
    );

    // This month only: which of the events that is depends on today's date, so the expected
    // shares are computed from the data set with the view's definition.
    let in_month: Vec<&Fact> = facts.iter().filter(|f| f.at >= clock.month_start).collect();
    let mut per_model: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    for fact in &in_month {
        let entry = per_model.entry(fact.model).or_default();
        entry.0 += 1;
        entry.1 += fact.cost.unwrap_or(0);
        entry.2 += i64::from(fact.cost.is_none());
    }
    let total_requests: i64 = per_model.values().map(|v| v.0).sum();
    let total_cost: i64 = per_model.values().map(|v| v.1).sum();
    let expected: Vec<String> = per_model
        .iter()
        .map(|(model, (requests, cost, unpriced))| {
            format!(
                "{model}|{requests}|{cost}|{unpriced}|{}|{}",
                pct(*requests, total_requests),
                pct(*cost, total_cost)
            )
        })
        .collect();
    let distribution = sorted_rows(
        pool,
        "SELECT concat_ws('|', model, requests, cost_micros, unpriced_requests, \
                request_share_pct, coalesce(spend_share_pct::text, '-')) FROM usage_model_distribution",
    )
    .await;
    assert_eq!(distribution, sorted(expected));

    // Burn rate: month to date, the mean of the last 7 full days, and the projection over the
    // days left in the month, today included.
    let days_left = (clock.month_end - clock.today).num_days();
    let mut expected = Vec::new();
    for org in ["acme", "globex"] {
        let facts: Vec<&Fact> = facts.iter().filter(|f| f.org == org).collect();
        let mtd: i64 = facts
            .iter()
            .filter(|f| f.at >= clock.month_start)
            .filter_map(|f| f.cost)
            .sum();
        let week: i64 = facts
            .iter()
            .filter(|f| f.at >= clock.today - Duration::days(7) && f.at < clock.today)
            .filter_map(|f| f.cost)
            .sum();
        let burn = (week * 2 + 7) / 14;
        let unpriced = facts
            .iter()
            .filter(|f| f.at >= clock.month_start && f.cost.is_none())
            .count();
        let projected = mtd + burn * days_left;
        expected.push(format!(
            "{org}|{mtd}|{burn}|{projected}|{}|{unpriced}",
            usd(projected)
        ));
    }
    // By hand for acme: the week holds #1 and #2 (10000), so the burn is 10000 / 7 = 1428.57,
    // rounded to 1429 micro-dollars a day.
    assert!(expected[0].contains("|1429|"), "{expected:?}");
    let burn_rate = sorted_rows(
        pool,
        "SELECT concat_ws('|', org, month_to_date_micros, daily_burn_micros, \
                projected_month_micros, projected_month_usd, unpriced_requests_month_to_date) \
         FROM usage_burn_rate",
    )
    .await;
    assert_eq!(burn_rate, sorted(expected));

    // The named hourly view carries every rollup row with its names.
    let named = sorted_rows(
        pool,
        "SELECT concat_ws('|', org, team, project, coalesce(\"user\", '(none)'), model, requests) \
         FROM usage_hourly_named WHERE requests > 1",
    )
    .await;
    assert_eq!(named, vec!["acme|ml|chatbot|alice|gpt-4o|2".to_owned()]);
}

fn report_rows(report: &pb::UsageReportResponse) -> Vec<String> {
    report
        .rows
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}|{}|{}|{}|{}",
                r.group,
                r.requests,
                r.input_tokens,
                r.output_tokens,
                r.cost_micros,
                r.unpriced_requests,
                r.avg_cost_micros_per_request,
                r.error_requests
            )
        })
        .collect()
}

async fn report(world: &World, group_by: &str, since: DateTime<Utc>) -> Vec<String> {
    let request = pb::UsageReportRequest {
        group_by: group_by.into(),
        since_unix_ms: since.timestamp_millis(),
        ..pb::UsageReportRequest::default()
    };
    report_rows(&world.admin.usage_report(request).await.unwrap())
}

#[tokio::test]
async fn usage_ingest_usage_report_groups_by_team_project_user_model_and_org_most_expensive_first()
{
    let world = World::create().await;
    let clock = Clock::now();
    ingest_data_set(&world, &clock).await;
    let since = clock.today - Duration::days(30);

    // group|requests|input|output|cost|unpriced|avg over priced (half up)|errors
    assert_eq!(
        report(&world, "team", since).await,
        vec![
            "acme/ml|4|4400|1600|10120|1|3373|2", // 10120 / 3 priced = 3373.3
            "globex/core|2|2100|610|695|0|348|0", // 695 / 2 = 347.5
            "acme/web|1|800|200|0|1|0|0",
        ]
    );
    assert_eq!(
        report(&world, "org", since).await,
        vec![
            "acme|5|5200|1800|10120|2|3373|2",
            "globex|2|2100|610|695|0|348|0",
        ]
    );
    assert_eq!(
        report(&world, "project", since).await,
        vec![
            "acme/ml/chatbot|3|4000|1500|10000|1|5000|1",
            "globex/core/api|2|2100|610|695|0|348|0",
            "acme/ml/search|1|400|100|120|0|120|1",
            "acme/web/site|1|800|200|0|1|0|0",
        ]
    );
    assert_eq!(
        report(&world, "user", since).await,
        vec![
            "acme/alice|3|4000|1500|10000|1|5000|1",
            "globex/carol|2|2100|610|695|0|348|0",
            "acme/bob|1|400|100|120|0|120|1",
            "acme/(none)|1|800|200|0|1|0|0",
        ]
    );
    // Equal costs are ordered by name, byte-wise.
    assert_eq!(
        report(&world, "model", since).await,
        vec![
            "gpt-4o|3|4100|1510|10035|0|3345|0",
            "mini|2|2400|700|780|0|390|1",
            "(none)|1|0|0|0|1|0|1",
            "llama3|1|800|200|0|1|0|0",
        ]
    );
}

#[tokio::test]
async fn usage_ingest_usage_report_filters_by_org_and_by_time_widened_to_whole_hours() {
    let world = World::create().await;
    let clock = Clock::now();
    ingest_data_set(&world, &clock).await;

    let globex = world
        .admin
        .usage_report(pb::UsageReportRequest {
            group_by: "team".into(),
            since_unix_ms: (clock.today - Duration::days(30)).timestamp_millis(),
            org: "globex".into(),
            ..pb::UsageReportRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(
        report_rows(&globex),
        vec!["globex/core|2|2100|610|695|0|348|0"]
    );

    assert_eq!(
        report(&world, "team", clock.today).await,
        vec![
            "globex/core|1|2000|600|660|0|660|0",
            "acme/ml|2|400|100|120|1|120|2",
            "acme/web|1|800|200|0|1|0|0",
        ]
    );

    // 10:45 to 10:46 yesterday: widened to 10:00-11:00, which holds #1 and #2 (10:15).
    let narrow = world
        .admin
        .usage_report(pb::UsageReportRequest {
            group_by: "team".into(),
            since_unix_ms: (clock.t_yday + Duration::minutes(30)).timestamp_millis(),
            until_unix_ms: (clock.t_yday + Duration::minutes(31)).timestamp_millis(),
            org: String::new(),
        })
        .await
        .unwrap();
    let hour = clock.t_yday.duration_trunc(Duration::hours(1)).unwrap();
    assert_eq!(narrow.since_unix_ms, hour.timestamp_millis());
    assert_eq!(
        narrow.until_unix_ms,
        (hour + Duration::hours(1)).timestamp_millis()
    );
    assert_eq!(
        report_rows(&narrow),
        vec!["acme/ml|2|4000|1500|10000|0|5000|0"]
    );
}

#[tokio::test]
async fn usage_ingest_usage_report_refuses_bad_arguments_naming_the_field() {
    let world = World::create().await;
    let bad = |group_by: &str, since: i64, until: i64, org: &str| pb::UsageReportRequest {
        group_by: group_by.into(),
        since_unix_ms: since,
        until_unix_ms: until,
        org: org.into(),
    };
    let err = world
        .admin
        .usage_report(bad("galaxy", 0, 0, ""))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AdminError::InvalidArgument {
                field: "group_by",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("'galaxy' is not one of team, project, user, model, org")
    );
    let err = world
        .admin
        .usage_report(bad("", 0, 0, ""))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AdminError::InvalidArgument {
                field: "group_by",
                ..
            }
        ),
        "{err}"
    );
    let err = world
        .admin
        .usage_report(bad("team", 2_000, 1_000, ""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AdminError::InvalidArgument { field: "since", .. }),
        "{err}"
    );
    let err = world
        .admin
        .usage_report(bad("team", 1_000, 1_000, ""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AdminError::InvalidArgument { field: "since", .. }),
        "{err}"
    );
    let future = (Utc::now() + Duration::days(1)).timestamp_millis();
    let err = world
        .admin
        .usage_report(bad("team", future, 0, ""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AdminError::InvalidArgument { field: "since", .. }),
        "until 0 is now: {err}"
    );
    let err = world
        .admin
        .usage_report(bad("team", 0, 0, "initech"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AdminError::NotFound { entity: "org", .. }),
        "{err}"
    );
    assert_eq!(err.to_string(), "org 'initech' not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_ingest_tollgatectl_usage_reports_what_edges_sent_and_grpc_maps_bad_arguments() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    let demo = cp.seed_demo().await;
    let (org_id, team_id, project_id): (uuid::Uuid, uuid::Uuid, uuid::Uuid) =
        sqlx::query_as("SELECT org_id, team_id, project_id FROM virtual_keys WHERE id = $1::uuid")
            .bind(&demo.key_id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    let scope = Scope {
        org_id: org_id.to_string(),
        team_id: team_id.to_string(),
        project_id: project_id.to_string(),
        key_id: demo.key_id.clone(),
    };
    // Within this month, which `tollgatectl usage` reports by default.
    let at = (Utc::now() - Duration::minutes(5)).max(Clock::now().month_start);
    let batch = pb::UsageBatch {
        edge_id: "edge-ctl".into(),
        batch_id: "edge-ctl-1".into(),
        events: vec![
            with_cost(
                with_tokens(event(&scope, "", "mock-small", at), 1_000, 0, 100),
                1_234_567,
            ),
            with_cost(
                with_tokens(event(&scope, "", "mock-large", at), 10, 0, 1),
                5,
            ),
            with_tokens(event(&scope, "", "mock-unpriced", at), 10, 0, 1),
        ],
    };
    let mut request = tonic::Request::new(batch);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", demo.join_token).parse().unwrap(),
    );
    let mut usage = UsageServiceClient::connect(cp.url()).await.unwrap();
    assert_eq!(
        usage.report(request).await.unwrap().into_inner().accepted,
        3
    );

    let json = cp.ctl_json(&["usage", "--by", "team"]).await;
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["group"], "demo/demo-team");
    assert_eq!(rows[0]["requests"], 3);
    assert_eq!(rows[0]["cost_micros"], 1_234_572);
    assert_eq!(rows[0]["unpriced_requests"], 1);

    let json = cp
        .ctl_json(&["usage", "--by", "model", "--org", "demo"])
        .await;
    let models: Vec<&str> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["group"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["mock-small", "mock-large", "mock-unpriced"]);

    // The table: exact micro-dollars with six decimals, a total, and the unpriced warning.
    let mut command = base_command(&binary_path("tollgatectl"));
    command
        .args(["--control-plane", &cp.url(), "usage", "--by", "model"])
        .env("TOLLGATE_ADMIN_TOKEN", cp.admin_token());
    let table = run_to_completion(command, std::time::Duration::from_secs(30)).await;
    assert!(table.success(), "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("usage from "), "{}", table.stdout);
    assert!(lines[1].starts_with("MODEL "), "{}", table.stdout);
    assert!(
        lines[2].starts_with("mock-small") && lines[2].contains(" 1.234567 "),
        "{}",
        table.stdout
    );
    assert!(
        lines[3].starts_with("mock-large") && lines[3].contains(" 0.000005 "),
        "{}",
        table.stdout
    );
    assert!(
        lines[5].starts_with("TOTAL") && lines[5].contains(" 1.234572 "),
        "{}",
        table.stdout
    );
    assert!(
        lines[6].starts_with("note: 1 request(s) used a model without a price"),
        "{}",
        table.stdout
    );

    let stderr = cp
        .ctl_failure(&["usage", "--by", "team", "--org", "initech"])
        .await;
    assert!(
        stderr.contains("NOT_FOUND: org 'initech' not found"),
        "{stderr}"
    );
    let stderr = cp
        .ctl_failure(&[
            "usage",
            "--by",
            "team",
            "--since",
            "2027-02-01T00:00:00Z",
            "--until",
            "2027-01-01T00:00:00Z",
        ])
        .await;
    assert!(
        stderr.contains("INVALID_ARGUMENT: since: must be before until"),
        "{stderr}"
    );

    // A gRPC client that is not tollgatectl can send any group_by.
    let channel = tonic::transport::Endpoint::from_shared(cp.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
        format!("Bearer {}", cp.admin_token()).parse().unwrap();
    let mut admin =
        AdminServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
            Ok::<_, tonic::Status>(request)
        });
    let status = admin
        .usage_report(pb::UsageReportRequest {
            group_by: "galaxy".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("group_by: 'galaxy' is not one of"),
        "{}",
        status.message()
    );
}
