//! What a client sees of a limit: the `x-ratelimit-*` headers and the OpenAI-style 429.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::LimitScope;
use crate::gateway_client::HttpReply;

/// One family of `x-ratelimit-*` headers (`requests` or `tokens`), parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

impl RateLimitHeaders {
    /// `x-ratelimit-limit-<family>`, `x-ratelimit-remaining-<family>` and
    /// `x-ratelimit-reset-<family>` of `headers`; an error naming what is missing or malformed.
    pub fn parse(headers: &HeaderMap, family: &str) -> anyhow::Result<RateLimitHeaders> {
        let get = |name: String| -> anyhow::Result<String> {
            headers
                .get(&name)
                .ok_or_else(|| anyhow::anyhow!("no {name} header in {headers:?}"))?
                .to_str()
                .map(str::to_owned)
                .map_err(|error| anyhow::anyhow!("{name} is not text: {error}"))
        };
        let number = |name: String| -> anyhow::Result<u64> {
            let text = get(name.clone())?;
            text.parse()
                .map_err(|error| anyhow::anyhow!("{name}: {text:?} is not a count: {error}"))
        };
        let reset_name = format!("x-ratelimit-reset-{family}");
        let reset_text = get(reset_name.clone())?;
        Ok(RateLimitHeaders {
            limit: number(format!("x-ratelimit-limit-{family}"))?,
            remaining: number(format!("x-ratelimit-remaining-{family}"))?,
            reset: parse_openai_duration(&reset_text).ok_or_else(|| {
                anyhow::anyhow!("{reset_name}: {reset_text:?} is not a duration like 6m0s")
            })?,
        })
    }

    /// Parses and checks `limit` is the configured value and `remaining` does not exceed it.
    #[track_caller]
    pub fn assert_on(headers: &HeaderMap, family: &str, limit: u64) -> RateLimitHeaders {
        let parsed = RateLimitHeaders::parse(headers, family).unwrap_or_else(|error| {
            panic!("x-ratelimit-*-{family}: {error:#}");
        });
        assert_eq!(
            parsed.limit, limit,
            "x-ratelimit-limit-{family}: {parsed:?}"
        );
        assert!(
            parsed.remaining <= parsed.limit,
            "x-ratelimit-remaining-{family} above the limit: {parsed:?}"
        );
        assert!(
            parsed.reset <= Duration::from_secs(31 * 24 * 3600),
            "x-ratelimit-reset-{family} is implausibly far away: {parsed:?}"
        );
        parsed
    }
}

/// Parses OpenAI's (Go's) duration format: `250ms`, `1s`, `6m0s`, `1h2m3.5s`, `0s`.
pub fn parse_openai_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (seconds_per_unit, unit_len) = [
            ("ms", 1e-3),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ns", 1e-9),
            ("h", 3600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .into_iter()
        .find(|(unit, _)| rest.starts_with(unit))
        .map(|(unit, scale)| (scale, unit.len()))?;
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The `type` and `code` an OpenAI-style 429 carries for `metric` (a snake_case metric name).
pub fn expected_error_kind(metric: &str) -> (&'static str, &'static str) {
    match metric {
        "requests_per_minute" | "concurrent_requests" => ("requests", "rate_limit_exceeded"),
        "tokens_per_minute" => ("tokens", "rate_limit_exceeded"),
        _ => ("insufficient_quota", "insufficient_quota"),
    }
}

/// Words a 429's message must contain to name `metric`.
fn metric_words(metric: &str) -> &'static str {
    match metric {
        "requests_per_minute" => "requests per minute",
        "tokens_per_minute" => "tokens per minute",
        "tokens_per_hour" => "tokens per hour",
        "tokens_per_day" => "tokens per day",
        "tokens_per_month" => "tokens per month",
        "budget_micros_per_month" => "budget",
        "concurrent_requests" => "concurrent",
        _ => "",
    }
}

/// Asserts `reply` is the 429 of limit `metric` (snake_case) at `scope`'s level: OpenAI error
/// JSON with the metric's type and code and a message naming the metric, the level and (when
/// given) `scope_name`, e.g. the team's name; `Retry-After` ≥ 1 s; `x-tollgate-limit-scope` and
/// `x-tollgate-limit-metric`. Returns the `error` object.
#[track_caller]
pub fn assert_limit_rejection(
    reply: &HttpReply,
    metric: &str,
    scope: &LimitScope,
    scope_name: Option<&str>,
) -> Value {
    assert_eq!(reply.status, 429, "expected a 429; body: {}", reply.body);
    let body = reply.json();
    let error = body
        .get("error")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no `error` object in {body}"));
    for field in ["message", "type", "param", "code"] {
        assert!(
            error.contains_key(field),
            "error has no `{field}` field: {body}"
        );
    }
    let (error_type, code) = expected_error_kind(metric);
    assert_eq!(error["type"], error_type, "error.type in {body}");
    assert_eq!(error["code"], code, "error.code in {body}");
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error.message is not a string: {body}"));
    let normalized = message.to_lowercase().replace('_', " ");
    assert!(
        normalized.contains(metric_words(metric)),
        "the message names the limit ({metric}): {message}"
    );
    assert!(
        normalized.contains(scope.level()),
        "the message names the level ({}): {message}",
        scope.level()
    );
    if let Some(scope_name) = scope_name {
        assert!(
            message.contains(scope_name),
            "the message names the scope ({scope_name}): {message}"
        );
    }
    let retry_after = reply
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on a 429: {:?}", reply.headers));
    let retry_after: u64 = retry_after.parse().unwrap_or_else(|error| {
        panic!("Retry-After {retry_after:?} is not whole seconds: {error}")
    });
    assert!(retry_after >= 1, "Retry-After must be at least 1 s");
    assert_eq!(
        reply.header("x-tollgate-limit-scope"),
        Some(scope.level()),
        "x-tollgate-limit-scope"
    );
    assert_eq!(
        reply.header("x-tollgate-limit-metric"),
        Some(metric),
        "x-tollgate-limit-metric"
    );
    assert!(
        reply.request_id().is_some(),
        "no x-request-id header on a 429"
    );
    Value::Object(error.clone())
}

#[cfg(test)]
mod tests {
    use super::parse_openai_duration;
    use std::time::Duration;

    #[test]
    fn openai_durations_parse() {
        assert_eq!(parse_openai_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_openai_duration("250ms"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_openai_duration("6m0s"),
            Some(Duration::from_secs(360))
        );
        assert_eq!(
            parse_openai_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(parse_openai_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "5", "s", "1x", "-1s", "1s2"] {
            assert_eq!(parse_openai_duration(bad), None, "{bad:?}");
        }
    }
}
