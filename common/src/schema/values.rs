//! Values: what a JSON number is (from its text), RFC 3339 timestamps detected only where
//! exact, decimals rendered exactly at a scale, the type a new field gets from its first
//! value, and the conversion of a value to a field's type (a hint converts; an inferred type
//! never changes a value).

use std::str::FromStr;

use crate::json::view::{JsonView, View};
use bigdecimal::{BigDecimal, RoundingMode, Zero};
use chrono::{DateTime, Datelike, Timelike, Utc};

use super::{DataType, Field, Scalar};

/// Parses an RFC 3339 timestamp with a `T` and a zone (dlt's `iso_timestamp` detection)
/// into microseconds since the epoch, UTC, when that is exact: `None` for a leap second
/// (`23:59:60`, which chrono would move to the next second), a year outside 1..=9999 (dlt's
/// detection refuses year 0 too) and non-zero digits beyond the microsecond.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let (micros, sub_micro_nanos) = parse_timestamp_parts(s)?;
    (sub_micro_nanos == 0).then_some(micros)
}

/// [`parse_timestamp`] for a `timestamp` hint: digits beyond the microsecond are cut (the
/// column holds microseconds); leap seconds and year 0 are still refused.
pub fn parse_timestamp_to_micros(s: &str) -> Option<i64> {
    parse_timestamp_parts(s).map(|(micros, _)| micros)
}

/// Microseconds since the epoch and the nanoseconds below them.
fn parse_timestamp_parts(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let ts = DateTime::parse_from_rfc3339(s).ok()?;
    let nanos = ts.nanosecond();
    if nanos >= 1_000_000_000 || !(1..=9999).contains(&ts.year()) {
        return None;
    }
    Some((ts.timestamp_micros(), nanos % 1000))
}

/// Renders an unscaled decimal integer (`"-12500000"`) at `scale` (`"-0.012500000"`).
pub(crate) fn format_decimal(unscaled: &str, scale: u32) -> String {
    let (negative, digits) = match unscaled.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, unscaled),
    };
    let scale = scale as usize;
    let mut out = String::with_capacity(digits.len() + scale + 3);
    if negative && digits.bytes().any(|b| b != b'0') {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() <= scale {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// Why one decimal text does not fit `decimal(precision, scale)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecimalError {
    NotANumber,
    OutOfRange,
}

/// Parses `text` (a JSON number's text or a numeric string) and renders it exactly at
/// `scale`, rounding half-even; more than `precision` digits is an error.
pub(crate) fn decimal_text(text: &str, precision: u32, scale: u32) -> Result<String, DecimalError> {
    let value = BigDecimal::from_str(text).map_err(|_| DecimalError::NotANumber)?;
    if value.is_zero() {
        return Ok(format_decimal("0", scale));
    }
    // Digits before the point (≤ 0 for values below 1); checked before rescaling so that
    // `1e999999999` cannot make us build a billion-digit integer.
    let int_digits =
        i64::try_from(value.digits()).unwrap_or(i64::MAX) - value.fractional_digit_count();
    if int_digits > i64::from(precision) - i64::from(scale) {
        return Err(DecimalError::OutOfRange);
    }
    if int_digits < -i64::from(scale) - 1 {
        // Below half a unit in the last place: rounds to zero.
        return Ok(format_decimal("0", scale));
    }
    let rounded = value.with_scale_round(i64::from(scale), RoundingMode::HalfEven);
    let (unscaled, _) = rounded.into_bigint_and_exponent();
    let unscaled = unscaled.to_string();
    let digits = unscaled.trim_start_matches('-').len();
    if digits > precision as usize {
        return Err(DecimalError::OutOfRange);
    }
    Ok(format_decimal(&unscaled, scale))
}

/// What a JSON number is, from its text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    Int(i64),
    /// An integer beyond `i64` (above 2^63-1 or below -2^63).
    BigInt,
    Float(f64),
    /// A float beyond a double's range (`1e400`).
    HugeFloat,
}

