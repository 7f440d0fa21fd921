//! Usage ingest throughput: validates and stores synthetic usage batches through the same
//! `UsageBatch::from_wire` + `usage::ingest` path `UsageService.Report` uses (everything but
//! the gRPC hop), on a fresh database per scenario, and prints events/s.
//!
//! ```sh
//! cargo run --release -p tollgate-control-plane --example ingest_bench
//! # the same over the Unix socket (no TCP at all)
//! TOLLGATE_BENCH_DATABASE_URL='postgres://postgres@localhost/postgres?host=/var/run/postgresql' \
//!     cargo run --release -p tollgate-control-plane --example ingest_bench
//! ```
//!
//! Scenarios: batch sizes 1k (an edge's spool segment), 5k and 10k with one reporter; the
//! events insert alone in one transaction, without rollups (what they cost); and two concurrent
//! reporters (two edges) sending batches of the same hours, so they contend for the same rollup
//! rows as real edges do. "resend events/s" re-sends everything afterwards: the lost-ack case,
//! all duplicates.
//!
//! `TOLLGATE_BENCH_DATABASE_URL` names the Postgres server (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each run creates and drops its own
//! `tollgate_bench_<uuid>` database. `TOLLGATE_BENCH_EVENTS` changes the event count (300000).
//! Durability is the production one: every batch is committed (in two parallel transactions
//! from 500 events on, as in production) with `synchronous_commit` as the server has it.
//!
//! sqlx 0.9.0 did not set TCP_NODELAY over TCP (issue #4335), so a multi-segment batch often
//! waited ~40 ms for a delayed ACK; 0.9.1, which the workspace uses, does.

#![allow(clippy::print_stdout)]

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use rand::Rng;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use std::time::{Duration, Instant};
use tollgate_control_plane::db::MIGRATOR;
use tollgate_control_plane::usage::{self, UsageBatch};
use tollgate_proto::v1 as pb;
use uuid::Uuid;

const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_EVENTS: usize = 300_000;
/// Synthetic traffic: 3 orgs x 4 teams x 3 projects, 20 users per org, 5 models, spread over
/// the last 6 hours, which gives the rollups a realistic number of distinct rows per hour.
const ORGS: usize = 3;
const TEAMS_PER_ORG: usize = 4;
const PROJECTS_PER_TEAM: usize = 3;
const USERS_PER_ORG: usize = 20;
const MODELS: [&str; 5] = [
    "gpt-4o-mini",
    "gpt-4o",
    "claude-sonnet",
    "llama3",
    "mock-small",
];
const SPAN: TimeDelta = TimeDelta::hours(6);

/// What is timed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// `usage::ingest`: events, then their pre-aggregated hourly rollups (production).
    Ingest,
    /// The `UNNEST` insert alone, one transaction, no rollups: what the rollups cost.
    EventsOnly,
}

struct Scenario {
    path: Path,
    batch_size: usize,
    /// Concurrent reporters (edges), each with its own connection.
    reporters: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        path: Path::Ingest,
        batch_size: 1_000,
        reporters: 1,
    },
    Scenario {
        path: Path::Ingest,
        batch_size: 5_000,
        reporters: 1,
    },
    Scenario {
        path: Path::Ingest,
        batch_size: 10_000,
        reporters: 1,
    },
    Scenario {
        path: Path::EventsOnly,
        batch_size: 10_000,
        reporters: 1,
    },
    Scenario {
        path: Path::Ingest,
        batch_size: 1_000,
        reporters: 2,
    },
    Scenario {
        path: Path::Ingest,
        batch_size: 10_000,
        reporters: 2,
    },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server_url = std::env::var("TOLLGATE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
    let total: usize = match std::env::var("TOLLGATE_BENCH_EVENTS") {
        Ok(value) => value.parse().context("TOLLGATE_BENCH_EVENTS")?,
        Err(_) => DEFAULT_EVENTS,
    };
    let tenancy = Tenancy::generate();
    println!("{total} events per run, fresh database per run, one transaction per batch");
    println!(
        "{:<12}  {:>6}  {:>9}  {:>8}  {:>10}  {:>12}  {:>15}",
        "path", "batch", "reporters", "seconds", "events/s", "ms/batch p50", "resend events/s"
    );
    for scenario in SCENARIOS {
        let db = BenchDb::create(&server_url, scenario.reporters).await?;
        let result = run(db.pool(), &tenancy, total, scenario).await;
        db.drop_database().await?;
        let result = result?;
        println!(
            "{:<12}  {:>6}  {:>9}  {:>8.2}  {:>10.0}  {:>12.1}  {:>15.0}",
            match scenario.path {
                Path::Ingest => "ingest",
                Path::EventsOnly => "events-only",
            },
            scenario.batch_size,
            scenario.reporters,
            result.elapsed.as_secs_f64(),
            per_second(total, result.elapsed),
            result.p50_batch.as_secs_f64() * 1000.0,
            per_second(total, result.resend_elapsed),
        );
    }
    Ok(())
}

