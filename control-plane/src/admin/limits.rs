//! Limits, quotas and budgets as operators manage them: set (merge), get, list, remove, the
//! current use of a scope, and threshold alerts. Scopes are named the way operators know them
//! (`LimitScopeRef`); every write is validated whole before one transaction that also writes the
//! audit row and bumps the config version, so edges receive the new limits in the next
//! snapshot.

use super::AdminApi;
use super::audit::{self, AuditEntry};
use super::keys::key_id_or_prefix;
use super::tenancy::{org_id, team_id};
use super::validate;
use crate::error::AdminError;
use crate::limits::policy::{self, ConfiguredLimit, LimitFilter, Scope, ScopeNames};
use crate::limits::status::{self, LimitUse};
use crate::limits::{
    DEFAULT_HARD_THRESHOLD_PCT, DEFAULT_SOFT_THRESHOLD_PCT, Level, Metric, Window,
};
use crate::snapshot::unix_ms_or_zero;
use sqlx::PgConnection;
use std::collections::BTreeMap;
use tollgate_proto::v1 as pb;
use uuid::Uuid;

/// Alerts listed when the request asks for none in particular, and the most it may ask for.
const DEFAULT_ALERTS_LISTED: u32 = 100;
const MAX_ALERTS_LISTED: u32 = 1000;

/// A scope as named in a request, checked for shape before anything is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScopeSpec<'a> {
    Org {
        org: &'a str,
    },
    Team {
        org: &'a str,
        team: &'a str,
    },
    Project {
        org: &'a str,
        team: &'a str,
        project: &'a str,
    },
    User {
        org: &'a str,
        user: &'a str,
    },
    Key {
        key: &'a str,
    },
}

/// The most specific level named decides (key, user, project, team, org); team, project and
/// user need their org, project needs its team, a key needs nothing else.
fn parse_scope(scope: Option<&pb::LimitScopeRef>) -> Result<ScopeSpec<'_>, AdminError> {
    let Some(scope) = scope else {
        return Err(AdminError::invalid(
            "scope",
            "name an org, team, project, user or key",
        ));
    };
    if !scope.key.is_empty() {
        // A key names its own org, team and project; other names could only disagree with it.
        if [&scope.org, &scope.team, &scope.project, &scope.user]
            .iter()
            .any(|name| !name.is_empty())
        {
            return Err(AdminError::invalid(
                "scope.key",
                "a key scope takes no org, team, project or user",
            ));
        }
        return Ok(ScopeSpec::Key { key: &scope.key });
    }
    let org = || -> Result<&str, AdminError> {
        if scope.org.is_empty() {
            return Err(AdminError::invalid(
                "scope.org",
                "required for a team, project or user scope",
            ));
        }
        validate::entity_name("scope.org", &scope.org)
    };
    if !scope.user.is_empty() {
        if !scope.team.is_empty() || !scope.project.is_empty() {
            return Err(AdminError::invalid(
                "scope.user",
                "a user scope takes an org only (users belong to the org, not to a team)",
            ));
        }
        let user = validate::entity_name("scope.user", &scope.user)?;
        return Ok(ScopeSpec::User { org: org()?, user });
    }
    if !scope.project.is_empty() {
        let project = validate::entity_name("scope.project", &scope.project)?;
        let org = org()?;
        if scope.team.is_empty() {
            return Err(AdminError::invalid(
                "scope.team",
                "required for a project scope",
            ));
        }
        let team = validate::entity_name("scope.team", &scope.team)?;
        return Ok(ScopeSpec::Project { org, team, project });
    }
    if !scope.team.is_empty() {
        let team = validate::entity_name("scope.team", &scope.team)?;
        return Ok(ScopeSpec::Team { org: org()?, team });
    }
    if !scope.org.is_empty() {
        return Ok(ScopeSpec::Org { org: org()? });
    }
    Err(AdminError::invalid(
        "scope",
        "name an org, team, project, user or key",
    ))
}

