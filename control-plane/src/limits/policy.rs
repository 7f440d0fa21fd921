//! The configured limits as stored in `limits`, with the human names of their scopes. One
//! reader serves the admin API (get, list, status) and the config snapshot, so operators and
//! edges always see the same limits under the same names.

use super::{Level, Metric};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::HashMap;
use uuid::Uuid;

/// One configured limit of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredLimit {
    pub scope: Scope,
    pub metric: Metric,
    /// As configured: requests, tokens, micro-dollars or concurrent requests.
    pub limit: i64,
    pub soft_threshold_pct: u32,
    pub hard_threshold_pct: u32,
    pub updated_at: DateTime<Utc>,
}

impl ConfiguredLimit {
    /// Where requests start being refused (the limit scaled by the hard threshold).
    pub fn enforced_limit(&self) -> i64 {
        self.metric
            .enforced_limit(self.limit, self.hard_threshold_pct)
    }
}

/// A scope a limit is attached to, with its owner org and the names operators know it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: Level,
    pub id: Uuid,
    pub org_id: Uuid,
    pub names: ScopeNames,
}

/// The names of a scope's levels. For a key: its org, team, project, user (if any) and display
/// prefix; for other levels only the levels above and including it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeNames {
    pub org: String,
    pub team: Option<String>,
    pub project: Option<String>,
    pub user: Option<String>,
    pub key_prefix: Option<String>,
}

impl Scope {
    /// The name shown in error messages and tables: "acme", "acme/platform",
    /// "acme/platform/web", "acme/alice" (a user), "tg_1a2b3c4d…" (a key's display prefix).
    /// Never a key's secret or an id a client should not see.
    pub fn display_name(&self) -> String {
        let names = &self.names;
        let part = |name: &Option<String>| name.clone().unwrap_or_else(|| "?".to_owned());
        match self.kind {
            Level::Org => names.org.clone(),
            Level::Team => format!("{}/{}", names.org, part(&names.team)),
            Level::Project => format!(
                "{}/{}/{}",
                names.org,
                part(&names.team),
                part(&names.project)
            ),
            Level::User => format!("{}/{}", names.org, part(&names.user)),
            Level::Key => format!("{}…", part(&names.key_prefix)),
        }
    }
}

/// Which limits to read.
#[derive(Debug, Clone, Copy)]
pub enum LimitFilter {
    All,
    Org(Uuid),
    Scope(Level, Uuid),
}

