//! Admission: a request reserves its worst case against every counter of its key, all or
//! nothing (a miss rolls back what was taken), and holds an `Admission` guard that settles
//! exactly once — to the usage event's actual tokens and cost, or, if dropped unsettled (an
//! early return, a panic), releasing everything, concurrency slots included.

use super::clock::Clock;
use super::counter::{Counter, Path};
use super::spec::{Demand, Level, LimitSpec, Metric};
use std::sync::Arc;
use tollgate_contract::money::format_dollars;

/// The limits that apply to one key, bound to their counters for one request.
#[derive(Debug)]
pub struct KeyLimits {
    entries: Vec<(Arc<LimitSpec>, Arc<Counter>)>,
    clock: Arc<dyn Clock>,
}

/// A limit that refused a request: everything the 429 says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    pub level: Level,
    pub scope_name: String,
    pub metric: Metric,
    pub limit: i64,
    pub retry_after_ms: i64,
}

impl LimitExceeded {
    /// `Retry-After`: whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> i64 {
        super::headers::retry_after_secs(self.retry_after_ms)
    }
}

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.metric {
            metric if metric.is_rate_limit() => "Rate limit reached",
            Metric::BudgetMicrosPerMonth => "Budget exceeded",
            _ => "Quota exceeded",
        };
        let limit = if self.metric == Metric::BudgetMicrosPerMonth {
            format_dollars(self.limit)
        } else {
            self.limit.to_string()
        };
        write!(
            f,
            "{what} for {} on {} '{}': limit {limit}. Retry after {}.",
            self.metric.describe(),
            self.level.as_str(),
            self.scope_name,
            super::headers::format_duration_ms(self.retry_after_secs() * 1_000),
        )
    }
}

/// Why admission failed, and whether an immediate lease renewal may still admit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Of all limits missed, the one with the longest wait.
    pub exceeded: LimitExceeded,
    pub renewable: bool,
}

#[derive(Debug)]
struct Held {
    counter: Arc<Counter>,
    metric: Metric,
    units: i64,
    path: Path,
}

/// Reserved capacity for one request. Settle it once with what the request actually used;
/// dropping it unsettled releases everything (a request counts 1 against requests-per-minute
/// even then: a failed request is still a request).
#[derive(Debug)]
pub struct Admission {
    held: Vec<Held>,
    clock: Arc<dyn Clock>,
}

impl KeyLimits {
    pub(crate) fn new(entries: Vec<(Arc<LimitSpec>, Arc<Counter>)>, clock: Arc<dyn Clock>) -> Self {
        Self { entries, clock }
    }

    pub fn empty(clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: Vec::new(),
            clock,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[(Arc<LimitSpec>, Arc<Counter>)] {
        &self.entries
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.unix_ms()
    }

    /// The most used monthly budget over the key's levels, in percent of the configured budget
    /// (the edge's estimate, as for the rate headers); `None` when no budget applies. This is
    /// the hook for budget-aware routing (downgrade to a cheaper model at 80 % / 95 %).
    pub fn budget_used_pct(&self) -> Option<u32> {
        let now_ms = self.now_ms();
        self.entries
            .iter()
            .filter(|(spec, _)| {
                spec.key.metric == Metric::BudgetMicrosPerMonth && spec.configured_limit > 0
            })
            .map(|(spec, counter)| {
                let view = counter.rate_view(now_ms);
                let used = i128::from((view.limit - view.remaining).max(0));
                u32::try_from(used * 100 / i128::from(spec.configured_limit)).unwrap_or(u32::MAX)
            })
            .max()
    }

    /// Reserves `demand` against every limit, or none of them.
    pub fn try_admit(&self, demand: Demand) -> Result<Admission, Refusal> {
        let now_ms = self.clock.unix_ms();
        let mut held = Vec::with_capacity(self.entries.len());
        for (index, (spec, counter)) in self.entries.iter().enumerate() {
            let metric = spec.key.metric;
            let units = demand.units(metric);
            let reserved = if units == 0 {
                // Nothing to take (an unpriced model's budget): never refused, still settled.
                Ok(if counter.in_fallback() {
                    Path::Fallback
                } else {
                    Path::Leased
                })
            } else {
                counter.reserve(units, now_ms)
            };
            match reserved {
                Ok(path) => held.push(Held {
                    counter: Arc::clone(counter),
                    metric,
                    units,
                    path,
                }),
                Err(miss) => {
                    for taken in held.drain(..) {
                        taken.counter.release(taken.units, taken.path);
                    }
                    let mut worst = (spec, miss);
                    let mut renewable = miss.renewable;
                    for (other_spec, other) in &self.entries[index + 1..] {
                        let units = demand.units(other_spec.key.metric);
                        if units == 0 {
                            continue;
                        }
                        // The renewal this miss may wait for must cover every limit the
                        // request needs, not only the first that missed.
                        other.note_demand(units, now_ms);
                        if let Some(other_miss) = other.would_miss(units, now_ms) {
                            renewable &= other_miss.renewable;
                            if other_miss.retry_after_ms > worst.1.retry_after_ms {
                                worst = (other_spec, other_miss);
                            }
                        }
                    }
                    let (spec, miss) = worst;
                    return Err(Refusal {
                        exceeded: LimitExceeded {
                            level: spec.key.level,
                            scope_name: spec.scope_name.clone(),
                            metric: spec.key.metric,
                            limit: spec.enforced_limit,
                            retry_after_ms: miss.retry_after_ms,
                        },
                        renewable,
                    });
                }
            }
        }
        Ok(Admission {
            held,
            clock: Arc::clone(&self.clock),
        })
    }
}

impl Admission {
    /// A guard holding nothing (a key without limits).
    pub fn none(clock: Arc<dyn Clock>) -> Self {
        Self {
            held: Vec::new(),
            clock,
        }
    }

