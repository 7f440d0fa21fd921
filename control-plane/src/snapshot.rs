//! Builds the config snapshot edges receive: every org, team, project, user, provider (with its
//! decrypted secret and API version), model (with its prices and upstream deadlines) and
//! configured limit, read in one repeatable-read transaction so a snapshot is always one
//! consistent version. Virtual keys are not in it: they travel as deltas (`key_feed`), so a
//! snapshot stays small however many tenants there are. The newest build is cached: a thousand
//! edges asking for version N cost one build.

use crate::crypto::MasterKey;
use crate::db;
use crate::error::AdminError;
use crate::limits::Level;
use crate::limits::policy::{self, LimitFilter};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Mutex;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

#[derive(Debug)]
pub struct SnapshotBuilder {
    pool: PgPool,
    master_key: MasterKey,
    latest: Mutex<Option<Arc<pb::ConfigSnapshot>>>,
}

impl SnapshotBuilder {
    pub fn new(pool: PgPool, master_key: MasterKey) -> Self {
        Self {
            pool,
            master_key,
            latest: Mutex::new(None),
        }
    }

    /// A snapshot at `at_least` or newer, built once per version.
    pub async fn snapshot(&self, at_least: u64) -> Result<Arc<pb::ConfigSnapshot>, AdminError> {
        let mut latest = self.latest.lock().await;
        if let Some(snapshot) = latest.as_ref()
            && snapshot.version >= at_least
        {
            return Ok(Arc::clone(snapshot));
        }
        let built = Arc::new(self.build().await?);
        *latest = Some(Arc::clone(&built));
        Ok(built)
    }

    async fn build(&self) -> Result<pb::ConfigSnapshot, AdminError> {
        let (mut tx, version) = db::read_at_config_version(&self.pool).await?;

        let orgs = sqlx::query!("SELECT id, name, time_zone FROM orgs ORDER BY name")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|row| pb::SnapshotOrg {
                id: row.id.to_string(),
                name: row.name,
                time_zone: row.time_zone,
            })
            .collect();
        let teams = sqlx::query!("SELECT id, org_id, name FROM teams ORDER BY name")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|row| pb::SnapshotTeam {
                id: row.id.to_string(),
                org_id: row.org_id.to_string(),
                name: row.name,
            })
            .collect();
        let projects = sqlx::query!("SELECT id, team_id, name FROM projects ORDER BY name")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|row| pb::SnapshotProject {
                id: row.id.to_string(),
                team_id: row.team_id.to_string(),
                name: row.name,
            })
            .collect();
        let users = sqlx::query!("SELECT id, org_id, name FROM users ORDER BY name")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|row| pb::SnapshotUser {
                id: row.id.to_string(),
                org_id: row.org_id.to_string(),
                name: row.name,
            })
            .collect();
        let provider_rows = sqlx::query!(
            r#"SELECT id, name, kind, base_url, api_key_ciphertext, request_timeout_ms,
                      mock_latency_ms, mock_output_tokens, mock_chunk_interval_ms, api_version
               FROM providers ORDER BY name"#
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut providers = Vec::with_capacity(provider_rows.len());
        for row in provider_rows {
            let api_key = match row.api_key_ciphertext {
                Some(sealed) => self.master_key.decrypt(&sealed)?,
                None => String::new(),
            };
            providers.push(pb::SnapshotProvider {
                id: row.id.to_string(),
                name: row.name,
                kind: row.kind,
                base_url: row.base_url,
                api_key,
                request_timeout_ms: non_negative(row.request_timeout_ms),
                mock: Some(pb::MockSettings {
                    latency_ms: non_negative(row.mock_latency_ms),
                    output_tokens: non_negative(row.mock_output_tokens),
                    chunk_interval_ms: non_negative(row.mock_chunk_interval_ms),
                }),
                api_version: row.api_version,
            });
        }

        let mut prices = price_schedules(&mut tx).await?;
        let models = sqlx::query!(
            r#"SELECT id, name, provider_id, upstream_model, max_output_tokens,
                      connect_timeout_ms, first_token_timeout_ms, idle_timeout_ms,
                      total_timeout_ms
               FROM models ORDER BY name"#
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| {
            let schedule = prices.remove(&row.id).unwrap_or_default();
            let current = schedule.current.unwrap_or_default();
            pb::SnapshotModel {
                id: row.id.to_string(),
                name: row.name,
                provider_id: row.provider_id.to_string(),
                upstream_model: row.upstream_model,
                input_price_micros_per_mtok: current.input_price_micros_per_mtok,
                output_price_micros_per_mtok: current.output_price_micros_per_mtok,
                price_version: current.version,
                prices: schedule.versions,
                max_output_tokens: non_negative(row.max_output_tokens),
                timeouts: Some(pb::ModelTimeouts {
                    connect_ms: non_negative(row.connect_timeout_ms),
                    first_token_ms: non_negative(row.first_token_timeout_ms),
                    idle_ms: non_negative(row.idle_timeout_ms),
                    total_ms: non_negative(row.total_timeout_ms),
                }),
            }
        })
        .collect();
        let limits = snapshot_limits(&mut tx).await?;
        tx.commit().await?;

        Ok(pb::ConfigSnapshot {
            version,
            generated_at_unix_ms: Utc::now().timestamp_millis(),
            orgs,
            teams,
            projects,
            users,
            virtual_keys: Vec::new(),
            providers,
            models,
            limits,
            keys_by_delta: true,
        })
    }
}

