//! The world the limits tests need: one database, one or more control-plane replicas on it,
//! several ready edges, tenants and keys of the test's own, limits set and read through
//! `tollgatectl limits`, and the client-visible shapes of enforcement (429 errors and the
//! `x-ratelimit-*` headers, in [`responses`]).

pub mod responses;

pub use responses::{
    RateLimitHeaders, assert_limit_rejection, expected_error_kind, parse_openai_duration,
};

use serde::Deserialize;
use serde_json::Value;

use crate::control_plane::{ControlPlane, CreatedKey, SeedDemo};
use crate::db::TestDb;
use crate::edge::Edge;
use crate::eventually::eventually;
use crate::gateway_client::GatewayClient;
use crate::{PROPAGATION_TIMEOUT, free_port};

/// `LimitMetric` numbers as `--output json` prints them.
pub mod metric {
    pub const REQUESTS_PER_MINUTE: i32 = 1;
    pub const TOKENS_PER_MINUTE: i32 = 2;
    pub const TOKENS_PER_HOUR: i32 = 3;
    pub const TOKENS_PER_DAY: i32 = 4;
    pub const TOKENS_PER_MONTH: i32 = 5;
    pub const BUDGET_MICROS_PER_MONTH: i32 = 6;
    pub const CONCURRENT_REQUESTS: i32 = 7;
}

/// `LimitScope` numbers as `--output json` prints them.
pub mod scope_kind {
    pub const ORG: i32 = 1;
    pub const TEAM: i32 = 2;
    pub const PROJECT: i32 = 3;
    pub const USER: i32 = 4;
    pub const KEY: i32 = 5;
}

/// How many control planes and edges a [`LimitStack`] runs, and with which flags.
#[derive(Debug, Clone, Default)]
pub struct StackLayout {
    /// Control-plane replicas on the one database (at least 1).
    pub planes: usize,
    /// For each edge, the index of the replica it connects to.
    pub edge_planes: Vec<usize>,
    /// Extra `tollgate-cp serve` flags of every replica.
    pub cp_args: Vec<String>,
    /// Extra `tollgate-cp serve` flags of the first replica only (e.g. `--metrics-listen`).
    pub first_cp_args: Vec<String>,
    /// Extra `tollgate-edge serve` flags of every edge.
    pub edge_args: Vec<String>,
}

impl StackLayout {
    /// One control plane and `edges` edges on it.
    pub fn edges(edges: usize) -> StackLayout {
        StackLayout {
            planes: 1,
            edge_planes: vec![0; edges],
            ..StackLayout::default()
        }
    }

    /// Adds `args` to every replica's `tollgate-cp serve`.
    pub fn cp_args(mut self, args: &[&str]) -> StackLayout {
        self.cp_args
            .extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// Serves Prometheus metrics of the first replica on a free port
    /// (see [`ControlPlane::metrics`]).
    pub fn with_cp_metrics(mut self) -> StackLayout {
        self.first_cp_args.extend([
            "--metrics-listen".to_owned(),
            format!("127.0.0.1:{}", free_port()),
        ]);
        self
    }
}

/// A team's place in the tenancy, created by [`LimitStack::create_tenant`].
#[derive(Debug, Clone)]
pub struct Tenant {
    pub org: String,
    pub team: String,
    pub project: String,
    pub org_id: String,
    pub team_id: String,
    pub project_id: String,
}

impl Tenant {
    pub fn org_scope(&self) -> LimitScope {
        LimitScope::Org {
            org: self.org.clone(),
        }
    }

    pub fn team_scope(&self) -> LimitScope {
        LimitScope::Team {
            org: self.org.clone(),
            team: self.team.clone(),
        }
    }

    pub fn project_scope(&self) -> LimitScope {
        LimitScope::Project {
            org: self.org.clone(),
            team: self.team.clone(),
            project: self.project.clone(),
        }
    }
}

/// The `SCOPE` of `tollgatectl limits ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitScope {
    Org {
        org: String,
    },
    Team {
        org: String,
        team: String,
    },
    Project {
        org: String,
        team: String,
        project: String,
    },
    User {
        org: String,
        user: String,
    },
    /// A key id or unique display prefix.
    Key {
        key: String,
    },
}

impl LimitScope {
    pub fn key(key: &CreatedKey) -> LimitScope {
        LimitScope::Key {
            key: key.id.clone(),
        }
    }

    /// `--org O --team T ...` as tollgatectl takes it.
    pub fn args(&self) -> Vec<String> {
        let pairs: Vec<(&str, &str)> = match self {
            Self::Org { org } => vec![("--org", org)],
            Self::Team { org, team } => vec![("--org", org), ("--team", team)],
            Self::Project { org, team, project } => {
                vec![("--org", org), ("--team", team), ("--project", project)]
            }
            Self::User { org, user } => vec![("--org", org), ("--user", user)],
            Self::Key { key } => vec![("--key", key)],
        };
        pairs
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_owned(), value.to_owned()])
            .collect()
    }

    /// The level as 429 responses name it (`x-tollgate-limit-scope`).
    pub fn level(&self) -> &'static str {
        match self {
            Self::Org { .. } => "org",
            Self::Team { .. } => "team",
            Self::Project { .. } => "project",
            Self::User { .. } => "user",
            Self::Key { .. } => "key",
        }
    }
}

