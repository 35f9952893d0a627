//! dlt's `date`, `time` and `binary` values (types a `columns` hint asks for; never
//! detected): parsed from the JSON text dlt accepts, and their text forms (as dlt writes
//! them into SQLite: `2024-03-01`, `12:30:45.123456`; binary as standard base64).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use chrono::{DateTime, NaiveDate, NaiveTime, Timelike};

/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A `date` value as days since 1970-01-01: `YYYY-MM-DD`, or an RFC 3339 timestamp, whose
/// date in UTC it is (as dlt's `ensure_pendulum_date`). `None` for anything else.
pub fn parse_date(s: &str) -> Option<i32> {
    let date = match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(date) if s.len() == 10 => date,
        _ => DateTime::parse_from_rfc3339(s).ok()?.naive_utc().date(),
    };
    Some(chrono::Datelike::num_days_from_ce(&date) - UNIX_EPOCH_DAYS_FROM_CE)
}

/// A `time` value as microseconds since midnight: `HH:MM:SS` with an optional fraction
/// (digits beyond the microsecond cut, as the column holds microseconds). `None` for
/// anything else, a leap second included.
pub fn parse_time(s: &str) -> Option<i64> {
    let time = NaiveTime::parse_from_str(s, "%H:%M:%S%.f").ok()?;
    if time.nanosecond() >= 1_000_000_000 {
        return None;
    }
    let micros = i64::from(time.num_seconds_from_midnight()) * 1_000_000
        + i64::from(time.nanosecond() / 1000);
    (0..MICROS_PER_DAY).contains(&micros).then_some(micros)
}

/// `YYYY-MM-DD` of a day since 1970-01-01.
pub fn date_text(days: i32) -> String {
    days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .map_or_else(
            || format!("{days} days"),
            |d| d.format("%Y-%m-%d").to_string(),
        )
}

/// `HH:MM:SS.ffffff` (always six fraction digits, as dlt's SQLite) of microseconds since
/// midnight.
pub fn time_text(micros: i64) -> String {
    let micros = micros.rem_euclid(MICROS_PER_DAY);
    let seconds = micros / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        micros % 1_000_000
    )
}

/// Standard base64 as Python's `b64decode(validate=True)`, which dlt uses, reads it:
/// padding required, bits after the last byte ignored.
const PYTHON_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Standard base64 (padding required, as Python's `b64decode(validate=True)`, which dlt
/// uses); `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    PYTHON_BASE64.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_dlt_coerces_them_and_print_back() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-03-01"), Some(19_783));
        assert_eq!(date_text(19_783), "2024-03-01");
        assert_eq!(date_text(-1), "1969-12-31");
        // A timestamp is its UTC date, as dlt's `ensure_pendulum_date`.
        assert_eq!(parse_date("2024-03-02T10:00:00Z"), parse_date("2024-03-02"));
        assert_eq!(
            parse_date("2024-03-02T01:00:00+02:00"),
            parse_date("2024-03-01")
        );
        for bad in ["2024-3-1", "2024-02-30", "yesterday", "", "2024-03-01 "] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn times_parse_to_micros_and_print_with_six_digits() {
        assert_eq!(parse_time("00:00:00"), Some(0));
        assert_eq!(parse_time("12:30:45.123456"), Some(45_045_123_456));
        assert_eq!(parse_time("12:30:45.1234567"), Some(45_045_123_456));
        assert_eq!(time_text(45_045_123_456), "12:30:45.123456");
        assert_eq!(time_text(3_723_000_000), "01:02:03.000000");
        for bad in ["24:00:00", "12:30", "noon", "23:59:60", "12:30:45Z"] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn base64_round_trips_and_refuses_what_python_refuses() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        for bytes in [&b""[..], b"h", b"he", b"hel", b"hell", &[0, 255, 128, 7]] {
            assert_eq!(base64_decode(&base64_encode(bytes)).as_deref(), Some(bytes));
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        for bad in ["plain text", "aGVsbG8", "aG=sbG8=", "a===", "aGVs*G8="] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }
}
