//! The `x-ratelimit-*` headers OpenAI sends, from this edge's best estimate: for requests per
//! minute and tokens per minute, the tightest limit over the key's levels (least remaining).

use super::admission::KeyLimits;
use super::counter::RateView;
use super::spec::Metric;

/// Header values for one kind (requests or tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHeader {
    pub limit: i64,
    pub remaining: i64,
    /// OpenAI's duration format: "1s", "6m0s", "250ms".
    pub reset: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<RateHeader>,
    pub tokens: Option<RateHeader>,
}

impl RateHeaders {
    pub fn for_key(limits: &KeyLimits) -> Self {
        if limits.is_empty() {
            return Self::default();
        }
        let now_ms = limits.now_ms();
        let tightest = |metric: Metric| {
            limits
                .entries()
                .iter()
                .filter(|(spec, _)| spec.key.metric == metric)
                .map(|(_, counter)| counter.rate_view(now_ms))
                .min_by_key(|view| (view.remaining, view.limit))
                .map(header)
        };
        Self {
            requests: tightest(Metric::RequestsPerMinute),
            tokens: tightest(Metric::TokensPerMinute),
        }
    }

    /// (name, value) pairs, ready for a response.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(requests) = &self.requests {
            pairs.push(("x-ratelimit-limit-requests", requests.limit.to_string()));
            pairs.push((
                "x-ratelimit-remaining-requests",
                requests.remaining.to_string(),
            ));
            pairs.push(("x-ratelimit-reset-requests", requests.reset.clone()));
        }
        if let Some(tokens) = &self.tokens {
            pairs.push(("x-ratelimit-limit-tokens", tokens.limit.to_string()));
            pairs.push(("x-ratelimit-remaining-tokens", tokens.remaining.to_string()));
            pairs.push(("x-ratelimit-reset-tokens", tokens.reset.clone()));
        }
        pairs
    }
}

fn header(view: RateView) -> RateHeader {
    RateHeader {
        limit: view.limit,
        remaining: view.remaining.clamp(0, view.limit.max(0)),
        reset: format_duration_ms(view.reset_ms),
    }
}

/// A duration the way OpenAI (Go's `time.Duration`) prints it, to the millisecond: "0s",
/// "250ms", "1s", "1.5s", "6m0s", "1h2m3s".
pub fn format_duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms % 3_600_000 / 60_000;
    let seconds = ms % 60_000 / 1_000;
    let millis = ms % 1_000;
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    text.push_str(&seconds.to_string());
    if millis > 0 {
        let fraction = format!("{millis:03}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('s');
    text
}

/// `Retry-After`: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(ms: i64) -> i64 {
    ((ms.max(0) + 999) / 1_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_openais_format() {
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(-5), "0s");
        assert_eq!(format_duration_ms(250), "250ms");
        assert_eq!(format_duration_ms(1_000), "1s");
        assert_eq!(format_duration_ms(1_500), "1.5s");
        assert_eq!(format_duration_ms(17_250), "17.25s");
        assert_eq!(format_duration_ms(360_000), "6m0s");
        assert_eq!(format_duration_ms(3_723_000), "1h2m3s");
        assert_eq!(format_duration_ms(3_600_000), "1h0m0s");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1_000), 1);
        assert_eq!(retry_after_secs(1_001), 2);
        assert_eq!(retry_after_secs(59_999), 60);
    }
}
