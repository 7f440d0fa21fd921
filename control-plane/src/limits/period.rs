//! Calendar periods of quotas and budgets: the hour, day or month that contains an instant, as
//! the org's wall clock sees it. Periods follow the IANA time zone, so a day across a DST change
//! lasts 23 or 25 hours and an hour in a +05:30 zone starts at :30 UTC.

use super::CalendarUnit;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

/// One calendar period, `[start, end)`, and the end of the period after it (so an edge cut off
/// from the plane can roll over into the next period alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: Timestamp,
    pub end: Timestamp,
    pub next_end: Timestamp,
}

#[derive(Debug, thiserror::Error)]
pub enum PeriodError {
    #[error("unknown time zone '{name}': {source}")]
    UnknownTimeZone { name: String, source: jiff::Error },
    #[error("calendar arithmetic out of range: {0}")]
    OutOfRange(#[from] jiff::Error),
}

/// Looks an IANA zone name up in the bundled tz database.
pub fn time_zone(name: &str) -> Result<TimeZone, PeriodError> {
    TimeZone::get(name).map_err(|source| PeriodError::UnknownTimeZone {
        name: name.to_owned(),
        source,
    })
}

/// The period of `unit` in zone `tz_name` that contains `now`.
pub fn current_period(
    unit: CalendarUnit,
    tz_name: &str,
    now: Timestamp,
) -> Result<Period, PeriodError> {
    let tz = time_zone(tz_name)?;
    let start = period_start(unit, &now.to_zoned(tz.clone()))?;
    let end = next_start(unit, &start)?;
    let next_end = next_start(unit, &end)?;
    Ok(Period {
        start: start.timestamp(),
        end: end.timestamp(),
        next_end: next_end.timestamp(),
    })
}

/// The first instant of the period containing `at`.
fn period_start(unit: CalendarUnit, at: &Zoned) -> Result<Zoned, PeriodError> {
    Ok(match unit {
        // The local hour began this many minutes and seconds ago on the wall clock, at the
        // current offset. Going back on the timeline (not in civil time) keeps the fall-back
        // hour that repeats 02:00 apart from the first one.
        CalendarUnit::Hour => {
            let into_hour = i64::from(at.minute()) * 60 + i64::from(at.second());
            let back = into_hour
                .seconds()
                .nanoseconds(i64::from(at.subsec_nanosecond()));
            at.checked_sub(back)?
        }
        CalendarUnit::Day => at.start_of_day()?,
        CalendarUnit::Month => at.first_of_month()?.start_of_day()?,
    })
}

/// The first instant of the period after the one starting at `start`.
fn next_start(unit: CalendarUnit, start: &Zoned) -> Result<Zoned, PeriodError> {
    let next = match unit {
        CalendarUnit::Hour => {
            // An hour later on the timeline, snapped back to its wall-clock hour: a transition
            // of 30 minutes inside the hour (Australia/Lord_Howe) makes a shorter period rather
            // than a misaligned one.
            let later = start.checked_add(1.hour())?;
            let snapped = period_start(CalendarUnit::Hour, &later)?;
            if snapped.timestamp() > start.timestamp() {
                snapped
            } else {
                later
            }
        }
        CalendarUnit::Day => start
            .date()
            .tomorrow()?
            .to_zoned(start.time_zone().clone())?,
        CalendarUnit::Month => start
            .date()
            .first_of_month()
            .checked_add(1.month())?
            .to_zoned(start.time_zone().clone())?,
    };
    // A day or month can begin in a DST gap at midnight: its first instant is then later.
    Ok(match unit {
        CalendarUnit::Hour => next,
        CalendarUnit::Day | CalendarUnit::Month => next.start_of_day()?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn period(unit: CalendarUnit, tz: &str, now: &str) -> (String, String, String) {
        let period = current_period(unit, tz, at(now)).unwrap();
        let tz = TimeZone::get(tz).unwrap();
        let show = |t: Timestamp| t.to_zoned(tz.clone()).strftime("%FT%T%:z").to_string();
        (show(period.start), show(period.end), show(period.next_end))
    }

    fn hours(period: &Period) -> (i64, i64) {
        let len = |a: Timestamp, b: Timestamp| (b.as_second() - a.as_second()) / 3600;
        (
            len(period.start, period.end),
            len(period.end, period.next_end),
        )
    }

    fn owned(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.to_owned(), b.to_owned(), c.to_owned())
    }

    #[test]
    fn utc_hour_day_and_month() {
        let now = "2026-03-15T10:20:30.5Z";
        assert_eq!(
            period(CalendarUnit::Hour, "UTC", now),
            owned(
                "2026-03-15T10:00:00+00:00",
                "2026-03-15T11:00:00+00:00",
                "2026-03-15T12:00:00+00:00"
            )
        );
        assert_eq!(
            period(CalendarUnit::Day, "UTC", now),
            owned(
                "2026-03-15T00:00:00+00:00",
                "2026-03-16T00:00:00+00:00",
                "2026-03-17T00:00:00+00:00"
            )
        );
        assert_eq!(
            period(CalendarUnit::Month, "UTC", now),
            owned(
                "2026-03-01T00:00:00+00:00",
                "2026-04-01T00:00:00+00:00",
                "2026-05-01T00:00:00+00:00"
            )
        );
    }

    #[test]
    fn month_ends_roll_into_the_next_year() {
        assert_eq!(
            period(CalendarUnit::Month, "UTC", "2026-12-31T23:59:59.999Z"),
            owned(
                "2026-12-01T00:00:00+00:00",
                "2027-01-01T00:00:00+00:00",
                "2027-02-01T00:00:00+00:00"
            )
        );
        assert_eq!(
            period(CalendarUnit::Day, "UTC", "2026-04-30T23:59:59Z"),
            owned(
                "2026-04-30T00:00:00+00:00",
                "2026-05-01T00:00:00+00:00",
                "2026-05-02T00:00:00+00:00"
            )
        );
    }

    #[test]
    fn the_boundary_instant_belongs_to_the_new_period() {
        assert_eq!(
            period(CalendarUnit::Month, "UTC", "2026-02-01T00:00:00Z").0,
            "2026-02-01T00:00:00+00:00"
        );
        assert_eq!(
            period(CalendarUnit::Hour, "UTC", "2026-02-01T06:00:00Z").0,
            "2026-02-01T06:00:00+00:00"
        );
    }

    #[test]
    fn february_of_a_leap_year_has_29_days() {
        let leap = current_period(CalendarUnit::Month, "UTC", at("2028-02-10T00:00:00Z")).unwrap();
        assert_eq!(hours(&leap).0, 29 * 24);
        let plain = current_period(CalendarUnit::Month, "UTC", at("2026-02-10T00:00:00Z")).unwrap();
        assert_eq!(hours(&plain).0, 28 * 24);
        assert_eq!(
            period(CalendarUnit::Day, "UTC", "2028-02-29T12:00:00Z"),
            owned(
                "2028-02-29T00:00:00+00:00",
                "2028-03-01T00:00:00+00:00",
                "2028-03-02T00:00:00+00:00"
            )
        );
    }

    #[test]
    fn berlin_spring_forward_day_has_23_hours_and_skips_an_hour() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let day = current_period(
            CalendarUnit::Day,
            "Europe/Berlin",
            at("2026-03-29T10:00:00Z"),
        )
        .unwrap();
        assert_eq!(hours(&day), (23, 24));
        assert_eq!(
            period(CalendarUnit::Day, "Europe/Berlin", "2026-03-29T10:00:00Z").0,
            "2026-03-29T00:00:00+01:00"
        );
        // 01:30 CET: the hour after 01:00 CET is 03:00 CEST.
        assert_eq!(
            period(CalendarUnit::Hour, "Europe/Berlin", "2026-03-29T00:30:00Z"),
            owned(
                "2026-03-29T01:00:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T04:00:00+02:00"
            )
        );
    }

    #[test]
    fn berlin_fall_back_day_has_25_hours_and_repeats_an_hour() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:xx happens twice.
        let day = current_period(
            CalendarUnit::Day,
            "Europe/Berlin",
            at("2026-10-25T10:00:00Z"),
        )
        .unwrap();
        assert_eq!(hours(&day), (25, 24));
        let first = period(CalendarUnit::Hour, "Europe/Berlin", "2026-10-25T00:30:00Z");
        assert_eq!(
            first,
            owned(
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00"
            )
        );
        let second = period(CalendarUnit::Hour, "Europe/Berlin", "2026-10-25T01:30:00Z");
        assert_eq!(
            second,
            owned(
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T04:00:00+01:00"
            )
        );
    }

