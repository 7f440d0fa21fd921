//! Writes one usage batch: the valid events, their hourly rollups and the refused events.
//! Idempotent by `(event_id, event_time)`: the rollups are fed only from the rows the insert
//! really inserted, so a batch re-sent after a lost ack adds nothing anywhere.
//!
//! A large batch is written by `INGEST_PARTS` transactions at once, each on its own connection
//! (one Postgres backend is one core: this is what takes one reporter past 100k events/s). That
//! keeps exactly-once: the edge is acknowledged only when every part committed, and if one part
//! fails the edge re-sends the whole batch, whose already-stored events are then duplicates
//! that add nothing. Parts are contiguous ranges of the batch sorted by key, and every part
//! takes its locks in key order, so parts (and concurrent batches) cannot deadlock.

use super::batch::UsageBatch;
use super::event::UsageEvent;
use super::rollup::{self, HourKey, HourSums};
use crate::error::AdminError;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;

/// Batches with at least this many events are split into `INGEST_PARTS` parts.
const PARALLEL_MIN_EVENTS: usize = 500;
/// Parts (transactions, connections) a large batch is written by at once.
const INGEST_PARTS: usize = 2;

/// What happened to a batch's events; every event is counted exactly once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Newly stored.
    pub accepted: u32,
    /// Already stored before (or twice in this batch): nothing was added for them.
    pub duplicates: u32,
    /// Failed validation; kept in `usage_rejected_events`.
    pub rejected: u32,
}

/// Stores `batch`. Fails only when the database does (the caller answers UNAVAILABLE and the
/// edge re-sends later, which is safe); validation problems never fail it.
pub async fn ingest(pool: &PgPool, batch: &UsageBatch) -> Result<IngestOutcome, AdminError> {
    if batch.events.is_empty() && batch.rejected.is_empty() {
        return Ok(IngestOutcome::default());
    }
    let mut sorted: Vec<&UsageEvent> = batch.events.iter().collect();
    // Edges mint time-ordered (v7) ids, so this is close to a no-op in practice.
    sorted.sort_unstable_by_key(|e| (e.event_id, e.event_time));
    let parts = if sorted.len() >= PARALLEL_MIN_EVENTS {
        INGEST_PARTS
    } else {
        1
    };
    let part_len = sorted.len().div_ceil(parts).max(1);
    let mut writes = Vec::with_capacity(parts);
    for (index, events) in sorted.chunks(part_len).enumerate() {
        // The refused events go with the first part.
        writes.push(ingest_part(pool, events, (index == 0).then_some(batch)));
    }
    if writes.is_empty() {
        writes.push(ingest_part(pool, &[], Some(batch)));
    }
    let accepted: u32 = futures::future::try_join_all(writes)
        .await?
        .into_iter()
        .fold(0, u32::saturating_add);
    let valid = count(batch.events.len());
    Ok(IngestOutcome {
        accepted,
        duplicates: valid.saturating_sub(accepted),
        rejected: count(batch.rejected.len()),
    })
}

/// One part in one transaction: its events and their rollups, and the refused events if
/// `rejected_of` is given.
async fn ingest_part(
    pool: &PgPool,
    events: &[&UsageEvent],
    rejected_of: Option<&UsageBatch>,
) -> Result<u32, AdminError> {
    let mut tx = pool.begin().await?;
    let accepted = insert_events(&mut tx, events).await?;
    if let Some(batch) = rejected_of {
        insert_rejected(&mut tx, batch).await?;
    }
    tx.commit().await?;
    Ok(accepted)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One `INSERT ... SELECT FROM UNNEST` for the events (sorted by key), returning the keys it
/// inserted; then the rollups of exactly those events, pre-aggregated here, upserted in key
/// order.
async fn insert_events(conn: &mut PgConnection, events: &[&UsageEvent]) -> Result<u32, AdminError> {
    if events.is_empty() {
        return Ok(0);
    }
    let c = Columns::from_sorted(events);
    let inserted = sqlx::query!(
        r#"INSERT INTO usage_events (
               event_id, request_id, event_time, org_id, team_id, project_id, user_id,
               key_id, requested_model, model, provider, input_tokens, cached_input_tokens,
               output_tokens, cost_micros, price_version, saved_cost_micros, latency_ms,
               ttft_ms, status, http_status, cache_hit, fallback_level, variant, edge_id,
               config_version, stream, usage_source)
           SELECT * FROM UNNEST(
               $1::uuid[], $2::text[], $3::timestamptz[], $4::uuid[], $5::uuid[],
               $6::uuid[], $7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[],
               $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::int4[],
               $17::int8[], $18::int4[], $19::int4[], $20::text[], $21::int2[],
               $22::bool[], $23::int2[], $24::text[], $25::text[], $26::int8[],
               $27::bool[], $28::text[])
           ON CONFLICT (event_id, event_time) DO NOTHING
           RETURNING event_id, event_time"#,
        &c.event_id,
        &c.request_id as &[&str],
        &c.event_time,
        &c.org_id,
        &c.team_id,
        &c.project_id,
        &c.user_id as &[Option<Uuid>],
        &c.key_id,
        &c.requested_model as &[&str],
        &c.model as &[&str],
        &c.provider as &[&str],
        &c.input_tokens,
        &c.cached_input_tokens,
        &c.output_tokens,
        &c.cost_micros as &[Option<i64>],
        &c.price_version as &[Option<i32>],
        &c.saved_cost_micros,
        &c.latency_ms,
        &c.ttft_ms as &[Option<i32>],
        &c.status as &[&str],
        &c.http_status,
        &c.cache_hit,
        &c.fallback_level,
        &c.variant as &[Option<&str>],
        &c.edge_id as &[&str],
        &c.config_version,
        &c.stream,
        &c.usage_source as &[&str],
    )
    .fetch_all(&mut *conn)
    .await?;
    let accepted = inserted.len();
    let mut inserted: HashSet<(Uuid, DateTime<Utc>)> = inserted
        .into_iter()
        .map(|row| (row.event_id, row.event_time))
        .collect();
    // `remove`, not `contains`: an event given twice in the batch was inserted (and is
    // counted) once.
    let rows = rollup::aggregate(
        events
            .iter()
            .copied()
            .filter(|event| inserted.remove(&(event.event_id, event.event_time))),
    );
    upsert_rollups(conn, &rows).await?;
    Ok(count(accepted))
}

