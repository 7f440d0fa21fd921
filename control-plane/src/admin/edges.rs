//! What the fleet of edges runs, and the join tokens that let new edges in.

use super::AdminApi;
use super::audit::{self, AuditEntry};
use super::validate;
use crate::error::AdminError;
use crate::secrets::{self, JOIN_TOKEN_PREFIX};
use crate::snapshot::unix_ms_or_zero;
use tollgate_proto::v1 as pb;

impl AdminApi {
    pub async fn list_edges(&self) -> Result<pb::ListEdgesResponse, AdminError> {
        let current = sqlx::query_scalar!("SELECT version FROM config_version")
            .fetch_one(&self.pool)
            .await?;
        let edges = sqlx::query!(
            r#"SELECT edge_id, region, build_version, config_version, connected, last_seen_at,
                      last_nack_version, last_nack_reason, last_nack_at, key_revision
               FROM edges ORDER BY edge_id"#
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| pb::Edge {
            edge_id: row.edge_id,
            region: row.region,
            build_version: row.build_version,
            config_version: u64::try_from(row.config_version).unwrap_or(0),
            connected: row.connected,
            last_seen_at_unix_ms: row.last_seen_at.timestamp_millis(),
            last_nack_version: row
                .last_nack_version
                .map_or(0, |v| u64::try_from(v).unwrap_or(0)),
            last_nack_reason: row.last_nack_reason.unwrap_or_default(),
            last_nack_at_unix_ms: unix_ms_or_zero(row.last_nack_at),
            key_revision: u64::try_from(row.key_revision).unwrap_or(0),
        })
        .collect();
        Ok(pb::ListEdgesResponse {
            edges,
            current_config_version: u64::try_from(current).unwrap_or(0),
        })
    }

    pub async fn create_join_token(
        &self,
        actor: &str,
        request: pb::CreateJoinTokenRequest,
    ) -> Result<pb::CreateJoinTokenResponse, AdminError> {
        if !request.name.is_empty() {
            validate::entity_name("name", &request.name)?;
        }
        let minted = secrets::mint(JOIN_TOKEN_PREFIX);
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query_scalar!(
            "INSERT INTO edge_join_tokens (name, token_hash) VALUES ($1, $2) RETURNING id",
            request.name,
            &minted.hash[..]
        )
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry {
            actor,
            action: "join_token.create",
            target: format!("join_token/{id}"),
            before: None,
            after: Some(serde_json::json!({ "id": id.to_string(), "name": request.name })),
        };
        audit::commit_non_config_write(tx, entry).await?;
        Ok(pb::CreateJoinTokenResponse {
            id: id.to_string(),
            name: request.name,
            token: minted.plaintext,
        })
    }
}
