//! The limit vocabulary of the edge: which level a limit sits at, what it counts, and one
//! configured limit in domain form. Wire enums stop at `TryFrom` in `config/snapshot.rs`.

use std::fmt;
use std::sync::Arc;
use tollgate_proto::v1 as pb;

/// The level of the tenancy hierarchy a limit is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Org,
    Team,
    Project,
    User,
    Key,
}

impl Level {
    /// The spelling operators see in errors, headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Org => "org",
            Self::Team => "team",
            Self::Project => "project",
            Self::User => "user",
            Self::Key => "key",
        }
    }

    pub fn from_wire(scope: i32) -> Option<Self> {
        Some(match pb::LimitScope::try_from(scope).ok()? {
            pb::LimitScope::Org => Self::Org,
            pb::LimitScope::Team => Self::Team,
            pb::LimitScope::Project => Self::Project,
            pb::LimitScope::User => Self::User,
            pb::LimitScope::Key => Self::Key,
            pb::LimitScope::Unspecified => return None,
        })
    }

    pub fn to_wire(self) -> pb::LimitScope {
        match self {
            Self::Org => pb::LimitScope::Org,
            Self::Team => pb::LimitScope::Team,
            Self::Project => pb::LimitScope::Project,
            Self::User => pb::LimitScope::User,
            Self::Key => pb::LimitScope::Key,
        }
    }
}

/// What a limit counts, and over which window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    RequestsPerMinute,
    TokensPerMinute,
    TokensPerHour,
    TokensPerDay,
    TokensPerMonth,
    BudgetMicrosPerMonth,
    ConcurrentRequests,
}

/// How a metric's use is measured over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last 60 seconds, sliding.
    SlidingMinute,
    /// Calendar periods in the org's time zone; the plane computes the bounds.
    Calendar,
    /// Requests in flight: a level, not a sum over time.
    Concurrent,
}

/// What a request reserves, per unit a metric counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    pub tokens: i64,
    pub cost_micros: i64,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Self::RequestsPerMinute,
        Self::TokensPerMinute,
        Self::TokensPerHour,
        Self::TokensPerDay,
        Self::TokensPerMonth,
        Self::BudgetMicrosPerMonth,
        Self::ConcurrentRequests,
    ];

    /// The spelling used by the admin API, headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestsPerMinute => "requests_per_minute",
            Self::TokensPerMinute => "tokens_per_minute",
            Self::TokensPerHour => "tokens_per_hour",
            Self::TokensPerDay => "tokens_per_day",
            Self::TokensPerMonth => "tokens_per_month",
            Self::BudgetMicrosPerMonth => "budget_micros_per_month",
            Self::ConcurrentRequests => "concurrent_requests",
        }
    }

    /// Words for error messages ("requests per minute").
    pub fn describe(self) -> &'static str {
        match self {
            Self::RequestsPerMinute => "requests per minute",
            Self::TokensPerMinute => "tokens per minute",
            Self::TokensPerHour => "tokens per hour",
            Self::TokensPerDay => "tokens per day",
            Self::TokensPerMonth => "tokens per month",
            Self::BudgetMicrosPerMonth => "monthly budget",
            Self::ConcurrentRequests => "concurrent requests",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|metric| metric.as_str() == text)
    }

    pub fn from_wire(metric: i32) -> Option<Self> {
        Some(match pb::LimitMetric::try_from(metric).ok()? {
            pb::LimitMetric::RequestsPerMinute => Self::RequestsPerMinute,
            pb::LimitMetric::TokensPerMinute => Self::TokensPerMinute,
            pb::LimitMetric::TokensPerHour => Self::TokensPerHour,
            pb::LimitMetric::TokensPerDay => Self::TokensPerDay,
            pb::LimitMetric::TokensPerMonth => Self::TokensPerMonth,
            pb::LimitMetric::BudgetMicrosPerMonth => Self::BudgetMicrosPerMonth,
            pb::LimitMetric::ConcurrentRequests => Self::ConcurrentRequests,
            pb::LimitMetric::Unspecified => return None,
        })
    }

    pub fn to_wire(self) -> pb::LimitMetric {
        match self {
            Self::RequestsPerMinute => pb::LimitMetric::RequestsPerMinute,
            Self::TokensPerMinute => pb::LimitMetric::TokensPerMinute,
            Self::TokensPerHour => pb::LimitMetric::TokensPerHour,
            Self::TokensPerDay => pb::LimitMetric::TokensPerDay,
            Self::TokensPerMonth => pb::LimitMetric::TokensPerMonth,
            Self::BudgetMicrosPerMonth => pb::LimitMetric::BudgetMicrosPerMonth,
            Self::ConcurrentRequests => pb::LimitMetric::ConcurrentRequests,
        }
    }

    pub fn window(self) -> Window {
        match self {
            Self::RequestsPerMinute | Self::TokensPerMinute => Window::SlidingMinute,
            Self::TokensPerHour
            | Self::TokensPerDay
            | Self::TokensPerMonth
            | Self::BudgetMicrosPerMonth => Window::Calendar,
            Self::ConcurrentRequests => Window::Concurrent,
        }
    }

    /// Rate limits answer 429 `rate_limit_exceeded`; quotas and budgets `insufficient_quota`.
    pub fn is_rate_limit(self) -> bool {
        matches!(self.window(), Window::SlidingMinute | Window::Concurrent)
    }

    /// Units a request with this demand reserves against this metric.
    pub fn units(self, demand: Demand) -> i64 {
        match self {
            Self::RequestsPerMinute | Self::ConcurrentRequests => 1,
            Self::TokensPerMinute
            | Self::TokensPerHour
            | Self::TokensPerDay
            | Self::TokensPerMonth => demand.tokens.max(0),
            Self::BudgetMicrosPerMonth => demand.cost_micros.max(0),
        }
    }

    /// The limit requests are refused at: calendar quotas and budgets scale by the hard
    /// threshold (percent); windows and concurrency are enforced as configured. Same rule as
    /// the control plane's `Metric::enforced_limit`.
    pub fn enforced_limit(self, limit: i64, hard_threshold_pct: u32) -> i64 {
        match self.window() {
            Window::Calendar => {
                let scaled = i128::from(limit) * i128::from(hard_threshold_pct) / 100;
                i64::try_from(scaled).unwrap_or(i64::MAX)
            }
            Window::SlidingMinute | Window::Concurrent => limit,
        }
    }
}

