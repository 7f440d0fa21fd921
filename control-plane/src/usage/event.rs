//! One usage event as the ledger stores it, validated once from the wire. Everything that could
//! make Postgres refuse the row (a NUL byte, a number outside its column, a sum that could
//! overflow a rollup) is caught here, so an event either becomes a valid row or a rejected
//! event with a precise reason: never a database error that would fail the whole batch and
//! make the edge re-send it forever.

use chrono::{DateTime, TimeDelta, Utc};
use tollgate_contract::usage::{
    MAX_ID_BYTES, MAX_NAME_BYTES, MAX_REQUESTED_MODEL_BYTES, MAX_VARIANT_BYTES, client_text,
};
pub use tollgate_contract::usage::{UsageSource, UsageStatus};
use tollgate_proto::v1 as pb;
use uuid::Uuid;

/// A trillion tokens in one request is far past any model's context, and keeps even millions of
/// such events summed into one rollup row inside a BIGINT.
pub const MAX_TOKENS_PER_EVENT: u64 = 1_000_000_000_000;
/// $1 billion for one request: no real request costs that; a larger value is a unit mistake.
pub const MAX_COST_MICROS: i64 = 1_000_000_000_000_000;
/// How far ahead of the control plane's clock an edge's clock may run.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::hours(1);
/// 2020-01-01T00:00:00Z: anything earlier is an unset clock, not a real request.
const EARLIEST_EVENT_UNIX_MS: i64 = 1_577_836_800_000;
const MAX_HTTP_STATUS: u32 = 999;
const MAX_FALLBACK_LEVEL: u32 = 1_000;

/// The cost of a priced request and the price version it was computed with. A request is either
/// priced (both known) or unpriced (neither): the type makes "a cost without a version" or "a
/// version without a cost" impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedPrice {
    pub cost_micros: i64,
    pub price_version: i32,
}

/// A validated usage event; field meanings as in `usage.proto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    pub event_id: Uuid,
    pub request_id: String,
    pub event_time: DateTime<Utc>,
    pub org_id: Uuid,
    pub team_id: Uuid,
    pub project_id: Uuid,
    pub user_id: Option<Uuid>,
    pub key_id: Uuid,
    pub requested_model: String,
    /// Empty when the request failed before routing; stored as given.
    pub model: String,
    /// Empty when the request failed before routing; stored as given.
    pub provider: String,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    /// `None` for an unpriced request: its cost is unknown, which is not the same as free.
    pub price: Option<AppliedPrice>,
    pub saved_cost_micros: i64,
    pub latency_ms: i32,
    pub ttft_ms: Option<i32>,
    pub status: UsageStatus,
    pub http_status: i16,
    pub cache_hit: bool,
    pub fallback_level: i16,
    pub variant: Option<String>,
    pub edge_id: String,
    pub config_version: i64,
    pub stream: bool,
    pub usage_source: UsageSource,
}

/// Why an event was not stored: the field and what is wrong with it, kept with the event in
/// `usage_rejected_events`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidEvent {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidEvent {
    InvalidEvent {
        field,
        reason: reason.into(),
    }
}

impl TryFrom<pb::UsageEvent> for UsageEvent {
    type Error = InvalidEvent;

    fn try_from(event: pb::UsageEvent) -> Result<Self, Self::Error> {
        Self::validate(&event, Utc::now())
    }
}