/// Looks the scope up; an unknown org, team, project, user or key is NOT_FOUND naming it.
async fn resolve_scope(conn: &mut PgConnection, spec: ScopeSpec<'_>) -> Result<Scope, AdminError> {
    let (kind, id, org_id) = match spec {
        ScopeSpec::Org { org } => {
            let id = org_id(conn, org).await?;
            (Level::Org, id, id)
        }
        ScopeSpec::Team { org, team } => {
            let org_id = org_id(conn, org).await?;
            (Level::Team, team_id(conn, org_id, org, team).await?, org_id)
        }
        ScopeSpec::Project { org, team, project } => {
            let org_id = org_id(conn, org).await?;
            let team_id = team_id(conn, org_id, org, team).await?;
            let id = sqlx::query_scalar!(
                "SELECT id FROM projects WHERE team_id = $1 AND name = $2",
                team_id,
                project
            )
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| AdminError::not_found("project", format!("{org}/{team}/{project}")))?;
            (Level::Project, id, org_id)
        }
        ScopeSpec::User { org, user } => {
            let org_id = org_id(conn, org).await?;
            let id = sqlx::query_scalar!(
                "SELECT id FROM users WHERE org_id = $1 AND name = $2",
                org_id,
                user
            )
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| AdminError::not_found("user", format!("{org}/{user}")))?;
            (Level::User, id, org_id)
        }
        ScopeSpec::Key { key } => {
            let id = key_id_or_prefix(conn, "scope.key", key).await?;
            let org_id = sqlx::query_scalar!("SELECT org_id FROM virtual_keys WHERE id = $1", id)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| AdminError::not_found("virtual key", key))?;
            (Level::Key, id, org_id)
        }
    };
    let names = policy::scope_names(conn, &[(kind, id)])
        .await?
        .remove(&(kind, id))
        .unwrap_or_default();
    Ok(Scope {
        kind,
        id,
        org_id,
        names,
    })
}

/// One limit of a scope as stored (or about to be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LimitRow {
    limit: i64,
    soft_threshold_pct: u32,
    hard_threshold_pct: u32,
}

/// What a SetLimits request asks for, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LimitChanges {
    values: Vec<(Metric, i64)>,
    soft_threshold_pct: Option<u32>,
    hard_threshold_pct: Option<u32>,
}

fn parse_changes(request: &pb::SetLimitsRequest) -> Result<LimitChanges, AdminError> {
    let values = request.values.unwrap_or_default();
    let given = [
        (
            Metric::RequestsPerMinute,
            "requests_per_minute",
            values.requests_per_minute,
        ),
        (
            Metric::TokensPerMinute,
            "tokens_per_minute",
            values.tokens_per_minute,
        ),
        (
            Metric::TokensPerHour,
            "tokens_per_hour",
            values.tokens_per_hour,
        ),
        (
            Metric::TokensPerDay,
            "tokens_per_day",
            values.tokens_per_day,
        ),
        (
            Metric::TokensPerMonth,
            "tokens_per_month",
            values.tokens_per_month,
        ),
        (
            Metric::BudgetMicrosPerMonth,
            "budget_micros_per_month",
            values.budget_micros_per_month,
        ),
        (
            Metric::ConcurrentRequests,
            "max_concurrent_requests",
            values.max_concurrent_requests,
        ),
    ];
    let mut changes = LimitChanges::default();
    for (metric, field, value) in given {
        if let Some(value) = value {
            changes
                .values
                .push((metric, validate::limit_value(field, value)?));
        }
    }
    changes.soft_threshold_pct = request
        .soft_threshold_pct
        .map(|pct| validate::threshold_pct("soft_threshold_pct", pct))
        .transpose()?;
    changes.hard_threshold_pct = request
        .hard_threshold_pct
        .map(|pct| validate::threshold_pct("hard_threshold_pct", pct))
        .transpose()?;
    if let (Some(soft), Some(hard)) = (changes.soft_threshold_pct, changes.hard_threshold_pct)
        && soft > hard
    {
        return Err(soft_above_hard(soft, hard));
    }
    if changes.values.is_empty()
        && changes.soft_threshold_pct.is_none()
        && changes.hard_threshold_pct.is_none()
    {
        return Err(AdminError::invalid(
            "values",
            "nothing to set: give at least one limit or threshold",
        ));
    }
    Ok(changes)
}

