//! Virtual keys: minted here, shown in plaintext exactly once, stored as a hash, revocable.

use super::AdminApi;
use super::audit::{self, AuditEntry};
use super::tenancy::{org_id, team_id};
use super::validate;
use crate::error::AdminError;
use crate::secrets::{self, VIRTUAL_KEY_PREFIX};
use crate::snapshot::unix_ms_or_zero;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

impl AdminApi {
    pub async fn create_virtual_key(
        &self,
        actor: &str,
        request: pb::CreateVirtualKeyRequest,
    ) -> Result<pb::CreateVirtualKeyResponse, AdminError> {
        let org = validate::entity_name("org", &request.org)?;
        let team = validate::entity_name("team", &request.team)?;
        let project = validate::entity_name("project", &request.project)?;
        let user = if request.user.is_empty() {
            None
        } else {
            Some(validate::entity_name("user", &request.user)?)
        };
        if !request.name.is_empty() {
            validate::entity_name("name", &request.name)?;
        }
        let expires_at = match request.expires_at_unix_ms {
            0 => None,
            ms => {
                let at = DateTime::<Utc>::from_timestamp_millis(ms)
                    .ok_or_else(|| AdminError::invalid("expires_at", "out of range"))?;
                if at <= Utc::now() {
                    return Err(AdminError::invalid("expires_at", "must be in the future"));
                }
                Some(at)
            }
        };
        for model in &request.allowed_models {
            validate::model_name("allowed_models", model)?;
        }

        let mut tx = self.pool.begin().await?;
        let org_id = org_id(&mut tx, org).await?;
        let team_id = team_id(&mut tx, org_id, org, team).await?;
        let project_id = sqlx::query_scalar!(
            "SELECT id FROM projects WHERE team_id = $1 AND name = $2",
            team_id,
            project
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| AdminError::not_found("project", format!("{org}/{team}/{project}")))?;
        let user_id = match user {
            None => None,
            Some(user) => Some(
                sqlx::query_scalar!(
                    "SELECT id FROM users WHERE org_id = $1 AND name = $2",
                    org_id,
                    user
                )
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| AdminError::not_found("user", format!("{org}/{user}")))?,
            ),
        };
        let known: Vec<String> = sqlx::query_scalar!(
            "SELECT name FROM models WHERE name = ANY($1)",
            &request.allowed_models
        )
        .fetch_all(&mut *tx)
        .await?;
        if let Some(unknown) = request
            .allowed_models
            .iter()
            .find(|model| !known.contains(model))
        {
            return Err(AdminError::invalid(
                "allowed_models",
                format!("unknown model '{unknown}'"),
            ));
        }

        let minted = secrets::mint(VIRTUAL_KEY_PREFIX);
        let key_id = sqlx::query_scalar!(
            r#"INSERT INTO virtual_keys (name, key_hash, key_prefix, org_id, team_id, project_id,
                                         user_id, allowed_models, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"#,
            request.name,
            &minted.hash[..],
            minted.display_prefix(),
            org_id,
            team_id,
            project_id,
            user_id,
            &request.allowed_models,
            expires_at,
        )
        .fetch_one(&mut *tx)
        .await?;
        let key = fetch_key(&mut tx, key_id).await?;
        let entry = AuditEntry {
            actor,
            action: "virtual_key.create",
            target: format!("virtual_key/{key_id}"),
            before: None,
            after: audit::state(&key),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(pb::CreateVirtualKeyResponse {
            key: Some(key),
            plaintext: minted.plaintext,
        })
    }

    pub async fn list_virtual_keys(
        &self,
        request: pb::ListVirtualKeysRequest,
    ) -> Result<pb::ListVirtualKeysResponse, AdminError> {
        let mut conn = self.pool.acquire().await?;
        let org_filter = if request.org.is_empty() {
            None
        } else {
            Some(org_id(&mut conn, &request.org).await?)
        };
        let keys = fetch_keys(&mut conn, org_filter, None).await?;
        Ok(pb::ListVirtualKeysResponse { keys })
    }

    /// Revoking is idempotent: revoking a revoked key returns it unchanged.
    pub async fn revoke_virtual_key(
        &self,
        actor: &str,
        request: pb::RevokeVirtualKeyRequest,
    ) -> Result<pb::VirtualKey, AdminError> {
        if request.key.is_empty() {
            return Err(AdminError::invalid("key", "must not be empty"));
        }
        let mut tx = self.pool.begin().await?;
        let key_id = key_id_or_prefix(&mut tx, "key", &request.key).await?;
        let before = fetch_key(&mut tx, key_id).await?;
        if before.revoked_at_unix_ms != 0 {
            return Ok(before);
        }
        sqlx::query!(
            "UPDATE virtual_keys SET revoked_at = now() WHERE id = $1",
            key_id
        )
        .execute(&mut *tx)
        .await?;
        let after = fetch_key(&mut tx, key_id).await?;
        let entry = AuditEntry {
            actor,
            action: "virtual_key.revoke",
            target: format!("virtual_key/{key_id}"),
            before: audit::state(&before),
            after: audit::state(&after),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(after)
    }
}

/// A key named by operators: its id, or its display prefix when exactly one key has it. Does
/// not check that an id exists (the caller's next read does).
pub(crate) async fn key_id_or_prefix(
    conn: &mut PgConnection,
    field: &'static str,
    key: &str,
) -> Result<Uuid, AdminError> {
    if let Ok(id) = Uuid::parse_str(key) {
        return Ok(id);
    }
    let matches = sqlx::query_scalar!("SELECT id FROM virtual_keys WHERE key_prefix = $1", key)
        .fetch_all(conn)
        .await?;
    match matches.as_slice() {
        [] => Err(AdminError::not_found("virtual key", key)),
        [id] => Ok(*id),
        _ => Err(AdminError::invalid(
            field,
            format!("prefix '{key}' matches several keys; use the id"),
        )),
    }
}

async fn fetch_key(conn: &mut PgConnection, key_id: Uuid) -> Result<pb::VirtualKey, AdminError> {
    fetch_keys(conn, None, Some(key_id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AdminError::not_found("virtual key", key_id.to_string()))
}

async fn fetch_keys(
    conn: &mut PgConnection,
    org_id: Option<Uuid>,
    key_id: Option<Uuid>,
) -> Result<Vec<pb::VirtualKey>, AdminError> {
    let keys = sqlx::query!(
        r#"SELECT k.id, k.name, k.key_prefix, o.name AS org, t.name AS team, p.name AS project,
                  u.name AS "user?", k.allowed_models, k.expires_at, k.revoked_at, k.created_at
           FROM virtual_keys k
           JOIN orgs o ON o.id = k.org_id
           JOIN teams t ON t.id = k.team_id
           JOIN projects p ON p.id = k.project_id
           LEFT JOIN users u ON u.id = k.user_id
           WHERE ($1::uuid IS NULL OR k.org_id = $1) AND ($2::uuid IS NULL OR k.id = $2)
           ORDER BY k.created_at"#,
        org_id,
        key_id
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|row| pb::VirtualKey {
        id: row.id.to_string(),
        name: row.name,
        prefix: row.key_prefix,
        org: row.org,
        team: row.team,
        project: row.project,
        user: row.user.unwrap_or_default(),
        allowed_models: row.allowed_models,
        expires_at_unix_ms: unix_ms_or_zero(row.expires_at),
        revoked_at_unix_ms: unix_ms_or_zero(row.revoked_at),
        created_at_unix_ms: row.created_at.timestamp_millis(),
    })
    .collect();
    Ok(keys)
}
