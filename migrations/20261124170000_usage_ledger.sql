-- Usage ledger: one row per authenticated request, month-partitioned, ingested idempotently,
-- with hourly rollups maintained in the same transaction and views for cost reporting.

ALTER TABLE model_prices
    ADD COLUMN cached_input_price_micros_per_mtok BIGINT
        CHECK (cached_input_price_micros_per_mtok >= 0);
COMMENT ON COLUMN model_prices.cached_input_price_micros_per_mtok IS
    'Integer micro-dollars per 1M input tokens served from the provider prompt cache; NULL = input price.';

CREATE TABLE usage_events (
    event_id            UUID NOT NULL,
    request_id          TEXT NOT NULL,
    event_time          TIMESTAMPTZ NOT NULL,
    org_id              UUID NOT NULL,
    team_id             UUID NOT NULL,
    project_id          UUID NOT NULL,
    user_id             UUID,
    key_id              UUID NOT NULL,
    requested_model     TEXT NOT NULL,
    model               TEXT NOT NULL,
    provider            TEXT NOT NULL,
    input_tokens        BIGINT NOT NULL CHECK (input_tokens >= 0),
    cached_input_tokens BIGINT NOT NULL DEFAULT 0 CHECK (cached_input_tokens >= 0),
    output_tokens       BIGINT NOT NULL CHECK (output_tokens >= 0),
    cost_micros         BIGINT,
    price_version       INTEGER,
    saved_cost_micros   BIGINT NOT NULL DEFAULT 0,
    latency_ms          INTEGER NOT NULL,
    ttft_ms             INTEGER,
    status              TEXT NOT NULL,
    http_status         SMALLINT NOT NULL,
    cache_hit           BOOLEAN NOT NULL DEFAULT FALSE,
    fallback_level      SMALLINT NOT NULL DEFAULT 0,
    variant             TEXT,
    edge_id             TEXT NOT NULL,
    config_version      BIGINT NOT NULL,
    stream              BOOLEAN NOT NULL DEFAULT FALSE,
    usage_source        TEXT NOT NULL,
    ingested_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Postgres needs the partition key in every unique key; event ids are unique on their own.
    PRIMARY KEY (event_id, event_time)
) PARTITION BY RANGE (event_time);
COMMENT ON TABLE usage_events IS 'One row per authenticated request. Partitioned by month of event_time.';
COMMENT ON COLUMN usage_events.cost_micros IS
    'Integer micro-dollars (1e-6 USD) at price_version; NULL means the model had no price (unpriced, not free).';
COMMENT ON COLUMN usage_events.model IS 'The model that answered; requested_model is what the client asked for.';

-- Catches events outside the pre-created months (a very late spool replay) so none is refused.
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;

