//! Usage reports: spend and tokens per org, team, project, user or model over a time range, read
//! from the hourly rollups (never by scanning raw events), so a report over a month costs the
//! same whatever the traffic was.

use super::AdminApi;
use super::tenancy::org_id;
use super::validate;
use crate::error::AdminError;
use chrono::{DateTime, Utc};
use tollgate_proto::v1 as pb;

const HOUR_MS: i64 = 3_600_000;

/// What a report's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Org,
    Team,
    Project,
    User,
    Model,
}

impl GroupBy {
    pub const ALL: [GroupBy; 5] = [
        Self::Team,
        Self::Project,
        Self::User,
        Self::Model,
        Self::Org,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Org => "org",
            Self::Team => "team",
            Self::Project => "project",
            Self::User => "user",
            Self::Model => "model",
        }
    }

    fn parse(value: &str) -> Result<Self, AdminError> {
        Self::ALL
            .into_iter()
            .find(|group| group.as_str() == value)
            .ok_or_else(|| {
                AdminError::invalid(
                    "group_by",
                    format!(
                        "'{value}' is not one of {}",
                        Self::ALL.map(GroupBy::as_str).join(", ")
                    ),
                )
            })
    }
}

/// The report's time range after widening to whole hours: rollup rows whose hour starts in
/// `[since, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HourRange {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl HourRange {
    /// `until_unix_ms` 0 means `now_unix_ms`. `since` is truncated down to its hour and `until`
    /// rounded up, so the hour that holds `until` (the current one, for "now") is included.
    fn new(since_unix_ms: i64, until_unix_ms: i64, now_unix_ms: i64) -> Result<Self, AdminError> {
        if since_unix_ms < 0 {
            return Err(AdminError::invalid("since", "must not be before 1970"));
        }
        let until_unix_ms = match until_unix_ms {
            0 => now_unix_ms,
            ms if ms < 0 => return Err(AdminError::invalid("until", "must not be before 1970")),
            ms => ms,
        };
        if since_unix_ms >= until_unix_ms {
            return Err(AdminError::invalid(
                "since",
                format!("must be before until ({since_unix_ms} >= {until_unix_ms} unix ms)"),
            ));
        }
        let since = since_unix_ms - since_unix_ms.rem_euclid(HOUR_MS);
        let until = until_unix_ms
            .checked_add((HOUR_MS - until_unix_ms.rem_euclid(HOUR_MS)) % HOUR_MS)
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .ok_or_else(|| AdminError::invalid("until", "out of range"))?;
        let since = DateTime::<Utc>::from_timestamp_millis(since)
            .ok_or_else(|| AdminError::invalid("since", "out of range"))?;
        Ok(Self { since, until })
    }
}

