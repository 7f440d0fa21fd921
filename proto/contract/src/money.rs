//! Money as people read and type it ("2.50" USD) and the integer micro-dollars everything
//! stores and computes with. The conversion is exact decimal arithmetic: an amount never passes
//! through `f64`, so "0.10" is 100000 micros, not 99999. The edge's error messages, the admin
//! CLI's tables and its price flags all write amounts through here.

/// Micro-dollars in one US dollar.
pub const MICROS_PER_USD: u64 = 1_000_000;
/// Decimal places a micro-dollar amount can hold.
const MAX_FRACTION_DIGITS: usize = 6;

/// Why a price string was rejected. Clap prints it after the offending value
/// ("invalid value '-1' for '--input-price <USD>': must not be negative").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("must not be empty")]
    Empty,
    #[error("must not be negative")]
    Negative,
    #[error("must be a decimal number of US dollars, like 2.50")]
    NotDecimal,
    #[error("has more than 6 decimal places (the smallest unit is 0.000001 USD)")]
    TooPrecise,
    #[error("is too large")]
    TooLarge,
}

/// Parses a non-negative decimal USD amount ("2.50", "3", "0.000125") into micro-dollars.
pub fn parse_usd_micros(input: &str) -> Result<i64, PriceError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(PriceError::Empty);
    }
    if text.starts_with('-') {
        return Err(PriceError::Negative);
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) if is_digits(fraction) => (whole, fraction),
        Some(_) => return Err(PriceError::NotDecimal),
        None => (text, ""),
    };
    if !is_digits(whole) {
        return Err(PriceError::NotDecimal);
    }
    if fraction.len() > MAX_FRACTION_DIGITS {
        return Err(PriceError::TooPrecise);
    }
    // Only ASCII digits remain, so a failed parse can only be an overflow.
    let whole_usd: u64 = whole.parse().map_err(|_| PriceError::TooLarge)?;
    let width = MAX_FRACTION_DIGITS;
    let fraction_micros: u64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<width$}")
            .parse()
            .map_err(|_| PriceError::NotDecimal)?
    };
    let micros = whole_usd
        .checked_mul(MICROS_PER_USD)
        .and_then(|micros| micros.checked_add(fraction_micros))
        .ok_or(PriceError::TooLarge)?;
    i64::try_from(micros).map_err(|_| PriceError::TooLarge)
}

/// Formats micro-dollars as USD with at least two decimals and no trailing zeros beyond them:
/// 2_500_000 -> "2.50", 125 -> "0.000125".
pub fn format_usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let magnitude = micros.unsigned_abs();
    let whole = magnitude / MICROS_PER_USD;
    let fraction_micros = magnitude % MICROS_PER_USD;
    let width = MAX_FRACTION_DIGITS;
    let mut fraction = format!("{fraction_micros:0width$}");
    while fraction.len() > 2 && fraction.ends_with('0') {
        fraction.pop();
    }
    format!("{sign}{whole}.{fraction}")
}

/// Formats micro-dollars as USD with exactly six decimals, every micro-dollar visible and the
/// decimal points of a column aligned: 1_234_567 -> "1.234567", 5 -> "0.000005". For spend,
/// where a sum of small requests must not look like zero.
pub fn format_usd_micros(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let magnitude = micros.unsigned_abs();
    let whole = magnitude / MICROS_PER_USD;
    let fraction_micros = magnitude % MICROS_PER_USD;
    let width = MAX_FRACTION_DIGITS;
    format!("{sign}{whole}.{fraction_micros:0width$}")
}

