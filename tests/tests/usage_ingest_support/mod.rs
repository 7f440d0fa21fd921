//! Shared by the `usage_ingest*` tests: a migrated database holding real orgs, teams, projects,
//! users and keys (made through the admin library, so name joins in reports are real), a
//! builder for wire events, and ingest through the same library call `UsageService` makes.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tollgate_control_plane::admin::AdminApi;
use tollgate_control_plane::crypto::MasterKey;
use tollgate_control_plane::db::MIGRATOR;
use tollgate_control_plane::usage::{self, IngestOutcome, UsageBatch};
use tollgate_e2e::TestDb;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

/// Where a request was attributed: ids as the edge reports them.
#[derive(Debug, Clone)]
pub struct Scope {
    pub org_id: String,
    pub team_id: String,
    pub project_id: String,
    pub key_id: String,
}

/// Two orgs:
/// - acme: team ml (projects chatbot, search), team web (project site); users alice, bob
/// - globex: team core (project api); user carol
pub struct World {
    pub db: TestDb,
    pub admin: AdminApi,
    pub chatbot: Scope,
    pub search: Scope,
    pub site: Scope,
    pub api: Scope,
    pub alice: String,
    pub bob: String,
    pub carol: String,
}

impl World {
    pub async fn create() -> World {
        let db = TestDb::create().await;
        MIGRATOR.run(db.pool()).await.expect("migrate");
        let master_key = MasterKey::from_hex(&"ab".repeat(32)).unwrap();
        let admin = AdminApi::new(db.pool().clone(), master_key);
        let a = "test";
        for org in ["acme", "globex"] {
            admin
                .create_org(
                    a,
                    pb::CreateOrgRequest {
                        name: org.into(),
                        time_zone: String::new(),
                    },
                )
                .await
                .unwrap();
        }
        for (org, team) in [("acme", "ml"), ("acme", "web"), ("globex", "core")] {
            let request = pb::CreateTeamRequest {
                org: org.into(),
                name: team.into(),
            };
            admin.create_team(a, request).await.unwrap();
        }
        for (org, team, project) in [
            ("acme", "ml", "chatbot"),
            ("acme", "ml", "search"),
            ("acme", "web", "site"),
            ("globex", "core", "api"),
        ] {
            let request = pb::CreateProjectRequest {
                org: org.into(),
                team: team.into(),
                name: project.into(),
            };
            admin.create_project(a, request).await.unwrap();
        }
        let mut user_ids = Vec::new();
        for (org, user) in [("acme", "alice"), ("acme", "bob"), ("globex", "carol")] {
            let request = pb::CreateUserRequest {
                org: org.into(),
                name: user.into(),
            };
            user_ids.push(admin.create_user(a, request).await.unwrap().id);
        }
        let chatbot = scope(&admin, "acme", "ml", "chatbot").await;
        let search = scope(&admin, "acme", "ml", "search").await;
        let site = scope(&admin, "acme", "web", "site").await;
        let api = scope(&admin, "globex", "core", "api").await;
        let [alice, bob, carol]: [String; 3] = user_ids.try_into().unwrap();
        World {
            db,
            admin,
            chatbot,
            search,
            site,
            api,
            alice,
            bob,
            carol,
        }
    }

    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// Validates and ingests `events` as one batch, exactly as `UsageService.Report` does.
    pub async fn ingest(&self, events: &[pb::UsageEvent]) -> IngestOutcome {
        ingest(self.pool(), events).await
    }
}

pub async fn ingest(pool: &PgPool, events: &[pb::UsageEvent]) -> IngestOutcome {
    let batch = pb::UsageBatch {
        edge_id: "edge-test".to_owned(),
        batch_id: "batch-1".to_owned(),
        events: events.to_vec(),
    };
    let batch = UsageBatch::from_wire(batch, Utc::now()).unwrap();
    usage::ingest(pool, &batch).await.unwrap()
}

/// Looks the project up by name and mints a key in it.
async fn scope(admin: &AdminApi, org: &str, team: &str, project: &str) -> Scope {
    let projects = admin
        .list_projects(pb::ListProjectsRequest {
            org: org.into(),
            team: team.into(),
        })
        .await
        .unwrap();
    let project_row = projects
        .projects
        .into_iter()
        .find(|p| p.name == project)
        .unwrap();
    let teams = admin
        .list_teams(pb::ListTeamsRequest { org: org.into() })
        .await
        .unwrap();
    let team_id = teams.teams.into_iter().find(|t| t.name == team).unwrap().id;
    let org_id = admin
        .list_orgs()
        .await
        .unwrap()
        .orgs
        .into_iter()
        .find(|o| o.name == org)
        .unwrap()
        .id;
    let key = admin
        .create_virtual_key(
            "test",
            pb::CreateVirtualKeyRequest {
                org: org.into(),
                team: team.into(),
                project: project.into(),
                name: format!("{project}-key"),
                ..pb::CreateVirtualKeyRequest::default()
            },
        )
        .await
        .unwrap();
    Scope {
        org_id,
        team_id,
        project_id: project_row.id,
        key_id: key.key.unwrap().id,
    }
}

/// A successful, unpriced request with no tokens; tests set what they need.
pub fn event(scope: &Scope, user_id: &str, model: &str, at: DateTime<Utc>) -> pb::UsageEvent {
    pb::UsageEvent {
        event_id: Uuid::now_v7().to_string(),
        request_id: format!("req_{}", Uuid::new_v4().simple()),
        event_time_unix_ms: at.timestamp_millis(),
        org_id: scope.org_id.clone(),
        team_id: scope.team_id.clone(),
        project_id: scope.project_id.clone(),
        user_id: user_id.to_owned(),
        key_id: scope.key_id.clone(),
        requested_model: model.to_owned(),
        model: model.to_owned(),
        provider: if model.is_empty() { "" } else { "openai" }.to_owned(),
        status: "ok".to_owned(),
        http_status: 200,
        latency_ms: 100,
        edge_id: "edge-test".to_owned(),
        config_version: 1,
        usage_source: "provider".to_owned(),
        ..pb::UsageEvent::default()
    }
}

pub fn with_tokens(
    mut event: pb::UsageEvent,
    input: u64,
    cached: u64,
    output: u64,
) -> pb::UsageEvent {
    event.input_tokens = input;
    event.cached_input_tokens = cached;
    event.output_tokens = output;
    event
}

pub fn with_cost(mut event: pb::UsageEvent, cost_micros: i64) -> pb::UsageEvent {
    event.priced = true;
    event.cost_micros = cost_micros;
    event.price_version = 1;
    event
}

pub fn with_status(mut event: pb::UsageEvent, status: &str, http_status: u32) -> pb::UsageEvent {
    event.status = status.to_owned();
    event.http_status = http_status;
    event
}

/// Every row of a table as JSON text, in a stable order, to compare whole tables.
pub async fn table_rows(pool: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .unwrap()
}

pub async fn events_json(pool: &PgPool) -> Vec<String> {
    table_rows(
        pool,
        "SELECT (to_jsonb(e) - 'ingested_at')::text FROM usage_events e ORDER BY event_id",
    )
    .await
}

pub async fn rollups_json(pool: &PgPool) -> Vec<String> {
    table_rows(
        pool,
        "SELECT to_jsonb(h)::text FROM usage_hourly h \
         ORDER BY hour, org_id, team_id, project_id, user_id NULLS FIRST, model",
    )
    .await
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap()
}
