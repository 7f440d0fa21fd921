//! Limits, quotas and budgets: the configured policy, the leases that enforce it across edges,
//! and threshold alerts. This module holds the domain vocabulary shared by the admin API and
//! the lease service; the wire enums stop at `TryFrom`.

pub mod alerts;
pub mod grant;
pub mod lease;
pub mod metrics;
pub mod period;
pub mod service;
pub mod store;

pub mod policy;
pub mod status;

/// The limit vocabulary is the contract's, shared with the edges.
pub use tollgate_contract::limits::{
    CalendarUnit, DEFAULT_HARD_THRESHOLD_PCT, DEFAULT_SOFT_THRESHOLD_PCT, Level, MAX_THRESHOLD_PCT,
    Metric, UnknownEnum, Window,
};