-- Creates the monthly partitions from `first_month` for `months` months; idempotent, and safe
-- to run from several control planes at once (they serialise on an advisory lock). Rows that
-- already sit in the default partition for a month being created (events ingested while the
-- month had no partition) are moved into the new partition: creating it directly would fail
-- on them, and would keep failing every day after.
CREATE FUNCTION tollgate_ensure_usage_partitions(first_month DATE, months INTEGER) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    month_start DATE;
    month_end DATE;
    created INTEGER := 0;
    partition_name TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tollgate_ensure_usage_partitions'));
    FOR i IN 0 .. months - 1 LOOP
        month_start := (date_trunc('month', first_month) + make_interval(months => i))::date;
        month_end := (month_start + interval '1 month')::date;
        partition_name := format('usage_events_%s', to_char(month_start, 'YYYY_MM'));
        IF to_regclass(partition_name) IS NULL THEN
            IF EXISTS (SELECT 1 FROM usage_events_default
                       WHERE event_time >= month_start::timestamp AT TIME ZONE 'UTC'
                         AND event_time < month_end::timestamp AT TIME ZONE 'UTC') THEN
                EXECUTE format('CREATE TABLE %I (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                               partition_name);
                EXECUTE format(
                    'WITH moved AS (DELETE FROM usage_events_default WHERE event_time >= %L AND event_time < %L RETURNING *) '
                    'INSERT INTO %I SELECT * FROM moved',
                    month_start::timestamp AT TIME ZONE 'UTC', month_end::timestamp AT TIME ZONE 'UTC', partition_name);
                EXECUTE format('ALTER TABLE usage_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                               partition_name, month_start::timestamp AT TIME ZONE 'UTC', month_end::timestamp AT TIME ZONE 'UTC');
            ELSE
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                    partition_name, month_start::timestamp AT TIME ZONE 'UTC', month_end::timestamp AT TIME ZONE 'UTC');
            END IF;
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;
-- Months are UTC calendar months, whatever the session's TimeZone.
SELECT tollgate_ensure_usage_partitions((date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')::date, 5);

-- Indexes are kept few because every one is paid for on every ingested event (measured with
-- control-plane/examples/ingest_bench.rs: the former btree (org_id, event_time) and btree
-- (request_id) cost about 30% of ingest throughput). Reports read usage_hourly, not this
-- table. Time ranges: partition pruning plus a BRIN index (events arrive nearly in time order,
-- so it stays tight for next to nothing). Lookups by the x-request-id a client got: a hash
-- index, equality being the only use, and cheaper to insert into than a btree on a random key.
CREATE INDEX usage_events_event_time ON usage_events USING brin (event_time);
CREATE INDEX usage_events_request_id ON usage_events USING hash (request_id);

-- Hourly rollups, updated in the ingest transaction from exactly the rows that were inserted.
CREATE TABLE usage_hourly (
    hour                TIMESTAMPTZ NOT NULL,
    org_id              UUID NOT NULL,
    team_id             UUID NOT NULL,
    project_id          UUID NOT NULL,
    user_id             UUID,
    model               TEXT NOT NULL,
    requests            BIGINT NOT NULL,
    error_requests      BIGINT NOT NULL,
    unpriced_requests   BIGINT NOT NULL,
    cache_hits          BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cost_micros         BIGINT NOT NULL,
    saved_cost_micros   BIGINT NOT NULL,
    latency_ms_sum      BIGINT NOT NULL,
    UNIQUE NULLS NOT DISTINCT (hour, org_id, team_id, project_id, user_id, model)
);
COMMENT ON COLUMN usage_hourly.cost_micros IS 'Sum over priced requests only, integer micro-dollars.';
COMMENT ON COLUMN usage_hourly.hour IS 'Start of the UTC hour of event_time.';

-- Events that failed validation at ingest: kept with the reason instead of being dropped.
-- `event_sha256` (of the event as JSON) makes this idempotent too: a batch re-sent after a lost
-- ack does not store its bad events twice.
CREATE TABLE usage_rejected_events (
    id           BIGSERIAL PRIMARY KEY,
    edge_id      TEXT NOT NULL,
    batch_id     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    event        JSONB NOT NULL,
    event_sha256 BYTEA NOT NULL UNIQUE CHECK (length(event_sha256) = 32),
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX usage_rejected_events_received_at ON usage_rejected_events (received_at);

-- Reporting views (documented in the README). Days and months are UTC calendar days and months
-- whatever the session's TimeZone, like the hours of usage_hourly. Amounts in USD are NUMERIC,
-- exact (micro-dollars / 10^6, six decimals). Names come from the tenancy tables; an id that
-- has no row there (never expected) shows as the id itself rather than hiding its spend.
CREATE VIEW usage_hourly_named AS
SELECT h.hour,
       coalesce(o.name, h.org_id::text) AS org,
       coalesce(t.name, h.team_id::text) AS team,
       coalesce(p.name, h.project_id::text) AS project,
       coalesce(u.name, h.user_id::text) AS "user",
       h.model,
       h.requests, h.error_requests, h.unpriced_requests, h.cache_hits,
       h.input_tokens, h.cached_input_tokens, h.output_tokens,
       h.cost_micros, round(h.cost_micros::numeric / 1000000, 6) AS cost_usd,
       h.saved_cost_micros, h.latency_ms_sum
FROM usage_hourly h
LEFT JOIN orgs o ON o.id = h.org_id
LEFT JOIN teams t ON t.id = h.team_id
LEFT JOIN projects p ON p.id = h.project_id
LEFT JOIN users u ON u.id = h.user_id;

-- avg_cost_micros_per_request is over priced requests only: unpriced ones have no cost to
-- average (counting them as 0 would make spend look cheaper than it is).
CREATE VIEW usage_daily_by_team AS
SELECT date_trunc('day', hour, 'UTC') AS day, org, team,
       sum(requests) AS requests, sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens, sum(cost_micros) AS cost_micros,
       round(sum(cost_micros)::numeric / 1000000, 6) AS cost_usd, sum(unpriced_requests) AS unpriced_requests,
       round(sum(cost_micros) / NULLIF(sum(requests) - sum(unpriced_requests), 0), 2) AS avg_cost_micros_per_request,
       round(sum(output_tokens)::numeric / NULLIF(sum(input_tokens), 0), 4) AS output_per_input_token
FROM usage_hourly_named GROUP BY 1, 2, 3;

CREATE VIEW usage_daily_by_project AS
SELECT date_trunc('day', hour, 'UTC') AS day, org, team, project,
       sum(requests) AS requests, sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens, sum(cost_micros) AS cost_micros,
       round(sum(cost_micros)::numeric / 1000000, 6) AS cost_usd, sum(unpriced_requests) AS unpriced_requests,
       round(sum(cost_micros) / NULLIF(sum(requests) - sum(unpriced_requests), 0), 2) AS avg_cost_micros_per_request,
       round(sum(output_tokens)::numeric / NULLIF(sum(input_tokens), 0), 4) AS output_per_input_token
FROM usage_hourly_named GROUP BY 1, 2, 3, 4;

CREATE VIEW usage_daily_by_user AS
SELECT date_trunc('day', hour, 'UTC') AS day, org, "user",
       sum(requests) AS requests, sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens, sum(cost_micros) AS cost_micros,
       round(sum(cost_micros)::numeric / 1000000, 6) AS cost_usd, sum(unpriced_requests) AS unpriced_requests,
       round(sum(cost_micros) / NULLIF(sum(requests) - sum(unpriced_requests), 0), 2) AS avg_cost_micros_per_request,
       round(sum(output_tokens)::numeric / NULLIF(sum(input_tokens), 0), 4) AS output_per_input_token
FROM usage_hourly_named GROUP BY 1, 2, 3;

CREATE VIEW usage_daily_by_model AS
SELECT date_trunc('day', hour, 'UTC') AS day, model,
       sum(requests) AS requests, sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens, sum(cost_micros) AS cost_micros,
       round(sum(cost_micros)::numeric / 1000000, 6) AS cost_usd, sum(unpriced_requests) AS unpriced_requests,
       round(sum(cost_micros) / NULLIF(sum(requests) - sum(unpriced_requests), 0), 2) AS avg_cost_micros_per_request,
       round(sum(output_tokens)::numeric / NULLIF(sum(input_tokens), 0), 4) AS output_per_input_token
FROM usage_hourly GROUP BY 1, 2;

-- Share of requests and spend per model in the current calendar month (UTC).
CREATE VIEW usage_model_distribution AS
SELECT model, sum(requests) AS requests, sum(cost_micros) AS cost_micros,
       sum(unpriced_requests) AS unpriced_requests,
       round(100.0 * sum(requests) / NULLIF(sum(sum(requests)) OVER (), 0), 2) AS request_share_pct,
       round(100.0 * sum(cost_micros) / NULLIF(sum(sum(cost_micros)) OVER (), 0), 2) AS spend_share_pct
FROM usage_hourly
WHERE hour >= date_trunc('month', now(), 'UTC')
GROUP BY model;

CREATE VIEW usage_cache_savings_daily AS
SELECT date_trunc('day', hour, 'UTC') AS day, org, team,
       sum(requests) AS requests, sum(cache_hits) AS cache_hits,
       round(100.0 * sum(cache_hits) / NULLIF(sum(requests), 0), 2) AS hit_rate_pct,
       sum(saved_cost_micros) AS saved_cost_micros,
       round(sum(saved_cost_micros)::numeric / 1000000, 6) AS saved_usd
FROM usage_hourly_named GROUP BY 1, 2, 3;

-- Month-to-date spend per org, the daily burn rate over the last 7 full days (integer
-- micro-dollars, rounded), and the projected month-end spend at that rate: month to date plus
-- the burn rate for every day left in the month, today included (UTC calendar). Priced
-- requests only; unpriced_requests_month_to_date says how much spend is unknown.
CREATE VIEW usage_burn_rate AS
WITH bounds AS (
    SELECT date_trunc('month', now(), 'UTC') AS month_start,
           date_trunc('month', now(), 'UTC') + interval '1 month' AS month_end,
           date_trunc('day', now(), 'UTC') AS today
), per_org AS (
    SELECT h.org_id,
           coalesce(sum(h.cost_micros) FILTER (WHERE h.hour >= b.month_start), 0)::bigint AS month_to_date_micros,
           round(coalesce(sum(h.cost_micros) FILTER (WHERE h.hour >= b.today - interval '7 days' AND h.hour < b.today), 0) / 7)::bigint AS daily_burn_micros,
           coalesce(sum(h.unpriced_requests) FILTER (WHERE h.hour >= b.month_start), 0)::bigint AS unpriced_requests_month_to_date
    FROM usage_hourly h CROSS JOIN bounds b
    WHERE h.hour >= least(b.month_start, b.today - interval '7 days')
    GROUP BY h.org_id
), projected AS (
    SELECT p.*,
           p.month_to_date_micros
             + p.daily_burn_micros * round(extract(epoch FROM (b.month_end - b.today)) / 86400)::bigint AS projected_month_micros
    FROM per_org p CROSS JOIN bounds b
)
SELECT coalesce(o.name, p.org_id::text) AS org, p.month_to_date_micros, p.daily_burn_micros,
       p.projected_month_micros,
       round(p.projected_month_micros::numeric / 1000000, 6) AS projected_month_usd,
       p.unpriced_requests_month_to_date
FROM projected p LEFT JOIN orgs o ON o.id = p.org_id;