fn soft_above_hard(soft: u32, hard: u32) -> AdminError {
    AdminError::invalid(
        "soft_threshold_pct",
        format!("{soft}% is above the hard threshold {hard}%"),
    )
}

fn is_calendar(metric: Metric) -> bool {
    matches!(metric.window(), Window::Calendar(_))
}

/// The rows SetLimits writes: the given metrics with their new values, and, when thresholds are
/// given, every calendar limit of the scope with the new thresholds. A new calendar limit takes
/// the scope's current calendar thresholds (so a scope's quotas and budgets share them), or the
/// defaults. Thresholds only mean something for calendar limits; sliding windows and
/// concurrency store the defaults.
fn merge(
    existing: &BTreeMap<Metric, LimitRow>,
    changes: &LimitChanges,
) -> Result<BTreeMap<Metric, LimitRow>, AdminError> {
    let scope_thresholds = existing
        .iter()
        .find(|(metric, _)| is_calendar(**metric))
        .map(|(_, row)| (row.soft_threshold_pct, row.hard_threshold_pct))
        .unwrap_or((DEFAULT_SOFT_THRESHOLD_PCT, DEFAULT_HARD_THRESHOLD_PCT));
    let mut writes = BTreeMap::new();
    for &(metric, limit) in &changes.values {
        let row = match existing.get(&metric) {
            Some(row) => LimitRow { limit, ..*row },
            None if is_calendar(metric) => LimitRow {
                limit,
                soft_threshold_pct: scope_thresholds.0,
                hard_threshold_pct: scope_thresholds.1,
            },
            None => LimitRow {
                limit,
                soft_threshold_pct: DEFAULT_SOFT_THRESHOLD_PCT,
                hard_threshold_pct: DEFAULT_HARD_THRESHOLD_PCT,
            },
        };
        writes.insert(metric, row);
    }
    let thresholds_given =
        changes.soft_threshold_pct.is_some() || changes.hard_threshold_pct.is_some();
    if !thresholds_given {
        return Ok(writes);
    }
    let calendar: Vec<Metric> = existing
        .keys()
        .chain(writes.keys())
        .copied()
        .filter(|metric| is_calendar(*metric))
        .collect();
    if calendar.is_empty() {
        let field = if changes.soft_threshold_pct.is_some() {
            "soft_threshold_pct"
        } else {
            "hard_threshold_pct"
        };
        return Err(AdminError::invalid(
            field,
            "thresholds apply to calendar limits (tokens_per_hour, tokens_per_day, \
             tokens_per_month, budget_micros_per_month) and this scope has none; set one too",
        ));
    }
    for metric in calendar {
        let Some(current) = writes
            .get(&metric)
            .or_else(|| existing.get(&metric))
            .copied()
        else {
            continue;
        };
        let row = LimitRow {
            soft_threshold_pct: changes
                .soft_threshold_pct
                .unwrap_or(current.soft_threshold_pct),
            hard_threshold_pct: changes
                .hard_threshold_pct
                .unwrap_or(current.hard_threshold_pct),
            ..current
        };
        if row.soft_threshold_pct > row.hard_threshold_pct {
            return Err(soft_above_hard(
                row.soft_threshold_pct,
                row.hard_threshold_pct,
            ));
        }
        writes.insert(metric, row);
    }
    Ok(writes)
}

/// The scope's limits, locked until the transaction ends so concurrent writes to one scope
/// apply one after the other.
async fn lock_limits(
    conn: &mut PgConnection,
    scope: &Scope,
) -> Result<BTreeMap<Metric, LimitRow>, AdminError> {
    let rows = sqlx::query!(
        r#"SELECT metric, limit_value, soft_threshold_pct, hard_threshold_pct
           FROM limits WHERE scope_kind = $1 AND scope_id = $2
           FOR UPDATE"#,
        scope.kind.as_str(),
        scope.id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let metric = Metric::parse(&row.metric)?;
            let limit = LimitRow {
                limit: row.limit_value,
                soft_threshold_pct: u32::try_from(row.soft_threshold_pct).unwrap_or(0),
                hard_threshold_pct: u32::try_from(row.hard_threshold_pct).unwrap_or(0),
            };
            Some((metric, limit))
        })
        .collect())
}

