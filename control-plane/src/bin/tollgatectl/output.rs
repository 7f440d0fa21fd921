//! How each Admin API response reads as a table. JSON output needs nothing here: it is the serde
//! serialization of the response message itself, so it always matches the proto contract.

use tollgate_control_plane::limits::{Metric, Window};
use tollgate_proto::v1::{
    CreateJoinTokenResponse, CreateVirtualKeyResponse, Edge, LimitAlert, LimitMetric, LimitPolicy,
    LimitScope, LimitScopeRef, LimitStatusResponse, ListEdgesResponse, Model, ModelTimeouts, Org,
    Project, Provider, ScheduledPrice, Team, UsageReportResponse, User, VirtualKey,
};

use crate::table::Table;
use crate::timestamp::{format_unix_ms, now_unix_ms};
use tollgate_contract::money::{format_usd, format_usd_micros};

pub fn orgs(orgs: &[Org]) -> String {
    let mut table = Table::new(&["NAME", "TIME ZONE", "ID", "CREATED"]);
    for org in orgs {
        table.row(vec![
            org.name.clone(),
            org.time_zone.clone(),
            org.id.clone(),
            format_unix_ms(org.created_at_unix_ms),
        ]);
    }
    table.render()
}

pub fn teams(teams: &[Team]) -> String {
    let mut table = Table::new(&["ORG", "NAME", "ID", "CREATED"]);
    for team in teams {
        table.row(vec![
            team.org.clone(),
            team.name.clone(),
            team.id.clone(),
            format_unix_ms(team.created_at_unix_ms),
        ]);
    }
    table.render()
}

pub fn projects(projects: &[Project]) -> String {
    let mut table = Table::new(&["ORG", "TEAM", "NAME", "ID", "CREATED"]);
    for project in projects {
        table.row(vec![
            project.org.clone(),
            project.team.clone(),
            project.name.clone(),
            project.id.clone(),
            format_unix_ms(project.created_at_unix_ms),
        ]);
    }
    table.render()
}

pub fn users(users: &[User]) -> String {
    let mut table = Table::new(&["ORG", "NAME", "ID", "CREATED"]);
    for user in users {
        table.row(vec![
            user.org.clone(),
            user.name.clone(),
            user.id.clone(),
            format_unix_ms(user.created_at_unix_ms),
        ]);
    }
    table.render()
}

pub fn keys(keys: &[VirtualKey]) -> String {
    let now_ms = now_unix_ms();
    let mut table = Table::new(&[
        "ID", "PREFIX", "NAME", "ORG", "TEAM", "PROJECT", "USER", "MODELS", "STATUS", "EXPIRES",
        "REVOKED", "CREATED",
    ]);
    for key in keys {
        let models = if key.allowed_models.is_empty() {
            "*".to_owned()
        } else {
            key.allowed_models.join(",")
        };
        table.row(vec![
            key.id.clone(),
            key.prefix.clone(),
            or_dash(&key.name),
            key.org.clone(),
            key.team.clone(),
            key.project.clone(),
            or_dash(&key.user),
            models,
            key_status(key, now_ms).to_owned(),
            format_unix_ms(key.expires_at_unix_ms),
            format_unix_ms(key.revoked_at_unix_ms),
            format_unix_ms(key.created_at_unix_ms),
        ]);
    }
    table.render()
}

/// The new key's row, then its plaintext: the one and only time anyone sees it.
pub fn created_key(response: &CreateVirtualKeyResponse) -> String {
    let rows = response
        .key
        .as_ref()
        .map(|key| keys(std::slice::from_ref(key)))
        .unwrap_or_default();
    format!(
        "{rows}\nkey: {}\nStore this key now: it is shown only this once and cannot be \
         recovered.\n",
        response.plaintext
    )
}

