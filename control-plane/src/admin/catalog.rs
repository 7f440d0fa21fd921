//! Providers (where requests go, with encrypted credentials) and models (public names mapped to
//! a provider's model, with versioned prices).

use super::AdminApi;
use super::audit::{self, AuditEntry};
use super::provider_kind;
use super::validate::{self, ModelTimeouts};
use crate::error::{AdminError, conflict_as};
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgConnection;
use std::collections::HashMap;
use tollgate_contract::DEFAULT_MAX_OUTPUT_TOKENS;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

const MAX_TIMEOUT_MS: u32 = 3_600_000;
const MAX_MOCK_LATENCY_MS: u32 = 600_000;
const MAX_MOCK_OUTPUT_TOKENS: u32 = 1_000_000;
const MAX_MOCK_CHUNK_INTERVAL_MS: u32 = 60_000;
/// Far above any real model's output window; catches unit mistakes.
const MAX_MAX_OUTPUT_TOKENS: u32 = 10_000_000;

impl AdminApi {
    pub async fn create_provider(
        &self,
        actor: &str,
        request: pb::CreateProviderRequest,
    ) -> Result<pb::Provider, AdminError> {
        let name = validate::entity_name("name", &request.name)?;
        let kind = provider_kind::parse(&request.kind)?;
        let base_url = provider_kind::base_url(kind, &request.base_url)?;
        let api_version = provider_kind::api_version(kind, &request.api_version)?;
        provider_kind::check_api_key(kind, &request.api_key)?;
        let timeout_ms = validate::bounded(
            "request_timeout_ms",
            request.request_timeout_ms,
            MAX_TIMEOUT_MS,
        )?;
        let mock = request.mock.unwrap_or_default();
        let latency_ms =
            validate::bounded("mock.latency_ms", mock.latency_ms, MAX_MOCK_LATENCY_MS)?;
        let output_tokens = validate::bounded(
            "mock.output_tokens",
            mock.output_tokens,
            MAX_MOCK_OUTPUT_TOKENS,
        )?;
        let chunk_interval_ms = validate::bounded(
            "mock.chunk_interval_ms",
            mock.chunk_interval_ms,
            MAX_MOCK_CHUNK_INTERVAL_MS,
        )?;
        let api_key_ciphertext = match request.api_key.trim() {
            "" => None,
            key => Some(self.master_key.encrypt(key)?),
        };

        let mut tx = self.pool.begin().await?;
        let provider_id = sqlx::query_scalar!(
            r#"INSERT INTO providers (name, kind, base_url, api_key_ciphertext, request_timeout_ms,
                                      mock_latency_ms, mock_output_tokens, mock_chunk_interval_ms,
                                      api_version)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"#,
            name,
            kind.as_str(),
            base_url,
            api_key_ciphertext,
            timeout_ms,
            latency_ms,
            output_tokens,
            chunk_interval_ms,
            api_version,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_as("provider", name))?;
        let provider = fetch_providers(&mut tx, Some(provider_id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AdminError::not_found("provider", name))?;
        let entry = AuditEntry {
            actor,
            action: "provider.create",
            target: format!("provider/{name}"),
            before: None,
            after: audit::state(&provider),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(provider)
    }

    pub async fn list_providers(&self) -> Result<pb::ListProvidersResponse, AdminError> {
        let mut conn = self.pool.acquire().await?;
        let providers = fetch_providers(&mut conn, None).await?;
        Ok(pb::ListProvidersResponse { providers })
    }

    pub async fn create_model(
        &self,
        actor: &str,
        request: pb::CreateModelRequest,
    ) -> Result<pb::Model, AdminError> {
        let name = validate::model_name("name", &request.name)?;
        let provider = validate::entity_name("provider", &request.provider)?;
        let upstream_model = if request.upstream_model.is_empty() {
            name
        } else {
            validate::model_name("upstream_model", &request.upstream_model)?
        };
        // Omitted prices mean "unknown", which usage records as unpriced; 0 would mean free.
        let prices = match (
            request.input_price_micros_per_mtok,
            request.output_price_micros_per_mtok,
        ) {
            (Some(input), Some(output)) => Some((
                validate::price("input_price", input)?,
                validate::price("output_price", output)?,
            )),
            (None, None) => None,
            _ => {
                return Err(AdminError::invalid(
                    "input_price",
                    "give both input and output prices, or neither (an unpriced model)",
                ));
            }
        };
        let cached_input_price = request
            .cached_input_price_micros_per_mtok
            .map(|price| validate::price("cached_input_price", price))
            .transpose()?;
        if prices.is_none() && cached_input_price.is_some() {
            return Err(AdminError::invalid(
                "cached_input_price",
                "needs the input and output prices too",
            ));
        }
        // Limits and budgets reserve prompt + this before the call, so it must be a real cap.
        let max_output_tokens = match request.max_output_tokens {
            0 => DEFAULT_MAX_OUTPUT_TOKENS,
            tokens => tokens,
        };
        let max_output_tokens = validate::bounded(
            "max_output_tokens",
            max_output_tokens,
            MAX_MAX_OUTPUT_TOKENS,
        )?;
        let timeouts = validate::model_timeouts(request.timeouts)?;

        let mut tx = self.pool.begin().await?;
        let provider_id = sqlx::query_scalar!("SELECT id FROM providers WHERE name = $1", provider)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| AdminError::not_found("provider", provider))?;
        let model_id = sqlx::query_scalar!(
            r#"INSERT INTO models (name, provider_id, upstream_model, max_output_tokens,
                                   connect_timeout_ms, first_token_timeout_ms, idle_timeout_ms,
                                   total_timeout_ms)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id"#,
            name,
            provider_id,
            upstream_model,
            max_output_tokens,
            timeouts.connect_ms,
            timeouts.first_token_ms,
            timeouts.idle_ms,
            timeouts.total_ms
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_as("model", name))?;
        if let Some((input_price, output_price)) = prices {
            sqlx::query!(
                r#"INSERT INTO model_prices (model_id, version, input_price_micros_per_mtok,
                                             output_price_micros_per_mtok,
                                             cached_input_price_micros_per_mtok)
                   VALUES ($1, 1, $2, $3, $4)"#,
                model_id,
                input_price,
                output_price,
                cached_input_price
            )
            .execute(&mut *tx)
            .await?;
        }
        let model = fetch_model(&mut tx, model_id).await?;
        let entry = AuditEntry {
            actor,
            action: "model.create",
            target: format!("model/{name}"),
            before: None,
            after: audit::state(&model),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(model)
    }

    pub async fn list_models(&self) -> Result<pb::ListModelsResponse, AdminError> {
        let mut conn = self.pool.acquire().await?;
        let models = fetch_models(&mut conn, None).await?;
        Ok(pb::ListModelsResponse { models })
    }

    /// A new price version, effective now or at a later time; usage priced with older versions
    /// keeps them. A time in the past is refused: requests already served were priced with the
    /// version in force then, and rewriting that would make the ledger disagree with what
    /// clients were told. A scheduled version reaches edges in the snapshot this write
    /// publishes, and they switch to it at its time on their own.
    pub async fn set_model_price(
        &self,
        actor: &str,
        request: pb::SetModelPriceRequest,
    ) -> Result<pb::Model, AdminError> {
        let name = validate::model_name("model", &request.model)?;
        let input_price = validate::price("input_price", request.input_price_micros_per_mtok)?;
        let output_price = validate::price("output_price", request.output_price_micros_per_mtok)?;
        let cached_input_price = request
            .cached_input_price_micros_per_mtok
            .map(|price| validate::price("cached_input_price", price))
            .transpose()?;
        let effective_from = match request.effective_from_unix_ms {
            0 => None,
            ms => Some(
                DateTime::<Utc>::from_timestamp_millis(ms)
                    .ok_or_else(|| AdminError::invalid("effective_from", "out of range"))?,
            ),
        };
        let mut tx = self.pool.begin().await?;
        // The database clock decides, as it also stamps "now" when no time is given.
        if let Some(at) = effective_from {
            let in_past = sqlx::query_scalar!(r#"SELECT $1 < now() AS "past!""#, at)
                .fetch_one(&mut *tx)
                .await?;
            if in_past {
                return Err(AdminError::invalid(
                    "effective_from",
                    format!(
                        "{} is in the past; use 0 (now) or a later time",
                        at.to_rfc3339_opts(SecondsFormat::Millis, true)
                    ),
                ));
            }
        }
        // FOR UPDATE serialises concurrent price changes of one model, so versions never collide.
        let model_id =
            sqlx::query_scalar!("SELECT id FROM models WHERE name = $1 FOR UPDATE", name)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| AdminError::not_found("model", name))?;
        let before = fetch_model(&mut tx, model_id).await?;
        sqlx::query!(
            r#"INSERT INTO model_prices (model_id, version, input_price_micros_per_mtok,
                                         output_price_micros_per_mtok,
                                         cached_input_price_micros_per_mtok, effective_from)
               SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, COALESCE($5, now())
               FROM model_prices WHERE model_id = $1"#,
            model_id,
            input_price,
            output_price,
            cached_input_price,
            effective_from
        )
        .execute(&mut *tx)
        .await?;
        let after = fetch_model(&mut tx, model_id).await?;
        let entry = AuditEntry {
            actor,
            action: "model.set_price",
            target: format!("model/{name}"),
            before: audit::state(&before),
            after: audit::state(&after),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(after)
    }

    /// Replaces all four upstream deadlines of a model (a phase given as 0 goes back to the
    /// edge default). Edges apply them to calls that start after the new snapshot arrives;
    /// calls in flight keep the deadlines they started with.
    pub async fn set_model_timeouts(
        &self,
        actor: &str,
        request: pb::SetModelTimeoutsRequest,
    ) -> Result<pb::Model, AdminError> {
        let name = validate::model_name("model", &request.model)?;
        let timeouts = validate::model_timeouts(request.timeouts)?;
        let mut tx = self.pool.begin().await?;
        let model_id =
            sqlx::query_scalar!("SELECT id FROM models WHERE name = $1 FOR UPDATE", name)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| AdminError::not_found("model", name))?;
        let before = fetch_model(&mut tx, model_id).await?;
        sqlx::query!(
            r#"UPDATE models SET connect_timeout_ms = $2, first_token_timeout_ms = $3,
                                 idle_timeout_ms = $4, total_timeout_ms = $5
               WHERE id = $1"#,
            model_id,
            timeouts.connect_ms,
            timeouts.first_token_ms,
            timeouts.idle_ms,
            timeouts.total_ms
        )
        .execute(&mut *tx)
        .await?;
        let after = fetch_model(&mut tx, model_id).await?;
        let entry = AuditEntry {
            actor,
            action: "model.set_timeouts",
            target: format!("model/{name}"),
            before: audit::state(&before),
            after: audit::state(&after),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(after)
    }
}

