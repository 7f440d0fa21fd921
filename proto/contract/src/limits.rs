//! The limit vocabulary: the level of the tenancy hierarchy a limit sits at, what it counts and
//! over which window, the threshold defaults, and the rule that turns a configured limit into
//! the one requests are refused at. The wire enums convert here and nowhere else.

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
    pub const ALL: [Level; 5] = [Self::Org, Self::Team, Self::Project, Self::User, Self::Key];

    /// Position in `ALL`, for tables indexed by level.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The spelling stored in `limits.scope_kind` and shown in errors, headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Org => "org",
            Self::Team => "team",
            Self::Project => "project",
            Self::User => "user",
            Self::Key => "key",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.as_str() == text)
    }

    /// From the wire's `LimitScope` number; `None` for unspecified or unknown values.
    pub fn from_wire(scope: i32) -> Option<Self> {
        pb::LimitScope::try_from(scope)
            .ok()
            .and_then(|scope| Self::try_from(scope).ok())
    }

    pub fn to_wire(self) -> pb::LimitScope {
        self.into()
    }
}

impl From<Level> for pb::LimitScope {
    fn from(level: Level) -> Self {
        match level {
            Level::Org => Self::Org,
            Level::Team => Self::Team,
            Level::Project => Self::Project,
            Level::User => Self::User,
            Level::Key => Self::Key,
        }
    }
}

impl TryFrom<pb::LimitScope> for Level {
    type Error = UnknownEnum;

    fn try_from(scope: pb::LimitScope) -> Result<Self, Self::Error> {
        Ok(match scope {
            pb::LimitScope::Org => Self::Org,
            pb::LimitScope::Team => Self::Team,
            pb::LimitScope::Project => Self::Project,
            pb::LimitScope::User => Self::User,
            pb::LimitScope::Key => Self::Key,
            pb::LimitScope::Unspecified => return Err(UnknownEnum("limit scope")),
        })
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
    /// Calendar periods in the org's time zone, reset at the boundary; the plane computes the
    /// bounds.
    Calendar(CalendarUnit),
    /// Requests in flight: a level, not a sum over time.
    Concurrent,
}

impl Window {
    pub fn is_calendar(self) -> bool {
        matches!(self, Self::Calendar(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarUnit {
    Hour,
    Day,
    Month,
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

    /// The spelling stored in `limits.metric` and used by the admin API, headers and labels.
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

    /// From the wire's `LimitMetric` number; `None` for unspecified or unknown values.
    pub fn from_wire(metric: i32) -> Option<Self> {
        pb::LimitMetric::try_from(metric)
            .ok()
            .and_then(|metric| Self::try_from(metric).ok())
    }

    pub fn to_wire(self) -> pb::LimitMetric {
        self.into()
    }

    pub fn window(self) -> Window {
        match self {
            Self::RequestsPerMinute | Self::TokensPerMinute => Window::SlidingMinute,
            Self::TokensPerHour => Window::Calendar(CalendarUnit::Hour),
            Self::TokensPerDay => Window::Calendar(CalendarUnit::Day),
            Self::TokensPerMonth | Self::BudgetMicrosPerMonth => {
                Window::Calendar(CalendarUnit::Month)
            }
            Self::ConcurrentRequests => Window::Concurrent,
        }
    }

    /// Rate limits answer 429 `rate_limit_exceeded`; quotas and budgets `insufficient_quota`.
    pub fn is_rate_limit(self) -> bool {
        matches!(self.window(), Window::SlidingMinute | Window::Concurrent)
    }

    /// The limit requests are refused at: calendar quotas and budgets scale by the hard
    /// threshold (percent); windows and concurrency are enforced as configured.
    pub fn enforced_limit(self, limit: i64, hard_threshold_pct: u32) -> i64 {
        match self.window() {
            Window::Calendar(_) => {
                let scaled = i128::from(limit) * i128::from(hard_threshold_pct) / 100;
                i64::try_from(scaled).unwrap_or(i64::MAX)
            }
            Window::SlidingMinute | Window::Concurrent => limit,
        }
    }
}

impl From<Metric> for pb::LimitMetric {
    fn from(metric: Metric) -> Self {
        match metric {
            Metric::RequestsPerMinute => Self::RequestsPerMinute,
            Metric::TokensPerMinute => Self::TokensPerMinute,
            Metric::TokensPerHour => Self::TokensPerHour,
            Metric::TokensPerDay => Self::TokensPerDay,
            Metric::TokensPerMonth => Self::TokensPerMonth,
            Metric::BudgetMicrosPerMonth => Self::BudgetMicrosPerMonth,
            Metric::ConcurrentRequests => Self::ConcurrentRequests,
        }
    }
}

impl TryFrom<pb::LimitMetric> for Metric {
    type Error = UnknownEnum;

    fn try_from(metric: pb::LimitMetric) -> Result<Self, Self::Error> {
        Ok(match metric {
            pb::LimitMetric::RequestsPerMinute => Self::RequestsPerMinute,
            pb::LimitMetric::TokensPerMinute => Self::TokensPerMinute,
            pb::LimitMetric::TokensPerHour => Self::TokensPerHour,
            pb::LimitMetric::TokensPerDay => Self::TokensPerDay,
            pb::LimitMetric::TokensPerMonth => Self::TokensPerMonth,
            pb::LimitMetric::BudgetMicrosPerMonth => Self::BudgetMicrosPerMonth,
            pb::LimitMetric::ConcurrentRequests => Self::ConcurrentRequests,
            pb::LimitMetric::Unspecified => return Err(UnknownEnum("limit metric")),
        })
    }
}

/// An enum value the wire allows but the domain does not (unspecified or from a newer peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is missing or unknown")]
pub struct UnknownEnum(pub &'static str);

/// Defaults of the calendar-limit thresholds, in percent of the configured limit.
pub const DEFAULT_SOFT_THRESHOLD_PCT: u32 = 80;
pub const DEFAULT_HARD_THRESHOLD_PCT: u32 = 100;
/// Largest threshold either side accepts, in percent.
pub const MAX_THRESHOLD_PCT: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_wire_values_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.as_str()), Some(metric));
            assert_eq!(Metric::from_wire(metric.to_wire() as i32), Some(metric));
        }
        for level in Level::ALL {
            assert_eq!(Level::parse(level.as_str()), Some(level));
            assert_eq!(Level::from_wire(level.to_wire() as i32), Some(level));
        }
        assert_eq!(Metric::parse("rpm"), None);
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
}