pub fn providers(providers: &[Provider]) -> String {
    let mut table = Table::new(&[
        "NAME",
        "KIND",
        "BASE URL",
        "API VERSION",
        "API KEY",
        "TIMEOUT MS",
        "MOCK",
        "ID",
        "CREATED",
    ]);
    for provider in providers {
        let timeout = match provider.request_timeout_ms {
            0 => "default".to_owned(),
            timeout_ms => timeout_ms.to_string(),
        };
        let mock = match &provider.mock {
            Some(mock) if provider.kind == "mock" => format!(
                "latency {}ms, {} tokens, chunk every {}ms",
                mock.latency_ms, mock.output_tokens, mock.chunk_interval_ms
            ),
            _ => "-".to_owned(),
        };
        table.row(vec![
            provider.name.clone(),
            provider.kind.clone(),
            or_dash(&provider.base_url),
            api_version(provider),
            if provider.has_api_key { "set" } else { "-" }.to_owned(),
            timeout,
            mock,
            provider.id.clone(),
            format_unix_ms(provider.created_at_unix_ms),
        ]);
    }
    table.render()
}

/// Only Azure and Anthropic have a version setting; empty there means the edge's default.
fn api_version(provider: &Provider) -> String {
    match provider.kind.as_str() {
        "azure_openai" | "anthropic" if provider.api_version.is_empty() => "default".to_owned(),
        _ => or_dash(&provider.api_version),
    }
}

pub fn models(models: &[Model]) -> String {
    let mut table = Table::new(&[
        "NAME",
        "PROVIDER",
        "UPSTREAM MODEL",
        "INPUT USD/MTOK",
        "CACHED INPUT USD/MTOK",
        "OUTPUT USD/MTOK",
        "PRICE VERSION",
        "PRICE SINCE",
        "SCHEDULED",
        "MAX OUTPUT TOKENS",
        "TIMEOUTS",
        "ID",
        "CREATED",
    ]);
    for model in models {
        let (price_version, cached_input) = if model.price_version == 0 {
            ("unpriced".to_owned(), "-".to_owned())
        } else {
            let cached = model
                .cached_input_price_micros_per_mtok
                .unwrap_or(model.input_price_micros_per_mtok);
            (model.price_version.to_string(), format_usd(cached))
        };
        let scheduled = if model.scheduled_prices.is_empty() {
            "-".to_owned()
        } else {
            model
                .scheduled_prices
                .iter()
                .map(scheduled_price)
                .collect::<Vec<_>>()
                .join("; ")
        };
        table.row(vec![
            model.name.clone(),
            model.provider.clone(),
            model.upstream_model.clone(),
            format_usd(model.input_price_micros_per_mtok),
            cached_input,
            format_usd(model.output_price_micros_per_mtok),
            price_version,
            format_unix_ms(model.price_effective_from_unix_ms),
            scheduled,
            model.max_output_tokens.to_string(),
            timeouts(model.timeouts.unwrap_or_default()),
            model.id.clone(),
            format_unix_ms(model.created_at_unix_ms),
        ]);
    }
    table.render()
}

/// "connect 5s, total 2m 30s": the phases with their own deadline; the others use the edge
/// default, and "default" means all of them do.
fn timeouts(timeouts: ModelTimeouts) -> String {
    let phases = [
        ("connect", timeouts.connect_ms),
        ("first token", timeouts.first_token_ms),
        ("idle", timeouts.idle_ms),
        ("total", timeouts.total_ms),
    ];
    let set: Vec<String> = phases
        .into_iter()
        .filter(|(_, ms)| *ms > 0)
        .map(|(phase, ms)| format!("{phase} {}", duration_ms(ms)))
        .collect();
    if set.is_empty() {
        "default".to_owned()
    } else {
        set.join(", ")
    }
}