/// Every configured limit, named for error messages. Limits of keys that are revoked or expired
/// are left out: no edge holds those keys, and their counters would only cost lease traffic.
async fn snapshot_limits(conn: &mut PgConnection) -> Result<Vec<pb::SnapshotLimit>, AdminError> {
    let dead_keys: HashSet<Uuid> = sqlx::query_scalar!(
        r#"SELECT k.id FROM virtual_keys k JOIN limits l ON l.scope_kind = 'key' AND l.scope_id = k.id
           WHERE k.revoked_at IS NOT NULL OR (k.expires_at IS NOT NULL AND k.expires_at <= now())"#
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let limits = policy::load(conn, LimitFilter::All)
        .await?
        .into_iter()
        .filter(|limit| limit.scope.kind != Level::Key || !dead_keys.contains(&limit.scope.id))
        .map(|limit| pb::SnapshotLimit {
            key: Some(pb::LimitKey {
                scope: pb::LimitScope::from(limit.scope.kind) as i32,
                scope_id: limit.scope.id.to_string(),
                metric: pb::LimitMetric::from(limit.metric) as i32,
            }),
            limit: limit.limit,
            soft_threshold_pct: limit.soft_threshold_pct,
            hard_threshold_pct: limit.hard_threshold_pct,
            scope_name: limit.scope.display_name(),
        })
        .collect();
    Ok(limits)
}

/// One model's price versions as edges need them.
#[derive(Debug, Default)]
struct PriceSchedule {
    /// Oldest first: the version in force now (if any), then every scheduled one.
    versions: Vec<pb::SnapshotPrice>,
    /// The version in force when the snapshot was read, for the single-price fields.
    current: Option<pb::SnapshotPrice>,
}

/// Every price version in force now or later, per model. A version is in force from its
/// `effective_from` until the next version by `(effective_from, version)` starts, which is the
/// rule edges apply too; versions that have been superseded can no longer price a new request
/// and are left out.
async fn price_schedules(
    conn: &mut PgConnection,
) -> Result<HashMap<Uuid, PriceSchedule>, AdminError> {
    let rows = sqlx::query!(
        r#"SELECT model_id, version, effective_from, input_price_micros_per_mtok,
                  output_price_micros_per_mtok,
                  COALESCE(cached_input_price_micros_per_mtok, input_price_micros_per_mtok)
                      AS "cached_input_price_micros_per_mtok!",
                  effective_from <= now() AS "in_force!"
           FROM model_prices
           WHERE effective_from > now()
              OR (model_id, version) IN (
                  SELECT DISTINCT ON (model_id) model_id, version
                  FROM model_prices
                  WHERE effective_from <= now()
                  ORDER BY model_id, effective_from DESC, version DESC)
           ORDER BY model_id, effective_from, version"#
    )
    .fetch_all(conn)
    .await?;
    let mut schedules: HashMap<Uuid, PriceSchedule> = HashMap::new();
    for row in rows {
        let price = pb::SnapshotPrice {
            version: non_negative(row.version),
            effective_from_unix_ms: row.effective_from.timestamp_millis(),
            input_price_micros_per_mtok: row.input_price_micros_per_mtok,
            output_price_micros_per_mtok: row.output_price_micros_per_mtok,
            cached_input_price_micros_per_mtok: row.cached_input_price_micros_per_mtok,
        };
        let schedule = schedules.entry(row.model_id).or_default();
        if row.in_force {
            schedule.current = Some(price);
        }
        schedule.versions.push(price);
    }
    Ok(schedules)
}

pub fn unix_ms_or_zero(at: Option<DateTime<Utc>>) -> i64 {
    at.map_or(0, |at| at.timestamp_millis())
}

fn non_negative(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}