async fn fetch_policy(
    conn: &mut PgConnection,
    scope: &Scope,
) -> Result<pb::LimitPolicy, AdminError> {
    let limits = policy::load(conn, LimitFilter::Scope(scope.kind, scope.id)).await?;
    Ok(policy_message(scope, &limits))
}

/// "team acme/platform": how audit targets and NOT_FOUND messages name a scope.
fn describe(scope: &Scope) -> String {
    format!("{} {}", scope.kind.as_str(), scope.display_name())
}

impl AdminApi {
    /// Sets the given limits of a scope and/or the thresholds of its calendar limits; limits
    /// not named keep their values.
    pub async fn set_limits(
        &self,
        actor: &str,
        request: pb::SetLimitsRequest,
    ) -> Result<pb::LimitPolicy, AdminError> {
        let spec = parse_scope(request.scope.as_ref())?;
        let changes = parse_changes(&request)?;
        let mut tx = self.pool.begin().await?;
        let scope = resolve_scope(&mut tx, spec).await?;
        let existing = lock_limits(&mut tx, &scope).await?;
        let before = fetch_policy(&mut tx, &scope).await?;
        let writes = merge(&existing, &changes)?;
        let metrics: Vec<String> = writes.keys().map(|m| m.as_str().to_owned()).collect();
        let values: Vec<i64> = writes.values().map(|row| row.limit).collect();
        let soft: Vec<i32> = writes
            .values()
            .map(|row| i32::try_from(row.soft_threshold_pct).unwrap_or(i32::MAX))
            .collect();
        let hard: Vec<i32> = writes
            .values()
            .map(|row| i32::try_from(row.hard_threshold_pct).unwrap_or(i32::MAX))
            .collect();
        sqlx::query!(
            r#"INSERT INTO limits (scope_kind, scope_id, org_id, metric, limit_value,
                                   soft_threshold_pct, hard_threshold_pct)
               SELECT $1, $2, $3, w.metric, w.limit_value, w.soft, w.hard
               FROM UNNEST($4::text[], $5::bigint[], $6::int[], $7::int[])
                    AS w(metric, limit_value, soft, hard)
               ON CONFLICT (scope_kind, scope_id, metric) DO UPDATE
               SET limit_value = EXCLUDED.limit_value,
                   soft_threshold_pct = EXCLUDED.soft_threshold_pct,
                   hard_threshold_pct = EXCLUDED.hard_threshold_pct,
                   updated_at = now()"#,
            scope.kind.as_str(),
            scope.id,
            scope.org_id,
            &metrics,
            &values,
            &soft,
            &hard
        )
        .execute(&mut *tx)
        .await?;
        let after = fetch_policy(&mut tx, &scope).await?;
        let entry = AuditEntry {
            actor,
            action: "limits.set",
            target: format!("limits/{}/{}", scope.kind.as_str(), scope.display_name()),
            before: audit::state(&before),
            after: audit::state(&after),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(after)
    }

    /// The scope's limits (none is not an error: the scope exists, it is just unlimited).
    pub async fn get_limits(
        &self,
        request: pb::GetLimitsRequest,
    ) -> Result<pb::LimitPolicy, AdminError> {
        let spec = parse_scope(request.scope.as_ref())?;
        let mut conn = self.pool.acquire().await?;
        let scope = resolve_scope(&mut conn, spec).await?;
        fetch_policy(&mut conn, &scope).await
    }

    /// Every scope with limits, optionally only those of one org.
    pub async fn list_limits(
        &self,
        request: pb::ListLimitsRequest,
    ) -> Result<pb::ListLimitsResponse, AdminError> {
        let mut conn = self.pool.acquire().await?;
        let filter = if request.org.is_empty() {
            LimitFilter::All
        } else {
            LimitFilter::Org(org_id(&mut conn, &request.org).await?)
        };
        let limits = policy::load(&mut conn, filter).await?;
        let mut policies: Vec<pb::LimitPolicy> = Vec::new();
        let mut start = 0;
        while start < limits.len() {
            let scope = &limits[start].scope;
            let end = limits[start..]
                .iter()
                .position(|limit| limit.scope.kind != scope.kind || limit.scope.id != scope.id)
                .map_or(limits.len(), |offset| start + offset);
            policies.push(policy_message(scope, &limits[start..end]));
            start = end;
        }
        Ok(pb::ListLimitsResponse { policies })
    }