async fn fetch_providers(
    conn: &mut PgConnection,
    provider_id: Option<Uuid>,
) -> Result<Vec<pb::Provider>, AdminError> {
    let providers = sqlx::query!(
        r#"SELECT id, name, kind, base_url, api_key_ciphertext IS NOT NULL AS "has_api_key!",
                  request_timeout_ms, mock_latency_ms, mock_output_tokens, mock_chunk_interval_ms,
                  api_version, created_at
           FROM providers WHERE ($1::uuid IS NULL OR id = $1) ORDER BY name"#,
        provider_id
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|row| pb::Provider {
        id: row.id.to_string(),
        name: row.name,
        mock: (row.kind == "mock").then(|| pb::MockSettings {
            latency_ms: u32::try_from(row.mock_latency_ms).unwrap_or(0),
            output_tokens: u32::try_from(row.mock_output_tokens).unwrap_or(0),
            chunk_interval_ms: u32::try_from(row.mock_chunk_interval_ms).unwrap_or(0),
        }),
        kind: row.kind,
        base_url: row.base_url,
        has_api_key: row.has_api_key,
        request_timeout_ms: u32::try_from(row.request_timeout_ms).unwrap_or(0),
        created_at_unix_ms: row.created_at.timestamp_millis(),
        api_version: row.api_version,
    })
    .collect();
    Ok(providers)
}