/// Exact and short: "750ms", "30s", "2m 30s", "1h", "1h 0m 1s".
fn duration_ms(ms: u32) -> String {
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let (hours, minutes, seconds) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (hours, minutes, seconds) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h {m}m"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

/// "v3 from 2027-01-01T00:00:00Z: in 1.00, cached 0.50, out 4.00" (USD per 1M tokens).
fn scheduled_price(price: &ScheduledPrice) -> String {
    let cached = price
        .cached_input_price_micros_per_mtok
        .unwrap_or(price.input_price_micros_per_mtok);
    format!(
        "v{} from {}: in {}, cached {}, out {}",
        price.version,
        format_unix_ms(price.effective_from_unix_ms),
        format_usd(price.input_price_micros_per_mtok),
        format_usd(cached),
        format_usd(price.output_price_micros_per_mtok)
    )
}

/// A usage report: the range actually covered, one row per group, a total, and a warning when
/// some spend is unknown because requests were unpriced.
pub fn usage_report(report: &UsageReportResponse, group_by: &str) -> String {
    let mut table = Table::new(&[
        &group_by.to_uppercase(),
        "REQUESTS",
        "ERRORS",
        "INPUT TOKENS",
        "OUTPUT TOKENS",
        "COST USD",
        "AVG USD/REQUEST",
        "UNPRICED",
    ]);
    let mut total = TotalRow::default();
    for row in &report.rows {
        table.row(vec![
            row.group.clone(),
            row.requests.to_string(),
            row.error_requests.to_string(),
            row.input_tokens.to_string(),
            row.output_tokens.to_string(),
            format_usd_micros(row.cost_micros),
            format_usd_micros(row.avg_cost_micros_per_request),
            row.unpriced_requests.to_string(),
        ]);
        total.requests = total.requests.saturating_add(row.requests);
        total.errors = total.errors.saturating_add(row.error_requests);
        total.input_tokens = total.input_tokens.saturating_add(row.input_tokens);
        total.output_tokens = total.output_tokens.saturating_add(row.output_tokens);
        total.cost_micros = total.cost_micros.saturating_add(row.cost_micros);
        total.unpriced = total.unpriced.saturating_add(row.unpriced_requests);
    }
    if report.rows.len() > 1 {
        table.row(vec![
            "TOTAL".to_owned(),
            total.requests.to_string(),
            total.errors.to_string(),
            total.input_tokens.to_string(),
            total.output_tokens.to_string(),
            format_usd_micros(total.cost_micros),
            String::new(),
            total.unpriced.to_string(),
        ]);
    }
    let mut out = format!(
        "usage from {} to {} (whole UTC hours)\n{}",
        format_unix_ms(report.since_unix_ms),
        format_unix_ms(report.until_unix_ms),
        table.render()
    );
    if total.unpriced > 0 {
        out.push_str(&format!(
            "note: {} request(s) used a model without a price; their cost is unknown and not \
             included in COST USD\n",
            total.unpriced
        ));
    }
    out
}

#[derive(Default)]
struct TotalRow {
    requests: u64,
    errors: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost_micros: i64,
    unpriced: u64,
}

/// The token's row, then the token itself: like a key, it is shown only once.
pub fn created_join_token(response: &CreateJoinTokenResponse) -> String {
    let mut table = Table::new(&["ID", "NAME"]);
    table.row(vec![response.id.clone(), or_dash(&response.name)]);
    format!(
        "{}\njoin token: {}\nStore this token now: it is shown only this once. Start an edge with \
         --join-token <token> or TOLLGATE_JOIN_TOKEN=<token>.\n",
        table.render(),
        response.token
    )
}

/// Edges with the version each one runs; an edge behind the current version is marked stale.
pub fn edges(response: &ListEdgesResponse) -> String {
    let current = response.current_config_version;
    let mut table = Table::new(&[
        "EDGE",
        "REGION",
        "BUILD",
        "CONFIG VERSION",
        "KEY REVISION",
        "CONNECTED",
        "LAST SEEN",
        "LAST NACK",
    ]);
    for edge in &response.edges {
        let config_version = if edge.config_version < current {
            format!("{} (stale)", edge.config_version)
        } else {
            edge.config_version.to_string()
        };
        table.row(vec![
            edge.edge_id.clone(),
            or_dash(&edge.region),
            or_dash(&edge.build_version),
            config_version,
            edge.key_revision.to_string(),
            if edge.connected { "yes" } else { "no" }.to_owned(),
            format_unix_ms(edge.last_seen_at_unix_ms),
            last_nack(edge),
        ]);
    }
    format!("current config version: {current}\n{}", table.render())
}

fn last_nack(edge: &Edge) -> String {
    if edge.last_nack_version == 0 && edge.last_nack_reason.is_empty() {
        return "-".to_owned();
    }
    format!(
        "v{} at {}: {}",
        edge.last_nack_version,
        format_unix_ms(edge.last_nack_at_unix_ms),
        edge.last_nack_reason
    )
}

/// "team acme/platform", "user acme/alice", "key tg_1a2b3c4d (acme/platform/web)".
fn scope_label(kind: i32, scope: Option<&LimitScopeRef>) -> String {
    let default = LimitScopeRef::default();
    let scope = scope.unwrap_or(&default);
    let path = |parts: &[&str]| {
        parts
            .iter()
            .filter(|part| !part.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/")
    };
    match LimitScope::try_from(kind) {
        Ok(LimitScope::Org) => format!("org {}", scope.org),
        Ok(LimitScope::Team) => format!("team {}", path(&[&scope.org, &scope.team])),
        Ok(LimitScope::Project) => format!(
            "project {}",
            path(&[&scope.org, &scope.team, &scope.project])
        ),
        Ok(LimitScope::User) => format!("user {}", path(&[&scope.org, &scope.user])),
        Ok(LimitScope::Key) => format!(
            "key {} ({})",
            scope.key,
            path(&[&scope.org, &scope.team, &scope.project])
        ),
        Ok(LimitScope::Unspecified) | Err(_) => format!("scope kind {kind}"),
    }
}

fn metric(wire: i32) -> Option<Metric> {
    LimitMetric::try_from(wire)
        .ok()
        .and_then(|metric| Metric::try_from(metric).ok())
}

fn metric_name(wire: i32) -> String {
    metric(wire).map_or_else(|| format!("metric {wire}"), |m| m.as_str().to_owned())
}

/// A limit's amount in its unit: budgets in USD, everything else as a count.
fn amount(wire: i32, value: i64) -> String {
    match metric(wire) {
        Some(Metric::BudgetMicrosPerMonth) => format!("{} USD", format_usd(value)),
        _ => value.to_string(),
    }
}

fn is_calendar(wire: i32) -> bool {
    metric(wire).is_some_and(|metric| matches!(metric.window(), Window::Calendar(_)))
}

/// A scope's limits. Thresholds only apply to calendar limits (quotas, budgets).
pub fn limit_policy(policy: &LimitPolicy) -> String {
    let mut table = Table::new(&["METRIC", "LIMIT", "ENFORCED", "SOFT %", "HARD %", "UPDATED"]);
    for limit in &policy.limits {
        let (soft, hard, enforced) = match metric(limit.metric) {
            Some(m) if is_calendar(limit.metric) => (
                limit.soft_threshold_pct.to_string(),
                limit.hard_threshold_pct.to_string(),
                m.enforced_limit(limit.limit, limit.hard_threshold_pct),
            ),
            _ => ("-".to_owned(), "-".to_owned(), limit.limit),
        };
        table.row(vec![
            metric_name(limit.metric),
            amount(limit.metric, limit.limit),
            amount(limit.metric, enforced),
            soft,
            hard,
            format_unix_ms(limit.updated_at_unix_ms),
        ]);
    }
    let label = scope_label(policy.scope_kind, policy.scope.as_ref());
    if policy.limits.is_empty() {
        return format!("{label}: no limits\n");
    }
    format!("{label}\n{}", table.render())
}

/// Every scope with limits, one row per limit.
pub fn limit_policies(policies: &[LimitPolicy]) -> String {
    let mut table = Table::new(&["SCOPE", "METRIC", "LIMIT", "SOFT %", "HARD %", "UPDATED"]);
    for policy in policies {
        let label = scope_label(policy.scope_kind, policy.scope.as_ref());
        for limit in &policy.limits {
            let (soft, hard) = if is_calendar(limit.metric) {
                (
                    limit.soft_threshold_pct.to_string(),
                    limit.hard_threshold_pct.to_string(),
                )
            } else {
                ("-".to_owned(), "-".to_owned())
            };
            table.row(vec![
                label.clone(),
                metric_name(limit.metric),
                amount(limit.metric, limit.limit),
                soft,
                hard,
                format_unix_ms(limit.updated_at_unix_ms),
            ]);
        }
    }
    table.render()
}

/// Current use of a scope's limits across all edges.
pub fn limit_status(status: &LimitStatusResponse) -> String {
    let mut table = Table::new(&[
        "METRIC",
        "LIMIT",
        "ENFORCED",
        "CONSUMED",
        "LEASED",
        "REMAINING",
        "PERIOD",
        "RESETS",
        "EDGES",
    ]);
    for limit_use in &status.uses {
        let (period, resets) = match metric(limit_use.metric).map(Metric::window) {
            Some(Window::Calendar(_)) => (
                format_unix_ms(limit_use.period_start_unix_ms),
                format_unix_ms(limit_use.period_end_unix_ms),
            ),
            Some(Window::SlidingMinute) => ("sliding 60s".to_owned(), "-".to_owned()),
            Some(Window::Concurrent) => ("in flight".to_owned(), "-".to_owned()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let wire = limit_use.metric;
        table.row(vec![
            metric_name(wire),
            amount(wire, limit_use.limit),
            amount(wire, limit_use.enforced_limit),
            amount(wire, limit_use.consumed),
            amount(wire, limit_use.leased),
            amount(wire, limit_use.remaining),
            period,
            resets,
            limit_use.edges.to_string(),
        ]);
    }
    let label = status.policy.as_ref().map_or_else(String::new, |policy| {
        scope_label(policy.scope_kind, policy.scope.as_ref())
    });
    if status.uses.is_empty() {
        return format!("{label}: no limits\n");
    }
    format!("{label}\n{}", table.render())
}

/// Threshold alerts, newest first as the control plane returns them.
pub fn limit_alerts(alerts: &[LimitAlert]) -> String {
    let mut table = Table::new(&[
        "CREATED",
        "SCOPE",
        "METRIC",
        "KIND",
        "THRESHOLD %",
        "USED",
        "LIMIT",
        "PERIOD",
        "WEBHOOK",
    ]);
    for alert in alerts {
        let delivered = if alert.webhook_delivered_at_unix_ms == 0 {
            "-".to_owned()
        } else {
            format_unix_ms(alert.webhook_delivered_at_unix_ms)
        };
        table.row(vec![
            format_unix_ms(alert.created_at_unix_ms),
            scope_label(alert.scope_kind, alert.scope.as_ref()),
            metric_name(alert.metric),
            alert.kind.clone(),
            alert.threshold_pct.to_string(),
            amount(alert.metric, alert.used),
            amount(alert.metric, alert.limit),
            format!(
                "{} to {}",
                format_unix_ms(alert.period_start_unix_ms),
                format_unix_ms(alert.period_end_unix_ms)
            ),
            delivered,
        ]);
    }
    table.render()
}

fn key_status(key: &VirtualKey, now_ms: i64) -> &'static str {
    if key.revoked_at_unix_ms != 0 {
        "revoked"
    } else if key.expires_at_unix_ms != 0 && key.expires_at_unix_ms <= now_ms {
        "expired"
    } else {
        "active"
    }
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(edge_id: &str, config_version: u64) -> Edge {
        Edge {
            edge_id: edge_id.to_owned(),
            region: "eu".to_owned(),
            build_version: "0.1.0".to_owned(),
            config_version,
            connected: true,
            last_seen_at_unix_ms: 1_801_353_600_000,
            ..Edge::default()
        }
    }

    #[test]
    fn edges_behind_the_current_version_are_marked_stale() {
        let mut nacked = edge("edge-b", 6);
        nacked.connected = false;
        nacked.last_nack_version = 7;
        nacked.last_nack_reason = "model 'x': unknown provider kind 'grpc'".to_owned();
        nacked.last_nack_at_unix_ms = 1_801_353_601_000;
        let response = ListEdgesResponse {
            edges: vec![edge("edge-a", 7), nacked],
            current_config_version: 7,
        };
        let text = edges(&response);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"current config version: 7"));
        assert_eq!(lines.len(), 4, "{text}");
        let edge_a = lines.iter().find(|line| line.starts_with("edge-a"));
        let edge_b = lines.iter().find(|line| line.starts_with("edge-b"));
        assert!(edge_a.is_some_and(|line| !line.contains("stale") && line.ends_with('-')));
        assert!(edge_b.is_some_and(|line| {
            line.contains("6 (stale)")
                && line.contains(" no ")
                && line.ends_with(
                    "v7 at 2027-01-31T00:00:01Z: model 'x': unknown provider kind 'grpc'",
                )
        }));
    }

    #[test]
    fn usage_reports_show_exact_spend_a_total_and_unpriced_requests() {
        use tollgate_proto::v1::UsageReportRow;
        let report = UsageReportResponse {
            rows: vec![
                UsageReportRow {
                    group: "acme/ml".to_owned(),
                    requests: 3,
                    input_tokens: 300,
                    output_tokens: 90,
                    cost_micros: 1_234_567,
                    unpriced_requests: 1,
                    avg_cost_micros_per_request: 617_284,
                    error_requests: 1,
                },
                UsageReportRow {
                    group: "acme/web".to_owned(),
                    requests: 1,
                    input_tokens: 10,
                    output_tokens: 5,
                    cost_micros: 7,
                    unpriced_requests: 0,
                    avg_cost_micros_per_request: 7,
                    error_requests: 0,
                },
            ],
            since_unix_ms: 1_801_353_600_000,
            until_unix_ms: 1_801_357_200_000,
        };
        let text = usage_report(&report, "team");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "usage from 2027-01-31T00:00:00Z to 2027-01-31T01:00:00Z (whole UTC hours)"
        );
        assert!(lines[1].starts_with("TEAM "), "{text}");
        assert!(
            lines[2].starts_with("acme/ml") && lines[2].contains(" 1.234567 "),
            "{text}"
        );
        assert!(lines[3].contains(" 0.000007 "), "{text}");
        assert!(
            lines[4].starts_with("TOTAL") && lines[4].contains(" 1.234574 "),
            "{text}"
        );
        assert!(lines[5].starts_with("note: 1 request(s)"), "{text}");
    }

    #[test]
    fn limit_status_shows_use_per_metric_with_budgets_in_usd() {
        use tollgate_proto::v1::LimitUse;
        let status = LimitStatusResponse {
            policy: Some(LimitPolicy {
                scope: Some(LimitScopeRef {
                    org: "acme".to_owned(),
                    team: "platform".to_owned(),
                    ..LimitScopeRef::default()
                }),
                scope_kind: LimitScope::Team as i32,
                ..LimitPolicy::default()
            }),
            uses: vec![
                LimitUse {
                    metric: LimitMetric::RequestsPerMinute as i32,
                    limit: 600,
                    enforced_limit: 600,
                    consumed: 10,
                    leased: 40,
                    remaining: 550,
                    edges: 2,
                    ..LimitUse::default()
                },
                LimitUse {
                    metric: LimitMetric::BudgetMicrosPerMonth as i32,
                    limit: 50_000_000,
                    enforced_limit: 45_000_000,
                    consumed: 1_250_000,
                    leased: 0,
                    remaining: 43_750_000,
                    period_start_unix_ms: 1_801_353_600_000,
                    period_end_unix_ms: 1_801_440_000_000,
                    edges: 0,
                },
            ],
        };
        let text = limit_status(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "team acme/platform");
        assert!(
            lines[1].starts_with("METRIC") && lines[1].contains("REMAINING"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("requests_per_minute") && lines[2].contains("sliding 60s"),
            "{text}"
        );
        assert!(
            lines[3].contains("50.00 USD")
                && lines[3].contains("45.00 USD")
                && lines[3].contains("1.25 USD")
                && lines[3].contains("43.75 USD")
                && lines[3].contains("2027-01-31T00:00:00Z")
                && lines[3].contains("2027-02-01T00:00:00Z"),
            "{text}"
        );
    }

    #[test]
    fn policies_name_their_scope_and_show_thresholds_only_for_calendar_limits() {
        use tollgate_proto::v1::Limit;
        let policy = LimitPolicy {
            scope: Some(LimitScopeRef {
                org: "acme".to_owned(),
                team: "platform".to_owned(),
                project: "web".to_owned(),
                key: "tg_1a2b3c4d".to_owned(),
                ..LimitScopeRef::default()
            }),
            scope_kind: LimitScope::Key as i32,
            scope_id: "k1".to_owned(),
            limits: vec![
                Limit {
                    metric: LimitMetric::ConcurrentRequests as i32,
                    limit: 4,
                    soft_threshold_pct: 80,
                    hard_threshold_pct: 100,
                    updated_at_unix_ms: 1_801_353_600_000,
                },
                Limit {
                    metric: LimitMetric::TokensPerDay as i32,
                    limit: 1_000,
                    soft_threshold_pct: 70,
                    hard_threshold_pct: 120,
                    updated_at_unix_ms: 1_801_353_600_000,
                },
            ],
        };
        let text = limit_policy(&policy);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "key tg_1a2b3c4d (acme/platform/web)");
        assert!(
            lines[2].starts_with("concurrent_requests") && lines[2].contains(" - "),
            "{text}"
        );
        assert!(
            lines[3].contains(" 1200 ") && lines[3].contains(" 70 "),
            "{text}"
        );
        let empty = LimitPolicy {
            limits: Vec::new(),
            ..policy
        };
        assert_eq!(
            limit_policy(&empty),
            "key tg_1a2b3c4d (acme/platform/web): no limits\n"
        );
    }

    #[test]
    fn providers_show_an_api_version_only_where_the_kind_has_one() {
        let provider = |kind: &str, api_version: &str| Provider {
            name: format!("{kind}-p"),
            kind: kind.to_owned(),
            base_url: "https://example.com".to_owned(),
            api_version: api_version.to_owned(),
            has_api_key: true,
            ..Provider::default()
        };
        let text = providers(&[
            provider("anthropic", ""),
            provider("azure_openai", "2024-10-01-preview"),
            provider("gemini", ""),
        ]);
        let cells = |line: &str| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let lines: Vec<Vec<String>> = text.lines().map(cells).collect();
        assert_eq!(lines[0][4..6], ["API", "VERSION"], "{text}");
        assert_eq!(
            lines[1][..4],
            ["anthropic-p", "anthropic", "https://example.com", "default"]
        );
        assert_eq!(lines[2][3], "2024-10-01-preview", "{text}");
        assert_eq!(
            lines[3][1..5],
            ["gemini", "https://example.com", "-", "set"],
            "{text}"
        );
    }

    #[test]
    fn model_timeouts_list_the_phases_that_differ_from_the_default() {
        assert_eq!(timeouts(ModelTimeouts::default()), "default");
        let set = ModelTimeouts {
            connect_ms: 2_500,
            first_token_ms: 0,
            idle_ms: 15_000,
            total_ms: 150_000,
        };
        assert_eq!(timeouts(set), "connect 2500ms, idle 15s, total 2m 30s");
        assert_eq!(duration_ms(120_000), "2m");
        assert_eq!(duration_ms(3_600_000), "1h");
        assert_eq!(duration_ms(3_661_000), "1h 1m 1s");
        assert_eq!(duration_ms(86_400_000), "24h");
        assert_eq!(duration_ms(1), "1ms");
        let model = Model {
            name: "gpt".to_owned(),
            timeouts: Some(set),
            ..Model::default()
        };
        let text = models(&[model]);
        assert!(
            text.lines()
                .next()
                .is_some_and(|h| h.contains(" TIMEOUTS "))
        );
        assert!(
            text.contains("connect 2500ms, idle 15s, total 2m 30s"),
            "{text}"
        );
        // A control plane that predates timeouts sends none: every phase is at its default.
        let text = models(&[Model::default()]);
        assert!(text.contains(" default "), "{text}");
    }

    #[test]
    fn key_status_prefers_revoked_then_expired() {
        let mut key = VirtualKey {
            expires_at_unix_ms: 1_000,
            ..VirtualKey::default()
        };
        assert_eq!(key_status(&key, 999), "active");
        assert_eq!(key_status(&key, 1_000), "expired");
        key.revoked_at_unix_ms = 500;
        assert_eq!(key_status(&key, 999), "revoked");
        key.expires_at_unix_ms = 0;
        key.revoked_at_unix_ms = 0;
        assert_eq!(key_status(&key, i64::MAX), "active");
    }

    #[test]
    fn created_key_shows_the_plaintext_once_with_a_warning() {
        let response = CreateVirtualKeyResponse {
            key: Some(VirtualKey {
                id: "k1".to_owned(),
                prefix: "tg_abcd".to_owned(),
                ..VirtualKey::default()
            }),
            plaintext: "tg_abcdefgh".to_owned(),
        };
        let text = created_key(&response);
        assert_eq!(text.matches("tg_abcdefgh").count(), 1, "{text}");
        assert!(text.contains("shown only this once"));
        assert!(text.starts_with("ID"));
    }
}
