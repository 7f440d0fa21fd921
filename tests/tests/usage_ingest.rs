#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Usage ingest on the control plane, against real Postgres: a batch is stored idempotently
//! with its hourly rollups in one transaction, bad events are kept aside with the reason, and
//! unpriced usage stays unpriced (never zero cost) all the way into the reports. The last tests
//! go through gRPC against a real `tollgate-cp serve`.

mod usage_ingest_support;

use chrono::{Duration, Months, Utc};
use serde_json::Value;
use tollgate_control_plane::usage::IngestOutcome;
use tollgate_e2e::eventually;
use tollgate_e2e::{ControlPlane, TestDb};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::usage_service_client::UsageServiceClient;
use usage_ingest_support::{
    Scope, World, count, event, events_json, rollups_json, table_rows, with_cost, with_status,
    with_tokens,
};

fn an_hour_ago() -> chrono::DateTime<Utc> {
    Utc::now() - Duration::hours(1)
}

#[tokio::test]
async fn usage_ingest_a_batch_resent_after_a_lost_ack_adds_nothing_to_events_or_rollups() {
    let world = World::create().await;
    let at = an_hour_ago();
    let events = vec![
        with_cost(
            with_tokens(
                event(&world.chatbot, &world.alice, "gpt-4o", at),
                1_000,
                0,
                200,
            ),
            4_500,
        ),
        with_cost(
            with_tokens(event(&world.chatbot, &world.alice, "gpt-4o", at), 10, 0, 5),
            70,
        ),
        with_tokens(event(&world.search, "", "llama3", at), 300, 0, 30),
        with_status(
            event(&world.site, &world.bob, "gpt-4o", at),
            "upstream_error",
            502,
        ),
        with_cost(
            with_tokens(
                event(&world.api, &world.carol, "mini", at - Duration::days(1)),
                7,
                0,
                7,
            ),
            1,
        ),
    ];

    let first = world.ingest(&events).await;
    assert_eq!(
        first,
        IngestOutcome {
            accepted: 5,
            duplicates: 0,
            rejected: 0
        }
    );
    let events_before = events_json(world.pool()).await;
    let rollups_before = rollups_json(world.pool()).await;
    assert_eq!(events_before.len(), 5);
    assert_eq!(
        count(
            world.pool(),
            "SELECT sum(requests)::bigint FROM usage_hourly"
        )
        .await,
        5
    );

    // The edge never saw the ack and sends the very same batch again.
    let again = world.ingest(&events).await;
    assert_eq!(
        again,
        IngestOutcome {
            accepted: 0,
            duplicates: 5,
            rejected: 0
        }
    );
    assert_eq!(events_json(world.pool()).await, events_before);
    assert_eq!(
        rollups_json(world.pool()).await,
        rollups_before,
        "a duplicate must add nothing to the rollups"
    );

    // A later batch that overlaps the first: only the new event counts.
    let new = with_cost(
        with_tokens(event(&world.chatbot, &world.alice, "gpt-4o", at), 1, 0, 1),
        9,
    );
    let overlap = vec![events[0].clone(), new];
    assert_eq!(
        world.ingest(&overlap).await,
        IngestOutcome {
            accepted: 1,
            duplicates: 1,
            rejected: 0
        }
    );
    assert_eq!(
        count(
            world.pool(),
            "SELECT sum(requests)::bigint FROM usage_hourly"
        )
        .await,
        6
    );
    assert_eq!(
        count(
            world.pool(),
            "SELECT sum(cost_micros)::bigint FROM usage_hourly WHERE model = 'gpt-4o'"
        )
        .await,
        4_500 + 70 + 9
    );
}

#[tokio::test]
async fn usage_ingest_an_event_sent_twice_in_one_batch_is_stored_and_rolled_up_once() {
    let world = World::create().await;
    let one = with_cost(
        with_tokens(
            event(&world.chatbot, &world.alice, "gpt-4o", an_hour_ago()),
            100,
            0,
            10,
        ),
        50,
    );
    let outcome = world.ingest(&[one.clone(), one]).await;
    assert_eq!(
        outcome,
        IngestOutcome {
            accepted: 1,
            duplicates: 1,
            rejected: 0
        }
    );
    assert_eq!(
        count(world.pool(), "SELECT count(*) FROM usage_events").await,
        1
    );
    assert_eq!(
        count(
            world.pool(),
            "SELECT sum(requests)::bigint FROM usage_hourly"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            world.pool(),
            "SELECT sum(cost_micros)::bigint FROM usage_hourly"
        )
        .await,
        50
    );
}