async fn fetch_model(conn: &mut PgConnection, model_id: Uuid) -> Result<pb::Model, AdminError> {
    fetch_models(conn, Some(model_id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AdminError::not_found("model", model_id.to_string()))
}

/// Models with the price version in force now and the versions scheduled after it. "In force"
/// follows the rule edges apply: the latest `effective_from` not in the future, the highest
/// version on a tie.
async fn fetch_models(
    conn: &mut PgConnection,
    model_id: Option<Uuid>,
) -> Result<Vec<pb::Model>, AdminError> {
    let mut scheduled: HashMap<Uuid, Vec<pb::ScheduledPrice>> = HashMap::new();
    let upcoming = sqlx::query!(
        r#"SELECT model_id, version, effective_from, input_price_micros_per_mtok,
                  output_price_micros_per_mtok, cached_input_price_micros_per_mtok
           FROM model_prices
           WHERE effective_from > now() AND ($1::uuid IS NULL OR model_id = $1)
           ORDER BY model_id, effective_from, version"#,
        model_id
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in upcoming {
        scheduled
            .entry(row.model_id)
            .or_default()
            .push(pb::ScheduledPrice {
                version: u32::try_from(row.version).unwrap_or(0),
                effective_from_unix_ms: row.effective_from.timestamp_millis(),
                input_price_micros_per_mtok: row.input_price_micros_per_mtok,
                output_price_micros_per_mtok: row.output_price_micros_per_mtok,
                cached_input_price_micros_per_mtok: row.cached_input_price_micros_per_mtok,
            });
    }
    let models = sqlx::query!(
        r#"SELECT m.id, m.name, pr.name AS provider, m.upstream_model, m.created_at,
                  m.max_output_tokens, m.connect_timeout_ms, m.first_token_timeout_ms,
                  m.idle_timeout_ms, m.total_timeout_ms,
                  p.version AS "price_version?",
                  p.input_price_micros_per_mtok AS "input_price_micros_per_mtok?",
                  p.output_price_micros_per_mtok AS "output_price_micros_per_mtok?",
                  p.cached_input_price_micros_per_mtok,
                  p.effective_from AS "effective_from?"
           FROM models m
           JOIN providers pr ON pr.id = m.provider_id
           LEFT JOIN LATERAL (
               SELECT version, input_price_micros_per_mtok, output_price_micros_per_mtok,
                      cached_input_price_micros_per_mtok, effective_from
               FROM model_prices WHERE model_id = m.id AND effective_from <= now()
               ORDER BY effective_from DESC, version DESC LIMIT 1
           ) p ON TRUE
           WHERE ($1::uuid IS NULL OR m.id = $1)
           ORDER BY m.name"#,
        model_id
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|row| pb::Model {
        id: row.id.to_string(),
        scheduled_prices: scheduled.remove(&row.id).unwrap_or_default(),
        name: row.name,
        provider: row.provider,
        upstream_model: row.upstream_model,
        input_price_micros_per_mtok: row.input_price_micros_per_mtok.unwrap_or(0),
        output_price_micros_per_mtok: row.output_price_micros_per_mtok.unwrap_or(0),
        cached_input_price_micros_per_mtok: row.cached_input_price_micros_per_mtok,
        price_version: row
            .price_version
            .map_or(0, |v| u32::try_from(v).unwrap_or(0)),
        price_effective_from_unix_ms: row.effective_from.map_or(0, |at| at.timestamp_millis()),
        created_at_unix_ms: row.created_at.timestamp_millis(),
        max_output_tokens: u32::try_from(row.max_output_tokens).unwrap_or(0),
        timeouts: Some(
            ModelTimeouts {
                connect_ms: row.connect_timeout_ms,
                first_token_ms: row.first_token_timeout_ms,
                idle_ms: row.idle_timeout_ms,
                total_ms: row.total_timeout_ms,
            }
            .to_wire(),
        ),
    })
    .collect();
    Ok(models)
}
