//! Validation of admin input at the boundary: every rejected field is named in the error, and
//! nothing is written until the whole request is valid.

use crate::error::AdminError;
use tollgate_contract::address;
use tollgate_proto::v1 as pb;

const MAX_NAME_LEN: usize = 64;
/// Longer than any Azure (`2024-10-01-preview`) or Anthropic (`2023-06-01`) version string.
const MAX_API_VERSION_LEN: usize = 32;
/// One day: longer than any sane upstream call, low enough to catch seconds typed as ms twice.
pub const MAX_MODEL_TIMEOUT_MS: u32 = 86_400_000;
const MAX_MODEL_NAME_LEN: usize = 128;
/// $1,000,000 per 1M tokens: far above any real price, low enough to catch unit mistakes.
const MAX_PRICE_MICROS_PER_MTOK: i64 = 1_000_000_000_000;

/// Org, team, project, user, provider and key names: `[A-Za-z0-9][A-Za-z0-9._-]*`, ≤ 64 chars.
pub fn entity_name<'a>(field: &'static str, value: &'a str) -> Result<&'a str, AdminError> {
    checked_name(field, value, MAX_NAME_LEN, &['.', '_', '-'])
}

/// Model names also allow `:`, `/` and `@` (`llama3:8b`, `openai/gpt-4o`).
pub fn model_name<'a>(field: &'static str, value: &'a str) -> Result<&'a str, AdminError> {
    checked_name(
        field,
        value,
        MAX_MODEL_NAME_LEN,
        &['.', '_', '-', ':', '/', '@'],
    )
}

fn checked_name<'a>(
    field: &'static str,
    value: &'a str,
    max_len: usize,
    punctuation: &[char],
) -> Result<&'a str, AdminError> {
    if value.is_empty() {
        return Err(AdminError::invalid(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(AdminError::invalid(
            field,
            format!("must be at most {max_len} characters"),
        ));
    }
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || punctuation.contains(&c));
    if !(first_ok && rest_ok) {
        let allowed: String = punctuation.iter().collect();
        return Err(AdminError::invalid(
            field,
            format!(
                "'{value}' must start with a letter or digit and contain only letters, digits and '{allowed}'"
            ),
        ));
    }
    Ok(value)
}

/// An upstream API version (`2024-10-21`, `2024-10-01-preview`, `2023-06-01`). It travels in a
/// header or query string, so it is kept to letters, digits, `.`, `_` and `-`.
pub fn api_version(value: &str) -> Result<String, AdminError> {
    let valid = value.len() <= MAX_API_VERSION_LEN
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(AdminError::invalid(
            "api_version",
            format!(
                "'{value}' is not an API version (like 2024-10-21): letters, digits, '.', '_' \
                 and '-', at most {MAX_API_VERSION_LEN} characters"
            ),
        ));
    }
    Ok(value.to_owned())
}

/// An upstream base URL must pass the contract's address policy (http(s), no credentials, no
/// link-local or cloud metadata address), so an admin token cannot be turned into a way to read
/// instance credentials. Loopback and private ranges stay allowed: local Ollama and vLLM servers
/// live there.
pub fn base_url(value: &str) -> Result<String, AdminError> {
    let url = address::check_base_url(value)
        .map_err(|err| AdminError::invalid("base_url", err.to_string()))?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

pub fn price(field: &'static str, micros_per_mtok: i64) -> Result<i64, AdminError> {
    if !(0..=MAX_PRICE_MICROS_PER_MTOK).contains(&micros_per_mtok) {
        return Err(AdminError::invalid(
            field,
            format!(
                "must be between 0 and {MAX_PRICE_MICROS_PER_MTOK} micro-dollars per 1M tokens"
            ),
        ));
    }
    Ok(micros_per_mtok)
}

/// A u32 from the wire that must fit a column and a sane ceiling.
pub fn bounded(field: &'static str, value: u32, max: u32) -> Result<i32, AdminError> {
    if value > max {
        return Err(AdminError::invalid(field, format!("must be at most {max}")));
    }
    i32::try_from(value).map_err(|_| AdminError::invalid(field, "too large"))
}

/// A model's upstream deadlines in milliseconds, as stored (`models.*_timeout_ms`); 0 means
/// the edge default for that phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelTimeouts {
    pub connect_ms: i32,
    pub first_token_ms: i32,
    pub idle_ms: i32,
    pub total_ms: i32,
}