pub(super) fn classify(n: &str) -> Num {
    // serde_json's `Number` under `arbitrary_precision` reads its text the same way.
    if let Ok(v) = n.parse::<i64>() {
        return Num::Int(v);
    }
    if n.contains(['.', 'e', 'E']) {
        return match n.parse::<f64>() {
            Ok(f) if f.is_finite() => Num::Float(f),
            _ => Num::HugeFloat,
        };
    }
    Num::BigInt
}

/// A number's text as a finite double, the nearest one (`None` beyond a double's range).
fn nearest_f64(n: &str) -> Option<f64> {
    n.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `v` as a double, if the double is exactly `v`.
fn exact_f64(v: i64) -> Option<f64> {
    let f = v as f64;
    // `f` is at most 2^63 in magnitude; 2^63 itself is not an i64, so compare in i128.
    (f as i128 == i128::from(v)).then_some(f)
}

/// The type a new field would get from `value` (`None` for null and numbers beyond range).
pub(super) fn detected_type<'a, V: JsonView<'a>>(value: V) -> Option<DataType> {
    match value.view() {
        View::Null => None,
        View::Bool(_) => Some(DataType::Bool),
        View::Number(n) => match classify(n) {
            Num::Int(_) => Some(DataType::Bigint),
            Num::Float(_) => Some(DataType::Double),
            Num::BigInt | Num::HugeFloat => None,
        },
        View::String(s) if parse_timestamp(s).is_some() => Some(DataType::Timestamp),
        View::String(_) => Some(DataType::Text),
        View::Array(_) | View::Object(_) => Some(DataType::Json),
    }
}

/// The kind of a JSON value, for error messages.
pub(super) fn json_kind<'a, V: JsonView<'a>>(value: V) -> &'static str {
    match value.view() {
        View::Null => "null",
        View::Bool(_) => "bool",
        View::Number(n) => match classify(n) {
            Num::Int(_) => "integer",
            Num::BigInt => "integer beyond i64",
            Num::Float(_) => "float",
            Num::HugeFloat => "float beyond a double",
        },
        View::String(_) => "string",
        View::Array(_) => "list",
        View::Object(_) => "object",
    }
}

