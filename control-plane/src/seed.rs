//! `tollgate-cp seed-demo`: a demo org/team/project, the built-in mock provider with two chat
//! models and an embeddings model, generous limits on the demo team, a fresh virtual key and a
//! fresh edge join token, so the gateway answers offline out of the box.
//! Re-running reuses what exists and mints a new key and token (their plaintext is never stored).

use crate::admin::audit::{self, AuditEntry};
use crate::error::AdminError;
use crate::limits::{Level, Metric};
use crate::secrets::{self, JOIN_TOKEN_PREFIX, VIRTUAL_KEY_PREFIX};
use serde::Serialize;
use sqlx::PgPool;

pub const DEMO_ORG: &str = "demo";
pub const DEMO_TEAM: &str = "demo-team";
pub const DEMO_PROJECT: &str = "demo-project";
pub const DEMO_PROVIDER: &str = "mock";

/// (public name, input price, output price) in micro-dollars per 1M tokens. `mock-embed` serves
/// `/v1/embeddings`, priced like OpenAI's text-embedding-3-small ($0.02 per 1M input tokens;
/// embeddings produce no output tokens), so the demo bills every endpoint offline.
const DEMO_MODELS: &[(&str, i64, i64)] = &[
    ("mock-small", 100_000, 400_000),
    ("mock-large", 2_000_000, 8_000_000),
    ("mock-embed", 20_000, 0),
];

/// Limits of the demo team, high enough never to bother someone trying the gateway (or the
/// end-to-end tests, which send a few hundred requests at most), but present so every demo
/// response shows the `x-ratelimit-*` headers: 1000 requests and 1M tokens per minute, and a
/// $50 monthly budget.
const DEMO_TEAM_LIMITS: &[(Metric, i64)] = &[
    (Metric::RequestsPerMinute, 1_000),
    (Metric::TokensPerMinute, 1_000_000),
    (Metric::BudgetMicrosPerMonth, 50_000_000),
];

/// What a script needs to use the demo, printed by `seed-demo --output json`.
#[derive(Debug, Serialize)]
pub struct DemoSeed {
    pub org: String,
    pub team: String,
    pub project: String,
    pub key: String,
    pub key_id: String,
    pub join_token: String,
    pub models: Vec<String>,
}

pub async fn seed_demo(pool: &PgPool) -> Result<DemoSeed, AdminError> {
    let mut tx = pool.begin().await?;
    let org_id = sqlx::query_scalar!(
        "INSERT INTO orgs (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        DEMO_ORG
    )
    .fetch_one(&mut *tx)
    .await?;
    let team_id = sqlx::query_scalar!(
        r#"INSERT INTO teams (org_id, name) VALUES ($1, $2)
           ON CONFLICT (org_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id"#,
        org_id,
        DEMO_TEAM
    )
    .fetch_one(&mut *tx)
    .await?;
    let project_id = sqlx::query_scalar!(
        r#"INSERT INTO projects (team_id, name) VALUES ($1, $2)
           ON CONFLICT (team_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id"#,
        team_id,
        DEMO_PROJECT
    )
    .fetch_one(&mut *tx)
    .await?;
    // A little latency and pacing so the demo streams visibly.
    let provider_id = sqlx::query_scalar!(
        r#"INSERT INTO providers (name, kind, mock_latency_ms, mock_output_tokens, mock_chunk_interval_ms)
           VALUES ($1, 'mock', 20, 24, 15)
           ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id"#,
        DEMO_PROVIDER
    )
    .fetch_one(&mut *tx)
    .await?;
    for (name, input_price, output_price) in DEMO_MODELS {
        let created = sqlx::query_scalar!(
            r#"INSERT INTO models (name, provider_id, upstream_model) VALUES ($1, $2, $1)
               ON CONFLICT (name) DO NOTHING RETURNING id"#,
            name,
            provider_id
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(model_id) = created {
            sqlx::query!(
                r#"INSERT INTO model_prices (model_id, version, input_price_micros_per_mtok,
                                             output_price_micros_per_mtok)
                   VALUES ($1, 1, $2, $3)"#,
                model_id,
                input_price,
                output_price
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    // An operator's later change to these limits survives re-seeding.
    let metrics: Vec<String> = DEMO_TEAM_LIMITS
        .iter()
        .map(|(metric, _)| metric.as_str().to_owned())
        .collect();
    let values: Vec<i64> = DEMO_TEAM_LIMITS.iter().map(|(_, value)| *value).collect();
    sqlx::query!(
        r#"INSERT INTO limits (scope_kind, scope_id, org_id, metric, limit_value)
           SELECT $1, $2, $3, l.metric, l.limit_value
           FROM UNNEST($4::text[], $5::bigint[]) AS l(metric, limit_value)
           ON CONFLICT (scope_kind, scope_id, metric) DO NOTHING"#,
        Level::Team.as_str(),
        team_id,
        org_id,
        &metrics,
        &values
    )
    .execute(&mut *tx)
    .await?;
    let key = secrets::mint(VIRTUAL_KEY_PREFIX);
    let key_id = sqlx::query_scalar!(
        r#"INSERT INTO virtual_keys (name, key_hash, key_prefix, org_id, team_id, project_id)
           VALUES ('demo-key', $1, $2, $3, $4, $5) RETURNING id"#,
        &key.hash[..],
        key.display_prefix(),
        org_id,
        team_id,
        project_id
    )
    .fetch_one(&mut *tx)
    .await?;
    let join_token = secrets::mint(JOIN_TOKEN_PREFIX);
    sqlx::query!(
        "INSERT INTO edge_join_tokens (name, token_hash) VALUES ('demo', $1)",
        &join_token.hash[..]
    )
    .execute(&mut *tx)
    .await?;
    let entry = AuditEntry {
        actor: "seed-demo",
        action: "demo.seed",
        target: format!("org/{DEMO_ORG}"),
        before: None,
        after: Some(
            serde_json::json!({ "virtual_key": key_id.to_string(), "prefix": key.display_prefix() }),
        ),
    };
    audit::commit_config_write(tx, entry).await?;
    Ok(DemoSeed {
        org: DEMO_ORG.to_owned(),
        team: DEMO_TEAM.to_owned(),
        project: DEMO_PROJECT.to_owned(),
        key: key.plaintext,
        key_id: key_id.to_string(),
        join_token: join_token.plaintext,
        models: DEMO_MODELS
            .iter()
            .map(|(name, _, _)| (*name).to_owned())
            .collect(),
    })
}