    #[test]
    fn new_york_dst_days_and_month_in_local_time() {
        // 2026-03-08 springs forward, 2026-11-01 falls back.
        let spring = current_period(
            CalendarUnit::Day,
            "America/New_York",
            at("2026-03-08T18:00:00Z"),
        )
        .unwrap();
        assert_eq!(hours(&spring), (23, 24));
        let fall = current_period(
            CalendarUnit::Day,
            "America/New_York",
            at("2026-11-01T18:00:00Z"),
        )
        .unwrap();
        assert_eq!(hours(&fall), (25, 24));
        // 03:00 UTC on March 1st is still February 28th in New York.
        assert_eq!(
            period(
                CalendarUnit::Month,
                "America/New_York",
                "2026-03-01T03:00:00Z"
            ),
            owned(
                "2026-02-01T00:00:00-05:00",
                "2026-03-01T00:00:00-05:00",
                "2026-04-01T00:00:00-04:00"
            )
        );
    }

    #[test]
    fn kolkata_hours_start_at_half_past_utc() {
        assert_eq!(
            period(CalendarUnit::Hour, "Asia/Kolkata", "2026-06-01T10:20:00Z"),
            owned(
                "2026-06-01T15:00:00+05:30",
                "2026-06-01T16:00:00+05:30",
                "2026-06-01T17:00:00+05:30"
            )
        );
        let hour = current_period(
            CalendarUnit::Hour,
            "Asia/Kolkata",
            at("2026-06-01T10:20:00Z"),
        )
        .unwrap();
        assert_eq!(hour.start, at("2026-06-01T09:30:00Z"));
        assert_eq!(
            period(CalendarUnit::Day, "Asia/Kolkata", "2026-06-01T20:00:00Z").0,
            "2026-06-02T00:00:00+05:30"
        );
    }

    #[test]
    fn kathmandu_hours_follow_a_45_minute_offset() {
        let hour = current_period(
            CalendarUnit::Hour,
            "Asia/Kathmandu",
            at("2026-06-01T10:20:00Z"),
        )
        .unwrap();
        assert_eq!(hour.start, at("2026-06-01T10:15:00Z"));
        assert_eq!(hour.end, at("2026-06-01T11:15:00Z"));
    }

    #[test]
    fn unknown_time_zone_is_an_error() {
        let err =
            current_period(CalendarUnit::Day, "Mars/Olympus", Timestamp::UNIX_EPOCH).unwrap_err();
        assert!(matches!(err, PeriodError::UnknownTimeZone { .. }), "{err}");
        assert!(err.to_string().contains("Mars/Olympus"));
    }
}