/// `tollgatectl limits status --output json` (proto `LimitStatusResponse`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LimitStatus {
    pub policy: Value,
    pub uses: Vec<LimitUse>,
}

impl LimitStatus {
    /// The use of `metric` (a [`metric`] number), if the scope has that limit.
    pub fn metric(&self, metric: i32) -> Option<&LimitUse> {
        self.uses.iter().find(|used| used.metric == metric)
    }
}

/// One limit's use across all edges (proto `LimitUse`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LimitUse {
    pub metric: i32,
    pub limit: i64,
    pub enforced_limit: i64,
    pub consumed: i64,
    pub leased: i64,
    pub remaining: i64,
    pub period_start_unix_ms: i64,
    pub period_end_unix_ms: i64,
    pub edges: u32,
}

/// Database + control plane replica(s) + ready edges, seeded with the demo data (for the join
/// token and the mock models).
///
/// Fields drop in declaration order: edges first, then the planes, the database last.
pub struct LimitStack {
    pub edges: Vec<Edge>,
    pub planes: Vec<ControlPlane>,
    pub demo: SeedDemo,
    pub db: TestDb,
}

impl LimitStack {
    /// One control plane with default flags and `edges` edges.
    pub async fn start(edges: usize) -> LimitStack {
        LimitStack::start_layout(StackLayout::edges(edges)).await
    }

    /// Starts the planes (the first migrates the database), seeds the demo, then starts the
    /// edges concurrently and waits until each is ready.
    pub async fn start_layout(layout: StackLayout) -> LimitStack {
        assert!(layout.planes >= 1, "a stack needs a control plane");
        let db = TestDb::create().await;
        let cp_args: Vec<&str> = layout.cp_args.iter().map(String::as_str).collect();
        let mut first_args = cp_args.clone();
        first_args.extend(layout.first_cp_args.iter().map(String::as_str));
        let first = ControlPlane::start_with_args(&db, &first_args).await;
        let mut planes = vec![first];
        for _ in 1..layout.planes {
            let replica = planes[0].start_replica(&cp_args).await;
            planes.push(replica);
        }
        let demo = planes[0].seed_demo().await;
        let edge_args: Vec<&str> = layout.edge_args.iter().map(String::as_str).collect();
        let edges = futures::future::join_all(layout.edge_planes.iter().map(|&plane| {
            let plane = planes
                .get(plane)
                .unwrap_or_else(|| panic!("no control plane replica {plane}"));
            let join_token = demo.join_token.as_str();
            let edge_args = edge_args.as_slice();
            async move {
                let mut edge = Edge::connect(plane, join_token, edge_args).await;
                edge.wait_ready().await;
                edge
            }
        }))
        .await;
        LimitStack {
            edges,
            planes,
            demo,
            db,
        }
    }

    /// The first control plane replica (the one `tollgatectl` talks to).
    pub fn cp(&self) -> &ControlPlane {
        &self.planes[0]
    }

    /// A client per edge, in edge order.
    pub fn clients(&self) -> Vec<GatewayClient> {
        self.edges.iter().map(Edge::client).collect()
    }