impl AdminApi {
    /// Rows sorted by cost, most expensive first (then by name in byte order, so equal costs
    /// keep one order whatever the database's collation). Unpriced requests are counted apart: their cost is unknown, and adding them as
    /// zero would understate spend.
    pub async fn usage_report(
        &self,
        request: pb::UsageReportRequest,
    ) -> Result<pb::UsageReportResponse, AdminError> {
        let group_by = GroupBy::parse(&request.group_by)?;
        let range = HourRange::new(
            request.since_unix_ms,
            request.until_unix_ms,
            Utc::now().timestamp_millis(),
        )?;
        let mut conn = self.pool.acquire().await?;
        let org_filter = if request.org.is_empty() {
            None
        } else {
            let org = validate::entity_name("org", &request.org)?;
            Some(org_id(&mut conn, org).await?)
        };
        // Names are unique in their scope (org, org/team, ...), so grouping by the qualified
        // name is grouping by the entity. An id missing from its table (never expected) shows
        // as the id rather than dropping its spend from the report.
        let rows = sqlx::query!(
            r#"WITH named AS (
                   SELECT coalesce(o.name, h.org_id::text) AS org,
                          coalesce(t.name, h.team_id::text) AS team,
                          coalesce(p.name, h.project_id::text) AS project,
                          CASE WHEN h.user_id IS NULL THEN '(none)'
                               ELSE coalesce(u.name, h.user_id::text) END AS "user",
                          CASE WHEN h.model = '' THEN '(none)' ELSE h.model END AS model,
                          h.requests, h.input_tokens, h.output_tokens, h.cost_micros,
                          h.unpriced_requests, h.error_requests
                   FROM usage_hourly h
                   LEFT JOIN orgs o ON o.id = h.org_id
                   LEFT JOIN teams t ON t.id = h.team_id
                   LEFT JOIN projects p ON p.id = h.project_id
                   LEFT JOIN users u ON u.id = h.user_id
                   WHERE h.hour >= $2 AND h.hour < $3 AND ($4::uuid IS NULL OR h.org_id = $4)
               ), grouped AS (
                   SELECT CASE $1::text
                              WHEN 'org' THEN org
                              WHEN 'team' THEN org || '/' || team
                              WHEN 'project' THEN org || '/' || team || '/' || project
                              WHEN 'user' THEN org || '/' || "user"
                              ELSE model
                          END AS grp,
                          requests, input_tokens, output_tokens, cost_micros,
                          unpriced_requests, error_requests
                   FROM named
               )
               SELECT grp AS "group!",
                      sum(requests)::bigint AS "requests!",
                      sum(input_tokens)::bigint AS "input_tokens!",
                      sum(output_tokens)::bigint AS "output_tokens!",
                      sum(cost_micros)::bigint AS "cost_micros!",
                      sum(unpriced_requests)::bigint AS "unpriced_requests!",
                      sum(error_requests)::bigint AS "error_requests!"
               FROM grouped
               GROUP BY grp
               ORDER BY sum(cost_micros) DESC, grp COLLATE "C""#,
            group_by.as_str(),
            range.since,
            range.until,
            org_filter
        )
        .fetch_all(&mut *conn)
        .await?;
        let rows = rows
            .into_iter()
            .map(|row| {
                let requests = row.requests.max(0);
                let priced_requests = (requests - row.unpriced_requests).max(0);
                pb::UsageReportRow {
                    group: row.group,
                    requests: unsigned(requests),
                    input_tokens: unsigned(row.input_tokens),
                    output_tokens: unsigned(row.output_tokens),
                    cost_micros: row.cost_micros,
                    unpriced_requests: unsigned(row.unpriced_requests),
                    avg_cost_micros_per_request: average(row.cost_micros, priced_requests),
                    error_requests: unsigned(row.error_requests),
                }
            })
            .collect();
        Ok(pb::UsageReportResponse {
            rows,
            since_unix_ms: range.since.timestamp_millis(),
            until_unix_ms: range.until.timestamp_millis(),
        })
    }
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Mean cost of the priced requests, rounded half up; 0 when none was priced.
fn average(cost_micros: i64, priced_requests: i64) -> i64 {
    if priced_requests <= 0 {
        return 0;
    }
    let rounded = (i128::from(cost_micros) * 2 + i128::from(priced_requests))
        / (2 * i128::from(priced_requests));
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const T: i64 = 1_795_000_000_000; // 2026-11-18T09:46:40Z

    #[test]
    fn ranges_widen_to_whole_hours_and_until_zero_is_now() {
        let range = HourRange::new(T, T + 1, 0).unwrap();
        assert_eq!(range.since.timestamp_millis(), T - T % HOUR_MS);
        assert_eq!(range.until.timestamp_millis(), T - T % HOUR_MS + HOUR_MS);
        let on_the_hour = T - T % HOUR_MS;
        let range = HourRange::new(0, on_the_hour, 0).unwrap();
        assert_eq!(range.until.timestamp_millis(), on_the_hour);
        let range = HourRange::new(0, 0, T).unwrap();
        assert_eq!(range.until.timestamp_millis(), on_the_hour + HOUR_MS);
    }

    #[test]
    fn empty_or_negative_ranges_are_invalid_and_name_the_field() {
        let err = HourRange::new(T, T, 0).unwrap_err().to_string();
        assert!(err.starts_with("since: must be before until"), "{err}");
        assert!(HourRange::new(T + 1, T, 0).is_err());
        assert!(HourRange::new(T, 0, T - 1).is_err(), "until 0 is now");
        assert!(HourRange::new(-1, T, 0).is_err());
        assert!(HourRange::new(0, -5, 0).is_err());
        assert!(HourRange::new(0, i64::MAX, 0).is_err());
    }

    #[test]
    fn group_by_is_checked() {
        assert_eq!(GroupBy::parse("team").unwrap(), GroupBy::Team);
        let err = GroupBy::parse("galaxy").unwrap_err().to_string();
        assert_eq!(
            err,
            "group_by: 'galaxy' is not one of team, project, user, model, org"
        );
    }

    #[test]
    fn averages_are_over_priced_requests_rounded_half_up() {
        assert_eq!(average(10, 4), 3);
        assert_eq!(average(9, 4), 2);
        assert_eq!(average(5, 0), 0);
    }
}
