//! Orgs, teams, projects and users: the hierarchy every key, limit and cost is attributed to.

use super::AdminApi;
use super::audit::{self, AuditEntry};
use super::validate;
use crate::error::{AdminError, conflict_as};
use sqlx::PgConnection;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

pub(crate) async fn org_id(conn: &mut PgConnection, org: &str) -> Result<Uuid, AdminError> {
    sqlx::query_scalar!("SELECT id FROM orgs WHERE name = $1", org)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| AdminError::not_found("org", org))
}

pub(crate) async fn team_id(
    conn: &mut PgConnection,
    org_id: Uuid,
    org: &str,
    team: &str,
) -> Result<Uuid, AdminError> {
    sqlx::query_scalar!(
        "SELECT id FROM teams WHERE org_id = $1 AND name = $2",
        org_id,
        team
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| AdminError::not_found("team", format!("{org}/{team}")))
}

/// The zone of an org created without one: calendar periods then follow UTC.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

impl AdminApi {
    pub async fn create_org(
        &self,
        actor: &str,
        request: pb::CreateOrgRequest,
    ) -> Result<pb::Org, AdminError> {
        let name = validate::entity_name("name", &request.name)?;
        let time_zone = if request.time_zone.is_empty() {
            DEFAULT_TIME_ZONE.to_owned()
        } else {
            validate::time_zone("time_zone", &request.time_zone)?
        };
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query!(
            "INSERT INTO orgs (name, time_zone) VALUES ($1, $2) RETURNING id, created_at",
            name,
            time_zone
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_as("org", name))?;
        let org = pb::Org {
            id: row.id.to_string(),
            name: name.to_owned(),
            created_at_unix_ms: row.created_at.timestamp_millis(),
            time_zone,
        };
        let entry = AuditEntry {
            actor,
            action: "org.create",
            target: format!("org/{name}"),
            before: None,
            after: audit::state(&org),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(org)
    }

    pub async fn list_orgs(&self) -> Result<pb::ListOrgsResponse, AdminError> {
        let orgs = sqlx::query!("SELECT id, name, time_zone, created_at FROM orgs ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| pb::Org {
                id: row.id.to_string(),
                name: row.name,
                created_at_unix_ms: row.created_at.timestamp_millis(),
                time_zone: row.time_zone,
            })
            .collect();
        Ok(pb::ListOrgsResponse { orgs })
    }

