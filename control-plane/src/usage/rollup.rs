//! Hourly rollups pre-aggregated from the events a batch really inserted: a 10,000-event batch
//! of a few tenants and models becomes a few dozen rows here, so Postgres upserts those instead
//! of returning, grouping and sorting every inserted row itself (which cost a quarter of ingest
//! throughput).

use super::event::{UsageEvent, UsageStatus};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

/// A `usage_hourly` row's identity. Ordered, so every ingest upserts rollup rows in the same
/// order and two concurrent batches touching the same rows cannot deadlock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HourKey<'a> {
    pub hour: DateTime<Utc>,
    pub org_id: Uuid,
    pub team_id: Uuid,
    pub project_id: Uuid,
    pub user_id: Option<Uuid>,
    pub model: &'a str,
}

/// What a rollup row adds up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourSums {
    pub requests: i64,
    pub error_requests: i64,
    pub unpriced_requests: i64,
    pub cache_hits: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    /// Priced requests only.
    pub cost_micros: i64,
    pub saved_cost_micros: i64,
    pub latency_ms_sum: i64,
}

impl HourSums {
    fn add(&mut self, event: &UsageEvent) {
        self.requests += 1;
        self.error_requests += i64::from(event.status != UsageStatus::Ok);
        self.unpriced_requests += i64::from(event.price.is_none());
        self.cache_hits += i64::from(event.cache_hit);
        self.input_tokens = self.input_tokens.saturating_add(event.input_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(event.cached_input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(event.output_tokens);
        if let Some(price) = event.price {
            self.cost_micros = self.cost_micros.saturating_add(price.cost_micros);
        }
        self.saved_cost_micros = self
            .saved_cost_micros
            .saturating_add(event.saved_cost_micros);
        self.latency_ms_sum = self
            .latency_ms_sum
            .saturating_add(i64::from(event.latency_ms));
    }
}

/// The start of the UTC hour of `time` (what `date_trunc('hour', t, 'UTC')` gives).
fn hour_of(time: DateTime<Utc>) -> DateTime<Utc> {
    time.duration_trunc(TimeDelta::hours(1)).unwrap_or(time)
}

/// The rollup rows of `events`, in key order.
pub fn aggregate<'a>(
    events: impl IntoIterator<Item = &'a UsageEvent>,
) -> BTreeMap<HourKey<'a>, HourSums> {
    let mut rows: BTreeMap<HourKey<'a>, HourSums> = BTreeMap::new();
    for event in events {
        let key = HourKey {
            hour: hour_of(event.event_time),
            org_id: event.org_id,
            team_id: event.team_id,
            project_id: event.project_id,
            user_id: event.user_id,
            model: &event.model,
        };
        rows.entry(key).or_default().add(event);
    }
    rows
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hours_truncate_in_utc() {
        let time: DateTime<Utc> = "2026-12-07T21:59:59.999Z".parse().unwrap();
        assert_eq!(
            hour_of(time),
            "2026-12-07T21:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let on_the_hour: DateTime<Utc> = "2026-12-07T22:00:00Z".parse().unwrap();
        assert_eq!(hour_of(on_the_hour), on_the_hour);
    }
}