/// Configured limits, ordered by org name, scope level, scope name and metric. Rows whose
/// scope no longer exists, or whose stored spelling this build does not know, are skipped with
/// a warning rather than failing every reader.
pub async fn load(
    conn: &mut PgConnection,
    filter: LimitFilter,
) -> Result<Vec<ConfiguredLimit>, sqlx::Error> {
    let (org_filter, kind_filter, id_filter) = match filter {
        LimitFilter::All => (None, None, None),
        LimitFilter::Org(org_id) => (Some(org_id), None, None),
        LimitFilter::Scope(kind, id) => (None, Some(kind.as_str()), Some(id)),
    };
    let rows = sqlx::query!(
        r#"SELECT scope_kind, scope_id, org_id, metric, limit_value, soft_threshold_pct,
                  hard_threshold_pct, updated_at
           FROM limits
           WHERE ($1::uuid IS NULL OR org_id = $1)
             AND ($2::text IS NULL OR (scope_kind = $2 AND scope_id = $3))"#,
        org_filter,
        kind_filter,
        id_filter
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut limits = Vec::with_capacity(rows.len());
    for row in rows {
        let (Some(kind), Some(metric)) =
            (Level::parse(&row.scope_kind), Metric::parse(&row.metric))
        else {
            tracing::warn!(
                scope_kind = %row.scope_kind,
                metric = %row.metric,
                "skipping a limit this build does not know"
            );
            continue;
        };
        limits.push(ConfiguredLimit {
            scope: Scope {
                kind,
                id: row.scope_id,
                org_id: row.org_id,
                names: ScopeNames::default(),
            },
            metric,
            limit: row.limit_value,
            soft_threshold_pct: u32::try_from(row.soft_threshold_pct).unwrap_or(0),
            hard_threshold_pct: u32::try_from(row.hard_threshold_pct).unwrap_or(0),
            updated_at: row.updated_at,
        });
    }
    let mut scopes: Vec<(Level, Uuid)> = limits
        .iter()
        .map(|limit| (limit.scope.kind, limit.scope.id))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let names = scope_names(conn, &scopes).await?;
    limits.retain_mut(|limit| {
        let scope = &mut limit.scope;
        match names.get(&(scope.kind, scope.id)) {
            Some(found) => {
                scope.names = found.clone();
                true
            }
            None => {
                tracing::warn!(
                    scope_kind = scope.kind.as_str(),
                    scope_id = %scope.id,
                    "skipping a limit whose scope no longer exists"
                );
                false
            }
        }
    });
    limits.sort_by_cached_key(|limit| {
        let scope = &limit.scope;
        (
            scope.names.org.clone(),
            scope.kind,
            scope.display_name(),
            scope.id,
            limit.metric,
        )
    });
    Ok(limits)
}

/// Names of the given scopes in one query. Scopes that do not exist are absent from the map.
pub async fn scope_names(
    conn: &mut PgConnection,
    scopes: &[(Level, Uuid)],
) -> Result<HashMap<(Level, Uuid), ScopeNames>, sqlx::Error> {
    if scopes.is_empty() {
        return Ok(HashMap::new());
    }
    let kinds: Vec<String> = scopes
        .iter()
        .map(|(kind, _)| kind.as_str().to_owned())
        .collect();
    let ids: Vec<Uuid> = scopes.iter().map(|(_, id)| *id).collect();
    let rows = sqlx::query!(
        r#"SELECT DISTINCT s.kind AS "kind!", s.id AS "id!", o.name AS org,
                  t.name AS "team?", p.name AS "project?", u.name AS "user?",
                  k.key_prefix AS "key_prefix?"
           FROM UNNEST($1::text[], $2::uuid[]) AS s(kind, id)
           LEFT JOIN virtual_keys k ON s.kind = 'key' AND k.id = s.id
           LEFT JOIN projects p ON p.id = CASE s.kind WHEN 'project' THEN s.id
                                                      WHEN 'key' THEN k.project_id END
           LEFT JOIN teams t ON t.id = CASE s.kind WHEN 'team' THEN s.id
                                                   WHEN 'project' THEN p.team_id
                                                   WHEN 'key' THEN k.team_id END
           LEFT JOIN users u ON u.id = CASE s.kind WHEN 'user' THEN s.id
                                                   WHEN 'key' THEN k.user_id END
           JOIN orgs o ON o.id = CASE s.kind WHEN 'org' THEN s.id
                                             WHEN 'team' THEN t.org_id
                                             WHEN 'project' THEN t.org_id
                                             WHEN 'user' THEN u.org_id
                                             WHEN 'key' THEN k.org_id END"#,
        &kinds,
        &ids
    )
    .fetch_all(conn)
    .await?;
    let mut names = HashMap::with_capacity(rows.len());
    for row in rows {
        let Some(kind) = Level::parse(&row.kind) else {
            continue;
        };
        names.insert(
            (kind, row.id),
            ScopeNames {
                org: row.org,
                team: row.team,
                project: row.project,
                user: row.user,
                key_prefix: row.key_prefix,
            },
        );
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(kind: Level, names: ScopeNames) -> Scope {
        Scope {
            kind,
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            names,
        }
    }

    #[test]
    fn display_names_read_like_paths_and_never_show_a_key() {
        let names = ScopeNames {
            org: "acme".to_owned(),
            team: Some("platform".to_owned()),
            project: Some("web".to_owned()),
            user: Some("alice".to_owned()),
            key_prefix: Some("tg_1a2b3c4d".to_owned()),
        };
        let cases = [
            (Level::Org, "acme"),
            (Level::Team, "acme/platform"),
            (Level::Project, "acme/platform/web"),
            (Level::User, "acme/alice"),
            (Level::Key, "tg_1a2b3c4d…"),
        ];
        for (kind, expected) in cases {
            assert_eq!(scope(kind, names.clone()).display_name(), expected);
        }
    }
}