/// Which counter a limit is: the same identity the plane leases under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitKey {
    pub level: Level,
    /// UUID of the org, team, project, user or virtual key.
    pub scope_id: Arc<str>,
    pub metric: Metric,
}

impl LimitKey {
    pub fn to_wire(&self) -> pb::LimitKey {
        pb::LimitKey {
            scope: self.level.to_wire() as i32,
            scope_id: self.scope_id.to_string(),
            metric: self.metric.to_wire() as i32,
        }
    }

    pub fn from_wire(wire: &pb::LimitKey) -> Option<Self> {
        Some(Self {
            level: Level::from_wire(wire.scope)?,
            scope_id: Arc::from(wire.scope_id.as_str()),
            metric: Metric::from_wire(wire.metric)?,
        })
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.level.as_str(),
            self.scope_id,
            self.metric.as_str()
        )
    }
}

/// Defaults of the calendar-limit thresholds, in percent of the configured limit.
pub const DEFAULT_SOFT_THRESHOLD_PCT: u32 = 80;
pub const DEFAULT_HARD_THRESHOLD_PCT: u32 = 100;

/// One configured limit as the edge enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    pub key: LimitKey,
    /// As configured by the operator.
    pub configured_limit: i64,
    /// What requests are refused at (calendar limits × hard threshold / 100).
    pub enforced_limit: i64,
    pub soft_threshold_pct: u32,
    pub hard_threshold_pct: u32,
    /// Name of the scope for messages ("acme/platform"); never an id.
    pub scope_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_spellings_and_wire_values_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.as_str()), Some(metric));
            assert_eq!(Metric::from_wire(metric.to_wire() as i32), Some(metric));
        }
        assert_eq!(Metric::from_wire(0), None);
        assert_eq!(Level::from_wire(0), None);
        assert_eq!(Level::from_wire(99), None);
    }

    #[test]
    fn hard_threshold_scales_only_calendar_limits() {
        assert_eq!(Metric::BudgetMicrosPerMonth.enforced_limit(1_000, 90), 900);
        assert_eq!(Metric::TokensPerDay.enforced_limit(1_000, 120), 1_200);
        assert_eq!(Metric::RequestsPerMinute.enforced_limit(60, 50), 60);
        assert_eq!(
            Metric::TokensPerHour.enforced_limit(i64::MAX, 1000),
            i64::MAX
        );
    }

    #[test]
    fn each_metric_reserves_its_own_units() {
        let demand = Demand {
            tokens: 120,
            cost_micros: 7,
        };
        assert_eq!(Metric::RequestsPerMinute.units(demand), 1);
        assert_eq!(Metric::ConcurrentRequests.units(demand), 1);
        assert_eq!(Metric::TokensPerMinute.units(demand), 120);
        assert_eq!(Metric::TokensPerMonth.units(demand), 120);
        assert_eq!(Metric::BudgetMicrosPerMonth.units(demand), 7);
    }
}
