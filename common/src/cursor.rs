//! Incremental cursor values (dlt's `incremental`): their order, their text in a query
//! parameter, and dlt's `lag`. The config checks `end_value` against `initial_value` with
//! the same order the extractor keeps its maximum with.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta};
use serde_json::Value;

/// dlt's order of cursor values: as numbers when both are numbers, else as strings (ISO
/// timestamps in one format order correctly as strings).
pub fn cursor_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x.cmp(&y)
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x.cmp(&y)
            } else {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        }
        _ => cursor_text(a).cmp(&cursor_text(b)),
    }
}

/// A cursor value as it is sent in a query parameter.
pub fn cursor_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// dlt's `lag` (`dlt/extract/incremental/lag.py`) applied to a saved cursor `value`: a
/// number less `lag` (an integer stays an integer, truncated as Python's `int()` does); a
/// datetime text (RFC 3339 with `Z` or an offset, with or without fractional seconds, or
/// without a zone: `2024-01-01T00:00:00`) `lag` seconds earlier, in the same format; a date
/// text (`2024-01-01`) `lag` days earlier (a fraction rounds the distance up, as Python's
/// `date - timedelta` does). When `initial_value` is a date text, a date cursor is meant
/// and a datetime value is an error (dlt would lag it by whole days). Never below
/// `initial_value`. Anything else is an error saying why.
pub fn apply_lag(value: &Value, lag: f64, initial_value: Option<&Value>) -> Result<Value, String> {
    let lagged = match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if lag.fract() == 0.0 && lag.abs() < 9.0e15 {
                    #[allow(clippy::cast_possible_truncation)]
                    let lag = lag as i64;
                    Value::from(i.saturating_sub(lag))
                } else {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                    let t = (i as f64 - lag).trunc() as i64;
                    Value::from(t)
                }
            } else {
                let f = n
                    .as_f64()
                    .ok_or_else(|| format!("{n} is not a number lag applies to"))?;
                serde_json::Number::from_f64(f - lag)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{n} less {lag} is not a finite number"))?
            }
        }
        Value::String(text) => {
            let date_cursor = initial_value
                .and_then(Value::as_str)
                .is_some_and(|i| NaiveDate::parse_from_str(i, "%Y-%m-%d").is_ok() && i.len() == 10);
            Value::String(lag_text(text, lag, date_cursor)?)
        }
        other => return Err(format!("{other} is not a number or a datetime text")),
    };
    Ok(match initial_value {
        Some(initial) if cursor_order(initial, &lagged).is_ge() => initial.clone(),
        _ => lagged,
    })
}

/// A datetime or date text `lag` seconds (days for a date) earlier, in its own format.
fn lag_text(text: &str, lag: f64, date_cursor: bool) -> Result<String, String> {
    let unsupported = || {
        format!(
            "`{text}` is not a datetime or date text lag applies to (RFC 3339 such as \
             `2024-01-01T00:00:00Z`, `2024-01-01T00:00:00.5+02:00`, `2024-01-01T00:00:00`, or \
             a date `2024-01-01`)"
        )
    };
    if text.len() == 10 {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| unsupported())?;
        #[allow(clippy::cast_possible_truncation)]
        let days = (-lag).floor() as i64;
        let lagged = date
            .checked_add_signed(TimeDelta::days(days))
            .ok_or_else(unsupported)?;
        return Ok(lagged.format("%Y-%m-%d").to_string());
    }
    if date_cursor {
        return Err(format!(
            "`{text}` is a datetime but initial_value is a date: lag counts days for a date \
             cursor, which a datetime value does not take here"
        ));
    }
    #[allow(clippy::cast_possible_truncation)]
    let delta = TimeDelta::microseconds((lag * 1e6).round() as i64);
    let fraction = text.get(19..20) == Some(".");
    if let Some(body) = text.strip_suffix('Z') {
        let t = NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S%.f")
            .map_err(|_| unsupported())?;
        let lagged = t.checked_sub_signed(delta).ok_or_else(unsupported)?;
        let format = if fraction {
            "%Y-%m-%dT%H:%M:%S%.6fZ"
        } else {
            "%Y-%m-%dT%H:%M:%SZ"
        };
        return Ok(lagged.format(format).to_string());
    }
    if text.len() > 19 && matches!(text.as_bytes()[text.len() - 6], b'+' | b'-') {
        let t =
            DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%:z").map_err(|_| unsupported())?;
        let lagged = t.checked_sub_signed(delta).ok_or_else(unsupported)?;
        let format = if fraction {
            "%Y-%m-%dT%H:%M:%S%.6f%:z"
        } else {
            "%Y-%m-%dT%H:%M:%S%:z"
        };
        return Ok(lagged.format(format).to_string());
    }
    if text.len() == 19 {
        let t =
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").map_err(|_| unsupported())?;
        let lagged = t.checked_sub_signed(delta).ok_or_else(unsupported)?;
        return Ok(lagged.format("%Y-%m-%dT%H:%M:%S").to_string());
    }
    Err(unsupported())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursor_values_order_as_numbers_or_strings() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        for (a, b, expected) in [
            (json!(9), json!(10), Less),
            (json!(9.5), json!(10), Less),
            (json!(u64::MAX), json!(1), Greater),
            (json!(-1), json!(u64::MAX), Less),
            (json!("9"), json!("10"), Greater),
            (
                json!("2024-01-02T00:00:00Z"),
                json!("2024-01-10T00:00:00Z"),
                Less,
            ),
            (json!("a"), json!("a"), Equal),
            (json!(10), json!("9"), Less),
        ] {
            assert_eq!(cursor_order(&a, &b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn lag_moves_numbers_and_datetimes_back_as_dlt_does() {
        let cases = [
            (json!(10), 3.0, None, json!(7)),
            (json!(10), 1.5, None, json!(8)),
            (json!(10.5), 1.5, None, json!(9.0)),
            (json!(10), 3.0, Some(json!(8)), json!(8)),
            (
                json!("2024-01-02T00:00:00Z"),
                90.0,
                None,
                json!("2024-01-01T23:58:30Z"),
            ),
            (
                json!("2024-01-02T00:00:00.250000Z"),
                0.5,
                None,
                json!("2024-01-01T23:59:59.750000Z"),
            ),
            (
                json!("2024-01-02T00:00:00+02:00"),
                3600.0,
                None,
                json!("2024-01-01T23:00:00+02:00"),
            ),
            (
                json!("2024-01-02T00:00:00"),
                1.0,
                None,
                json!("2024-01-01T23:59:59"),
            ),
            (json!("2024-01-10"), 2.0, None, json!("2024-01-08")),
            (json!("2024-01-10"), 1.5, None, json!("2024-01-08")),
            (
                json!("2024-01-02T00:00:00Z"),
                86400.0 * 5.0,
                Some(json!("2023-12-30T00:00:00Z")),
                json!("2023-12-30T00:00:00Z"),
            ),
        ];
        for (value, lag, initial, expected) in cases {
            assert_eq!(
                apply_lag(&value, lag, initial.as_ref()).unwrap(),
                expected,
                "{value} lag {lag}"
            );
        }
        let e = apply_lag(&json!("abc"), 1.0, None).unwrap_err();
        assert!(e.contains("`abc` is not a datetime or date text"), "{e}");
        let e = apply_lag(
            &json!("2024-01-02T00:00:00Z"),
            1.0,
            Some(&json!("2024-01-01")),
        )
        .unwrap_err();
        assert!(e.contains("initial_value is a date"), "{e}");
    }
}