    /// Moves the org's calendar periods (hourly, daily and monthly quotas and budgets) to
    /// another IANA time zone. Periods already counted keep their bounds; the next period the
    /// lease service opens follows the new zone.
    pub async fn set_org_time_zone(
        &self,
        actor: &str,
        request: pb::SetOrgTimeZoneRequest,
    ) -> Result<pb::Org, AdminError> {
        let name = validate::entity_name("org", &request.org)?;
        let time_zone = validate::time_zone("time_zone", &request.time_zone)?;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query!(
            "SELECT id, time_zone, created_at FROM orgs WHERE name = $1 FOR UPDATE",
            name
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| AdminError::not_found("org", name))?;
        let before = pb::Org {
            id: row.id.to_string(),
            name: name.to_owned(),
            created_at_unix_ms: row.created_at.timestamp_millis(),
            time_zone: row.time_zone,
        };
        sqlx::query!(
            "UPDATE orgs SET time_zone = $1 WHERE id = $2",
            time_zone,
            row.id
        )
        .execute(&mut *tx)
        .await?;
        let after = pb::Org {
            time_zone,
            ..before.clone()
        };
        let entry = AuditEntry {
            actor,
            action: "org.set_time_zone",
            target: format!("org/{name}"),
            before: audit::state(&before),
            after: audit::state(&after),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(after)
    }

    pub async fn create_team(
        &self,
        actor: &str,
        request: pb::CreateTeamRequest,
    ) -> Result<pb::Team, AdminError> {
        let org = validate::entity_name("org", &request.org)?;
        let name = validate::entity_name("name", &request.name)?;
        let mut tx = self.pool.begin().await?;
        let org_id = org_id(&mut tx, org).await?;
        let row = sqlx::query!(
            "INSERT INTO teams (org_id, name) VALUES ($1, $2) RETURNING id, created_at",
            org_id,
            name
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_as("team", &format!("{org}/{name}")))?;
        let team = pb::Team {
            id: row.id.to_string(),
            org: org.to_owned(),
            name: name.to_owned(),
            created_at_unix_ms: row.created_at.timestamp_millis(),
        };
        let entry = AuditEntry {
            actor,
            action: "team.create",
            target: format!("org/{org}/team/{name}"),
            before: None,
            after: audit::state(&team),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(team)
    }

    pub async fn list_teams(
        &self,
        request: pb::ListTeamsRequest,
    ) -> Result<pb::ListTeamsResponse, AdminError> {
        let mut conn = self.pool.acquire().await?;
        let org_id = org_id(&mut conn, &request.org).await?;
        let teams = sqlx::query!(
            "SELECT id, name, created_at FROM teams WHERE org_id = $1 ORDER BY name",
            org_id
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| pb::Team {
            id: row.id.to_string(),
            org: request.org.clone(),
            name: row.name,
            created_at_unix_ms: row.created_at.timestamp_millis(),
        })
        .collect();
        Ok(pb::ListTeamsResponse { teams })
    }

    pub async fn create_project(
        &self,
        actor: &str,
        request: pb::CreateProjectRequest,
    ) -> Result<pb::Project, AdminError> {
        let org = validate::entity_name("org", &request.org)?;
        let team = validate::entity_name("team", &request.team)?;
        let name = validate::entity_name("name", &request.name)?;
        let mut tx = self.pool.begin().await?;
        let org_id = org_id(&mut tx, org).await?;
        let team_id = team_id(&mut tx, org_id, org, team).await?;
        let row = sqlx::query!(
            "INSERT INTO projects (team_id, name) VALUES ($1, $2) RETURNING id, created_at",
            team_id,
            name
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_as("project", &format!("{org}/{team}/{name}")))?;
        let project = pb::Project {
            id: row.id.to_string(),
            org: org.to_owned(),
            team: team.to_owned(),
            name: name.to_owned(),
            created_at_unix_ms: row.created_at.timestamp_millis(),
        };
        let entry = AuditEntry {
            actor,
            action: "project.create",
            target: format!("org/{org}/team/{team}/project/{name}"),
            before: None,
            after: audit::state(&project),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(project)
    }

    pub async fn list_projects(
        &self,
        request: pb::ListProjectsRequest,
    ) -> Result<pb::ListProjectsResponse, AdminError> {
        let mut conn = self.pool.acquire().await?;
        let org_id = org_id(&mut conn, &request.org).await?;
        let team_filter = if request.team.is_empty() {
            None
        } else {
            Some(team_id(&mut conn, org_id, &request.org, &request.team).await?)
        };
        let projects = sqlx::query!(
            r#"SELECT p.id, p.name, p.created_at, t.name AS team
               FROM projects p JOIN teams t ON t.id = p.team_id
               WHERE t.org_id = $1 AND ($2::uuid IS NULL OR t.id = $2)
               ORDER BY t.name, p.name"#,
            org_id,
            team_filter
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| pb::Project {
            id: row.id.to_string(),
            org: request.org.clone(),
            team: row.team,
            name: row.name,
            created_at_unix_ms: row.created_at.timestamp_millis(),
        })
        .collect();
        Ok(pb::ListProjectsResponse { projects })
    }

    pub async fn create_user(
        &self,
        actor: &str,
        request: pb::CreateUserRequest,
    ) -> Result<pb::User, AdminError> {
        let org = validate::entity_name("org", &request.org)?;
        let name = validate::entity_name("name", &request.name)?;
        let mut tx = self.pool.begin().await?;
        let org_id = org_id(&mut tx, org).await?;
        let row = sqlx::query!(
            "INSERT INTO users (org_id, name) VALUES ($1, $2) RETURNING id, created_at",
            org_id,
            name
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_as("user", &format!("{org}/{name}")))?;
        let user = pb::User {
            id: row.id.to_string(),
            org: org.to_owned(),
            name: name.to_owned(),
            created_at_unix_ms: row.created_at.timestamp_millis(),
        };
        let entry = AuditEntry {
            actor,
            action: "user.create",
            target: format!("org/{org}/user/{name}"),
            before: None,
            after: audit::state(&user),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(user)
    }

    pub async fn list_users(
        &self,
        request: pb::ListUsersRequest,
    ) -> Result<pb::ListUsersResponse, AdminError> {
        let mut conn = self.pool.acquire().await?;
        let org_id = org_id(&mut conn, &request.org).await?;
        let users = sqlx::query!(
            "SELECT id, name, created_at FROM users WHERE org_id = $1 ORDER BY name",
            org_id
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| pb::User {
            id: row.id.to_string(),
            org: request.org.clone(),
            name: row.name,
            created_at_unix_ms: row.created_at.timestamp_millis(),
        })
        .collect();
        Ok(pb::ListUsersResponse { users })
    }
}