/// Adds `rows` to `usage_hourly`, in the map's (key) order.
async fn upsert_rollups(
    conn: &mut PgConnection,
    rows: &BTreeMap<HourKey<'_>, HourSums>,
) -> Result<(), AdminError> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |value: fn(&HourSums) -> i64| rows.values().map(value).collect::<Vec<i64>>();
    let hours: Vec<DateTime<Utc>> = rows.keys().map(|key| key.hour).collect();
    let org_ids: Vec<Uuid> = rows.keys().map(|key| key.org_id).collect();
    let team_ids: Vec<Uuid> = rows.keys().map(|key| key.team_id).collect();
    let project_ids: Vec<Uuid> = rows.keys().map(|key| key.project_id).collect();
    let user_ids: Vec<Option<Uuid>> = rows.keys().map(|key| key.user_id).collect();
    let models: Vec<&str> = rows.keys().map(|key| key.model).collect();
    sqlx::query!(
        r#"INSERT INTO usage_hourly AS h (
               hour, org_id, team_id, project_id, user_id, model, requests, error_requests,
               unpriced_requests, cache_hits, input_tokens, cached_input_tokens, output_tokens,
               cost_micros, saved_cost_micros, latency_ms_sum)
           SELECT hour, org_id, team_id, project_id, user_id, model, requests, error_requests,
                  unpriced_requests, cache_hits, input_tokens, cached_input_tokens,
                  output_tokens, cost_micros, saved_cost_micros, latency_ms_sum
           FROM UNNEST($1::timestamptz[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                       $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::int8[],
                       $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[],
                       $16::int8[])
                WITH ORDINALITY AS r (hour, org_id, team_id, project_id, user_id, model,
                                      requests, error_requests, unpriced_requests, cache_hits,
                                      input_tokens, cached_input_tokens, output_tokens,
                                      cost_micros, saved_cost_micros, latency_ms_sum, position)
           ORDER BY position
           ON CONFLICT (hour, org_id, team_id, project_id, user_id, model) DO UPDATE SET
               requests = h.requests + EXCLUDED.requests,
               error_requests = h.error_requests + EXCLUDED.error_requests,
               unpriced_requests = h.unpriced_requests + EXCLUDED.unpriced_requests,
               cache_hits = h.cache_hits + EXCLUDED.cache_hits,
               input_tokens = h.input_tokens + EXCLUDED.input_tokens,
               cached_input_tokens = h.cached_input_tokens + EXCLUDED.cached_input_tokens,
               output_tokens = h.output_tokens + EXCLUDED.output_tokens,
               cost_micros = h.cost_micros + EXCLUDED.cost_micros,
               saved_cost_micros = h.saved_cost_micros + EXCLUDED.saved_cost_micros,
               latency_ms_sum = h.latency_ms_sum + EXCLUDED.latency_ms_sum"#,
        &hours,
        &org_ids,
        &team_ids,
        &project_ids,
        &user_ids as &[Option<Uuid>],
        &models as &[&str],
        &column(|sums| sums.requests),
        &column(|sums| sums.error_requests),
        &column(|sums| sums.unpriced_requests),
        &column(|sums| sums.cache_hits),
        &column(|sums| sums.input_tokens),
        &column(|sums| sums.cached_input_tokens),
        &column(|sums| sums.output_tokens),
        &column(|sums| sums.cost_micros),
        &column(|sums| sums.saved_cost_micros),
        &column(|sums| sums.latency_ms_sum),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Refused events, also in one statement. Idempotent by the event's digest.
async fn insert_rejected(conn: &mut PgConnection, batch: &UsageBatch) -> Result<(), AdminError> {
    if batch.rejected.is_empty() {
        return Ok(());
    }
    let event_ids: Vec<&str> = batch.rejected.iter().map(|r| r.event_id.as_str()).collect();
    let reasons: Vec<String> = batch
        .rejected
        .iter()
        .map(|r| r.reason.to_string())
        .collect();
    let events: Vec<&str> = batch
        .rejected
        .iter()
        .map(|r| r.event_json.as_str())
        .collect();
    let digests: Vec<&[u8]> = batch
        .rejected
        .iter()
        .map(|r| r.event_sha256.as_slice())
        .collect();
    sqlx::query!(
        r#"INSERT INTO usage_rejected_events (edge_id, batch_id, event_id, reason, event,
                                              event_sha256)
           SELECT $1, $2, event_id, reason, event::jsonb, event_sha256
           FROM UNNEST($3::text[], $4::text[], $5::text[], $6::bytea[])
                AS r (event_id, reason, event, event_sha256)
           ON CONFLICT (event_sha256) DO NOTHING"#,
        batch.edge_id,
        batch.batch_id,
        &event_ids as &[&str],
        &reasons,
        &events as &[&str],
        &digests as &[&[u8]],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The events turned inside out: one array per column, the shape `UNNEST` takes.
struct Columns<'a> {
    event_id: Vec<Uuid>,
    request_id: Vec<&'a str>,
    event_time: Vec<DateTime<Utc>>,
    org_id: Vec<Uuid>,
    team_id: Vec<Uuid>,
    project_id: Vec<Uuid>,
    user_id: Vec<Option<Uuid>>,
    key_id: Vec<Uuid>,
    requested_model: Vec<&'a str>,
    model: Vec<&'a str>,
    provider: Vec<&'a str>,
    input_tokens: Vec<i64>,
    cached_input_tokens: Vec<i64>,
    output_tokens: Vec<i64>,
    cost_micros: Vec<Option<i64>>,
    price_version: Vec<Option<i32>>,
    saved_cost_micros: Vec<i64>,
    latency_ms: Vec<i32>,
    ttft_ms: Vec<Option<i32>>,
    status: Vec<&'static str>,
    http_status: Vec<i16>,
    cache_hit: Vec<bool>,
    fallback_level: Vec<i16>,
    variant: Vec<Option<&'a str>>,
    edge_id: Vec<&'a str>,
    config_version: Vec<i64>,
    stream: Vec<bool>,
    usage_source: Vec<&'static str>,
}

impl<'a> Columns<'a> {
    fn from_sorted(sorted: &[&'a UsageEvent]) -> Self {
        let n = sorted.len();
        let mut c = Self {
            event_id: Vec::with_capacity(n),
            request_id: Vec::with_capacity(n),
            event_time: Vec::with_capacity(n),
            org_id: Vec::with_capacity(n),
            team_id: Vec::with_capacity(n),
            project_id: Vec::with_capacity(n),
            user_id: Vec::with_capacity(n),
            key_id: Vec::with_capacity(n),
            requested_model: Vec::with_capacity(n),
            model: Vec::with_capacity(n),
            provider: Vec::with_capacity(n),
            input_tokens: Vec::with_capacity(n),
            cached_input_tokens: Vec::with_capacity(n),
            output_tokens: Vec::with_capacity(n),
            cost_micros: Vec::with_capacity(n),
            price_version: Vec::with_capacity(n),
            saved_cost_micros: Vec::with_capacity(n),
            latency_ms: Vec::with_capacity(n),
            ttft_ms: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            http_status: Vec::with_capacity(n),
            cache_hit: Vec::with_capacity(n),
            fallback_level: Vec::with_capacity(n),
            variant: Vec::with_capacity(n),
            edge_id: Vec::with_capacity(n),
            config_version: Vec::with_capacity(n),
            stream: Vec::with_capacity(n),
            usage_source: Vec::with_capacity(n),
        };
        for &e in sorted {
            c.event_id.push(e.event_id);
            c.request_id.push(&e.request_id);
            c.event_time.push(e.event_time);
            c.org_id.push(e.org_id);
            c.team_id.push(e.team_id);
            c.project_id.push(e.project_id);
            c.user_id.push(e.user_id);
            c.key_id.push(e.key_id);
            c.requested_model.push(&e.requested_model);
            c.model.push(&e.model);
            c.provider.push(&e.provider);
            c.input_tokens.push(e.input_tokens);
            c.cached_input_tokens.push(e.cached_input_tokens);
            c.output_tokens.push(e.output_tokens);
            c.cost_micros.push(e.price.map(|p| p.cost_micros));
            c.price_version.push(e.price.map(|p| p.price_version));
            c.saved_cost_micros.push(e.saved_cost_micros);
            c.latency_ms.push(e.latency_ms);
            c.ttft_ms.push(e.ttft_ms);
            c.status.push(e.status.as_str());
            c.http_status.push(e.http_status);
            c.cache_hit.push(e.cache_hit);
            c.fallback_level.push(e.fallback_level);
            c.variant.push(e.variant.as_deref());
            c.edge_id.push(&e.edge_id);
            c.config_version.push(e.config_version);
            c.stream.push(e.stream);
            c.usage_source.push(e.usage_source.as_str());
        }
        c
    }
}