impl UsageEvent {
    /// Validates a wire event against the control plane's clock `now` (injected so tests can
    /// pin it).
    pub fn validate(event: &pb::UsageEvent, now: DateTime<Utc>) -> Result<Self, InvalidEvent> {
        let input_tokens = tokens("input_tokens", event.input_tokens)?;
        let cached_input_tokens = tokens("cached_input_tokens", event.cached_input_tokens)?;
        if cached_input_tokens > input_tokens {
            return Err(invalid(
                "cached_input_tokens",
                format!(
                    "{cached_input_tokens} is more than input_tokens ({input_tokens}); it is a part of them"
                ),
            ));
        }
        let price = if event.priced {
            if !(0..=MAX_COST_MICROS).contains(&event.cost_micros) {
                return Err(invalid(
                    "cost_micros",
                    format!(
                        "{} is outside 0..={MAX_COST_MICROS} micro-dollars",
                        event.cost_micros
                    ),
                ));
            }
            let price_version = i32::try_from(event.price_version)
                .ok()
                .filter(|version| *version > 0)
                .ok_or_else(|| {
                    invalid(
                        "price_version",
                        format!(
                            "a priced event needs a price version from 1 to {}, got {}",
                            i32::MAX,
                            event.price_version
                        ),
                    )
                })?;
            Some(AppliedPrice {
                cost_micros: event.cost_micros,
                price_version,
            })
        } else {
            // Unpriced: whatever the edge put in cost_micros and price_version means nothing.
            None
        };
        if !(0..=MAX_COST_MICROS).contains(&event.saved_cost_micros) {
            return Err(invalid(
                "saved_cost_micros",
                format!(
                    "{} is outside 0..={MAX_COST_MICROS} micro-dollars",
                    event.saved_cost_micros
                ),
            ));
        }
        let stream = event.stream;
        let output_tokens = tokens("output_tokens", event.output_tokens)?;
        // The wire has no "unset" for ttft_ms: 0 means not a stream or nothing streamed. A
        // stream that produced output had a first token, even one under a millisecond.
        let ttft_ms = if stream && (event.ttft_ms > 0 || output_tokens > 0) {
            Some(int32("ttft_ms", event.ttft_ms)?)
        } else {
            None
        };
        Ok(Self {
            event_id: uuid("event_id", &event.event_id)?,
            request_id: text("request_id", &event.request_id, MAX_ID_BYTES, Required::Yes)?,
            event_time: event_time(event.event_time_unix_ms, now)?,
            org_id: uuid("org_id", &event.org_id)?,
            team_id: uuid("team_id", &event.team_id)?,
            project_id: uuid("project_id", &event.project_id)?,
            user_id: if event.user_id.is_empty() {
                None
            } else {
                Some(uuid("user_id", &event.user_id)?)
            },
            key_id: uuid("key_id", &event.key_id)?,
            requested_model: client_text(&event.requested_model, MAX_REQUESTED_MODEL_BYTES),
            model: text("model", &event.model, MAX_NAME_BYTES, Required::No)?,
            provider: text("provider", &event.provider, MAX_NAME_BYTES, Required::No)?,
            input_tokens,
            cached_input_tokens,
            output_tokens,
            price,
            saved_cost_micros: event.saved_cost_micros,
            latency_ms: int32("latency_ms", event.latency_ms)?,
            ttft_ms,
            status: UsageStatus::parse(&event.status).ok_or_else(|| {
                invalid(
                    "status",
                    format!(
                        "'{}' is not one of {}",
                        printable(&event.status),
                        UsageStatus::ALL.map(UsageStatus::as_str).join(", ")
                    ),
                )
            })?,
            http_status: small("http_status", event.http_status, MAX_HTTP_STATUS)?,
            cache_hit: event.cache_hit,
            fallback_level: small("fallback_level", event.fallback_level, MAX_FALLBACK_LEVEL)?,
            variant: match text("variant", &event.variant, MAX_VARIANT_BYTES, Required::No)? {
                variant if variant.is_empty() => None,
                variant => Some(variant),
            },
            edge_id: text("edge_id", &event.edge_id, MAX_ID_BYTES, Required::Yes)?,
            config_version: i64::try_from(event.config_version)
                .map_err(|_| invalid("config_version", "does not fit a signed 64-bit integer"))?,
            stream,
            usage_source: UsageSource::parse(&event.usage_source).ok_or_else(|| {
                invalid(
                    "usage_source",
                    format!(
                        "'{}' is not one of {}",
                        printable(&event.usage_source),
                        UsageSource::ALL.map(UsageSource::as_str).join(", ")
                    ),
                )
            })?,
        })
    }
}

fn uuid(field: &'static str, value: &str) -> Result<Uuid, InvalidEvent> {
    match Uuid::try_parse(value) {
        Ok(id) if !id.is_nil() => Ok(id),
        Ok(_) => Err(invalid(field, "must not be the nil UUID")),
        Err(_) if value.is_empty() => Err(invalid(field, "must not be empty")),
        Err(_) => Err(invalid(
            field,
            format!("'{}' is not a UUID", printable(value)),
        )),
    }
}