#[tokio::test]
async fn usage_ingest_a_malformed_event_is_kept_aside_and_the_rest_of_its_batch_is_stored() {
    let world = World::create().await;
    let at = an_hour_ago();
    let mut bad = with_tokens(event(&world.chatbot, &world.alice, "gpt-4o", at), 5, 0, 5);
    bad.event_id = "not-a-uuid".to_owned();
    let mut negative = with_cost(event(&world.search, &world.bob, "gpt-4o", at), -3);
    negative.request_id = "req_negative".to_owned();
    let good: Vec<pb::UsageEvent> = (0..3)
        .map(|i| {
            with_cost(
                with_tokens(event(&world.site, "", "mini", at), 10 * i, 0, i),
                1,
            )
        })
        .collect();
    let mut batch = good.clone();
    batch.insert(1, bad.clone());
    batch.push(negative);

    let outcome = world.ingest(&batch).await;
    assert_eq!(
        outcome,
        IngestOutcome {
            accepted: 3,
            duplicates: 0,
            rejected: 2
        }
    );
    assert_eq!(
        count(world.pool(), "SELECT count(*) FROM usage_events").await,
        3
    );
    assert_eq!(
        count(
            world.pool(),
            "SELECT sum(requests)::bigint FROM usage_hourly"
        )
        .await,
        3
    );

    let rejected: Vec<(String, String, String, String, Value)> = sqlx::query_as(
        "SELECT edge_id, batch_id, event_id, reason, event FROM usage_rejected_events ORDER BY reason",
    )
    .fetch_all(world.pool())
    .await
    .unwrap();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    let (edge_id, batch_id, event_id, reason, json) = &rejected[1];
    assert_eq!(
        (edge_id.as_str(), batch_id.as_str()),
        ("edge-test", "batch-1")
    );
    assert_eq!(event_id, "not-a-uuid");
    assert_eq!(reason, "event_id: 'not-a-uuid' is not a UUID");
    assert_eq!(
        json["request_id"],
        bad.request_id.as_str(),
        "the whole event is kept: {json}"
    );
    assert_eq!(json["input_tokens"], 5);
    let (_, _, _, reason, json) = &rejected[0];
    assert!(reason.starts_with("cost_micros: -3 is outside"), "{reason}");
    assert_eq!(json["request_id"], "req_negative");

    // Re-sent: still reported as rejected, but not stored twice anywhere.
    let outcome = world.ingest(&batch).await;
    assert_eq!(
        outcome,
        IngestOutcome {
            accepted: 0,
            duplicates: 3,
            rejected: 2
        }
    );
    assert_eq!(
        count(world.pool(), "SELECT count(*) FROM usage_rejected_events").await,
        2
    );
}