struct RunResult {
    elapsed: Duration,
    p50_batch: Duration,
    resend_elapsed: Duration,
}

async fn run(
    pool: &PgPool,
    tenancy: &Tenancy,
    total: usize,
    scenario: &Scenario,
) -> anyhow::Result<RunResult> {
    // Generated up front: only validation and ingest are timed, as on the server.
    let start = Utc::now() - SPAN;
    let step_ms = SPAN.num_milliseconds() as f64 / total as f64;
    let mut rng = rand::rng();
    let events: Vec<pb::UsageEvent> = (0..total)
        .map(|i| {
            let at = start.timestamp_millis() + (i as f64 * step_ms) as i64;
            tenancy.event(&mut rng, at)
        })
        .collect();
    // Batches are dealt round-robin to the reporters, so concurrent reporters send events of
    // the same hours (and contend for the same rollup rows), as edges do.
    let mut per_reporter: Vec<Vec<pb::UsageBatch>> = vec![Vec::new(); scenario.reporters];
    for (n, chunk) in events.chunks(scenario.batch_size).enumerate() {
        per_reporter[n % scenario.reporters].push(pb::UsageBatch {
            edge_id: format!("bench-edge-{}", n % scenario.reporters),
            batch_id: format!("bench-{n}"),
            events: chunk.to_vec(),
        });
    }

    let started = Instant::now();
    let mut batch_times = report_all(pool, &per_reporter, scenario.path, false).await?;
    let elapsed = started.elapsed();
    // The lost-ack case: everything again, all duplicates, nothing added.
    let resend_started = Instant::now();
    report_all(pool, &per_reporter, Path::Ingest, true).await?;
    let resend_elapsed = resend_started.elapsed();

    let (stored, rolled_up): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM usage_events), \
                (SELECT coalesce(sum(requests), 0)::bigint FROM usage_hourly)",
    )
    .fetch_one(pool)
    .await?;
    let expected_rolled_up = if scenario.path == Path::Ingest {
        total
    } else {
        0
    };
    anyhow::ensure!(
        stored as usize == total && rolled_up as usize == expected_rolled_up,
        "stored {stored} events and rolled up {rolled_up}, expected {total} and {expected_rolled_up}"
    );
    batch_times.sort();
    Ok(RunResult {
        elapsed,
        p50_batch: batch_times
            .get(batch_times.len() / 2)
            .copied()
            .unwrap_or_default(),
        resend_elapsed,
    })
}

/// Every reporter sends its batches one after another, all reporters at once. Returns the time
/// each batch took.
async fn report_all(
    pool: &PgPool,
    per_reporter: &[Vec<pb::UsageBatch>],
    path: Path,
    resend: bool,
) -> anyhow::Result<Vec<Duration>> {
    let mut reporters = tokio::task::JoinSet::new();
    for batches in per_reporter {
        let pool = pool.clone();
        let batches = batches.clone();
        reporters.spawn(async move {
            let mut times = Vec::with_capacity(batches.len());
            for batch in batches {
                let batch_started = Instant::now();
                let batch = UsageBatch::from_wire(batch, Utc::now())?;
                let accepted = match path {
                    Path::Ingest => usage::ingest(&pool, &batch).await?.accepted as usize,
                    Path::EventsOnly => insert_events_only(&pool, &batch).await?,
                };
                let expected = if resend { 0 } else { batch.events.len() };
                anyhow::ensure!(
                    accepted == expected,
                    "accepted {accepted}, expected {expected}"
                );
                times.push(batch_started.elapsed());
            }
            Ok::<_, anyhow::Error>(times)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = reporters.join_next().await {
        all.extend(joined??);
    }
    Ok(all)
}

/// The events half of `usage::ingest` on its own (no rollups), for comparison only.
async fn insert_events_only(pool: &PgPool, batch: &UsageBatch) -> anyhow::Result<usize> {
    let e = &batch.events;
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO usage_events (event_id, request_id, event_time, org_id, team_id, \
             project_id, user_id, key_id, requested_model, model, provider, input_tokens, \
             cached_input_tokens, output_tokens, cost_micros, price_version, saved_cost_micros, \
             latency_ms, ttft_ms, status, http_status, cache_hit, fallback_level, variant, \
             edge_id, config_version, stream, usage_source) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[], \
             $5::uuid[], $6::uuid[], $7::uuid[], $8::uuid[], $9::text[], $10::text[], \
             $11::text[], $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::int4[], \
             $17::int8[], $18::int4[], $19::int4[], $20::text[], $21::int2[], $22::bool[], \
             $23::int2[], $24::text[], $25::text[], $26::int8[], $27::bool[], $28::text[]) \
         ON CONFLICT (event_id, event_time) DO NOTHING",
    )
    .bind(e.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.event_time).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.org_id).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.team_id).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.project_id).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.user_id).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.key_id).collect::<Vec<_>>())
    .bind(
        e.iter()
            .map(|e| e.requested_model.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(e.iter().map(|e| e.model.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.provider.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.input_tokens).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.cached_input_tokens).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.output_tokens).collect::<Vec<_>>())
    .bind(
        e.iter()
            .map(|e| e.price.map(|p| p.cost_micros))
            .collect::<Vec<_>>(),
    )
    .bind(
        e.iter()
            .map(|e| e.price.map(|p| p.price_version))
            .collect::<Vec<_>>(),
    )
    .bind(e.iter().map(|e| e.saved_cost_micros).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.latency_ms).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.ttft_ms).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.status.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.http_status).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.cache_hit).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.fallback_level).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.variant.as_deref()).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.edge_id.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.config_version).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.stream).collect::<Vec<_>>())
    .bind(
        e.iter()
            .map(|e| e.usage_source.as_str())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(inserted as usize)
}

