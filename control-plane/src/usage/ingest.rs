//! Writes one usage batch in one transaction: the valid events and their hourly rollups in a
//! single statement, the refused events beside them. Idempotent by `(event_id, event_time)`:
//! the rollups are fed only from the rows that statement really inserted, so a batch re-sent
//! after a lost ack adds nothing anywhere.

use super::batch::UsageBatch;
use super::event::UsageEvent;
use crate::error::AdminError;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

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

/// Stores `batch` in one transaction. Fails only when the database does (the caller answers
/// UNAVAILABLE and the edge re-sends later, which is safe); validation problems never fail it.
pub async fn ingest(pool: &PgPool, batch: &UsageBatch) -> Result<IngestOutcome, AdminError> {
    if batch.events.is_empty() && batch.rejected.is_empty() {
        return Ok(IngestOutcome::default());
    }
    let mut tx = pool.begin().await?;
    let accepted = insert_events(&mut tx, &batch.events).await?;
    insert_rejected(&mut tx, batch).await?;
    tx.commit().await?;
    let valid = count(batch.events.len());
    Ok(IngestOutcome {
        accepted,
        duplicates: valid.saturating_sub(accepted),
        rejected: count(batch.rejected.len()),
    })
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One `INSERT ... SELECT FROM UNNEST` for the events, chained into the rollup upsert. Events
/// go in sorted by their key and rollup rows are upserted in key order, so two batches that
/// share events (a re-send racing the original) or rollup rows lock them in the same order and
/// cannot deadlock.
async fn insert_events(conn: &mut PgConnection, events: &[UsageEvent]) -> Result<u32, AdminError> {
    if events.is_empty() {
        return Ok(0);
    }
    let c = Columns::from_events(events);
    let accepted = sqlx::query_scalar!(
        r#"WITH inserted AS (
               INSERT INTO usage_events (
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
               RETURNING event_time, org_id, team_id, project_id, user_id, model, status,
                         cost_micros, cache_hit, input_tokens, cached_input_tokens,
                         output_tokens, saved_cost_micros, latency_ms
           ), rolled_up AS (
               INSERT INTO usage_hourly AS h (
                   hour, org_id, team_id, project_id, user_id, model, requests,
                   error_requests, unpriced_requests, cache_hits, input_tokens,
                   cached_input_tokens, output_tokens, cost_micros, saved_cost_micros,
                   latency_ms_sum)
               SELECT date_trunc('hour', event_time, 'UTC'), org_id, team_id, project_id,
                      user_id, model, count(*), count(*) FILTER (WHERE status <> 'ok'),
                      count(*) FILTER (WHERE cost_micros IS NULL),
                      count(*) FILTER (WHERE cache_hit), sum(input_tokens),
                      sum(cached_input_tokens), sum(output_tokens),
                      coalesce(sum(cost_micros), 0), sum(saved_cost_micros), sum(latency_ms)
               FROM inserted
               GROUP BY 1, 2, 3, 4, 5, 6
               ORDER BY 1, 2, 3, 4, 5, 6
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
                   latency_ms_sum = h.latency_ms_sum + EXCLUDED.latency_ms_sum
           )
           SELECT count(*) AS "accepted!" FROM inserted"#,
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
    .fetch_one(conn)
    .await?;
    Ok(u32::try_from(accepted).unwrap_or(u32::MAX))
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
    fn from_events(events: &'a [UsageEvent]) -> Self {
        let mut sorted: Vec<&UsageEvent> = events.iter().collect();
        // Edges mint time-ordered (v7) ids, so this is close to a no-op in practice.
        sorted.sort_unstable_by_key(|e| (e.event_id, e.event_time));
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
        for e in sorted {
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