#[tokio::test]
async fn usage_ingest_unpriced_events_have_no_cost_and_are_counted_as_unpriced_not_free() {
    let world = World::create().await;
    let at = an_hour_ago();
    let mut unpriced = with_tokens(
        event(&world.chatbot, &world.alice, "llama3", at),
        1_000,
        0,
        500,
    );
    // Whatever an edge puts in the cost of an unpriced event, it means nothing.
    unpriced.cost_micros = 777;
    unpriced.price_version = 3;
    let priced = with_cost(
        with_tokens(
            event(&world.chatbot, &world.alice, "gpt-4o", at),
            100,
            0,
            10,
        ),
        300,
    );
    let outcome = world
        .ingest(&[unpriced.clone(), unpriced.clone(), priced])
        .await;
    assert_eq!(
        outcome.accepted, 2,
        "the repeated event is a duplicate: {outcome:?}"
    );

    let stored: (Option<i64>, Option<i32>) = sqlx::query_as(
        "SELECT cost_micros, price_version FROM usage_events WHERE model = 'llama3'",
    )
    .fetch_one(world.pool())
    .await
    .unwrap();
    assert_eq!(
        stored,
        (None, None),
        "unpriced is stored as NULL cost and no price version"
    );

    let hourly: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT model, requests, unpriced_requests, cost_micros FROM usage_hourly ORDER BY model",
    )
    .fetch_all(world.pool())
    .await
    .unwrap();
    assert_eq!(
        hourly,
        vec![
            ("gpt-4o".to_owned(), 1, 0, 300),
            ("llama3".to_owned(), 1, 1, 0)
        ]
    );

    let report = world
        .admin
        .usage_report(pb::UsageReportRequest {
            group_by: "project".into(),
            since_unix_ms: (at - Duration::hours(2)).timestamp_millis(),
            ..pb::UsageReportRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(report.rows.len(), 1);
    let row = &report.rows[0];
    assert_eq!(row.group, "acme/ml/chatbot");
    assert_eq!(
        (row.requests, row.unpriced_requests, row.cost_micros),
        (2, 1, 300)
    );
    assert_eq!(
        row.avg_cost_micros_per_request, 300,
        "averaged over the priced request only"
    );

    for view in [
        "usage_daily_by_team",
        "usage_daily_by_project",
        "usage_daily_by_user",
    ] {
        let (requests, unpriced, cost, avg): (i64, i64, i64, Option<String>) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT requests::bigint, unpriced_requests::bigint, cost_micros::bigint, \
                    avg_cost_micros_per_request::text FROM {view}"
            )))
            .fetch_one(world.pool())
            .await
            .unwrap();
        assert_eq!(
            (requests, unpriced, cost, avg.as_deref()),
            (2, 1, 300, Some("300.00")),
            "{view}"
        );
    }
    let by_model: (i64, i64, Option<String>) = sqlx::query_as(
        "SELECT unpriced_requests::bigint, cost_micros::bigint, avg_cost_micros_per_request::text \
         FROM usage_daily_by_model WHERE model = 'llama3'",
    )
    .fetch_one(world.pool())
    .await
    .unwrap();
    assert_eq!(
        by_model,
        (1, 0, None),
        "no priced request, so no average: not an average of 0"
    );
    let distribution: i64 = count(
        world.pool(),
        "SELECT unpriced_requests::bigint FROM usage_model_distribution WHERE model = 'llama3'",
    )
    .await;
    // The event is an hour old: in the first hour of a month it belongs to the last one.
    let in_month = at.format("%Y-%m").to_string() == Utc::now().format("%Y-%m").to_string();
    if in_month {
        assert_eq!(distribution, 1);
        let burn_unpriced = count(
            world.pool(),
            "SELECT unpriced_requests_month_to_date FROM usage_burn_rate WHERE org = 'acme'",
        )
        .await;
        assert_eq!(burn_unpriced, 1);
    }
}

#[tokio::test]
async fn usage_ingest_requests_that_failed_before_routing_keep_empty_model_and_provider() {
    let world = World::create().await;
    let mut failed = with_status(
        event(&world.chatbot, &world.alice, "", an_hour_ago()),
        "client_error",
        404,
    );
    failed.requested_model = "no-such-model".to_owned();
    failed.usage_source = "none".to_owned();
    assert_eq!(world.ingest(&[failed]).await.accepted, 1);
    let row: (String, String, String, Option<i64>, i16) = sqlx::query_as(
        "SELECT requested_model, model, provider, cost_micros, http_status FROM usage_events",
    )
    .fetch_one(world.pool())
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "no-such-model".into(),
            String::new(),
            String::new(),
            None,
            404
        )
    );
    let hourly: (String, i64, i64) =
        sqlx::query_as("SELECT model, error_requests, unpriced_requests FROM usage_hourly")
            .fetch_one(world.pool())
            .await
            .unwrap();
    assert_eq!(hourly, (String::new(), 1, 1));
}