fn per_second(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// Ids of the synthetic orgs, teams, projects, users and keys.
struct Tenancy {
    /// (org, team, project, key) for every project.
    projects: Vec<(Uuid, Uuid, Uuid, Uuid)>,
    /// Users per org index.
    users: Vec<Vec<Uuid>>,
    orgs: Vec<Uuid>,
}

impl Tenancy {
    fn generate() -> Self {
        let orgs: Vec<Uuid> = (0..ORGS).map(|_| Uuid::new_v4()).collect();
        let mut projects = Vec::new();
        for org in &orgs {
            for _ in 0..TEAMS_PER_ORG {
                let team = Uuid::new_v4();
                for _ in 0..PROJECTS_PER_TEAM {
                    projects.push((*org, team, Uuid::new_v4(), Uuid::new_v4()));
                }
            }
        }
        let users = orgs
            .iter()
            .map(|_| (0..USERS_PER_ORG).map(|_| Uuid::new_v4()).collect())
            .collect();
        Self {
            projects,
            users,
            orgs,
        }
    }

    fn event(&self, rng: &mut impl Rng, at_unix_ms: i64) -> pb::UsageEvent {
        let (org, team, project, key) = self.projects[rng.random_range(0..self.projects.len())];
        let org_index = self.orgs.iter().position(|o| *o == org).unwrap_or(0);
        let users = &self.users[org_index];
        let user = if rng.random_bool(0.8) {
            users[rng.random_range(0..users.len())].to_string()
        } else {
            String::new()
        };
        let model = MODELS[rng.random_range(0..MODELS.len())];
        let input_tokens = rng.random_range(10..4_000);
        let output_tokens = rng.random_range(1..1_000);
        let priced = model != "llama3";
        let failed = rng.random_bool(0.02);
        let stream = rng.random_bool(0.5);
        pb::UsageEvent {
            event_id: Uuid::now_v7().to_string(),
            request_id: format!("req_{}", Uuid::new_v4().simple()),
            event_time_unix_ms: at_unix_ms,
            org_id: org.to_string(),
            team_id: team.to_string(),
            project_id: project.to_string(),
            user_id: user,
            key_id: key.to_string(),
            requested_model: model.to_owned(),
            model: model.to_owned(),
            provider: "openai".to_owned(),
            input_tokens,
            cached_input_tokens: input_tokens / 4,
            output_tokens,
            priced,
            cost_micros: if priced {
                i64::try_from((input_tokens * 150 + output_tokens * 600) / 1_000).unwrap_or(0)
            } else {
                0
            },
            price_version: if priced { 1 } else { 0 },
            latency_ms: rng.random_range(50..5_000),
            ttft_ms: if stream { rng.random_range(20..800) } else { 0 },
            status: if failed { "upstream_error" } else { "ok" }.to_owned(),
            http_status: if failed { 502 } else { 200 },
            cache_hit: rng.random_bool(0.05),
            fallback_level: 0,
            variant: String::new(),
            edge_id: "bench-edge".to_owned(),
            config_version: 42,
            stream,
            usage_source: "provider".to_owned(),
            saved_cost_micros: 0,
        }
    }
}

/// A throwaway database on the bench server, migrated like production.
struct BenchDb {
    server_url: String,
    name: String,
    pool: PgPool,
}

impl BenchDb {
    async fn create(server_url: &str, connections: usize) -> anyhow::Result<Self> {
        let name = format!("tollgate_bench_{}", Uuid::new_v4().simple());
        let mut server = PgConnection::connect(server_url)
            .await
            .with_context(|| format!("connecting to {server_url}"))?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut server)
            .await?;
        let mut url = url::Url::parse(server_url)?;
        url.set_path(&format!("/{name}"));
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(connections.max(2))?)
            .connect(url.as_str())
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            server_url: server_url.to_owned(),
            name,
            pool,
        })
    }

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        self.pool.close().await;
        let mut server = PgConnection::connect(&self.server_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut server)
        .await?;
        Ok(())
    }
}