    /// Settles every reservation to the actual use: tokens (input + output) and cost.
    pub fn settle(mut self, actual: Demand) {
        self.settle_held(actual);
    }

    fn settle_held(&mut self, actual: Demand) {
        if self.held.is_empty() {
            return;
        }
        let now_ms = self.clock.unix_ms();
        for held in self.held.drain(..) {
            let units = actual.units(held.metric);
            held.counter.settle(held.units, units, held.path, now_ms);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.settle_held(Demand::default());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::limits::clock::ManualClock;
    use crate::limits::counter::Grant;
    use crate::limits::spec::LimitKey;
    use crate::limits::{Limiter, Shared};
    use crate::metrics::Metrics;

    const T0: i64 = 1_700_000_000_000;

    fn spec(level: Level, metric: Metric, limit: i64) -> Arc<LimitSpec> {
        Arc::new(LimitSpec {
            key: LimitKey {
                level,
                scope_id: Arc::from(format!("{level:?}-id")),
                metric,
            },
            configured_limit: limit,
            enforced_limit: limit,
            soft_threshold_pct: 80,
            hard_threshold_pct: 100,
            scope_name: format!("{level:?}-name"),
        })
    }

    fn shared(limiter: &Limiter) -> Arc<Shared> {
        Arc::clone(limiter.shared())
    }

    /// Counters with leases already granted (`granted` units each), valid for 10 s.
    fn leased(specs: &[(Arc<LimitSpec>, i64)]) -> (KeyLimits, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(T0));
        let limiter = Limiter::new(true, clock.clone(), Arc::new(Metrics::new()));
        let entries = specs
            .iter()
            .map(|(spec, granted)| {
                let counter = Arc::new(Counter::new(
                    spec.key.clone(),
                    spec.enforced_limit,
                    shared(&limiter),
                    T0,
                ));
                counter.apply_grant(
                    &Grant {
                        period_start_unix_ms: 0,
                        period_end_unix_ms: 0,
                        next_period_end_unix_ms: 0,
                        granted_total: *granted,
                        limit: spec.enforced_limit,
                        // No free capacity left globally: misses wait for the window.
                        used: spec.enforced_limit,
                        reset_ms: 30_000,
                    },
                    T0,
                    10_000,
                    T0,
                );
                (Arc::clone(spec), counter)
            })
            .collect();
        (KeyLimits::new(entries, clock.clone()), clock)
    }

    fn demand(tokens: i64, cost_micros: i64) -> Demand {
        Demand {
            tokens,
            cost_micros,
        }
    }

    #[test]
    fn admission_reserves_every_limit_and_settles_to_actual_use() {
        let (limits, _clock) = leased(&[
            (spec(Level::Team, Metric::RequestsPerMinute, 60), 10),
            (spec(Level::Key, Metric::TokensPerMinute, 10_000), 1_000),
            (spec(Level::Org, Metric::ConcurrentRequests, 5), 2),
        ]);
        let admission = limits.try_admit(demand(300, 0)).unwrap();
        let [rpm, tpm, slots] = [0, 1, 2].map(|i| Arc::clone(&limits.entries()[i].1));
        assert_eq!((rpm.available(), rpm.reserved()), (9, 1));
        assert_eq!((tpm.available(), tpm.reserved()), (700, 300));
        assert_eq!((slots.available(), slots.reserved()), (1, 1));
        admission.settle(demand(120, 0));
        assert_eq!((rpm.available(), rpm.consumed_total()), (9, 1));
        assert_eq!((tpm.available(), tpm.consumed_total()), (880, 120));
        assert_eq!((tpm.reserved(), slots.reserved()), (0, 0));
        // A slot is released, never consumed.
        assert_eq!((slots.available(), slots.consumed_total()), (2, 0));
    }

    #[test]
    fn a_miss_rolls_back_every_reservation_already_taken() {
        let (limits, _clock) = leased(&[
            (spec(Level::Org, Metric::RequestsPerMinute, 60), 10),
            (spec(Level::Project, Metric::ConcurrentRequests, 5), 3),
            (spec(Level::Key, Metric::TokensPerMinute, 10_000), 100),
        ]);
        let refusal = limits.try_admit(demand(300, 0)).unwrap_err();
        assert_eq!(refusal.exceeded.level, Level::Key);
        assert_eq!(refusal.exceeded.metric, Metric::TokensPerMinute);
        for (_, counter) in limits.entries() {
            assert_eq!(counter.reserved(), 0, "{}", counter.key);
        }
        assert_eq!(limits.entries()[0].1.available(), 10);
        assert_eq!(limits.entries()[1].1.available(), 3);
    }

    #[test]
    fn budget_use_is_reported_for_routing_as_the_most_used_budget() {
        let (limits, _clock) = leased(&[(spec(Level::Team, Metric::RequestsPerMinute, 60), 10)]);
        assert_eq!(limits.budget_used_pct(), None);
        // Nothing free at the plane; the edge holds 100 and 400 of 1000: 90 % and 60 % used.
        let (limits, _clock) = leased(&[
            (spec(Level::Org, Metric::BudgetMicrosPerMonth, 1_000), 400),
            (
                spec(Level::Project, Metric::BudgetMicrosPerMonth, 1_000),
                100,
            ),
        ]);
        assert_eq!(limits.budget_used_pct(), Some(90));
    }

    #[test]
    fn budget_messages_show_dollars() {
        let exceeded = LimitExceeded {
            level: Level::Project,
            scope_name: "acme/ml/chatbot".to_owned(),
            metric: Metric::BudgetMicrosPerMonth,
            limit: 120_000_000,
            retry_after_ms: 3_000,
        };
        assert_eq!(
            exceeded.to_string(),
            "Budget exceeded for monthly budget on project 'acme/ml/chatbot': limit $120.00. Retry after 3s."
        );
    }

    #[test]
    fn a_miss_counts_demand_on_every_limit_so_one_renewal_covers_the_request() {
        let (limits, clock) = leased(&[
            (spec(Level::Team, Metric::RequestsPerMinute, 60), 0),
            (spec(Level::Team, Metric::TokensPerMinute, 100_000), 0),
        ]);
        assert!(limits.try_admit(demand(4_000, 0)).is_err());
        let tokens = &limits.entries()[1].1;
        let claim = tokens
            .claim(clock.unix_ms())
            .expect("the tokens limit is active after the miss");
        assert!(claim.want_available >= 4_000, "{claim:?}");
    }

    #[test]
    fn the_longest_wait_answers_when_several_limits_miss() {
        let (limits, _clock) = leased(&[
            (spec(Level::Key, Metric::RequestsPerMinute, 60), 0),
            (spec(Level::Team, Metric::TokensPerMinute, 100), 0),
        ]);
        // Both windows reset in 30 s; no renewal can help (no free capacity at the plane).
        let refusal = limits.try_admit(demand(10, 0)).unwrap_err();
        assert!(!refusal.renewable);
        assert_eq!(refusal.exceeded.retry_after_ms, 30_000);

        let (limits, _clock) = leased(&[
            (spec(Level::Key, Metric::ConcurrentRequests, 1), 0),
            (spec(Level::Team, Metric::RequestsPerMinute, 1), 0),
        ]);
        let refusal = limits.try_admit(demand(10, 0)).unwrap_err();
        assert_eq!(refusal.exceeded.level, Level::Team);
        assert_eq!(refusal.exceeded.retry_after_ms, 30_000);
    }

    #[test]
    fn dropping_an_unsettled_admission_releases_everything() {
        let (limits, _clock) = leased(&[
            (spec(Level::Key, Metric::RequestsPerMinute, 60), 10),
            (spec(Level::Key, Metric::TokensPerDay, 1_000_000), 5_000),
            (spec(Level::Org, Metric::ConcurrentRequests, 1), 1),
        ]);
        let admission = limits.try_admit(demand(4_000, 0)).unwrap();
        assert!(
            limits.try_admit(demand(1, 0)).is_err(),
            "the only slot is taken"
        );
        drop(admission);
        for (_, counter) in limits.entries() {
            assert_eq!(counter.reserved(), 0);
        }
        assert_eq!(limits.entries()[1].1.available(), 5_000);
        assert_eq!(limits.entries()[2].1.available(), 1);
        // The request still counted as a request.
        assert_eq!(limits.entries()[0].1.consumed_total(), 1);
    }

    #[test]
    fn a_panic_while_holding_an_admission_releases_the_slot() {
        let (limits, _clock) = leased(&[(spec(Level::Org, Metric::ConcurrentRequests, 1), 1)]);
        let limits = Arc::new(limits);
        let inside = Arc::clone(&limits);
        let result = std::thread::spawn(move || {
            let _admission = inside.try_admit(demand(1, 0)).unwrap();
            panic!("handler bug");
        })
        .join();
        assert!(result.is_err());
        assert_eq!(limits.entries()[0].1.reserved(), 0);
        assert!(limits.try_admit(demand(1, 0)).is_ok());
    }

    #[test]
    fn zero_unit_budgets_are_never_refused_but_still_settle() {
        let (limits, _clock) =
            leased(&[(spec(Level::Project, Metric::BudgetMicrosPerMonth, 100), 0)]);
        let admission = limits.try_admit(demand(50, 0)).unwrap();
        admission.settle(demand(50, 0));
        assert_eq!(limits.entries()[0].1.consumed_total(), 0);
        assert!(limits.try_admit(demand(50, 1)).is_err());
    }
}