    /// Removes the named metrics of a scope, or all of its limits when none is named. Removing
    /// a limit that is not set is NOT_FOUND naming it, and then nothing is removed.
    pub async fn remove_limits(
        &self,
        actor: &str,
        request: pb::RemoveLimitsRequest,
    ) -> Result<pb::LimitPolicy, AdminError> {
        let spec = parse_scope(request.scope.as_ref())?;
        let mut named = Vec::with_capacity(request.metrics.len());
        for &wire in &request.metrics {
            let metric = pb::LimitMetric::try_from(wire)
                .ok()
                .and_then(|metric| Metric::try_from(metric).ok())
                .ok_or_else(|| {
                    AdminError::invalid("metrics", format!("unknown limit metric {wire}"))
                })?;
            if !named.contains(&metric) {
                named.push(metric);
            }
        }
        let mut tx = self.pool.begin().await?;
        let scope = resolve_scope(&mut tx, spec).await?;
        let existing = lock_limits(&mut tx, &scope).await?;
        if existing.is_empty() {
            return Err(AdminError::not_found("limits of", describe(&scope)));
        }
        if let Some(missing) = named.iter().find(|metric| !existing.contains_key(metric)) {
            return Err(AdminError::not_found(
                "limit",
                format!("{} of {}", missing.as_str(), describe(&scope)),
            ));
        }
        let removed: Vec<String> = if named.is_empty() {
            existing.keys().map(|m| m.as_str().to_owned()).collect()
        } else {
            named.iter().map(|m| m.as_str().to_owned()).collect()
        };
        let before = fetch_policy(&mut tx, &scope).await?;
        sqlx::query!(
            "DELETE FROM limits WHERE scope_kind = $1 AND scope_id = $2 AND metric = ANY($3)",
            scope.kind.as_str(),
            scope.id,
            &removed
        )
        .execute(&mut *tx)
        .await?;
        // Edges drop a removed limit's counter and start from zero if it comes back, so the
        // sessions' cumulative figures must go too (else the plane would read the new figures
        // as below the old ones and count nothing). The counters stay: what was spent in the
        // window or period still counts if the limit is set again.
        sqlx::query!(
            "DELETE FROM limit_leases WHERE counter_id IN (
                 SELECT id FROM limit_counters
                 WHERE scope_kind = $1 AND scope_id = $2 AND metric = ANY($3))",
            scope.kind.as_str(),
            scope.id,
            &removed
        )
        .execute(&mut *tx)
        .await?;
        let after = fetch_policy(&mut tx, &scope).await?;
        let entry = AuditEntry {
            actor,
            action: "limits.remove",
            target: format!("limits/{}/{}", scope.kind.as_str(), scope.display_name()),
            before: audit::state(&before),
            after: audit::state(&after),
        };
        audit::commit_config_write(tx, entry).await?;
        Ok(after)
    }

    /// Current use of every limit of a scope, across all edges.
    pub async fn limit_status(
        &self,
        request: pb::LimitStatusRequest,
    ) -> Result<pb::LimitStatusResponse, AdminError> {
        let spec = parse_scope(request.scope.as_ref())?;
        let scope = {
            let mut conn = self.pool.acquire().await?;
            resolve_scope(&mut conn, spec).await?
        };
        let status = status::scope_status(&self.pool, scope.kind, scope.id, scope.org_id).await?;
        Ok(pb::LimitStatusResponse {
            policy: Some(policy_message(&scope, &status.limits)),
            uses: status.uses.iter().map(use_message).collect(),
        })
    }

    /// Threshold alerts, newest first.
    pub async fn list_limit_alerts(
        &self,
        request: pb::ListLimitAlertsRequest,
    ) -> Result<pb::ListLimitAlertsResponse, AdminError> {
        let count = match request.limit {
            0 => DEFAULT_ALERTS_LISTED,
            count => count,
        };
        let count = i64::from(validate::bounded("limit", count, MAX_ALERTS_LISTED)?);
        let mut conn = self.pool.acquire().await?;
        let org_filter = if request.org.is_empty() {
            None
        } else {
            Some(org_id(&mut conn, &request.org).await?)
        };
        let rows = sqlx::query!(
            r#"SELECT id, scope_kind, scope_id, org_id, metric, kind, threshold_pct, used,
                      limit_value, period_start, period_end, created_at, webhook_delivered_at
               FROM limit_alerts
               WHERE ($1::uuid IS NULL OR org_id = $1)
               ORDER BY created_at DESC, id
               LIMIT $2"#,
            org_filter,
            count
        )
        .fetch_all(&mut *conn)
        .await?;
        let scopes: Vec<(Level, Uuid)> = rows
            .iter()
            .filter_map(|row| Some((Level::parse(&row.scope_kind)?, row.scope_id)))
            .collect();
        let names = policy::scope_names(&mut conn, &scopes).await?;
        let alerts = rows
            .into_iter()
            .map(|row| {
                let kind = Level::parse(&row.scope_kind);
                let metric = Metric::parse(&row.metric);
                let scope = kind.map(|kind| Scope {
                    kind,
                    id: row.scope_id,
                    org_id: row.org_id,
                    names: names
                        .get(&(kind, row.scope_id))
                        .cloned()
                        .unwrap_or_default(),
                });
                pb::LimitAlert {
                    id: row.id.to_string(),
                    scope: scope.as_ref().map(scope_ref),
                    scope_kind: kind.map_or(0, |kind| pb::LimitScope::from(kind) as i32),
                    scope_id: row.scope_id.to_string(),
                    metric: metric.map_or(0, |metric| pb::LimitMetric::from(metric) as i32),
                    kind: row.kind,
                    threshold_pct: u32::try_from(row.threshold_pct).unwrap_or(0),
                    used: row.used,
                    limit: row.limit_value,
                    period_start_unix_ms: row.period_start.timestamp_millis(),
                    period_end_unix_ms: row.period_end.timestamp_millis(),
                    created_at_unix_ms: row.created_at.timestamp_millis(),
                    webhook_delivered_at_unix_ms: unix_ms_or_zero(row.webhook_delivered_at),
                }
            })
            .collect();
        Ok(pb::ListLimitAlertsResponse { alerts })
    }
}