/// Micro-dollars as dollars for messages: a dollar sign, cents always, more digits only when
/// they are not zero ("$500.00", "$0.012345").
pub fn format_dollars(micros: i64) -> String {
    let formatted = format_usd(micros);
    match formatted.strip_prefix('-') {
        Some(magnitude) => format!("-${magnitude}"),
        None => format!("${formatted}"),
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_prices_convert_exactly_to_micros() {
        assert_eq!(parse_usd_micros("2.50"), Ok(2_500_000));
        assert_eq!(parse_usd_micros("2.5"), Ok(2_500_000));
        assert_eq!(parse_usd_micros("3"), Ok(3_000_000));
        assert_eq!(parse_usd_micros("0"), Ok(0));
        assert_eq!(parse_usd_micros("0.10"), Ok(100_000));
        assert_eq!(parse_usd_micros("0.000001"), Ok(1));
        assert_eq!(parse_usd_micros("10.123456"), Ok(10_123_456));
        assert_eq!(parse_usd_micros("007.000"), Ok(7_000_000));
        assert_eq!(parse_usd_micros(" 1.25 "), Ok(1_250_000));
    }

    #[test]
    fn largest_representable_price_is_accepted_and_one_more_micro_is_too_large() {
        assert_eq!(parse_usd_micros("9223372036854.775807"), Ok(i64::MAX));
        assert_eq!(
            parse_usd_micros("9223372036854.775808"),
            Err(PriceError::TooLarge)
        );
        assert_eq!(
            parse_usd_micros("99999999999999999999999"),
            Err(PriceError::TooLarge)
        );
    }

    #[test]
    fn more_than_six_decimal_places_is_rejected() {
        assert_eq!(parse_usd_micros("0.0000001"), Err(PriceError::TooPrecise));
        assert_eq!(parse_usd_micros("1.2345678"), Err(PriceError::TooPrecise));
    }

    #[test]
    fn negative_prices_are_rejected() {
        assert_eq!(parse_usd_micros("-1"), Err(PriceError::Negative));
        assert_eq!(parse_usd_micros("-0.50"), Err(PriceError::Negative));
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(parse_usd_micros(""), Err(PriceError::Empty));
        assert_eq!(parse_usd_micros("   "), Err(PriceError::Empty));
        for input in [
            "abc", "1.", ".5", "1.2.3", "1e3", "+1", "1,50", "$2.50", "2.5x", "NaN", "١",
        ] {
            assert_eq!(
                parse_usd_micros(input),
                Err(PriceError::NotDecimal),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn micros_format_with_two_to_six_decimals() {
        assert_eq!(format_usd(2_500_000), "2.50");
        assert_eq!(format_usd(0), "0.00");
        assert_eq!(format_usd(100_000), "0.10");
        assert_eq!(format_usd(125), "0.000125");
        assert_eq!(format_usd(10_123_450), "10.12345");
        assert_eq!(format_usd(-1_500_000), "-1.50");
        assert_eq!(format_usd(i64::MIN), "-9223372036854.775808");
    }

    #[test]
    fn dollars_for_messages_carry_the_sign_before_the_symbol() {
        assert_eq!(format_dollars(500_000_000), "$500.00");
        assert_eq!(format_dollars(12_345), "$0.012345");
        assert_eq!(format_dollars(-1_500_000), "-$1.50");
    }

    #[test]
    fn formatted_prices_parse_back_to_the_same_micros() {
        for micros in [0, 1, 99, 100_000, 2_500_000, 10_123_456, i64::MAX] {
            assert_eq!(parse_usd_micros(&format_usd(micros)), Ok(micros));
        }
    }

    #[test]
    fn spend_formats_with_exactly_six_decimals() {
        assert_eq!(format_usd_micros(0), "0.000000");
        assert_eq!(format_usd_micros(5), "0.000005");
        assert_eq!(format_usd_micros(1_234_567), "1.234567");
        assert_eq!(format_usd_micros(2_500_000), "2.500000");
        assert_eq!(format_usd_micros(-1), "-0.000001");
        assert_eq!(format_usd_micros(i64::MAX), "9223372036854.775807");
        assert_eq!(format_usd_micros(i64::MIN), "-9223372036854.775808");
        for micros in [0, 1, 999_999, 1_000_000, 10_123_456, i64::MAX] {
            assert_eq!(parse_usd_micros(&format_usd_micros(micros)), Ok(micros));
        }
    }
}