fn event_time(unix_ms: i64, now: DateTime<Utc>) -> Result<DateTime<Utc>, InvalidEvent> {
    let latest = now + MAX_CLOCK_SKEW;
    let at = DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .filter(|at| unix_ms >= EARLIEST_EVENT_UNIX_MS && *at <= latest)
        .ok_or_else(|| {
            invalid(
                "event_time_unix_ms",
                format!(
                    "{unix_ms} is not between 2020-01-01 and the control plane's clock plus {} minutes",
                    MAX_CLOCK_SKEW.num_minutes()
                ),
            )
        })?;
    Ok(at)
}

fn tokens(field: &'static str, value: u64) -> Result<i64, InvalidEvent> {
    if value > MAX_TOKENS_PER_EVENT {
        return Err(invalid(
            field,
            format!("{value} is more than {MAX_TOKENS_PER_EVENT} tokens in one request"),
        ));
    }
    i64::try_from(value).map_err(|_| invalid(field, "too large"))
}

fn int32(field: &'static str, value: u32) -> Result<i32, InvalidEvent> {
    i32::try_from(value).map_err(|_| invalid(field, format!("{value} is more than {}", i32::MAX)))
}

fn small(field: &'static str, value: u32, max: u32) -> Result<i16, InvalidEvent> {
    if value > max {
        return Err(invalid(field, format!("{value} is more than {max}")));
    }
    i16::try_from(value).map_err(|_| invalid(field, "too large"))
}

#[derive(PartialEq, Eq)]
enum Required {
    Yes,
    No,
}

