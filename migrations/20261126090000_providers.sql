-- Issue 6: provider kinds beyond OpenAI (azure_openai, anthropic, gemini) and per-model
-- upstream deadlines by phase.

ALTER TABLE providers ADD COLUMN api_version TEXT NOT NULL DEFAULT '';
COMMENT ON COLUMN providers.api_version IS
    'azure_openai: the api-version query parameter; anthropic: the anthropic-version header; '
    'empty means the adapter default.';

-- 0 means the edge default for that phase.
ALTER TABLE models
    ADD COLUMN connect_timeout_ms     INTEGER NOT NULL DEFAULT 0 CHECK (connect_timeout_ms >= 0),
    ADD COLUMN first_token_timeout_ms INTEGER NOT NULL DEFAULT 0 CHECK (first_token_timeout_ms >= 0),
    ADD COLUMN idle_timeout_ms        INTEGER NOT NULL DEFAULT 0 CHECK (idle_timeout_ms >= 0),
    ADD COLUMN total_timeout_ms       INTEGER NOT NULL DEFAULT 0 CHECK (total_timeout_ms >= 0);
