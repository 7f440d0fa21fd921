//! The limit vocabulary of the edge: which level a limit sits at, what it counts, and one
//! configured limit in domain form. Wire enums stop at `TryFrom` in `config/snapshot.rs`.

use std::fmt;
use std::sync::Arc;
use tollgate_proto::v1 as pb;

/// The limit vocabulary is the contract's, shared with the control plane.
pub use tollgate_contract::limits::{
    DEFAULT_HARD_THRESHOLD_PCT, DEFAULT_SOFT_THRESHOLD_PCT, Level, MAX_THRESHOLD_PCT, Metric,
    Window,
};

/// What a request reserves, per unit a metric counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    pub tokens: i64,
    pub cost_micros: i64,
}

impl Demand {
    /// Units this demand reserves against `metric`.
    pub fn units(self, metric: Metric) -> i64 {
        match metric {
            Metric::RequestsPerMinute | Metric::ConcurrentRequests => 1,
            Metric::TokensPerMinute
            | Metric::TokensPerHour
            | Metric::TokensPerDay
            | Metric::TokensPerMonth => self.tokens.max(0),
            Metric::BudgetMicrosPerMonth => self.cost_micros.max(0),
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
    fn each_metric_reserves_its_own_units() {
        let demand = Demand {
            tokens: 120,
            cost_micros: 7,
        };
        assert_eq!(demand.units(Metric::RequestsPerMinute), 1);
        assert_eq!(demand.units(Metric::ConcurrentRequests), 1);
        assert_eq!(demand.units(Metric::TokensPerMinute), 120);
        assert_eq!(demand.units(Metric::TokensPerMonth), 120);
        assert_eq!(demand.units(Metric::BudgetMicrosPerMonth), 7);
    }
}