/// The demo tenancy of a seeded control plane, as the edge would report it.
async fn demo_scope(db: &TestDb, key_id: &str) -> Scope {
    let (org_id, team_id, project_id): (uuid::Uuid, uuid::Uuid, uuid::Uuid) =
        sqlx::query_as("SELECT org_id, team_id, project_id FROM virtual_keys WHERE id = $1::uuid")
            .bind(key_id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    Scope {
        org_id: org_id.to_string(),
        team_id: team_id.to_string(),
        project_id: project_id.to_string(),
        key_id: key_id.to_owned(),
    }
}

async fn usage_client(cp: &ControlPlane) -> UsageServiceClient<tonic::transport::Channel> {
    UsageServiceClient::connect(cp.url()).await.unwrap()
}

fn with_token(batch: pb::UsageBatch, token: Option<&str>) -> tonic::Request<pb::UsageBatch> {
    let mut request = tonic::Request::new(batch);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_ingest_over_grpc_needs_a_join_token_and_acknowledges_what_it_stored() {
    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    let demo = cp.seed_demo().await;
    let scope = demo_scope(&db, &demo.key_id).await;
    let mut client = usage_client(&cp).await;
    let batch = pb::UsageBatch {
        edge_id: "edge-grpc".into(),
        batch_id: "edge-grpc-00000000000000000001".into(),
        events: vec![
            with_cost(
                with_tokens(event(&scope, "", "mock-small", an_hour_ago()), 12, 0, 24),
                11,
            ),
            with_tokens(event(&scope, "", "mock-free", an_hour_ago()), 12, 0, 24),
        ],
    };

    for token in [None, Some("tgj_wrong"), Some(demo.key.as_str())] {
        let status = client
            .report(with_token(batch.clone(), token))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "token {token:?}: {status:?}"
        );
    }
    assert_eq!(
        count(db.pool(), "SELECT count(*) FROM usage_events").await,
        0
    );

    let ack = client
        .report(with_token(batch.clone(), Some(&demo.join_token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            ack.batch_id.as_str(),
            ack.accepted,
            ack.duplicates,
            ack.rejected
        ),
        ("edge-grpc-00000000000000000001", 2, 0, 0)
    );
    let ack = client
        .report(with_token(batch, Some(&demo.join_token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (ack.accepted, ack.duplicates),
        (0, 2),
        "a re-sent batch is all duplicates"
    );
    assert_eq!(
        count(db.pool(), "SELECT count(*) FROM usage_events").await,
        2
    );

    let too_big = pb::UsageBatch {
        events: vec![pb::UsageEvent::default(); 10_001],
        ..pb::UsageBatch::default()
    };
    let status = client
        .report(with_token(too_big, Some(&demo.join_token)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("events: 10001 events in one batch"),
        "{}",
        status.message()
    );

    // The plane keeps partitions four months ahead (the migration made fewer).
    let ahead = month_partition(4);
    eventually(std::time::Duration::from_secs(10), async || {
        let rows = table_rows(
            db.pool(),
            &format!("SELECT coalesce(to_regclass('{ahead}')::text, 'missing')"),
        )
        .await;
        rows == [ahead.clone()]
    })
    .await;
}

/// The name of the partition for the UTC month `months` after the current one.
fn month_partition(months: u32) -> String {
    Utc::now()
        .checked_add_months(Months::new(months))
        .unwrap()
        .format("usage_events_%Y_%m")
        .to_string()
}

#[tokio::test]
async fn usage_ingest_partitions_are_created_ahead_and_late_events_in_the_default_move_into_their_month()
 {
    let world = World::create().await;
    // Far ahead of what exists: lands in the default partition (allowed only within the
    // clock-skew window, so write it with SQL as an old control plane might have).
    let far = "2031-05-10 12:00:00+00";
    sqlx::query(
        "INSERT INTO usage_events (event_id, request_id, event_time, org_id, team_id, project_id, \
             key_id, requested_model, model, provider, input_tokens, output_tokens, latency_ms, \
             status, http_status, edge_id, config_version, usage_source) \
         VALUES (gen_random_uuid(), 'req_far', $1::timestamptz, gen_random_uuid(), gen_random_uuid(), \
             gen_random_uuid(), gen_random_uuid(), 'm', 'm', 'p', 1, 1, 1, 'ok', 200, 'e', 1, 'provider')",
    )
    .bind(far)
    .execute(world.pool())
    .await
    .unwrap();
    assert_eq!(
        table_rows(
            world.pool(),
            "SELECT tableoid::regclass::text FROM usage_events"
        )
        .await,
        vec!["usage_events_default".to_owned()]
    );
    let created: i32 =
        sqlx::query_scalar("SELECT tollgate_ensure_usage_partitions('2031-04-01', 2)")
            .fetch_one(world.pool())
            .await
            .unwrap();
    assert_eq!(created, 2);
    assert_eq!(
        table_rows(
            world.pool(),
            "SELECT tableoid::regclass::text FROM usage_events"
        )
        .await,
        vec!["usage_events_2031_05".to_owned()]
    );
    let again: i32 = sqlx::query_scalar("SELECT tollgate_ensure_usage_partitions('2031-04-01', 2)")
        .fetch_one(world.pool())
        .await
        .unwrap();
    assert_eq!(again, 0, "idempotent");
    let created = tollgate_control_plane::usage::partitions::ensure_usage_partitions(world.pool())
        .await
        .unwrap();
    assert!(
        created >= 1,
        "the migration creates three months ahead, the plane four"
    );
    let ahead = month_partition(4);
    assert_eq!(
        table_rows(
            world.pool(),
            &format!("SELECT coalesce(to_regclass('{ahead}')::text, 'missing')")
        )
        .await,
        vec![ahead]
    );
}

/// The rollups must always equal the events they summarise.
async fn assert_rollups_match_events(pool: &sqlx::PgPool) {
    let mismatches = count(
        pool,
        "SELECT count(*) FROM (
             SELECT date_trunc('hour', event_time, 'UTC') AS hour, org_id, team_id, project_id,
                    user_id, model, count(*) AS requests,
                    count(*) FILTER (WHERE status <> 'ok') AS error_requests,
                    count(*) FILTER (WHERE cost_micros IS NULL) AS unpriced_requests,
                    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                    coalesce(sum(cost_micros), 0) AS cost_micros,
                    sum(latency_ms) AS latency_ms_sum
             FROM usage_events GROUP BY 1, 2, 3, 4, 5, 6
             EXCEPT
             SELECT hour, org_id, team_id, project_id, user_id, model, requests, error_requests,
                    unpriced_requests, input_tokens, output_tokens, cost_micros, latency_ms_sum
             FROM usage_hourly) AS differing",
    )
    .await;
    assert_eq!(mismatches, 0, "rollup rows that do not match their events");
}

#[tokio::test]
async fn usage_ingest_a_large_batch_written_in_parallel_parts_is_stored_and_rolled_up_exactly_once()
{
    let world = World::create().await;
    let at = an_hour_ago();
    let scopes = [&world.chatbot, &world.search, &world.site, &world.api];
    let users = [world.alice.as_str(), world.bob.as_str(), ""];
    let models = ["gpt-4o", "mini", "llama3"];
    let events: Vec<pb::UsageEvent> = (0..5_000u64)
        .map(|index| {
            let i = usize::try_from(index).unwrap();
            let event = event(
                scopes[i % scopes.len()],
                users[i % users.len()],
                models[i % models.len()],
                at - Duration::minutes(i64::try_from(index % 120).unwrap()),
            );
            let event = with_tokens(event, index % 500, 0, index % 70);
            match i % 5 {
                0 => with_status(event, "upstream_error", 502),
                1 => event,
                _ => with_cost(event, i64::try_from(index).unwrap()),
            }
        })
        .collect();
    // Twice in one batch, at both ends of the sorted batch: each is stored and counted once.
    let mut batch = events.clone();
    batch.push(events[0].clone());
    batch.push(events[4_999].clone());
    assert_eq!(
        world.ingest(&batch).await,
        IngestOutcome {
            accepted: 5_000,
            duplicates: 2,
            rejected: 0
        }
    );
    assert_rollups_match_events(world.pool()).await;

    // Re-sent with 3,000 new events mixed in: only those count, wherever they fall.
    let fresh: Vec<pb::UsageEvent> = (0..3_000)
        .map(|index| with_cost(event(&world.site, &world.bob, "mini", at), i64::from(index)))
        .collect();
    let mut again = events;
    again.extend(fresh);
    assert_eq!(
        world.ingest(&again).await,
        IngestOutcome {
            accepted: 3_000,
            duplicates: 5_000,
            rejected: 0
        }
    );
    assert_eq!(
        count(world.pool(), "SELECT count(*) FROM usage_events").await,
        8_000
    );
    assert_eq!(
        count(
            world.pool(),
            "SELECT sum(requests)::bigint FROM usage_hourly"
        )
        .await,
        8_000
    );
    assert_rollups_match_events(world.pool()).await;
}