impl ModelTimeouts {
    pub fn to_wire(self) -> pb::ModelTimeouts {
        let ms = |value: i32| u32::try_from(value).unwrap_or(0);
        pb::ModelTimeouts {
            connect_ms: ms(self.connect_ms),
            first_token_ms: ms(self.first_token_ms),
            idle_ms: ms(self.idle_ms),
            total_ms: ms(self.total_ms),
        }
    }
}

/// Deadlines as given on the wire; unset means every phase at its default.
pub fn model_timeouts(wire: Option<pb::ModelTimeouts>) -> Result<ModelTimeouts, AdminError> {
    let wire = wire.unwrap_or_default();
    Ok(ModelTimeouts {
        connect_ms: timeout_ms("timeouts.connect_ms", wire.connect_ms)?,
        first_token_ms: timeout_ms("timeouts.first_token_ms", wire.first_token_ms)?,
        idle_ms: timeout_ms("timeouts.idle_ms", wire.idle_ms)?,
        total_ms: timeout_ms("timeouts.total_ms", wire.total_ms)?,
    })
}

fn timeout_ms(field: &'static str, value: u32) -> Result<i32, AdminError> {
    if value > MAX_MODEL_TIMEOUT_MS {
        return Err(AdminError::invalid(
            field,
            format!(
                "{value} ms is more than the maximum {MAX_MODEL_TIMEOUT_MS} ms (24 hours); \
                 0 means the edge default"
            ),
        ));
    }
    i32::try_from(value).map_err(|_| AdminError::invalid(field, "too large"))
}

/// An IANA time zone name ("Europe/Berlin"), returned in its canonical spelling so stored
/// names compare equal however they were typed. Calendar quotas reset at this zone's
/// boundaries, so a typo must fail here rather than silently mean UTC.
pub fn time_zone(field: &'static str, value: &str) -> Result<String, AdminError> {
    if value.is_empty() {
        return Err(AdminError::invalid(field, "must not be empty"));
    }
    let zone = jiff::tz::TimeZone::get(value).map_err(|_| {
        AdminError::invalid(
            field,
            format!("unknown time zone '{value}' (use an IANA name like Europe/Berlin or UTC)"),
        )
    })?;
    Ok(zone.iana_name().unwrap_or(value).to_owned())
}

/// A configured limit: requests, tokens, micro-dollars or concurrent requests, always > 0
/// (remove a limit instead of setting it to 0).
pub fn limit_value(field: &'static str, value: i64) -> Result<i64, AdminError> {
    if value <= 0 {
        return Err(AdminError::invalid(
            field,
            format!("must be greater than 0, got {value} (remove the limit instead)"),
        ));
    }
    Ok(value)
}

