-- Limits, quotas and budgets: what is configured (limits), and the lease state that enforces
-- them across edges (limit_counters, limit_leases, limit_window_usage), plus threshold alerts.
-- Every lease write locks its counter row, so control-plane replicas serialise on Postgres and
-- never grant the same capacity twice.

ALTER TABLE orgs ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC' CHECK (time_zone <> '');
COMMENT ON COLUMN orgs.time_zone IS
    'IANA time zone; calendar quotas and budgets reset at its hour, day and month boundaries.';

ALTER TABLE models ADD COLUMN max_output_tokens INTEGER NOT NULL DEFAULT 4096
    CHECK (max_output_tokens > 0);
COMMENT ON COLUMN models.max_output_tokens IS
    'Output cap assumed when a request sets no max_tokens: admission reserves prompt + this.';

CREATE TABLE limits (
    scope_kind          TEXT NOT NULL CHECK (scope_kind IN ('org', 'team', 'project', 'user', 'key')),
    scope_id            UUID NOT NULL,
    -- Owner org of the scope, for listing and for the org's time zone.
    org_id              UUID NOT NULL REFERENCES orgs(id),
    metric              TEXT NOT NULL CHECK (metric IN (
                            'requests_per_minute', 'tokens_per_minute', 'tokens_per_hour',
                            'tokens_per_day', 'tokens_per_month', 'budget_micros_per_month',
                            'concurrent_requests')),
    limit_value         BIGINT NOT NULL CHECK (limit_value > 0),
    soft_threshold_pct  INTEGER NOT NULL DEFAULT 80 CHECK (soft_threshold_pct BETWEEN 1 AND 1000),
    hard_threshold_pct  INTEGER NOT NULL DEFAULT 100 CHECK (hard_threshold_pct BETWEEN 1 AND 1000),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_kind, scope_id, metric)
);
COMMENT ON COLUMN limits.limit_value IS
    'Requests, tokens (input + output), integer micro-dollars (budgets) or concurrent requests.';
CREATE INDEX limits_org ON limits (org_id);

-- One row per limit and calendar period; sliding windows and concurrency use a single row with
-- period_start = epoch and period_end NULL.
CREATE TABLE limit_counters (
    id              BIGSERIAL PRIMARY KEY,
    scope_kind      TEXT NOT NULL,
    scope_id        UUID NOT NULL,
    metric          TEXT NOT NULL,
    period_start    TIMESTAMPTZ NOT NULL,
    period_end      TIMESTAMPTZ,
    -- Calendar periods only: units spent in the period. Edges' reported consumption, plus the
    -- usage ledger's figure when the limit's first period began mid-way, plus the unspent part of
    -- leases that expired unreported (counted as spent until their edge reports back).
    consumed        BIGINT NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (scope_kind, scope_id, metric, period_start)
);

-- One row per counter and edge session. Figures are cumulative for the session and period.
CREATE TABLE limit_leases (
    counter_id      BIGINT NOT NULL REFERENCES limit_counters(id) ON DELETE CASCADE,
    session_id      TEXT NOT NULL,
    edge_id         TEXT NOT NULL,
    granted_total   BIGINT NOT NULL,
    consumed_total  BIGINT NOT NULL,
    reserved        BIGINT NOT NULL DEFAULT 0,
    want_available  BIGINT NOT NULL DEFAULT 0,
    expires_at      TIMESTAMPTZ NOT NULL,
    -- Units charged as spent when the lease expired unreported; undone if the session returns.
    expired_charge  BIGINT NOT NULL DEFAULT 0,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (counter_id, session_id)
);

-- Sliding windows: units reported per second of the plane's clock. A report is placed at the
-- second it arrived, never earlier than the spending, so the window only ever over-counts.
CREATE TABLE limit_window_usage (
    counter_id  BIGINT NOT NULL REFERENCES limit_counters(id) ON DELETE CASCADE,
    second      TIMESTAMPTZ NOT NULL,
    units       BIGINT NOT NULL,
    PRIMARY KEY (counter_id, second)
);

CREATE TABLE limit_alerts (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    scope_kind              TEXT NOT NULL,
    scope_id                UUID NOT NULL,
    org_id                  UUID NOT NULL REFERENCES orgs(id),
    metric                  TEXT NOT NULL,
    kind                    TEXT NOT NULL CHECK (kind IN ('soft', 'hard')),
    threshold_pct           INTEGER NOT NULL,
    used                    BIGINT NOT NULL,
    limit_value             BIGINT NOT NULL,
    period_start            TIMESTAMPTZ NOT NULL,
    period_end              TIMESTAMPTZ NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    webhook_delivered_at    TIMESTAMPTZ,
    webhook_attempts        INTEGER NOT NULL DEFAULT 0,
    webhook_last_error      TEXT,
    -- When delivery is tried next: set from the last failed attempt, so an alert that waited
    -- through a receiver outage (or recorded before a webhook was configured) is not retried
    -- in a burst.
    webhook_next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- One alert of each kind per limit and period.
    UNIQUE (scope_kind, scope_id, metric, period_start, kind)
);
CREATE INDEX limit_alerts_created ON limit_alerts (created_at);
CREATE INDEX limit_alerts_undelivered ON limit_alerts (webhook_next_attempt_at)
    WHERE webhook_delivered_at IS NULL;
