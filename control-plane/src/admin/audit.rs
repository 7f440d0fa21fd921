//! Every admin write ends here: the audit row (who, what, before/after) and, for config writes,
//! the config version bump are part of the write's own transaction, so either all of it lands
//! or none of it does.

use crate::error::AdminError;
use serde::Serialize;
use serde_json::Value;
use sqlx::{Postgres, Transaction};

pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Serialises an entity for the audit log; entities never carry secrets (see proto).
pub fn state<T: Serialize>(entity: &T) -> Option<Value> {
    serde_json::to_value(entity).ok()
}

/// Records the entry, bumps the config version (which notifies control planes at commit) and
/// commits. Returns the new config version.
pub async fn commit_config_write(
    mut tx: Transaction<'_, Postgres>,
    entry: AuditEntry<'_>,
) -> Result<i64, AdminError> {
    let version = sqlx::query_scalar!(r#"SELECT tollgate_bump_config_version() AS "version!""#)
        .fetch_one(&mut *tx)
        .await?;
    insert(&mut tx, &entry, Some(version)).await?;
    tx.commit().await?;
    Ok(version)
}

/// Records a write that does not change what edges serve (for example a join token) and commits.
pub async fn commit_non_config_write(
    mut tx: Transaction<'_, Postgres>,
    entry: AuditEntry<'_>,
) -> Result<(), AdminError> {
    insert(&mut tx, &entry, None).await?;
    tx.commit().await?;
    Ok(())
}

async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    entry: &AuditEntry<'_>,
    config_version: Option<i64>,
) -> Result<(), AdminError> {
    sqlx::query!(
        r#"INSERT INTO admin_audit_log (actor, action, target, before, after, config_version)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
        entry.actor,
        entry.action,
        entry.target,
        entry.before,
        entry.after,
        config_version,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}