/// The scope with every level it has filled in; a key is named by its display prefix (its id is
/// `scope_id`).
fn scope_ref(scope: &Scope) -> pb::LimitScopeRef {
    let ScopeNames {
        org,
        team,
        project,
        user,
        key_prefix,
    } = scope.names.clone();
    let mut reference = pb::LimitScopeRef {
        org,
        ..pb::LimitScopeRef::default()
    };
    match scope.kind {
        Level::Org => {}
        Level::Team => reference.team = team.unwrap_or_default(),
        Level::Project => {
            reference.team = team.unwrap_or_default();
            reference.project = project.unwrap_or_default();
        }
        Level::User => reference.user = user.unwrap_or_default(),
        Level::Key => {
            reference.team = team.unwrap_or_default();
            reference.project = project.unwrap_or_default();
            reference.user = user.unwrap_or_default();
            reference.key = key_prefix.unwrap_or_default();
        }
    }
    reference
}

fn policy_message(scope: &Scope, limits: &[ConfiguredLimit]) -> pb::LimitPolicy {
    pb::LimitPolicy {
        scope: Some(scope_ref(scope)),
        scope_kind: pb::LimitScope::from(scope.kind) as i32,
        scope_id: scope.id.to_string(),
        limits: limits
            .iter()
            .map(|limit| pb::Limit {
                metric: pb::LimitMetric::from(limit.metric) as i32,
                limit: limit.limit,
                soft_threshold_pct: limit.soft_threshold_pct,
                hard_threshold_pct: limit.hard_threshold_pct,
                updated_at_unix_ms: limit.updated_at.timestamp_millis(),
            })
            .collect(),
    }
}