/// Why a value did not convert to a field's type (the caller adds record and field).
pub(super) enum ConvertError {
    Mismatch(&'static str),
    IntegerOutOfRange(String),
    InexactDouble(String),
    FloatOutOfRange(String),
    DecimalOutOfRange(String),
    Invalid,
}

/// Converts a non-null JSON value to `field`'s type. `hinted`: the type comes from a
/// `columns` hint, which converts (a `double` hint rounds any number to the nearest double,
/// a `timestamp` hint cuts digits beyond the microsecond); an inferred type never changes a
/// value.
pub(super) fn convert<'a, V: JsonView<'a>>(
    value: V,
    field: &Field,
    hinted: bool,
) -> Result<Scalar, ConvertError> {
    let mismatch = || ConvertError::Mismatch(json_kind(value));
    let view = value.view();
    match field.data_type {
        DataType::Json => Ok(Scalar::Json(value.to_json_string())),
        DataType::Text => match view {
            View::String(s) | View::Number(s) => Ok(Scalar::Text(s.to_owned())),
            View::Bool(b) => Ok(Scalar::Text(b.to_string())),
            _ => Err(mismatch()),
        },
        DataType::Bigint => match view {
            View::Number(n) => match classify(n) {
                Num::Int(v) => Ok(Scalar::Bigint(v)),
                Num::BigInt => Err(ConvertError::IntegerOutOfRange(n.to_owned())),
                Num::Float(_) | Num::HugeFloat => Err(mismatch()),
            },
            _ => Err(mismatch()),
        },
        DataType::Double => match view {
            View::Number(n) => match classify(n) {
                Num::Float(f) => Ok(Scalar::Double(f)),
                Num::Int(v) => match exact_f64(v) {
                    Some(f) => Ok(Scalar::Double(f)),
                    None if hinted => Ok(Scalar::Double(v as f64)),
                    None => Err(ConvertError::InexactDouble(n.to_owned())),
                },
                Num::BigInt if hinted => nearest_f64(n)
                    .map(Scalar::Double)
                    .ok_or(ConvertError::Invalid),
                Num::BigInt => Err(ConvertError::IntegerOutOfRange(n.to_owned())),
                Num::HugeFloat => Err(ConvertError::FloatOutOfRange(n.to_owned())),
            },
            _ => Err(mismatch()),
        },
        DataType::Bool => match view {
            View::Bool(b) => Ok(Scalar::Bool(b)),
            _ => Err(mismatch()),
        },
        DataType::Timestamp => match view {
            View::String(s) => parse_timestamp_to_micros(s)
                .map(Scalar::Timestamp)
                .ok_or(ConvertError::Invalid),
            View::Number(n) => n
                .parse::<i64>()
                .ok()
                .and_then(|secs| secs.checked_mul(1_000_000))
                .filter(|micros| DateTime::<Utc>::from_timestamp_micros(*micros).is_some())
                .map(Scalar::Timestamp)
                .ok_or(ConvertError::Invalid),
            _ => Err(mismatch()),
        },
        DataType::Date => match view {
            View::String(s) => super::dates::parse_date(s)
                .map(Scalar::Date)
                .ok_or(ConvertError::Invalid),
            _ => Err(mismatch()),
        },
        DataType::Time => match view {
            View::String(s) => super::dates::parse_time(s)
                .map(Scalar::Time)
                .ok_or(ConvertError::Invalid),
            _ => Err(mismatch()),
        },
        DataType::Binary => match view {
            View::String(s) => super::dates::base64_decode(s)
                .map(Scalar::Binary)
                .ok_or(ConvertError::Invalid),
            _ => Err(mismatch()),
        },
        DataType::Decimal => {
            let text = match view {
                View::Number(n) | View::String(n) => n.to_owned(),
                _ => return Err(mismatch()),
            };
            match decimal_text(&text, field.precision, field.scale) {
                Ok(d) => Ok(Scalar::Decimal(d)),
                Err(DecimalError::NotANumber) => Err(ConvertError::Invalid),
                Err(DecimalError::OutOfRange) => Err(ConvertError::DecimalOutOfRange(text)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn decimal_hint_is_exact_at_scale() {
        let mut b = builder(
            &["id"],
            &[
                ("price", hint(DataType::Decimal)),
                (
                    "cost",
                    ColumnHint {
                        data_type: Some(DataType::Decimal),
                        precision: Some(6),
                        scale: Some(2),
                        ..ColumnHint::default()
                    },
                ),
            ],
        );
        let page = b
            .add_page(&[
                json!({"id": 1, "price": 0.0125, "cost": "1234.565"}),
                json!({"id": 2, "price": "-7", "cost": 0.125}),
                json!({"id": 3, "price": 12, "cost": "-0.001"}),
            ])
            .unwrap();
        let f = field(&b, "price");
        assert_eq!(
            (f.data_type, f.precision, f.scale),
            (DataType::Decimal, 38, 9)
        );
        let f = field(&b, "cost");
        assert_eq!((f.precision, f.scale), (6, 2));
        let col = |name: &str| -> Vec<Option<Scalar>> {
            let i = b.schema().field_index(name).unwrap();
            page.rows.iter().map(|r| r[i].clone()).collect()
        };
        let dec = |s: &str| Some(Scalar::Decimal(s.into()));
        assert_eq!(
            col("price"),
            [dec("0.012500000"), dec("-7.000000000"), dec("12.000000000")]
        );
        // Half-even: 1234.565 → 1234.56, 0.125 → 0.12; -0.001 → 0.00 (no negative zero).
        assert_eq!(col("cost"), [dec("1234.56"), dec("0.12"), dec("0.00")]);

        let err = b.add_page(&[json!({"id": 4, "cost": 10000})]).unwrap_err();
        assert!(
            matches!(&err, SchemaError::DecimalOutOfRange { field, precision: 6, scale: 2, .. }
            if field == "cost"),
            "{err}"
        );
        let err = b
            .add_page(&[json!({"id": 5, "cost": "9999.999"})])
            .unwrap_err();
        assert!(
            matches!(err, SchemaError::DecimalOutOfRange { .. }),
            "rounding up overflows"
        );
        let err = b
            .add_page(&[json!({"id": 6, "cost": "1e999999999"})])
            .unwrap_err();
        assert!(matches!(err, SchemaError::DecimalOutOfRange { .. }));
        let page = b
            .add_page(&[json!({"id": 7, "cost": "1e-999999999"})])
            .unwrap();
        assert_eq!(cell(&b, &page.rows[0], "cost"), dec("0.00"));
        let err = b.add_page(&[json!({"id": 8, "cost": "abc"})]).unwrap_err();
        assert!(matches!(
            err,
            SchemaError::InvalidValue {
                expected: DataType::Decimal,
                ..
            }
        ));
    }

    #[test]
    fn json_hint_keeps_object_as_text() {
        let mut b = builder(&["id"], &[("meta", hint(DataType::Json))]);
        let page = b
            .add_page(&[
                json!({"id": 1, "meta": {"a": "x", "b": [1, 2]}}),
                json!({"id": 2, "meta": "plain"}),
            ])
            .unwrap();
        assert_eq!(names(&b), ["id", "meta"]);
        assert_eq!(
            cell(&b, &page.rows[0], "meta"),
            Some(Scalar::Json(r#"{"a":"x","b":[1,2]}"#.into()))
        );
        assert_eq!(
            cell(&b, &page.rows[1], "meta"),
            Some(Scalar::Json(r#""plain""#.into()))
        );
    }

    #[test]
    fn text_and_double_hints_convert() {
        let mut b = builder(
            &["id"],
            &[
                ("code", hint(DataType::Text)),
                ("ratio", hint(DataType::Double)),
            ],
        );
        let page = b
            .add_page(&[
                json!({"id": 1, "code": 42, "ratio": 3}),
                json!({"id": 2, "code": true, "ratio": 0.5}),
            ])
            .unwrap();
        assert_eq!(
            cell(&b, &page.rows[0], "code"),
            Some(Scalar::Text("42".into()))
        );
        assert_eq!(
            cell(&b, &page.rows[1], "code"),
            Some(Scalar::Text("true".into()))
        );
        assert_eq!(cell(&b, &page.rows[0], "ratio"), Some(Scalar::Double(3.0)));
        let err = b.add_page(&[json!({"id": 3, "ratio": "x"})]).unwrap_err();
        assert!(matches!(err, SchemaError::TypeMismatch { .. }));
    }

    #[test]
    fn nullable_false_hint_is_enforced() {
        let mut b = builder(
            &["id"],
            &[(
                "customerName",
                ColumnHint {
                    nullable: Some(false),
                    ..ColumnHint::default()
                },
            )],
        );
        let page = b
            .add_page(&[json!({"id": 1, "customerName": "Ann"})])
            .unwrap();
        assert!(!field(&b, "customer_name").nullable);
        assert_eq!(page.rows.len(), 1);
        let err = b
            .add_page(&[json!({"id": 2, "customerName": null})])
            .unwrap_err();
        assert_eq!(
            err,
            SchemaError::NullNotAllowed {
                record: "id=2 (#0 in page)".into(),
                field: "customer_name".into()
            }
        );
        let err = b.add_page(&[json!({"id": 3})]).unwrap_err();
        assert!(matches!(err, SchemaError::NullNotAllowed { .. }));
    }

    #[test]
    fn bad_hint_is_reported() {
        let mut b = builder(
            &["id"],
            &[(
                "x",
                ColumnHint {
                    data_type: Some(DataType::Decimal),
                    precision: Some(4),
                    scale: Some(6),
                    ..ColumnHint::default()
                },
            )],
        );
        let err = b.add_page(&[json!({"id": 1})]).unwrap_err();
        assert!(matches!(err, SchemaError::InvalidHint { column, .. } if column == "x"));
    }

    #[test]
    fn large_integers() {
        let mut b = builder(&["id"], &[]);
        let page = b
            .add_page(&[json!({"id": i64::MAX, "min": i64::MIN})])
            .unwrap();
        assert_eq!(
            page.rows[0],
            vec![
                Some(Scalar::Bigint(i64::MAX)),
                Some(Scalar::Bigint(i64::MIN))
            ]
        );
        assert_eq!(page.keys, [i64::MAX.to_string()]);

        let big = u64::MAX;
        let err = b.add_page(&[json!({"id": 2, "min": big})]).unwrap_err();
        assert_eq!(
            err,
            SchemaError::IntegerOutOfRange {
                record: "id=2 (#0 in page)".into(),
                field: "min".into(),
                value: big.to_string(),
            }
        );
        let err = b.add_page(&[json!({"id": 3, "fresh": big})]).unwrap_err();
        assert!(matches!(err, SchemaError::IntegerOutOfRange { field, .. } if field == "fresh"));

        let mut b = builder(
            &["id"],
            &[
                ("big", hint(DataType::Decimal)),
                ("as_text", hint(DataType::Text)),
                ("f", hint(DataType::Double)),
            ],
        );
        let page = b
            .add_page(&[json!({"id": 1, "big": big, "as_text": big, "f": big})])
            .unwrap();
        assert_eq!(
            cell(&b, &page.rows[0], "as_text"),
            Some(Scalar::Text(big.to_string()))
        );
        assert_eq!(
            cell(&b, &page.rows[0], "f"),
            Some(Scalar::Double(big as f64))
        );
        assert_eq!(
            cell(&b, &page.rows[0], "big"),
            Some(Scalar::Decimal(format!("{big}.000000000")))
        );
    }

    #[test]
    fn unicode_text_is_byte_for_byte() {
        let text = "Zoë 😀 日本語 \u{0} \u{202e}";
        let mut b = builder(&["id"], &[]);
        let page = b.add_page(&[json!({"id": text, "v": text})]).unwrap();
        assert_eq!(
            cell(&b, &page.rows[0], "v"),
            Some(Scalar::Text(text.to_owned()))
        );
        assert_eq!(page.keys[0].as_bytes(), text.as_bytes());
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_alike_or_kept_exactly_under_a_hint() {
        let beyond = [
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "100000000000000000000000000000",
        ];
        for big in beyond {
            // A new field, an integer field, a double field, a text field: the same error.
            for first in ["", r#""v": 1"#, r#""v": 1.5"#, r#""v": "s""#] {
                let mut b = builder(&["id"], &[]);
                if !first.is_empty() {
                    let _ = b
                        .add_page(&parse(&format!("{{\"id\": 1, {first}}}")))
                        .unwrap();
                }
                let err = b
                    .add_page(&parse(&format!(r#"{{"id": 2, "v": {big}}}"#)))
                    .unwrap_err();
                assert_eq!(
                    err,
                    SchemaError::IntegerOutOfRange {
                        record: "id=2 (#0 in page)".into(),
                        field: "v".into(),
                        value: big.into(),
                    },
                    "{big} after {first:?}"
                );
                assert!(err.to_string().contains(big));
            }
            // As the primary key too.
            let mut b = builder(&["id"], &[]);
            let err = b
                .add_page(&parse(&format!(r#"{{"id": {big}}}"#)))
                .unwrap_err();
            assert!(
                matches!(err, SchemaError::IntegerOutOfRange { .. }),
                "{err}"
            );
            // Hinted text or decimal: digit for digit.
            let mut b = builder(
                &["id"],
                &[
                    ("t", hint(DataType::Text)),
                    (
                        "d",
                        ColumnHint {
                            data_type: Some(DataType::Decimal),
                            precision: Some(38),
                            scale: Some(0),
                            ..ColumnHint::default()
                        },
                    ),
                ],
            );
            let page = b
                .add_page(&parse(&format!(r#"{{"id": 1, "t": {big}, "d": {big}}}"#)))
                .unwrap();
            assert_eq!(cell(&b, &page.rows[0], "t"), Some(Scalar::Text(big.into())));
            assert_eq!(
                cell(&b, &page.rows[0], "d"),
                Some(Scalar::Decimal(big.into()))
            );
        }
        // A `double` hint rounds, as asked.
        let mut b = builder(&["id"], &[("f", hint(DataType::Double))]);
        let page = b
            .add_page(&parse(r#"{"id": 1, "f": 18446744073709551616}"#))
            .unwrap();
        assert_eq!(
            cell(&b, &page.rows[0], "f"),
            Some(Scalar::Double(18_446_744_073_709_551_616.0))
        );
    }

    #[test]
    fn an_unhinted_double_field_takes_only_exact_numbers() {
        let mut b = builder(&["id"], &[]);
        // 2^53 + 1 has no double; 2^60 has one.
        let err = b
            .add_page(&parse(
                r#"[{"id": 1, "v": 0.5}, {"id": 2, "v": 9007199254740993}]"#,
            ))
            .unwrap_err();
        assert_eq!(
            err,
            SchemaError::InexactDouble {
                record: "id=2 (#1 in page)".into(),
                field: "v".into(),
                value: "9007199254740993".into(),
            }
        );
        let page = b
            .add_page(&parse(
                r#"[{"id": 1, "v": 0.5}, {"id": 2, "v": 1152921504606846976}]"#,
            ))
            .unwrap();
        assert_eq!(
            cell(&b, &page.rows[1], "v"),
            Some(Scalar::Double(1_152_921_504_606_846_976.0))
        );
        // Widening a bigint field checks the page's integers too.
        let mut b = builder(&["id"], &[]);
        let err = b
            .add_page(&parse(
                r#"[{"id": 1, "v": 9007199254740993}, {"id": 2, "v": 2.5}]"#,
            ))
            .unwrap_err();
        assert!(matches!(err, SchemaError::InexactDouble { .. }), "{err}");
        // A float beyond a double's range.
        let err = b.add_page(&parse(r#"{"id": 3, "w": 1e400}"#)).unwrap_err();
        assert!(
            matches!(&err, SchemaError::FloatOutOfRange { record, field, value }
                if record == "id=3 (#0 in page)" && field == "w" && value.ends_with("400")),
            "{err}"
        );
    }

    #[test]
    fn timestamps_are_detected_only_where_exact() {
        assert_eq!(
            parse_timestamp("2016-12-31T23:59:59Z"),
            Some(1_483_228_799_000_000)
        );
        for text in [
            "2016-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "2024-01-01T00:00:00.123456789Z",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text}");
            let mut b = builder(&["id"], &[]);
            let page = b
                .add_page(&[
                    json!({"id": 1, "t": "2024-01-01T00:00:00Z"}),
                    json!({"id": 2, "t": text}),
                ])
                .unwrap();
            assert_eq!(field(&b, "t").data_type, DataType::Text, "{text}");
            assert_eq!(
                cell(&b, &page.rows[1], "t"),
                Some(Scalar::Text(text.into()))
            );
        }
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00.123456000Z"),
            Some(1_704_067_200_123_456)
        );
        assert_eq!(
            parse_timestamp("0001-01-01T00:00:00Z"),
            Some(-62_135_596_800_000_000)
        );
        // A hint cuts below the microsecond and refuses a leap second.
        let mut b = builder(&["id"], &[("t", hint(DataType::Timestamp))]);
        let page = b
            .add_page(&[json!({"id": 1, "t": "2024-01-01T00:00:00.123456789Z"})])
            .unwrap();
        assert_eq!(
            cell(&b, &page.rows[0], "t"),
            Some(Scalar::Timestamp(1_704_067_200_123_456))
        );
        let err = b
            .add_page(&[json!({"id": 2, "t": "2016-12-31T23:59:60Z"})])
            .unwrap_err();
        assert!(matches!(err, SchemaError::InvalidValue { .. }), "{err}");
    }

    #[test]
    fn decimal_text_formats() {
        assert_eq!(format_decimal("0", 0), "0");
        assert_eq!(format_decimal("-5", 3), "-0.005");
        assert_eq!(format_decimal("123456", 2), "1234.56");
        assert_eq!(decimal_text("1e3", 10, 2).as_deref(), Ok("1000.00"));
        assert_eq!(decimal_text("0.5", 1, 0).as_deref(), Ok("0"));
        assert_eq!(decimal_text("1.5", 1, 0).as_deref(), Ok("2"));
        assert_eq!(decimal_text("-2.5", 1, 0).as_deref(), Ok("-2"));
    }
}