    /// Creates org `org` (unless it exists), team `team` in it and project `project` in that.
    pub async fn create_tenant(&self, org: &str, team: &str, project: &str) -> Tenant {
        let cp = self.cp();
        let orgs = cp.ctl_json(&["orgs", "list"]).await;
        let existing = orgs["orgs"]
            .as_array()
            .and_then(|orgs| orgs.iter().find(|entry| entry["name"] == org))
            .cloned();
        let org_json = match existing {
            Some(org_json) => org_json,
            None => cp.ctl_json(&["orgs", "create", org]).await,
        };
        let team_json = cp.ctl_json(&["teams", "create", "--org", org, team]).await;
        let project_json = cp
            .ctl_json(&["projects", "create", "--org", org, "--team", team, project])
            .await;
        let id = |value: &Value| {
            value["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id in {value}"))
                .to_owned()
        };
        Tenant {
            org: org.to_owned(),
            team: team.to_owned(),
            project: project.to_owned(),
            org_id: id(&org_json),
            team_id: id(&team_json),
            project_id: id(&project_json),
        }
    }

    /// Mints a key in `tenant`'s project (`extra_args` e.g. `["--models", "mock-small"]`) and
    /// waits until every edge accepts it.
    pub async fn create_key(&self, tenant: &Tenant, extra_args: &[&str]) -> CreatedKey {
        let mut args = vec![
            "keys",
            "create",
            "--org",
            tenant.org.as_str(),
            "--team",
            tenant.team.as_str(),
            "--project",
            tenant.project.as_str(),
        ];
        args.extend_from_slice(extra_args);
        let value = self.cp().ctl_json(&args).await;
        let key = CreatedKey {
            id: value["key"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("keys create JSON has no key.id: {value}"))
                .to_owned(),
            plaintext: value["plaintext"]
                .as_str()
                .unwrap_or_else(|| panic!("keys create JSON has no plaintext: {value}"))
                .to_owned(),
            key: value["key"].clone(),
        };
        for client in self.clients() {
            eventually(PROPAGATION_TIMEOUT, async || {
                let reply = client.models(Some(&key.plaintext)).await?;
                anyhow::ensure!(reply.status == 200, "GET /v1/models: {}", reply.status);
                Ok::<(), anyhow::Error>(())
            })
            .await;
        }
        key
    }

    /// Registers a built-in mock provider `provider` (`mock_args` e.g.
    /// `["--mock-output-tokens", "100"]`) with one model `model` of the same upstream name
    /// (`model_args` e.g. prices), and waits until every edge has the new config.
    pub async fn add_mock_model(
        &self,
        provider: &str,
        mock_args: &[&str],
        model: &str,
        model_args: &[&str],
    ) {
        let mut args = vec!["providers", "create", provider, "--kind", "mock"];
        args.extend_from_slice(mock_args);
        self.cp().ctl_json(&args).await;
        let mut args = vec!["models", "create", model, "--provider", provider];
        args.extend_from_slice(model_args);
        self.cp().ctl_json(&args).await;
        self.wait_edges_converged().await;
    }

    /// `tollgatectl limits set SCOPE <values>` (e.g. `["--rpm", "30"]`); waits until every
    /// edge runs the config version that carries it. Returns the printed `LimitPolicy`.
    pub async fn set_limits(&self, scope: &LimitScope, values: &[&str]) -> Value {
        let policy = self.set_limits_no_wait(scope, values).await;
        self.wait_edges_converged().await;
        policy
    }

    /// `tollgatectl limits set` without waiting for the edges.
    pub async fn set_limits_no_wait(&self, scope: &LimitScope, values: &[&str]) -> Value {
        let scope_args = scope.args();
        let mut args: Vec<&str> = vec!["limits", "set"];
        args.extend(scope_args.iter().map(String::as_str));
        args.extend_from_slice(values);
        self.cp().ctl_json(&args).await
    }

    /// `tollgatectl limits status SCOPE --output json`, parsed, from replica `plane`.
    pub async fn limit_status_on(&self, plane: usize, scope: &LimitScope) -> LimitStatus {
        let scope_args = scope.args();
        let mut args: Vec<&str> = vec!["limits", "status"];
        args.extend(scope_args.iter().map(String::as_str));
        let value = self.planes[plane].ctl_json(&args).await;
        serde_json::from_value(value.clone())
            .unwrap_or_else(|error| panic!("unexpected `limits status` JSON ({error}): {value}"))
    }

    /// `tollgatectl limits status SCOPE --output json` from the first replica.
    pub async fn limit_status(&self, scope: &LimitScope) -> LimitStatus {
        self.limit_status_on(0, scope).await
    }

    /// `tollgatectl limits alerts <args> --output json`: the `alerts` array.
    pub async fn limit_alerts(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["limits", "alerts"];
        all.extend_from_slice(args);
        let value = self.cp().ctl_json(&all).await;
        match value.get("alerts") {
            Some(Value::Array(alerts)) => alerts.clone(),
            // proto3 JSON may leave an empty repeated field out.
            None | Some(Value::Null) => Vec::new(),
            Some(other) => panic!("`limits alerts` JSON has a non-array alerts field: {other}"),
        }
    }

    /// Waits until every edge of the stack is connected and runs the current config version.
    pub async fn wait_edges_converged(&self) {
        let edge_ids: Vec<&str> = self.edges.iter().map(Edge::edge_id).collect();
        let cp = self.cp();
        eventually(PROPAGATION_TIMEOUT, async || {
            let list = cp.edges().await;
            for edge_id in &edge_ids {
                let edge = list
                    .edge(edge_id)
                    .ok_or_else(|| format!("{edge_id} not listed"))?;
                if !edge.connected || edge.config_version != list.current_config_version {
                    return Err(format!(
                        "{edge_id}: connected {}, version {} of {}",
                        edge.connected, edge.config_version, list.current_config_version
                    ));
                }
            }
            Ok(())
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::LimitScope;

    #[test]
    fn scopes_become_tollgatectl_flags() {
        let team = LimitScope::Team {
            org: "acme".into(),
            team: "platform".into(),
        };
        assert_eq!(team.args(), ["--org", "acme", "--team", "platform"]);
        assert_eq!(LimitScope::Key { key: "k1".into() }.args(), ["--key", "k1"]);
    }
}
