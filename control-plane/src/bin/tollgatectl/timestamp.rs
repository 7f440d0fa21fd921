//! Timestamps at the CLI boundary: RFC 3339 text for people, unix milliseconds on the wire
//! (where 0 means "not set": never expires, never revoked, never seen).

use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};

/// Parses an RFC 3339 timestamp ("2027-01-31T00:00:00Z", "2027-01-31T09:00:00+09:00") into
/// unix milliseconds. Instants at or before the epoch are rejected: 0 already means "never".
pub fn parse_rfc3339_ms(input: &str) -> Result<i64, String> {
    let instant = DateTime::parse_from_rfc3339(input.trim()).map_err(|err| {
        format!("must be an RFC 3339 timestamp like 2027-01-31T00:00:00Z ({err})")
    })?;
    let unix_ms = instant.timestamp_millis();
    if unix_ms <= 0 {
        return Err("must be after 1970-01-01T00:00:00Z".to_owned());
    }
    Ok(unix_ms)
}

/// Formats unix milliseconds as RFC 3339 in UTC with second precision; 0 (unset) is "-".
pub fn format_unix_ms(unix_ms: i64) -> String {
    if unix_ms == 0 {
        return "-".to_owned();
    }
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .map(|instant| instant.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| unix_ms.to_string())
}

/// The current time in unix milliseconds, to tell expired keys apart in tables.
pub fn now_unix_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The first instant of the UTC calendar month holding `unix_ms`, the default start of a usage
/// report ("this month so far"). Out-of-range input falls back to the epoch (the whole history).
pub fn start_of_utc_month(unix_ms: i64) -> i64 {
    DateTime::<Utc>::from_timestamp_millis(unix_ms)
        .and_then(|at| {
            Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
                .single()
        })
        .map_or(0, |start| start.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_to_unix_ms_in_any_offset() {
        assert_eq!(
            parse_rfc3339_ms("2027-01-31T00:00:00Z"),
            Ok(1_801_353_600_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2027-01-31T09:00:00.250+09:00"),
            Ok(1_801_353_600_250)
        );
    }

    #[test]
    fn non_rfc3339_and_pre_epoch_times_are_rejected() {
        for input in [
            "",
            "tomorrow",
            "2027-01-31",
            "2027-01-31 00:00:00",
            "1801353600000",
        ] {
            assert!(parse_rfc3339_ms(input).is_err(), "input {input:?}");
        }
        assert!(parse_rfc3339_ms("1970-01-01T00:00:00Z").is_err());
        assert!(parse_rfc3339_ms("1960-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn unix_ms_formats_as_utc_rfc3339_and_zero_as_dash() {
        assert_eq!(format_unix_ms(1_801_353_600_250), "2027-01-31T00:00:00Z");
        assert_eq!(format_unix_ms(0), "-");
        assert_eq!(
            parse_rfc3339_ms(&format_unix_ms(1_801_353_600_000)),
            Ok(1_801_353_600_000)
        );
    }

    #[test]
    fn the_month_starts_at_midnight_utc_on_the_first() {
        assert_eq!(
            start_of_utc_month(1_801_353_600_250),
            parse_rfc3339_ms("2027-01-01T00:00:00Z").unwrap()
        );
        let first = parse_rfc3339_ms("2027-03-01T00:00:00Z").unwrap();
        assert_eq!(start_of_utc_month(first), first);
        assert_eq!(
            start_of_utc_month(first - 1),
            parse_rfc3339_ms("2027-02-01T00:00:00Z").unwrap()
        );
    }
}