/// A threshold in percent of a limit: 1..=1000 (a hard threshold above 100 allows overage).
pub fn threshold_pct(field: &'static str, value: u32) -> Result<u32, AdminError> {
    if !(1..=1000).contains(&value) {
        return Err(AdminError::invalid(
            field,
            format!("must be between 1 and 1000 percent, got {value}"),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_iana_names_in_canonical_spelling() {
        assert_eq!(
            time_zone("time_zone", "Europe/Berlin").ok().as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(
            time_zone("time_zone", "europe/berlin").ok().as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(time_zone("time_zone", "UTC").ok().as_deref(), Some("UTC"));
        let err = time_zone("time_zone", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("time_zone: unknown time zone 'Mars/Olympus'"),
            "{err}"
        );
        assert!(time_zone("time_zone", "").is_err());
        assert!(time_zone("time_zone", "+02:00").is_err());
    }

    #[test]
    fn limit_values_and_thresholds_are_range_checked_with_the_field_named() {
        assert_eq!(limit_value("requests_per_minute", 1).ok(), Some(1));
        let err = limit_value("requests_per_minute", 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("requests_per_minute: must be greater than 0"),
            "{err}"
        );
        assert!(limit_value("tokens_per_day", -5).is_err());
        assert_eq!(threshold_pct("soft_threshold_pct", 1).ok(), Some(1));
        assert_eq!(threshold_pct("hard_threshold_pct", 1000).ok(), Some(1000));
        let err = threshold_pct("hard_threshold_pct", 1001)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("hard_threshold_pct: must be between 1 and 1000"),
            "{err}"
        );
        assert!(threshold_pct("soft_threshold_pct", 0).is_err());
    }

    #[test]
    fn names_are_checked_with_the_field_in_the_error() {
        assert!(entity_name("name", "acme-prod_2").is_ok());
        let err = entity_name("name", "").unwrap_err().to_string();
        assert_eq!(err, "name: must not be empty");
        assert!(entity_name("team", "-lead").is_err());
        assert!(entity_name("team", "a b").is_err());
        assert!(entity_name("team", &"a".repeat(65)).is_err());
        assert!(model_name("name", "llama3:8b").is_ok());
        assert!(model_name("name", "openai/gpt-4o").is_ok());
    }

    #[test]
    fn base_urls_must_be_http_and_not_metadata_endpoints() {
        assert_eq!(
            base_url("https://api.openai.com/v1/").ok().as_deref(),
            Some("https://api.openai.com/v1")
        );
        assert!(base_url("http://127.0.0.1:11434/v1").is_ok());
        assert!(base_url("http://169.254.169.254/latest").is_err());
        assert!(base_url("http://[fe80::1]/v1").is_err());
        assert!(base_url("http://metadata.google.internal/").is_err());
        assert!(base_url("http://metadata.google.internal./").is_err());
        assert!(base_url("http://[fd00:ec2::254]/").is_err());
        assert!(base_url("ftp://example.com").is_err());
        assert!(base_url("https://user:pw@example.com").is_err());
        assert!(base_url("not a url").is_err());
        // The contract's rule: every spelling of a metadata address.
        assert!(base_url("http://100.100.100.200/").is_err());
        assert!(base_url("http://[64:ff9b::a9fe:a9fe]/").is_err());
    }

    #[test]
    fn api_versions_are_short_header_safe_tokens() {
        for good in [
            "2024-10-21",
            "2024-10-01-preview",
            "2023-06-01",
            "v1.2_beta",
        ] {
            assert_eq!(api_version(good).ok().as_deref(), Some(good));
        }
        for bad in [
            "",
            "-2024",
            "2024 10 21",
            "2023-06-01\r\nx-api-key: stolen",
            "2024/10/21",
            &"9".repeat(33),
        ] {
            let err = api_version(bad).unwrap_err().to_string();
            assert!(err.starts_with("api_version: "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn model_timeouts_default_to_zero_and_are_bounded_per_field() {
        assert_eq!(model_timeouts(None).ok(), Some(ModelTimeouts::default()));
        let wire = pb::ModelTimeouts {
            connect_ms: 5_000,
            first_token_ms: 0,
            idle_ms: 30_000,
            total_ms: MAX_MODEL_TIMEOUT_MS,
        };
        let timeouts = model_timeouts(Some(wire)).unwrap();
        assert_eq!(
            timeouts,
            ModelTimeouts {
                connect_ms: 5_000,
                first_token_ms: 0,
                idle_ms: 30_000,
                total_ms: 86_400_000,
            }
        );
        assert_eq!(timeouts.to_wire(), wire);
        let over = |set: fn(&mut pb::ModelTimeouts)| {
            let mut wire = pb::ModelTimeouts::default();
            set(&mut wire);
            model_timeouts(Some(wire)).unwrap_err().to_string()
        };
        let err = over(|t| t.connect_ms = MAX_MODEL_TIMEOUT_MS + 1);
        assert_eq!(
            err,
            "timeouts.connect_ms: 86400001 ms is more than the maximum 86400000 ms (24 hours); \
             0 means the edge default"
        );
        assert!(over(|t| t.first_token_ms = u32::MAX).starts_with("timeouts.first_token_ms: "));
        assert!(over(|t| t.idle_ms = 90_000_000).starts_with("timeouts.idle_ms: "));
        assert!(over(|t| t.total_ms = 86_400_001).starts_with("timeouts.total_ms: "));
    }

    #[test]
    fn prices_must_be_non_negative_and_plausible() {
        assert!(price("input_price", 2_500_000).is_ok());
        assert!(price("input_price", -1).is_err());
        assert!(price("input_price", i64::MAX).is_err());
    }
}
