//! Prices and cost: every model carries its price versions with their effective times, so a
//! request is priced by the version in force when it started, and a scheduled price change
//! takes effect on time without waiting for a new snapshot. Money is integer micro-dollars.

/// One price version, in integer micro-dollars per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub version: u32,
    pub effective_from_unix_ms: i64,
    pub input_micros_per_mtok: i64,
    /// Equal to the input price where the provider has no cheaper cached-input price.
    pub cached_input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
}

/// Tokens that a request is billed for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input_tokens: u64,
    /// Part of `input_tokens` served from the provider's prompt cache.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
}

const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;

impl Price {
    /// Cost in micro-dollars, rounded half up once per request (never per token), computed in
    /// 128-bit integers: each product fits exactly (u64 × i64), and absurd totals saturate.
    pub fn cost_micros(&self, usage: &TokenUsage) -> i64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        let numerator = (i128::from(uncached) * i128::from(self.input_micros_per_mtok))
            .saturating_add(i128::from(cached) * i128::from(self.cached_input_micros_per_mtok))
            .saturating_add(
                i128::from(usage.output_tokens) * i128::from(self.output_micros_per_mtok),
            );
        let rounded = numerator.saturating_add(TOKENS_PER_PRICE_UNIT / 2) / TOKENS_PER_PRICE_UNIT;
        i64::try_from(rounded).unwrap_or(i64::MAX)
    }
}

/// A model's price versions, ordered by effective time. Empty means the model is unpriced:
/// its usage is recorded as unpriced, never as free.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceSchedule {
    versions: Vec<Price>,
}

impl PriceSchedule {
    pub fn new(mut versions: Vec<Price>) -> Self {
        versions.sort_by_key(|price| (price.effective_from_unix_ms, price.version));
        Self { versions }
    }

    /// The version in force at `unix_ms`, if any.
    pub fn at(&self, unix_ms: i64) -> Option<&Price> {
        self.versions
            .iter()
            .rev()
            .find(|price| price.effective_from_unix_ms <= unix_ms)
    }

    pub fn versions(&self) -> &[Price] {
        &self.versions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(version: u32, from: i64, input: i64, output: i64) -> Price {
        Price {
            version,
            effective_from_unix_ms: from,
            input_micros_per_mtok: input,
            cached_input_micros_per_mtok: input / 2,
            output_micros_per_mtok: output,
        }
    }

    #[test]
    fn cost_is_exact_integer_micros_rounded_once() {
        // gpt-4o-mini list price: $0.15 / $0.60 per 1M tokens.
        let p = price(1, 0, 150_000, 600_000);
        let usage = TokenUsage {
            input_tokens: 1_000,
            cached_input_tokens: 0,
            output_tokens: 500,
        };
        // 1000 * 0.15 + 500 * 0.60 = 150 + 300 micro-dollars.
        assert_eq!(p.cost_micros(&usage), 450);
        // 3 tokens at $0.15/M = 0.45 micros -> rounds to 0; 4 tokens = 0.6 -> 1.
        assert_eq!(
            p.cost_micros(&TokenUsage {
                input_tokens: 3,
                ..TokenUsage::default()
            }),
            0
        );
        assert_eq!(
            p.cost_micros(&TokenUsage {
                input_tokens: 4,
                ..TokenUsage::default()
            }),
            1
        );
    }

    #[test]
    fn cached_input_tokens_use_the_cached_price() {
        let p = price(1, 0, 2_000_000, 8_000_000);
        let usage = TokenUsage {
            input_tokens: 1_000_000,
            cached_input_tokens: 400_000,
            output_tokens: 0,
        };
        assert_eq!(p.cost_micros(&usage), 600_000 * 2 + 400_000);
    }

    #[test]
    fn huge_counts_saturate_instead_of_overflowing() {
        let p = price(1, 0, i64::MAX, i64::MAX);
        let usage = TokenUsage {
            input_tokens: u64::MAX,
            cached_input_tokens: 0,
            output_tokens: u64::MAX,
        };
        assert_eq!(p.cost_micros(&usage), i64::MAX);
    }

    #[test]
    fn the_version_in_force_at_the_request_time_applies() {
        let schedule = PriceSchedule::new(vec![price(2, 1_000, 20, 20), price(1, 0, 10, 10)]);
        assert_eq!(schedule.at(999).map(|p| p.version), Some(1));
        assert_eq!(schedule.at(1_000).map(|p| p.version), Some(2));
        assert!(PriceSchedule::new(vec![price(1, 5, 1, 1)]).at(4).is_none());
    }
}