fn use_message(limit_use: &LimitUse) -> pb::LimitUse {
    pb::LimitUse {
        metric: pb::LimitMetric::from(limit_use.metric) as i32,
        limit: limit_use.limit,
        enforced_limit: limit_use.enforced_limit,
        consumed: limit_use.consumed,
        leased: limit_use.leased,
        remaining: limit_use.remaining,
        period_start_unix_ms: limit_use
            .period
            .map_or(0, |period| period.start.timestamp_millis()),
        period_end_unix_ms: limit_use
            .period
            .map_or(0, |period| period.end.timestamp_millis()),
        edges: limit_use.edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(org: &str, team: &str, project: &str, user: &str, key: &str) -> pb::LimitScopeRef {
        pb::LimitScopeRef {
            org: org.to_owned(),
            team: team.to_owned(),
            project: project.to_owned(),
            user: user.to_owned(),
            key: key.to_owned(),
        }
    }

    fn invalid_field(result: Result<impl std::fmt::Debug, AdminError>) -> &'static str {
        match result {
            Err(AdminError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn the_most_specific_level_named_decides_the_scope() {
        let cases = [
            (
                scope("acme", "", "", "", ""),
                ScopeSpec::Org { org: "acme" },
            ),
            (
                scope("acme", "platform", "", "", ""),
                ScopeSpec::Team {
                    org: "acme",
                    team: "platform",
                },
            ),
            (
                scope("acme", "platform", "web", "", ""),
                ScopeSpec::Project {
                    org: "acme",
                    team: "platform",
                    project: "web",
                },
            ),
            (
                scope("acme", "", "", "alice", ""),
                ScopeSpec::User {
                    org: "acme",
                    user: "alice",
                },
            ),
            (
                scope("", "", "", "", "tg_1a2b3c4d"),
                ScopeSpec::Key { key: "tg_1a2b3c4d" },
            ),
        ];
        for (reference, expected) in cases {
            assert_eq!(
                parse_scope(Some(&reference)).ok(),
                Some(expected),
                "{reference:?}"
            );
        }
    }

    #[test]
    fn names_that_could_contradict_a_key_or_user_scope_are_refused() {
        assert_eq!(
            invalid_field(parse_scope(Some(&scope("acme", "", "", "", "tg_1a2b3c4d")))),
            "scope.key"
        );
        assert_eq!(
            invalid_field(parse_scope(Some(&scope(
                "acme", "platform", "", "alice", ""
            )))),
            "scope.user"
        );
    }

    #[test]
    fn scopes_missing_a_parent_name_the_missing_field() {
        assert_eq!(invalid_field(parse_scope(None)), "scope");
        assert_eq!(
            invalid_field(parse_scope(Some(&scope("", "", "", "", "")))),
            "scope"
        );
        assert_eq!(
            invalid_field(parse_scope(Some(&scope("", "platform", "", "", "")))),
            "scope.org"
        );
        assert_eq!(
            invalid_field(parse_scope(Some(&scope("", "", "", "alice", "")))),
            "scope.org"
        );
        assert_eq!(
            invalid_field(parse_scope(Some(&scope("acme", "", "web", "", "")))),
            "scope.team"
        );
        assert_eq!(
            invalid_field(parse_scope(Some(&scope("acme", "bad name", "", "", "")))),
            "scope.team"
        );
    }

    fn set(values: pb::LimitValues, soft: Option<u32>, hard: Option<u32>) -> pb::SetLimitsRequest {
        pb::SetLimitsRequest {
            scope: Some(scope("acme", "", "", "", "")),
            values: Some(values),
            soft_threshold_pct: soft,
            hard_threshold_pct: hard,
        }
    }

    #[test]
    fn limit_values_and_thresholds_are_validated_per_field() {
        let rpm_zero = pb::LimitValues {
            requests_per_minute: Some(0),
            ..pb::LimitValues::default()
        };
        assert_eq!(
            invalid_field(parse_changes(&set(rpm_zero, None, None))),
            "requests_per_minute"
        );
        let budget_negative = pb::LimitValues {
            budget_micros_per_month: Some(-1),
            ..pb::LimitValues::default()
        };
        assert_eq!(
            invalid_field(parse_changes(&set(budget_negative, None, None))),
            "budget_micros_per_month"
        );
        let day = pb::LimitValues {
            tokens_per_day: Some(1_000),
            ..pb::LimitValues::default()
        };
        assert_eq!(
            invalid_field(parse_changes(&set(day, Some(0), None))),
            "soft_threshold_pct"
        );
        assert_eq!(
            invalid_field(parse_changes(&set(day, None, Some(1001)))),
            "hard_threshold_pct"
        );
        assert_eq!(
            invalid_field(parse_changes(&set(day, Some(95), Some(90)))),
            "soft_threshold_pct"
        );
        assert_eq!(
            invalid_field(parse_changes(&set(pb::LimitValues::default(), None, None))),
            "values"
        );
        let changes = parse_changes(&set(day, Some(50), Some(120))).unwrap();
        assert_eq!(changes.values, vec![(Metric::TokensPerDay, 1_000)]);
        assert_eq!(
            (changes.soft_threshold_pct, changes.hard_threshold_pct),
            (Some(50), Some(120))
        );
    }

    fn row(limit: i64, soft: u32, hard: u32) -> LimitRow {
        LimitRow {
            limit,
            soft_threshold_pct: soft,
            hard_threshold_pct: hard,
        }
    }

    #[test]
    fn set_merges_only_the_given_metrics() {
        let existing = BTreeMap::from([
            (Metric::RequestsPerMinute, row(60, 80, 100)),
            (Metric::BudgetMicrosPerMonth, row(50_000_000, 70, 110)),
        ]);
        let changes = LimitChanges {
            values: vec![
                (Metric::TokensPerMinute, 10_000),
                (Metric::TokensPerDay, 1_000),
            ],
            ..LimitChanges::default()
        };
        let writes = merge(&existing, &changes).unwrap();
        assert_eq!(
            writes,
            BTreeMap::from([
                (Metric::TokensPerMinute, row(10_000, 80, 100)),
                // A new calendar limit shares the scope's calendar thresholds.
                (Metric::TokensPerDay, row(1_000, 70, 110)),
            ])
        );
    }

    #[test]
    fn thresholds_apply_to_every_calendar_limit_of_the_scope() {
        let existing = BTreeMap::from([
            (Metric::RequestsPerMinute, row(60, 80, 100)),
            (Metric::BudgetMicrosPerMonth, row(50_000_000, 80, 100)),
            (Metric::TokensPerMonth, row(1_000_000, 80, 100)),
        ]);
        let changes = LimitChanges {
            values: vec![(Metric::TokensPerMonth, 2_000_000)],
            soft_threshold_pct: Some(90),
            hard_threshold_pct: None,
        };
        let writes = merge(&existing, &changes).unwrap();
        assert_eq!(
            writes,
            BTreeMap::from([
                (Metric::TokensPerMonth, row(2_000_000, 90, 100)),
                (Metric::BudgetMicrosPerMonth, row(50_000_000, 90, 100)),
            ])
        );
        // A soft threshold above the stored hard threshold is caught after merging.
        let changes = LimitChanges {
            soft_threshold_pct: Some(101),
            ..LimitChanges::default()
        };
        assert_eq!(
            invalid_field(merge(&existing, &changes)),
            "soft_threshold_pct"
        );
    }

    #[test]
    fn thresholds_without_a_calendar_limit_are_refused() {
        let existing = BTreeMap::from([(Metric::RequestsPerMinute, row(60, 80, 100))]);
        let changes = LimitChanges {
            values: vec![(Metric::TokensPerMinute, 1_000)],
            hard_threshold_pct: Some(90),
            ..LimitChanges::default()
        };
        assert_eq!(
            invalid_field(merge(&existing, &changes)),
            "hard_threshold_pct"
        );
        let changes = LimitChanges {
            values: vec![(Metric::TokensPerHour, 1_000)],
            hard_threshold_pct: Some(90),
            ..LimitChanges::default()
        };
        assert_eq!(
            merge(&existing, &changes).unwrap(),
            BTreeMap::from([(Metric::TokensPerHour, row(1_000, 80, 90))])
        );
    }
}