/// Text the edge produced itself: refused when it is not storable or not plausible.
fn text(
    field: &'static str,
    value: &str,
    max_len: usize,
    required: Required,
) -> Result<String, InvalidEvent> {
    if required == Required::Yes && value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(invalid(
            field,
            format!("is {} bytes, at most {max_len} allowed", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// A value quoted in an error message: short and on one line.
fn printable(value: &str) -> String {
    let mut shown: String = value
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if value.chars().count() > 64 {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(1_795_000_000_000).unwrap()
    }

    fn wire() -> pb::UsageEvent {
        pb::UsageEvent {
            event_id: "0193a0c4-7f0e-7cc3-9a52-3b1c2d4e5f60".to_owned(),
            request_id: "req_1".to_owned(),
            event_time_unix_ms: 1_795_000_000_000 - 1_000,
            org_id: Uuid::new_v4().to_string(),
            team_id: Uuid::new_v4().to_string(),
            project_id: Uuid::new_v4().to_string(),
            user_id: String::new(),
            key_id: Uuid::new_v4().to_string(),
            requested_model: "gpt".to_owned(),
            model: "gpt".to_owned(),
            provider: "openai".to_owned(),
            input_tokens: 100,
            cached_input_tokens: 10,
            output_tokens: 20,
            priced: true,
            cost_micros: 42,
            price_version: 3,
            latency_ms: 120,
            ttft_ms: 0,
            status: "ok".to_owned(),
            http_status: 200,
            cache_hit: false,
            fallback_level: 0,
            variant: String::new(),
            edge_id: "edge-1".to_owned(),
            config_version: 7,
            stream: false,
            usage_source: "provider".to_owned(),
            saved_cost_micros: 0,
        }
    }

    fn reason(event: pb::UsageEvent) -> String {
        UsageEvent::validate(&event, now()).unwrap_err().to_string()
    }

    #[test]
    fn a_complete_event_validates_with_empty_optionals_as_none() {
        let event = UsageEvent::validate(&wire(), now()).unwrap();
        assert_eq!(event.user_id, None);
        assert_eq!(event.variant, None);
        assert_eq!(event.ttft_ms, None);
        assert_eq!(
            event.price,
            Some(AppliedPrice {
                cost_micros: 42,
                price_version: 3
            })
        );
        assert_eq!(event.status, UsageStatus::Ok);
    }

    #[test]
    fn unpriced_events_carry_no_cost_and_no_version_whatever_the_wire_says() {
        let mut event = wire();
        event.priced = false;
        event.cost_micros = 999;
        event.price_version = 4;
        assert_eq!(UsageEvent::validate(&event, now()).unwrap().price, None);
    }

    #[test]
    fn requests_that_failed_before_routing_keep_empty_model_and_provider() {
        let mut event = wire();
        event.model = String::new();
        event.provider = String::new();
        event.status = "client_error".to_owned();
        let event = UsageEvent::validate(&event, now()).unwrap();
        assert_eq!((event.model.as_str(), event.provider.as_str()), ("", ""));
    }

    #[test]
    fn each_bad_field_is_named_in_the_reason() {
        let mut event = wire();
        event.event_id = "not-a-uuid".to_owned();
        assert_eq!(reason(event), "event_id: 'not-a-uuid' is not a UUID");
        let mut event = wire();
        event.org_id = String::new();
        assert_eq!(reason(event), "org_id: must not be empty");
        let mut event = wire();
        event.user_id = "bob".to_owned();
        assert_eq!(reason(event), "user_id: 'bob' is not a UUID");
        let mut event = wire();
        event.status = "fine".to_owned();
        assert!(reason(event).starts_with("status: 'fine' is not one of ok, client_error"));
        let mut event = wire();
        event.usage_source = "guess".to_owned();
        assert!(reason(event).starts_with("usage_source: 'guess' is not one of"));
        let mut event = wire();
        event.cost_micros = -1;
        assert!(reason(event).starts_with("cost_micros: -1 is outside"));
        let mut event = wire();
        event.price_version = 0;
        assert!(reason(event).starts_with("price_version: a priced event needs"));
        let mut event = wire();
        event.cached_input_tokens = 101;
        assert!(reason(event).starts_with("cached_input_tokens: 101 is more than input_tokens"));
        let mut event = wire();
        event.output_tokens = MAX_TOKENS_PER_EVENT + 1;
        assert!(reason(event).starts_with("output_tokens:"));
        let mut event = wire();
        event.latency_ms = u32::MAX;
        assert!(reason(event).starts_with("latency_ms:"));
        let mut event = wire();
        event.http_status = 1_000;
        assert!(reason(event).starts_with("http_status:"));
        let mut event = wire();
        event.edge_id = String::new();
        assert_eq!(reason(event), "edge_id: must not be empty");
        let mut event = wire();
        event.model = "gpt\0".to_owned();
        assert_eq!(reason(event), "model: must not contain control characters");
    }

    #[test]
    fn event_times_must_be_after_2020_and_at_most_an_hour_ahead() {
        let mut event = wire();
        event.event_time_unix_ms = 0;
        assert!(reason(event).starts_with("event_time_unix_ms: 0 is not between"));
        let mut event = wire();
        event.event_time_unix_ms = now().timestamp_millis() + 3_600_001;
        assert!(reason(event).starts_with("event_time_unix_ms:"));
        let mut event = wire();
        event.event_time_unix_ms = now().timestamp_millis() + 3_600_000;
        assert!(UsageEvent::validate(&event, now()).is_ok());
        let mut event = wire();
        event.event_time_unix_ms = EARLIEST_EVENT_UNIX_MS;
        assert!(
            UsageEvent::validate(&event, now()).is_ok(),
            "late replays are kept"
        );
    }

    #[test]
    fn the_requested_model_is_client_input_made_storable_not_refused() {
        let mut event = wire();
        event.requested_model = format!("a\0b{}", "x".repeat(1_000));
        let event = UsageEvent::validate(&event, now()).unwrap();
        assert!(event.requested_model.starts_with("a\u{fffd}b"));
        assert!(event.requested_model.len() <= MAX_REQUESTED_MODEL_BYTES);
        assert!(event.requested_model.len() > MAX_REQUESTED_MODEL_BYTES - 4);
    }

    #[test]
    fn ttft_is_recorded_for_streams_that_streamed_something() {
        let mut event = wire();
        event.stream = true;
        event.ttft_ms = 0;
        assert_eq!(
            UsageEvent::validate(&event, now()).unwrap().ttft_ms,
            Some(0)
        );
        event.output_tokens = 0;
        assert_eq!(UsageEvent::validate(&event, now()).unwrap().ttft_ms, None);
        let mut event = wire();
        event.ttft_ms = 50;
        assert_eq!(
            UsageEvent::validate(&event, now()).unwrap().ttft_ms,
            None,
            "not a stream"
        );
    }
}
