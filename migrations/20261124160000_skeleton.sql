-- Walking skeleton schema: tenancy, virtual keys, providers, models with versioned prices,
-- the config version every admin write bumps, edges, and the admin audit log.

CREATE TABLE orgs (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name        TEXT NOT NULL UNIQUE CHECK (name <> ''),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE teams (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      UUID NOT NULL REFERENCES orgs(id),
    name        TEXT NOT NULL CHECK (name <> ''),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);

CREATE TABLE projects (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id     UUID NOT NULL REFERENCES teams(id),
    name        TEXT NOT NULL CHECK (name <> ''),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (team_id, name)
);

CREATE TABLE users (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      UUID NOT NULL REFERENCES orgs(id),
    name        TEXT NOT NULL CHECK (name <> ''),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);

CREATE TABLE virtual_keys (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name            TEXT NOT NULL DEFAULT '',
    key_hash        BYTEA NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    key_prefix      TEXT NOT NULL,
    org_id          UUID NOT NULL REFERENCES orgs(id),
    team_id         UUID NOT NULL REFERENCES teams(id),
    project_id      UUID NOT NULL REFERENCES projects(id),
    user_id         UUID REFERENCES users(id),
    allowed_models  TEXT[] NOT NULL DEFAULT '{}',
    expires_at      TIMESTAMPTZ,
    revoked_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON COLUMN virtual_keys.key_hash IS 'SHA-256 of the plaintext key; the plaintext is never stored.';
COMMENT ON COLUMN virtual_keys.allowed_models IS 'Public model names the key may call; empty means all.';
CREATE INDEX virtual_keys_prefix ON virtual_keys (key_prefix);

-- No CHECK on kind: a newer control plane may know kinds an older edge does not, and the edge
-- is the one that must refuse (NACK) what it cannot serve. The admin API validates kinds.
CREATE TABLE providers (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name                TEXT NOT NULL UNIQUE CHECK (name <> ''),
    kind                TEXT NOT NULL,
    base_url            TEXT NOT NULL DEFAULT '',
    api_key_ciphertext  BYTEA,
    request_timeout_ms  INTEGER NOT NULL DEFAULT 0 CHECK (request_timeout_ms >= 0),
    mock_latency_ms         INTEGER NOT NULL DEFAULT 0 CHECK (mock_latency_ms >= 0),
    mock_output_tokens      INTEGER NOT NULL DEFAULT 0 CHECK (mock_output_tokens >= 0),
    mock_chunk_interval_ms  INTEGER NOT NULL DEFAULT 0 CHECK (mock_chunk_interval_ms >= 0),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON COLUMN providers.api_key_ciphertext IS
    'AES-256-GCM under TOLLGATE_MASTER_KEY: 12-byte nonce followed by ciphertext and tag.';

CREATE TABLE models (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name            TEXT NOT NULL UNIQUE CHECK (name <> ''),
    provider_id     UUID NOT NULL REFERENCES providers(id),
    upstream_model  TEXT NOT NULL CHECK (upstream_model <> ''),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Prices are versioned: a change inserts a new version effective from a time, so usage that
-- was priced with an older version can always be explained.
CREATE TABLE model_prices (
    model_id                       UUID NOT NULL REFERENCES models(id),
    version                        INTEGER NOT NULL CHECK (version > 0),
    input_price_micros_per_mtok    BIGINT NOT NULL CHECK (input_price_micros_per_mtok >= 0),
    output_price_micros_per_mtok   BIGINT NOT NULL CHECK (output_price_micros_per_mtok >= 0),
    effective_from                 TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, version)
);
COMMENT ON COLUMN model_prices.input_price_micros_per_mtok IS
    'Integer micro-dollars (1e-6 USD) per one million input tokens.';
COMMENT ON COLUMN model_prices.output_price_micros_per_mtok IS
    'Integer micro-dollars (1e-6 USD) per one million output tokens.';

-- One row: the version of the whole configuration. Every admin write bumps it in its own
-- transaction through tollgate_bump_config_version(), which also notifies listening control
-- planes (delivered at commit, so edges never see uncommitted config).
CREATE TABLE config_version (
    singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version     BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO config_version (version) VALUES (1);

CREATE FUNCTION tollgate_bump_config_version() RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    new_version BIGINT;
BEGIN
    UPDATE config_version SET version = version + 1, updated_at = now()
        RETURNING version INTO new_version;
    PERFORM pg_notify('tollgate_config', new_version::text);
    RETURN new_version;
END;
$$;

CREATE TABLE edge_join_tokens (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name        TEXT NOT NULL DEFAULT '',
    token_hash  BYTEA NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

CREATE TABLE edges (
    edge_id             TEXT PRIMARY KEY,
    region              TEXT NOT NULL DEFAULT '',
    build_version       TEXT NOT NULL DEFAULT '',
    config_version      BIGINT NOT NULL DEFAULT 0,
    connected           BOOLEAN NOT NULL DEFAULT FALSE,
    -- The stream session that set `connected`; a stale session's disconnect must not clear
    -- the flag that a newer session of the same edge has set.
    session_id          UUID,
    first_seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_nack_version   BIGINT,
    last_nack_reason    TEXT,
    last_nack_at        TIMESTAMPTZ
);

CREATE TABLE admin_audit_log (
    id          BIGSERIAL PRIMARY KEY,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    before      JSONB,
    after       JSONB,
    config_version BIGINT,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX admin_audit_log_at ON admin_audit_log (at);
