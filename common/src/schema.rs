//! The record schema: what the extractor infers from the API's records (plus `columns`
//! hints) and what the loader turns into a table. Its Avro form lives in [`crate::avro`].
//!
//! Rules (documented in docs/design.md, "Schema and Avro"):
//! - field names follow dlt's `snake_case` naming convention ([`normalize_identifier`]):
//!   `customerId` → `customer_id`, other punctuation → `_`, a leading digit gets a `_`
//!   prefix, trailing `_` become `x`; `columns` hints and `primary_key` are normalised too;
//! - nested objects are flattened into `parent__child` fields, as dlt does (recursively:
//!   `sender__address__city`); an object under a `data_type: json` hint stays JSON text;
//! - lists are carried as JSON text (data type `json`); a `json` field accepts any value;
//! - a field that has only ever been null is not added yet (as dlt does); fields appear in
//!   first-seen order, and a hinted field also appears only when first seen with a value;
//! - types: integer → `bigint`, float → `double`, bool → `bool`, string → `text`, except
//!   strings that are RFC 3339 timestamps (with `T` and a zone) when first seen → `timestamp`;
//! - the primary key fields are never null; every other field is nullable unless a
//!   `columns` hint says `nullable: false`;
//! - widening: `bigint` → `double` when a float arrives in an integer field;
//!   `timestamp` → `text` when a string that is not an RFC 3339 timestamp arrives in a
//!   detected (not hinted) timestamp field. Any other mismatch is an error naming the record
//!   id and the field; so is an object where a scalar was seen (or the other way round).
//! - a `data_type` hint fixes the type and converts values: `bigint` from JSON integers;
//!   `double` from any number; `text` from strings, numbers and bools; `timestamp` from
//!   RFC 3339 strings or integer epoch seconds; `decimal` from numbers or numeric strings,
//!   rounded half-even to the scale (default `decimal(38, 9)`; a precision without a scale
//!   means scale 0); `json` from anything;
//! - numbers keep their JSON text (serde_json's `arbitrary_precision` is on in the
//!   workspace), so nothing is rounded on the way in: an integer beyond `i64` (2^63 as much
//!   as 2^64 or -2^63-1) is an error naming the record and field unless the column is hinted
//!   `decimal` or `text` (kept digit for digit) or `double` (rounded, as asked); an integer
//!   going into an unhinted `double` field must be exactly a double (|n| ≤ 2^53 always is),
//!   and a float beyond a double's range (`1e400`) is an error too. Floats are the nearest
//!   double, as in every JSON parser;
//! - timestamps are detected only where they are exact: not a leap second (`23:59:60`), a
//!   year from 1 to 9999 (as dlt's detection), no non-zero digits beyond the microsecond;
//!   anything else stays text (a `timestamp` hint refuses leap seconds and year 0 and cuts
//!   digits beyond the microsecond).
//!
//! Keys: a blank key (`""`, `"  "`) is the field `_empty`, as in dlt. Two keys of one record
//! that normalise to the same field (`id`/`Id`, `Name`/`name`, `名前`/`😀` → `x`, `a.b`/`a_b`)
//! are an error naming the record, the field and both keys when they hold different values
//! (dlt keeps the later value and drops the other without a word; the same value twice
//! loses nothing and loads). A null is no value: it never collides. So no field can
//! overwrite another, the primary key included. A primary key field holding an object or a
//! list is an error naming the record (dlt refuses it too). A page that fails leaves the
//! schema as it was before the page.
//!
//! "First-seen order" is the order serde_json iterates an object in: the API's key order
//! with serde_json's `preserve_order` feature (on in the workspace), alphabetical without.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::str::FromStr;

use bigdecimal::{BigDecimal, RoundingMode, Zero};
use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// The maps looked up for every field of every record (a key's slot, a name's field):
/// foldhash instead of SipHash, which was 6% of the extractor's CPU in a profile.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A column's type, with dlt's names (`columns: {x: {data_type: bigint}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    Text,
    Bigint,
    Double,
    Bool,
    /// UTC instant, microsecond precision (Avro `long` + `timestamp-micros`).
    Timestamp,
    /// Exact decimal with [`Field::precision`] / [`Field::scale`] (Avro `bytes` + `decimal`).
    Decimal,
    /// JSON text (lists, and objects under a `json` hint).
    Json,
}

/// One field of a record, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    /// Only for `Decimal`: total digits (default 38) and digits after the point (default 9).
    pub precision: u32,
    pub scale: u32,
}

/// The schema of one resource's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// The resource name; also the Avro record name and the destination table name.
    pub name: String,
    pub primary_key: Vec<String>,
    pub fields: Vec<Field>,
}

/// One value of a field, typed. `None` in a [`Row`] is SQL NULL / the Avro union's null.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    Bigint(i64),
    Double(f64),
    Bool(bool),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// The decimal's exact text at the field's scale, e.g. `"0.012500000"`.
    Decimal(String),
    /// Compact JSON text.
    Json(String),
}

/// One record's values, aligned with [`TableSchema::fields`].
pub type Row = Vec<Option<Scalar>>;

/// A `columns` hint from the config: `columns: {cost: {data_type: decimal, precision: 12, scale: 4}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnHint {
    #[serde(default)]
    pub data_type: Option<DataType>,
    #[serde(default)]
    pub nullable: Option<bool>,
    #[serde(default)]
    pub precision: Option<u32>,
    #[serde(default)]
    pub scale: Option<u32>,
    /// dlt's `hard_delete`: a record whose value in this column is `true` (or, for a
    /// non-bool column, any non-null value) deletes its row in the destination instead of
    /// being merged. Applied by the loader.
    #[serde(default)]
    pub hard_delete: Option<bool>,
}

/// Default `decimal` precision (total digits) when a hint gives none.
pub const DEFAULT_DECIMAL_PRECISION: u32 = 38;
/// Default `decimal` scale (digits after the point) when a hint gives neither precision nor scale.
pub const DEFAULT_DECIMAL_SCALE: u32 = 9;
/// Separates a parent's name from its child's in flattened field names, as in dlt.
pub const PATH_SEPARATOR: &str = "__";

impl DataType {
    /// dlt's name for the type (`bigint`, `timestamp`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Text => "text",
            DataType::Bigint => "bigint",
            DataType::Double => "double",
            DataType::Bool => "bool",
            DataType::Timestamp => "timestamp",
            DataType::Decimal => "decimal",
            DataType::Json => "json",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TableSchema {
    /// The position of the field called `name`, if there is one.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

impl Scalar {
    /// The data type this value is of (`Scalar::Bigint` → [`DataType::Bigint`], …).
    pub fn data_type(&self) -> DataType {
        match self {
            Scalar::Text(_) => DataType::Text,
            Scalar::Bigint(_) => DataType::Bigint,
            Scalar::Double(_) => DataType::Double,
            Scalar::Bool(_) => DataType::Bool,
            Scalar::Timestamp(_) => DataType::Timestamp,
            Scalar::Decimal(_) => DataType::Decimal,
            Scalar::Json(_) => DataType::Json,
        }
    }

    /// The value as text, as it goes into a Kafka key: text, JSON and decimals as they are,
    /// numbers in their shortest form, timestamps as RFC 3339 UTC.
    pub fn render(&self, out: &mut String) {
        match self {
            Scalar::Text(s) | Scalar::Decimal(s) | Scalar::Json(s) => out.push_str(s),
            Scalar::Bigint(v) => {
                let _ = write!(out, "{v}");
            }
            Scalar::Double(v) => {
                let _ = write!(out, "{v}");
            }
            Scalar::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            Scalar::Timestamp(micros) => match DateTime::<Utc>::from_timestamp_micros(*micros) {
                Some(ts) => out.push_str(&ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                None => {
                    let _ = write!(out, "{micros}");
                }
            },
        }
    }
}

/// Why a page of records does not fit the schema. Every variant names the record (its
/// primary key value and its index in the page) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("record #{index} of the page is not a JSON object (found {found})")]
    NotAnObject { index: usize, found: &'static str },
    #[error(
        "record #{index} of the page has no value for primary key field `{field}` (missing or null)"
    )]
    MissingPrimaryKey { index: usize, field: String },
    #[error("record {record}: field `{field}` expected {expected}, found {found}")]
    TypeMismatch {
        record: String,
        field: String,
        expected: String,
        found: String,
    },
    #[error(
        "record {record}: field `{field}` is declared `nullable: false` but is null or missing"
    )]
    NullNotAllowed { record: String, field: String },
    #[error(
        "record {record}: field `{field}`: integer {value} does not fit a 64-bit signed integer \
         (hint the column as double, decimal or text)"
    )]
    IntegerOutOfRange {
        record: String,
        field: String,
        value: String,
    },
    #[error("record {record}: field `{field}`: {value} does not fit decimal({precision}, {scale})")]
    DecimalOutOfRange {
        record: String,
        field: String,
        value: String,
        precision: u32,
        scale: u32,
    },
    #[error("record {record}: field `{field}`: invalid {expected} value {value}")]
    InvalidValue {
        record: String,
        field: String,
        expected: DataType,
        value: String,
    },
    #[error(
        "record {record}: field `{field}`: integer {value} cannot be stored exactly as a double \
         (hint the column as decimal or text)"
    )]
    InexactDouble {
        record: String,
        field: String,
        value: String,
    },
    #[error(
        "record {record}: field `{field}`: {value} is beyond the range of a double \
         (hint the column as decimal or text)"
    )]
    FloatOutOfRange {
        record: String,
        field: String,
        value: String,
    },
    #[error(
        "record {record}: keys {keys} both normalise to field `{field}` and hold different \
         values; loading one would silently drop the other"
    )]
    NameCollision {
        record: String,
        field: String,
        /// The two keys as the API sent them, quoted, with their parents:
        /// `"sender"."Name" and "sender"."name"`.
        keys: String,
    },
    #[error(
        "record #{index} of the page: primary key field `{field}` holds {found}, not a single value"
    )]
    PrimaryKeyNotScalar {
        index: usize,
        field: String,
        found: &'static str,
    },
    #[error("columns hint `{column}`: {reason}")]
    InvalidHint { column: String, reason: String },
    #[error("primary key `{column}` normalises to an empty field name")]
    InvalidPrimaryKey { column: String },
}

/// One page's records as rows aligned with [`SchemaBuilder::schema`] after the page.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRows {
    pub rows: Vec<Row>,
    /// The primary key as text, per row (for the Kafka key); composite keys joined with `|`.
    /// Empty strings when the resource has no primary key.
    pub keys: Vec<String>,
    /// Whether this page added or widened a field.
    pub schema_changed: bool,
}

/// Normalises one identifier with dlt's `snake_case` naming convention. `None` when
/// nothing is left (an empty or blank key). Only ASCII letters and digits are kept
/// (dlt's Python regex would also keep non-ASCII digits).
pub fn normalize_identifier(identifier: &str) -> Option<String> {
    let trimmed = identifier.trim();
    if trimmed.is_empty() {
        return None;
    }
    // Reduce the alphabet, then replace every run of other characters with one `_`.
    let mut reduced: Vec<u8> = Vec::with_capacity(trimmed.len());
    let mut in_run = false;
    for c in trimmed.chars() {
        let mapped = match c {
            '+' | '*' => Some(b'x'),
            '-' => Some(b'_'),
            '@' => Some(b'a'),
            '|' => Some(b'l'),
            c if c.is_ascii_alphanumeric() || c == '_' => Some(c as u8),
            _ => None,
        };
        match mapped {
            Some(b) => {
                reduced.push(b);
                in_run = false;
            }
            None if !in_run => {
                reduced.push(b'_');
                in_run = true;
            }
            None => {}
        }
    }
    // `([^_])([A-Z][a-z]+)` → `\1_\2`
    let mut broken: Vec<u8> = Vec::with_capacity(reduced.len() + 8);
    let mut i = 0;
    while i < reduced.len() {
        let c = reduced[i];
        if c != b'_'
            && reduced.get(i + 1).is_some_and(u8::is_ascii_uppercase)
            && reduced.get(i + 2).is_some_and(u8::is_ascii_lowercase)
        {
            let mut end = i + 3;
            while reduced.get(end).is_some_and(u8::is_ascii_lowercase) {
                end += 1;
            }
            broken.push(c);
            broken.push(b'_');
            broken.extend_from_slice(&reduced[i + 1..end]);
            i = end;
        } else {
            broken.push(c);
            i += 1;
        }
    }
    // `([a-z0-9])([A-Z])` → `\1_\2`, then lower case.
    let mut snake: Vec<u8> = Vec::with_capacity(broken.len() + 8);
    let mut i = 0;
    while i < broken.len() {
        let c = broken[i];
        if (c.is_ascii_lowercase() || c.is_ascii_digit())
            && broken.get(i + 1).is_some_and(u8::is_ascii_uppercase)
        {
            snake.push(c);
            snake.push(b'_');
            snake.push(broken[i + 1].to_ascii_lowercase());
            i += 2;
        } else {
            snake.push(c.to_ascii_lowercase());
            i += 1;
        }
    }
    if snake.first().is_some_and(u8::is_ascii_digit) {
        snake.insert(0, b'_');
    }
    // Trailing `_` become `x`.
    let kept = snake.iter().rposition(|&b| b != b'_').map_or(0, |p| p + 1);
    for b in &mut snake[kept..] {
        *b = b'x';
    }
    // Runs of `_` become one, so names never contain the path separator.
    let mut out = String::with_capacity(snake.len());
    let mut previous = 0u8;
    for &b in &snake {
        if !(b == b'_' && previous == b'_') {
            out.push(char::from(b));
        }
        previous = b;
    }
    Some(out)
}

/// The field name of a blank JSON key (`""`, `"  "`), as dlt's relational normaliser names it.
pub const EMPTY_KEY: &str = "_empty";

/// A record key's own field name: [`normalize_identifier`], or [`EMPTY_KEY`] for a blank key.
pub fn normalize_key(key: &str) -> String {
    normalize_identifier(key).unwrap_or_else(|| EMPTY_KEY.to_owned())
}

/// Normalises a flattened path (`sender__address__city`, `senderInfo__zipCode`): each
/// `__`-separated part with [`normalize_identifier`], blank parts dropped. `None` when
/// nothing is left.
pub fn normalize_path(path: &str) -> Option<String> {
    let parts: Vec<String> = path
        .split(PATH_SEPARATOR)
        .filter_map(normalize_identifier)
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(PATH_SEPARATOR))
    }
}

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
enum Num {
    Int(i64),
    /// An integer beyond `i64` (above 2^63-1 or below -2^63).
    BigInt,
    Float(f64),
    /// A float beyond a double's range (`1e400`).
    HugeFloat,
}

fn classify(n: &Number) -> Num {
    if let Some(v) = n.as_i64() {
        return Num::Int(v);
    }
    if n.is_f64() {
        return n.as_f64().map_or(Num::HugeFloat, Num::Float);
    }
    // Under `arbitrary_precision` neither an integer beyond i64 nor a float beyond f64 is
    // `is_f64`; the text tells them apart (rare, so the allocation does not matter).
    if n.to_string().contains(['.', 'e', 'E']) {
        Num::HugeFloat
    } else {
        Num::BigInt
    }
}

/// `v` as a double, if the double is exactly `v`.
fn exact_f64(v: i64) -> Option<f64> {
    let f = v as f64;
    // `f` is at most 2^63 in magnitude; 2^63 itself is not an i64, so compare in i128.
    (f as i128 == i128::from(v)).then_some(f)
}

/// The type a new field would get from `value` (`None` for null and numbers beyond range).
fn detected_type(value: &Value) -> Option<DataType> {
    match value {
        Value::Null => None,
        Value::Bool(_) => Some(DataType::Bool),
        Value::Number(n) => match classify(n) {
            Num::Int(_) => Some(DataType::Bigint),
            Num::Float(_) => Some(DataType::Double),
            Num::BigInt | Num::HugeFloat => None,
        },
        Value::String(s) if parse_timestamp(s).is_some() => Some(DataType::Timestamp),
        Value::String(_) => Some(DataType::Text),
        Value::Array(_) | Value::Object(_) => Some(DataType::Json),
    }
}

/// The marker between a field's name and its variant's type: `amount__v_text`.
pub const VARIANT_SEPARATOR: &str = "__v_";

/// dlt's variant column name: `<field>__v_<type>`.
pub fn variant_name(field: &str, data_type: DataType) -> String {
    format!("{field}{VARIANT_SEPARATOR}{}", data_type.as_str())
}

/// The field a variant column belongs to, if `name` is one (`amount__v_text` → `amount`).
pub fn variant_of(name: &str) -> Option<&str> {
    let (field, data_type) = name.rsplit_once(VARIANT_SEPARATOR)?;
    let known = [
        DataType::Text,
        DataType::Bigint,
        DataType::Double,
        DataType::Bool,
        DataType::Timestamp,
        DataType::Decimal,
        DataType::Json,
    ];
    (!field.is_empty() && known.iter().any(|t| t.as_str() == data_type)).then_some(field)
}

/// The kind of a JSON value, for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) => match classify(n) {
            Num::Int(_) => "integer",
            Num::BigInt => "integer beyond i64",
            Num::Float(_) => "float",
            Num::HugeFloat => "float beyond a double",
        },
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Why a value did not convert to a field's type (the caller adds record and field).
enum ConvertError {
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
fn convert(value: &Value, field: &Field, hinted: bool) -> Result<Scalar, ConvertError> {
    let mismatch = || ConvertError::Mismatch(json_kind(value));
    match field.data_type {
        DataType::Json => Ok(Scalar::Json(value.to_string())),
        DataType::Text => match value {
            Value::String(s) => Ok(Scalar::Text(s.clone())),
            Value::Number(n) => Ok(Scalar::Text(n.to_string())),
            Value::Bool(b) => Ok(Scalar::Text(b.to_string())),
            _ => Err(mismatch()),
        },
        DataType::Bigint => match value {
            Value::Number(n) => match classify(n) {
                Num::Int(v) => Ok(Scalar::Bigint(v)),
                Num::BigInt => Err(ConvertError::IntegerOutOfRange(n.to_string())),
                Num::Float(_) | Num::HugeFloat => Err(mismatch()),
            },
            _ => Err(mismatch()),
        },
        DataType::Double => match value {
            Value::Number(n) => match classify(n) {
                Num::Float(f) => Ok(Scalar::Double(f)),
                Num::Int(v) => match exact_f64(v) {
                    Some(f) => Ok(Scalar::Double(f)),
                    None if hinted => Ok(Scalar::Double(v as f64)),
                    None => Err(ConvertError::InexactDouble(n.to_string())),
                },
                Num::BigInt if hinted => n
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .map(Scalar::Double)
                    .ok_or(ConvertError::Invalid),
                Num::BigInt => Err(ConvertError::IntegerOutOfRange(n.to_string())),
                Num::HugeFloat => Err(ConvertError::FloatOutOfRange(n.to_string())),
            },
            _ => Err(mismatch()),
        },
        DataType::Bool => match value {
            Value::Bool(b) => Ok(Scalar::Bool(*b)),
            _ => Err(mismatch()),
        },
        DataType::Timestamp => match value {
            Value::String(s) => parse_timestamp_to_micros(s)
                .map(Scalar::Timestamp)
                .ok_or(ConvertError::Invalid),
            Value::Number(n) => n
                .as_i64()
                .and_then(|secs| secs.checked_mul(1_000_000))
                .filter(|micros| DateTime::<Utc>::from_timestamp_micros(*micros).is_some())
                .map(Scalar::Timestamp)
                .ok_or(ConvertError::Invalid),
            _ => Err(mismatch()),
        },
        DataType::Decimal => {
            let text = match value {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
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

/// What an unhinted field does with one more value.
enum Observed {
    Fits,
    Widen(DataType),
}

/// The index of the root node (the record itself) in [`SchemaBuilder::nodes`].
const ROOT: usize = 0;

/// An object level of the records: raw JSON key → slot.
#[derive(Debug, Default)]
struct Node {
    /// The flattened name of the slot whose children these are (`None` for the root).
    prefix: Option<String>,
    /// That slot's [`Slot::raw`] (`None` for the root).
    raw_prefix: Option<String>,
    children: FastMap<String, usize>,
}

/// One raw JSON key under one node, with its normalised full name cached.
#[derive(Debug)]
struct Slot {
    /// Normalised, flattened name (`sender__address__city`).
    name: String,
    /// The field, once it exists.
    field: Option<usize>,
    /// The node of its children, once an object was flattened here.
    child: Option<usize>,
    /// A `data_type: json` hint: objects here stay JSON text.
    json_hint: bool,
    /// The raw key path as the API sent it, for messages: `"sender"."Name"`.
    raw: String,
    /// Another slot has the same name (`Name` and `name`): its values are checked per record.
    shared: bool,
}

/// A field that must have a value in every record.
#[derive(Debug)]
struct Required {
    name: String,
    primary_key: bool,
    field: Option<usize>,
}

/// Where a record is, for error messages.
#[derive(Clone, Copy)]
struct RecordRef<'a> {
    record: &'a Value,
    index: usize,
}

/// Infers a [`TableSchema`] page by page and turns records into [`Row`]s.
#[derive(Debug)]
pub struct SchemaBuilder {
    table: TableSchema,
    /// Per field: its type was fixed by a hint (no detection, no widening).
    hinted: Vec<bool>,
    by_name: FastMap<String, usize>,
    hints: HashMap<String, ColumnHint>,
    /// A bad hint, reported by every `add_page`.
    setup_error: Option<SchemaError>,
    required: Vec<Required>,
    nodes: Vec<Node>,
    slots: Vec<Slot>,
    /// Per field: the record stamp of the last non-null value.
    seen: Vec<u64>,
    stamp: u64,
    /// Flattened name → the first slot with that name (to find names shared by two keys).
    slot_names: FastMap<String, usize>,
    /// The current record's values in shared slots: (slot, value).
    claims: Vec<(usize, Value)>,
    /// The current record made a slot shared.
    fresh_share: bool,
    /// `Some(max_table_nesting)` when the loader makes child tables of this resource's
    /// lists ([`SchemaBuilder::with_child_tables`]).
    child_tables: Option<Option<usize>>,
}

impl SchemaBuilder {
    /// A builder for resource `name`. Hint and primary key names are normalised like field
    /// names; a bad hint (e.g. `scale` above `precision`) is reported by [`Self::add_page`].
    pub fn new(name: &str, primary_key: Vec<String>, hints: BTreeMap<String, ColumnHint>) -> Self {
        let mut setup_error = None;
        let mut normalised_pk = Vec::with_capacity(primary_key.len());
        for column in primary_key {
            match normalize_path(&column) {
                Some(n) => {
                    if !normalised_pk.contains(&n) {
                        normalised_pk.push(n);
                    }
                }
                None => {
                    let _ = setup_error.get_or_insert(SchemaError::InvalidPrimaryKey { column });
                }
            }
        }
        let mut normalised_hints = HashMap::with_capacity(hints.len());
        for (column, hint) in hints {
            let Some(n) = normalize_path(&column) else {
                let _ = setup_error.get_or_insert(SchemaError::InvalidHint {
                    column,
                    reason: "the name normalises to an empty field name".to_owned(),
                });
                continue;
            };
            if let Err(reason) = check_hint(&hint) {
                let _ = setup_error.get_or_insert(SchemaError::InvalidHint { column, reason });
                continue;
            }
            let _ = normalised_hints.insert(n, hint);
        }
        let mut required: Vec<Required> = normalised_pk
            .iter()
            .map(|n| Required {
                name: n.clone(),
                primary_key: true,
                field: None,
            })
            .collect();
        let mut not_nullable: Vec<&String> = normalised_hints
            .iter()
            .filter(|(n, h)| h.nullable == Some(false) && !normalised_pk.contains(n))
            .map(|(n, _)| n)
            .collect();
        not_nullable.sort();
        required.extend(not_nullable.into_iter().map(|n| Required {
            name: n.clone(),
            primary_key: false,
            field: None,
        }));
        SchemaBuilder {
            table: TableSchema {
                name: name.to_owned(),
                primary_key: normalised_pk,
                fields: Vec::new(),
            },
            hinted: Vec::new(),
            by_name: FastMap::default(),
            hints: normalised_hints,
            setup_error,
            required,
            nodes: vec![Node::default()],
            slots: Vec::new(),
            seen: Vec::new(),
            stamp: 0,
            slot_names: FastMap::default(),
            claims: Vec::new(),
            fresh_share: false,
            child_tables: None,
        }
    }

    /// Also checks the values the loader will turn into child-table rows (what goes into a
    /// `json` field that is not hinted `json`, when the resource has a primary key and
    /// `max_table_nesting` is not 0), down to `max_table_nesting`: two keys of one element
    /// normalising to one column with different values, and numbers beyond range, are
    /// errors naming the root record here, before anything is published, rather than a
    /// loader that stops at the record.
    pub fn with_child_tables(mut self, max_table_nesting: Option<usize>) -> Self {
        if max_table_nesting != Some(0) && !self.table.primary_key.is_empty() {
            self.child_tables = Some(max_table_nesting);
        }
        self
    }

    /// The schema as it stands after the pages added so far.
    pub fn schema(&self) -> &TableSchema {
        &self.table
    }

    /// Infers over the whole page first (new fields appended in first-seen order, widening
    /// applied), then converts every record to a [`Row`] aligned with the schema as it
    /// stands after this page. On error the schema is left as it was before the page.
    pub fn add_page(&mut self, records: &[Value]) -> Result<PageRows, SchemaError> {
        if let Some(e) = &self.setup_error {
            return Err(e.clone());
        }
        let old_types: Vec<DataType> = self.table.fields.iter().map(|f| f.data_type).collect();
        let (old_nodes, old_slots) = (self.nodes.len(), self.slots.len());
        let result = self
            .infer_page(records)
            .and_then(|()| self.convert_page(records));
        match result {
            Ok((rows, keys)) => {
                let schema_changed = self.table.fields.len() != old_types.len()
                    || self
                        .table
                        .fields
                        .iter()
                        .zip(&old_types)
                        .any(|(f, t)| f.data_type != *t);
                Ok(PageRows {
                    rows,
                    keys,
                    schema_changed,
                })
            }
            Err(e) => {
                self.rollback(&old_types, old_nodes, old_slots);
                Err(e)
            }
        }
    }

    fn infer_page(&mut self, records: &[Value]) -> Result<(), SchemaError> {
        for (index, record) in records.iter().enumerate() {
            let Value::Object(map) = record else {
                return Err(SchemaError::NotAnObject {
                    index,
                    found: json_kind(record),
                });
            };
            self.stamp += 1;
            self.claims.clear();
            self.fresh_share = false;
            let at = RecordRef { record, index };
            let inferred = self.infer_object(ROOT, map, at);
            if self.fresh_share {
                // A key of this record met another of its name for the first time: the first
                // one's value was not claimed, so walk the record once more (a collision
                // also explains a type error the second key may have caused).
                self.claims.clear();
                self.claim_shared(ROOT, map, at)?;
            }
            inferred?;
            self.check_required(at)?;
        }
        Ok(())
    }

    fn infer_object(
        &mut self,
        node: usize,
        map: &Map<String, Value>,
        at: RecordRef<'_>,
    ) -> Result<(), SchemaError> {
        for (key, value) in map {
            let slot = self.slot_id(node, key);
            self.infer_value(slot, value, at)?;
        }
        Ok(())
    }

    fn infer_value(
        &mut self,
        slot: usize,
        value: &Value,
        at: RecordRef<'_>,
    ) -> Result<(), SchemaError> {
        if value.is_null() {
            return Ok(());
        }
        if matches!(value, Value::Object(_) | Value::Array(_))
            && self.table.primary_key.contains(&self.slots[slot].name)
        {
            return Err(SchemaError::PrimaryKeyNotScalar {
                index: at.index,
                field: self.slots[slot].name.clone(),
                found: if value.is_object() {
                    "an object"
                } else {
                    "a list"
                },
            });
        }
        let field = self.resolve(slot);
        let is_json_field = field.is_some_and(|i| self.table.fields[i].data_type == DataType::Json);
        let flattened =
            value.is_object() && !self.slots[slot].json_hint && !is_json_field && field.is_none();
        if self.slots[slot].shared && !flattened {
            self.claim(slot, value, at)?;
        }
        if let Value::Object(map) = value
            && !self.slots[slot].json_hint
            && !is_json_field
        {
            if let Some(i) = field {
                if self.hinted[i] {
                    return Err(self.mismatch(at, i, "object"));
                }
                let variant = self.variant_field(i, value, at)?;
                self.seen[variant] = self.stamp;
                return Ok(());
            }
            let child = match self.slots[slot].child {
                Some(child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node {
                        prefix: Some(self.slots[slot].name.clone()),
                        raw_prefix: Some(self.slots[slot].raw.clone()),
                        children: FastMap::default(),
                    });
                    self.slots[slot].child = Some(child);
                    child
                }
            };
            return self.infer_object(child, map, at);
        }
        if self.slots[slot].child.is_some() && !is_json_field {
            return Err(SchemaError::TypeMismatch {
                record: self.record_id(at),
                field: self.slots[slot].name.clone(),
                expected: "object".to_owned(),
                found: json_kind(value).to_owned(),
            });
        }
        let index = match field {
            Some(i) => {
                if !self.hinted[i] {
                    self.observe(i, value, at)?;
                }
                i
            }
            None => self.create_field(slot, value, at)?,
        };
        self.seen[index] = self.stamp;
        Ok(())
    }

    /// Records that `slot` (one of several keys with its name) holds `value` in the current
    /// record; another key of the record with the same name and a different value is a
    /// [`SchemaError::NameCollision`].
    fn claim(&mut self, slot: usize, value: &Value, at: RecordRef<'_>) -> Result<(), SchemaError> {
        let name = &self.slots[slot].name;
        let earlier = self
            .claims
            .iter()
            .find(|(s, v)| *s != slot && self.slots[*s].name == *name && v != value);
        if let Some((other, _)) = earlier {
            return Err(SchemaError::NameCollision {
                record: self.record_id(at),
                field: name.clone(),
                keys: format!("{} and {}", self.slots[*other].raw, self.slots[slot].raw),
            });
        }
        self.claims.push((slot, value.clone()));
        Ok(())
    }

    /// Claims every value of `map` (a record, or an object flattened into it) held in a
    /// shared slot.
    fn claim_shared(
        &mut self,
        node: usize,
        map: &Map<String, Value>,
        at: RecordRef<'_>,
    ) -> Result<(), SchemaError> {
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            let Some(&slot) = self.nodes[node].children.get(key.as_str()) else {
                continue;
            };
            let field = self.resolve(slot);
            if let (Value::Object(inner), Some(child), None) =
                (value, self.slots[slot].child, field)
            {
                self.claim_shared(child, inner, at)?;
            } else if self.slots[slot].shared {
                self.claim(slot, value, at)?;
            }
        }
        Ok(())
    }

    /// Checks one more value against an unhinted field, widening it where allowed.
    fn observe(
        &mut self,
        index: usize,
        value: &Value,
        at: RecordRef<'_>,
    ) -> Result<(), SchemaError> {
        let observed = match (self.table.fields[index].data_type, value) {
            (DataType::Json, _) => Observed::Fits,
            (DataType::Bigint | DataType::Double, Value::Number(n)) => {
                match (self.table.fields[index].data_type, classify(n)) {
                    (DataType::Bigint, Num::Float(_)) => Observed::Widen(DataType::Double),
                    (_, Num::Int(_) | Num::Float(_)) => Observed::Fits,
                    (_, Num::BigInt | Num::HugeFloat) => {
                        return Err(self.number_error(at, &self.table.fields[index].name, n));
                    }
                }
            }
            (DataType::Text, Value::String(_)) | (DataType::Bool, Value::Bool(_)) => Observed::Fits,
            (DataType::Timestamp, Value::String(s)) => {
                if parse_timestamp(s).is_some() {
                    Observed::Fits
                } else {
                    Observed::Widen(DataType::Text)
                }
            }
            _ => {
                let variant = self.variant_field(index, value, at)?;
                self.seen[variant] = self.stamp;
                return Ok(());
            }
        };
        if let Observed::Widen(to) = observed {
            self.table.fields[index].data_type = to;
        }
        Ok(())
    }

    /// The variant field that takes `value`, which does not fit field `index`'s type, as
    /// dlt does: `<field>__v_<type>` for the type the value would have had in a new field
    /// (created after the other fields when first needed). A primary key or `nullable:
    /// false` field has no variants: the mismatch is an error naming the record and field.
    fn variant_field(
        &mut self,
        index: usize,
        value: &Value,
        at: RecordRef<'_>,
    ) -> Result<usize, SchemaError> {
        let required = self.required.iter().any(|r| r.field == Some(index));
        let Some(data_type) = detected_type(value).filter(|_| !required) else {
            if let Value::Number(n) = value
                && matches!(classify(n), Num::BigInt | Num::HugeFloat)
            {
                return Err(self.number_error(at, &self.table.fields[index].name, n));
            }
            return Err(self.mismatch(at, index, json_kind(value)));
        };
        let name = variant_name(&self.table.fields[index].name, data_type);
        if let Some(&existing) = self.by_name.get(&name) {
            return Ok(existing);
        }
        let variant = self.table.fields.len();
        self.table.fields.push(Field {
            name: name.clone(),
            data_type,
            nullable: true,
            precision: 0,
            scale: 0,
        });
        self.hinted.push(true);
        self.seen.push(0);
        let _ = self.by_name.insert(name, variant);
        Ok(variant)
    }

    /// Adds the field for `slot`, first seen with the non-null `value`.
    fn create_field(
        &mut self,
        slot: usize,
        value: &Value,
        at: RecordRef<'_>,
    ) -> Result<usize, SchemaError> {
        let name = self.slots[slot].name.clone();
        let hint = self.hints.get(&name);
        let hinted_type = hint.and_then(|h| h.data_type);
        let data_type = match hinted_type {
            Some(t) => t,
            None => match value {
                Value::Bool(_) => DataType::Bool,
                Value::Number(n) => match classify(n) {
                    Num::Int(_) => DataType::Bigint,
                    Num::Float(_) => DataType::Double,
                    Num::BigInt | Num::HugeFloat => {
                        return Err(self.number_error(at, &name, n));
                    }
                },
                Value::String(s) if parse_timestamp(s).is_some() => DataType::Timestamp,
                Value::String(_) => DataType::Text,
                Value::Array(_) | Value::Object(_) => DataType::Json,
                Value::Null => return Err(self.mismatch_named(at, &name, "a value", "null")),
            },
        };
        let (precision, scale) = match (data_type, hint) {
            (DataType::Decimal, Some(h)) => decimal_precision_scale(h),
            (DataType::Decimal, None) => (DEFAULT_DECIMAL_PRECISION, DEFAULT_DECIMAL_SCALE),
            _ => (0, 0),
        };
        let is_pk = self.table.primary_key.contains(&name);
        let nullable = !is_pk && hint.and_then(|h| h.nullable) != Some(false);
        let index = self.table.fields.len();
        self.table.fields.push(Field {
            name: name.clone(),
            data_type,
            nullable,
            precision,
            scale,
        });
        self.hinted.push(hinted_type.is_some());
        self.seen.push(0);
        for r in &mut self.required {
            if r.name == name {
                r.field = Some(index);
            }
        }
        let _ = self.by_name.insert(name, index);
        self.slots[slot].field = Some(index);
        Ok(index)
    }

    fn check_required(&self, at: RecordRef<'_>) -> Result<(), SchemaError> {
        for r in &self.required {
            if r.field.is_some_and(|i| self.seen[i] == self.stamp) {
                continue;
            }
            return Err(if r.primary_key {
                SchemaError::MissingPrimaryKey {
                    index: at.index,
                    field: r.name.clone(),
                }
            } else {
                SchemaError::NullNotAllowed {
                    record: self.record_id(at),
                    field: r.name.clone(),
                }
            });
        }
        Ok(())
    }

    fn convert_page(&mut self, records: &[Value]) -> Result<(Vec<Row>, Vec<String>), SchemaError> {
        let width = self.table.fields.len();
        let pk: Vec<usize> = self
            .required
            .iter()
            .filter(|r| r.primary_key)
            .filter_map(|r| r.field)
            .collect();
        let mut rows = Vec::with_capacity(records.len());
        let mut keys = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            let Value::Object(map) = record else {
                return Err(SchemaError::NotAnObject {
                    index,
                    found: json_kind(record),
                });
            };
            let mut row: Row = vec![None; width];
            self.convert_object(ROOT, map, &mut row, RecordRef { record, index })?;
            let mut key = String::new();
            for (n, &i) in pk.iter().enumerate() {
                if n > 0 {
                    key.push('|');
                }
                if let Some(v) = &row[i] {
                    v.render(&mut key);
                }
            }
            keys.push(key);
            rows.push(row);
        }
        Ok((rows, keys))
    }

    fn convert_object(
        &mut self,
        node: usize,
        map: &Map<String, Value>,
        row: &mut Row,
        at: RecordRef<'_>,
    ) -> Result<(), SchemaError> {
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            let slot = self.slot_id(node, key);
            if let Some(index) = self.resolve(slot) {
                let field = &self.table.fields[index];
                match convert(value, field, self.hinted[index]) {
                    Ok(scalar) => {
                        self.check_child_rows(index, slot, value, at)?;
                        row[index] = Some(scalar);
                    }
                    Err(ConvertError::Mismatch(found)) => {
                        // A value of another type goes to its variant field, if inference
                        // made one (it does for every unhinted, nullable field).
                        let variant = detected_type(value)
                            .filter(|_| !self.hinted[index])
                            .and_then(|t| self.by_name.get(&variant_name(&field.name, t)))
                            .copied();
                        let Some(variant) = variant else {
                            return Err(self.mismatch(at, index, found));
                        };
                        let scalar = convert(value, &self.table.fields[variant], false)
                            .map_err(|e| self.convert_error(at, variant, value, e))?;
                        self.check_child_rows(variant, slot, value, at)?;
                        row[variant] = Some(scalar);
                    }
                    Err(e) => return Err(self.convert_error(at, index, value, e)),
                }
            } else if let (Value::Object(map), Some(child)) = (value, self.slots[slot].child) {
                self.convert_object(child, map, row, at)?;
            }
        }
        Ok(())
    }

    /// Checks `value`, going into field `index` from `slot`, as the child-table rows the
    /// loader will make of it (see [`Self::with_child_tables`]).
    fn check_child_rows(
        &self,
        index: usize,
        slot: usize,
        value: &Value,
        at: RecordRef<'_>,
    ) -> Result<(), SchemaError> {
        let Some(max) = self.child_tables else {
            return Ok(());
        };
        let field = &self.table.fields[index];
        if field.data_type != DataType::Json
            || self.hints.get(&field.name).and_then(|h| h.data_type) == Some(DataType::Json)
        {
            return Ok(());
        }
        check_list(value, &field.name, &self.slots[slot].raw, 1, max).map_err(|p| match p {
            Nested::Collision {
                column,
                first,
                second,
            } => SchemaError::NameCollision {
                record: self.record_id(at),
                field: column,
                keys: format!("{first} and {second}"),
            },
            Nested::Number { column, value } => {
                let record = self.record_id(at);
                let text = value.to_string();
                match classify(&value) {
                    Num::HugeFloat => SchemaError::FloatOutOfRange {
                        record,
                        field: column,
                        value: text,
                    },
                    _ => SchemaError::IntegerOutOfRange {
                        record,
                        field: column,
                        value: text,
                    },
                }
            }
        })
    }

    /// The slot of raw key `key` under `node`, created (and its name normalised) on first sight.
    fn slot_id(&mut self, node: usize, key: &str) -> usize {
        if let Some(&slot) = self.nodes[node].children.get(key) {
            return slot;
        }
        let own = normalize_key(key);
        let name = match &self.nodes[node].prefix {
            Some(parent) => format!("{parent}{PATH_SEPARATOR}{own}"),
            None => own,
        };
        let raw = match &self.nodes[node].raw_prefix {
            Some(parent) => format!("{parent}.{key:?}"),
            None => format!("{key:?}"),
        };
        let json_hint = self.hints.get(&name).and_then(|h| h.data_type) == Some(DataType::Json);
        let slot = self.slots.len();
        let shared = match self.slot_names.get(&name) {
            Some(&first) => {
                self.slots[first].shared = true;
                self.fresh_share = true;
                true
            }
            None => {
                let _ = self.slot_names.insert(name.clone(), slot);
                false
            }
        };
        self.slots.push(Slot {
            name,
            field: None,
            child: None,
            json_hint,
            raw,
            shared,
        });
        let _ = self.nodes[node].children.insert(key.to_owned(), slot);
        slot
    }

    /// The field of `slot`, if it exists (possibly created through another raw key).
    fn resolve(&mut self, slot: usize) -> Option<usize> {
        if let Some(i) = self.slots[slot].field {
            return Some(i);
        }
        let found = self.by_name.get(&self.slots[slot].name).copied();
        self.slots[slot].field = found;
        found
    }

    fn rollback(&mut self, old_types: &[DataType], old_nodes: usize, old_slots: usize) {
        let old_len = old_types.len();
        for f in &self.table.fields[old_len..] {
            let _ = self.by_name.remove(&f.name);
        }
        self.table.fields.truncate(old_len);
        self.hinted.truncate(old_len);
        self.seen.truncate(old_len);
        for (f, t) in self.table.fields.iter_mut().zip(old_types) {
            f.data_type = *t;
        }
        self.nodes.truncate(old_nodes);
        for node in &mut self.nodes {
            node.children.retain(|_, s| *s < old_slots);
        }
        self.slots.truncate(old_slots);
        self.slot_names.retain(|_, s| *s < old_slots);
        for slot in &mut self.slots {
            slot.field = slot.field.filter(|&i| i < old_len);
            slot.child = slot.child.filter(|&n| n < old_nodes);
        }
        for r in &mut self.required {
            r.field = r.field.filter(|&i| i < old_len);
        }
    }

    /// `id=<primary key> (#<index> in page)`, or just the index without a primary key.
    fn record_id(&self, at: RecordRef<'_>) -> String {
        let mut parts = Vec::with_capacity(self.table.primary_key.len());
        for name in &self.table.primary_key {
            match find_flattened(at.record, name, None) {
                Some(Value::String(s)) => parts.push(s.clone()),
                Some(v) if !v.is_null() => parts.push(v.to_string()),
                _ => return format!("#{} in page", at.index),
            }
        }
        if parts.is_empty() {
            format!("#{} in page", at.index)
        } else {
            format!("id={} (#{} in page)", parts.join("|"), at.index)
        }
    }

    fn mismatch(&self, at: RecordRef<'_>, index: usize, found: &str) -> SchemaError {
        let field = &self.table.fields[index];
        self.mismatch_named(at, &field.name, field.data_type.as_str(), found)
    }

    fn mismatch_named(
        &self,
        at: RecordRef<'_>,
        field: &str,
        expected: &str,
        found: &str,
    ) -> SchemaError {
        SchemaError::TypeMismatch {
            record: self.record_id(at),
            field: field.to_owned(),
            expected: expected.to_owned(),
            found: found.to_owned(),
        }
    }

    /// The error for a number no inferred type holds exactly.
    fn number_error(&self, at: RecordRef<'_>, field: &str, n: &Number) -> SchemaError {
        let (record, field, value) = (self.record_id(at), field.to_owned(), n.to_string());
        match classify(n) {
            Num::HugeFloat => SchemaError::FloatOutOfRange {
                record,
                field,
                value,
            },
            _ => SchemaError::IntegerOutOfRange {
                record,
                field,
                value,
            },
        }
    }

    fn convert_error(
        &self,
        at: RecordRef<'_>,
        index: usize,
        value: &Value,
        e: ConvertError,
    ) -> SchemaError {
        let field = &self.table.fields[index];
        match e {
            ConvertError::Mismatch(found) => self.mismatch(at, index, found),
            ConvertError::IntegerOutOfRange(value) => SchemaError::IntegerOutOfRange {
                record: self.record_id(at),
                field: field.name.clone(),
                value,
            },
            ConvertError::InexactDouble(value) => SchemaError::InexactDouble {
                record: self.record_id(at),
                field: field.name.clone(),
                value,
            },
            ConvertError::FloatOutOfRange(value) => SchemaError::FloatOutOfRange {
                record: self.record_id(at),
                field: field.name.clone(),
                value,
            },
            ConvertError::DecimalOutOfRange(value) => SchemaError::DecimalOutOfRange {
                record: self.record_id(at),
                field: field.name.clone(),
                value,
                precision: field.precision,
                scale: field.scale,
            },
            ConvertError::Invalid => SchemaError::InvalidValue {
                record: self.record_id(at),
                field: field.name.clone(),
                expected: field.data_type,
                value: value.to_string(),
            },
        }
    }
}

/// What would stop the loader in a child-table row.
enum Nested {
    Collision {
        column: String,
        first: String,
        second: String,
    },
    Number {
        column: String,
        value: Number,
    },
}

/// Checks a list (or a single value, which the loader takes as a list of one) that becomes
/// rows of a child table at `depth`: `list` is its display name (`items`, `items[].codes`),
/// `raw` its raw key path.
fn check_list(
    value: &Value,
    list: &str,
    raw: &str,
    depth: usize,
    max: Option<usize>,
) -> Result<(), Nested> {
    let items = match value {
        Value::Null => return Ok(()),
        Value::Array(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::Object(map) => {
                let mut names = FastMap::default();
                let raw = format!("{raw}[{i}]");
                check_row(map, None, &raw, list, depth, max, &mut names)?;
            }
            Value::Number(n) => check_number(n, &format!("{list}[].value"))?,
            _ => {}
        }
    }
    Ok(())
}

/// One child row (an object, flattened as the loader's schema flattens it): its leaves'
/// names must not collide and its numbers must be in range; lists inside it are checked as
/// grandchild tables while `depth` is below `max`.
fn check_row<'v>(
    map: &'v Map<String, Value>,
    prefix: Option<&str>,
    raw_prefix: &str,
    list: &str,
    depth: usize,
    max: Option<usize>,
    names: &mut FastMap<String, (String, &'v Value)>,
) -> Result<(), Nested> {
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let own = normalize_key(key);
        let name = match prefix {
            Some(p) => format!("{p}{PATH_SEPARATOR}{own}"),
            None => own,
        };
        let raw = format!("{raw_prefix}.{key:?}");
        match value {
            Value::Object(inner) => {
                check_row(inner, Some(&name), &raw, list, depth, max, names)?;
                continue;
            }
            Value::Array(_) if max.is_none_or(|m| depth < m) => {
                check_list(value, &format!("{list}[].{name}"), &raw, depth + 1, max)?;
            }
            Value::Number(n) => check_number(n, &format!("{list}[].{name}"))?,
            _ => {}
        }
        match names.get(&name) {
            Some((first, earlier)) if *earlier != value => {
                return Err(Nested::Collision {
                    column: format!("{list}[].{name}"),
                    first: first.clone(),
                    second: raw,
                });
            }
            Some(_) => {}
            None => {
                let _ = names.insert(name, (raw, value));
            }
        }
    }
    Ok(())
}

fn check_number(n: &Number, column: &str) -> Result<(), Nested> {
    match classify(n) {
        Num::BigInt | Num::HugeFloat => Err(Nested::Number {
            column: column.to_owned(),
            value: n.clone(),
        }),
        Num::Int(_) | Num::Float(_) => Ok(()),
    }
}

/// The value at flattened name `target` in `value` (slow path, for error messages).
fn find_flattened<'v>(value: &'v Value, target: &str, prefix: Option<&str>) -> Option<&'v Value> {
    let Value::Object(map) = value else {
        return None;
    };
    for (key, child) in map {
        let own = normalize_key(key);
        let name = match prefix {
            Some(p) => format!("{p}{PATH_SEPARATOR}{own}"),
            None => own,
        };
        if name == target {
            return Some(child);
        }
        if child.is_object()
            && target.len() > name.len() + PATH_SEPARATOR.len()
            && target.starts_with(&name)
            && target[name.len()..].starts_with(PATH_SEPARATOR)
            && let Some(found) = find_flattened(child, target, Some(&name))
        {
            return Some(found);
        }
    }
    None
}

/// A hint's decimal precision and scale, with the defaults filled in.
fn decimal_precision_scale(hint: &ColumnHint) -> (u32, u32) {
    match (hint.precision, hint.scale) {
        (None, None) => (DEFAULT_DECIMAL_PRECISION, DEFAULT_DECIMAL_SCALE),
        (Some(p), None) => (p, 0),
        (None, Some(s)) => (DEFAULT_DECIMAL_PRECISION, s),
        (Some(p), Some(s)) => (p, s),
    }
}

fn check_hint(hint: &ColumnHint) -> Result<(), String> {
    if hint.data_type == Some(DataType::Decimal) {
        let (precision, scale) = decimal_precision_scale(hint);
        if precision == 0 {
            return Err("decimal precision must be at least 1".to_owned());
        }
        if scale > precision {
            return Err(format!(
                "decimal scale {scale} is larger than precision {precision}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn builder(pk: &[&str], hints: &[(&str, ColumnHint)]) -> SchemaBuilder {
        SchemaBuilder::new(
            "orders",
            pk.iter().map(|s| (*s).to_owned()).collect(),
            hints
                .iter()
                .map(|(k, h)| ((*k).to_owned(), h.clone()))
                .collect(),
        )
    }

    fn hint(data_type: DataType) -> ColumnHint {
        ColumnHint {
            data_type: Some(data_type),
            ..ColumnHint::default()
        }
    }

    fn field<'a>(b: &'a SchemaBuilder, name: &str) -> &'a Field {
        let schema = b.schema();
        match schema.field_index(name) {
            Some(i) => &schema.fields[i],
            None => panic!("no field {name} in {:?}", schema.fields),
        }
    }

    /// The value of field `name` in `row` (serde_json orders object keys alphabetically
    /// unless its `preserve_order` feature is on, so tests look fields up by name).
    fn cell(b: &SchemaBuilder, row: &Row, name: &str) -> Option<Scalar> {
        match b.schema().field_index(name) {
            Some(i) => row[i].clone(),
            None => panic!("no field {name}"),
        }
    }

    fn names(b: &SchemaBuilder) -> Vec<&str> {
        b.schema().fields.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn normalises_like_dlt_snake_case() {
        let cases = [
            ("customerId", "customer_id"),
            ("CustomerID", "customer_id"),
            ("HTTPServer", "http_server"),
            ("DealFlow", "deal_flow"),
            ("first name", "first_name"),
            ("  padded  ", "padded"),
            ("a--b", "a_b"),
            ("a.b.c", "a_b_c"),
            ("123abc", "_123abc"),
            ("price$", "pricex"),
            ("trailing__", "trailingxx"),
            ("_id", "_id"),
            ("__private", "_private"),
            ("e-mail", "e_mail"),
            ("c++", "cxx"),
            ("user@host", "userahost"),
            ("a|b", "alb"),
            ("naïve", "na_ve"),
            ("already_snake", "already_snake"),
            ("ABcDef", "a_bc_def"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_identifier(input).as_deref(),
                Some(expected),
                "{input}"
            );
        }
        assert_eq!(normalize_identifier("   "), None);
        assert_eq!(normalize_identifier(""), None);
        assert_eq!(
            normalize_path("senderInfo__zipCode").as_deref(),
            Some("sender_info__zip_code")
        );
    }

    #[test]
    fn flattens_nested_objects_and_keeps_lists_as_json() {
        let mut b = builder(&["id"], &[]);
        let page = b
            .add_page(&[json!({
                "id": 1,
                "sender": {"address": {"city": "Oslo", "zipCode": "0150"}, "name": "Ann"},
                "tags": ["a", {"b": 1}],
            })])
            .unwrap();
        assert_eq!(
            names(&b),
            [
                "id",
                "sender__address__city",
                "sender__address__zip_code",
                "sender__name",
                "tags"
            ]
        );
        assert_eq!(field(&b, "tags").data_type, DataType::Json);
        assert_eq!(
            page.rows[0],
            vec![
                Some(Scalar::Bigint(1)),
                Some(Scalar::Text("Oslo".into())),
                Some(Scalar::Text("0150".into())),
                Some(Scalar::Text("Ann".into())),
                Some(Scalar::Json(r#"["a",{"b":1}]"#.into())),
            ]
        );
        assert_eq!(page.keys, ["1"]);
        assert!(page.schema_changed);
    }

    #[test]
    fn infers_types() {
        let mut b = builder(&["id"], &[]);
        let page = b
            .add_page(&[json!({
                "id": 7, "price": 1.5, "paid": true, "note": "hi",
                "created": "2024-03-01T12:30:00.123456+01:00",
                "day": "2024-03-01",
            })])
            .unwrap();
        assert_eq!(field(&b, "id").data_type, DataType::Bigint);
        assert!(!field(&b, "id").nullable);
        assert_eq!(field(&b, "price").data_type, DataType::Double);
        assert!(field(&b, "price").nullable);
        assert_eq!(field(&b, "paid").data_type, DataType::Bool);
        assert_eq!(field(&b, "note").data_type, DataType::Text);
        assert_eq!(field(&b, "created").data_type, DataType::Timestamp);
        assert_eq!(
            field(&b, "day").data_type,
            DataType::Text,
            "a date alone is text"
        );
        let i = b.schema().field_index("created").unwrap();
        // 2024-03-01T11:30:00.123456Z
        assert_eq!(
            page.rows[0][i],
            Some(Scalar::Timestamp(1_709_292_600_123_456))
        );
    }

    #[test]
    fn widens_bigint_to_double_within_and_across_pages() {
        let mut b = builder(&["id"], &[]);
        let page = b
            .add_page(&[
                json!({"id": 1, "amount": 3}),
                json!({"id": 2, "amount": 2.5}),
            ])
            .unwrap();
        assert_eq!(field(&b, "amount").data_type, DataType::Double);
        assert_eq!(cell(&b, &page.rows[0], "amount"), Some(Scalar::Double(3.0)));
        assert_eq!(cell(&b, &page.rows[1], "amount"), Some(Scalar::Double(2.5)));
        // Integers keep fitting a double field, and nothing changes.
        let page = b.add_page(&[json!({"id": 3, "amount": 4})]).unwrap();
        assert!(!page.schema_changed);
        assert_eq!(cell(&b, &page.rows[0], "amount"), Some(Scalar::Double(4.0)));
    }

    #[test]
    fn widens_detected_timestamp_to_text() {
        let mut b = builder(&["id"], &[]);
        let page = b
            .add_page(&[json!({"id": 1, "when": "2024-01-01T00:00:00Z"})])
            .unwrap();
        assert_eq!(field(&b, "when").data_type, DataType::Timestamp);
        assert_eq!(
            cell(&b, &page.rows[0], "when"),
            Some(Scalar::Timestamp(1_704_067_200_000_000))
        );
        let page = b
            .add_page(&[
                json!({"id": 2, "when": "2024-01-02T00:00:00Z"}),
                json!({"id": 3, "when": "soon"}),
            ])
            .unwrap();
        assert!(page.schema_changed);
        assert_eq!(field(&b, "when").data_type, DataType::Text);
        assert_eq!(
            cell(&b, &page.rows[0], "when"),
            Some(Scalar::Text("2024-01-02T00:00:00Z".into()))
        );
        assert_eq!(
            cell(&b, &page.rows[1], "when"),
            Some(Scalar::Text("soon".into()))
        );
    }

    #[test]
    fn hinted_timestamp_does_not_widen() {
        let mut b = builder(&["id"], &[("when", hint(DataType::Timestamp))]);
        let page = b.add_page(&[json!({"id": 1, "when": 86_400})]).unwrap();
        assert_eq!(
            cell(&b, &page.rows[0], "when"),
            Some(Scalar::Timestamp(86_400_000_000))
        );
        let err = b.add_page(&[json!({"id": 2, "when": "soon"})]).unwrap_err();
        assert!(
            matches!(&err, SchemaError::InvalidValue { record, field, .. }
                if record.starts_with("id=2") && field == "when"),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_another_type_goes_to_a_variant_field() {
        let mut b = builder(&["orderId"], &[]);
        let _ = b.add_page(&[json!({"orderId": "A-1", "qty": 1})]).unwrap();
        let page = b
            .add_page(&[
                json!({"orderId": "A-2", "qty": 2}),
                json!({"orderId": "A-3", "qty": "three"}),
                json!({"orderId": "A-4", "qty": {"n": 4}}),
                json!({"orderId": "A-5", "qty": "five"}),
            ])
            .unwrap();
        assert!(page.schema_changed);
        assert_eq!(names(&b), ["order_id", "qty", "qty__v_text", "qty__v_json"]);
        assert_eq!(field(&b, "qty").data_type, DataType::Bigint);
        assert_eq!(field(&b, "qty__v_text").data_type, DataType::Text);
        assert!(field(&b, "qty__v_json").nullable);
        let cells = |row: &Row| {
            (
                cell(&b, row, "qty"),
                cell(&b, row, "qty__v_text"),
                cell(&b, row, "qty__v_json"),
            )
        };
        assert_eq!(cells(&page.rows[0]), (Some(Scalar::Bigint(2)), None, None));
        assert_eq!(
            cells(&page.rows[1]),
            (None, Some(Scalar::Text("three".into())), None)
        );
        assert_eq!(
            cells(&page.rows[2]),
            (None, None, Some(Scalar::Json(r#"{"n":4}"#.into())))
        );
        assert_eq!(
            cells(&page.rows[3]),
            (None, Some(Scalar::Text("five".into())), None)
        );
        // The next page of integers changes nothing.
        let page = b.add_page(&[json!({"orderId": "A-6", "qty": 6})]).unwrap();
        assert!(!page.schema_changed);
        assert_eq!(variant_of("qty__v_text"), Some("qty"));
        assert_eq!(variant_of("qty__v_nope"), None);
        assert_eq!(variant_of("qty"), None);
    }

    #[test]
    fn a_key_or_required_field_of_another_type_names_record_and_field() {
        let hints = [(
            "qty",
            ColumnHint {
                nullable: Some(false),
                ..ColumnHint::default()
            },
        )];
        let mut b = builder(&["orderId"], &hints);
        let _ = b.add_page(&[json!({"orderId": "A-1", "qty": 1})]).unwrap();
        let err = b
            .add_page(&[
                json!({"orderId": "A-2", "qty": 2}),
                json!({"orderId": "A-3", "qty": "three"}),
            ])
            .unwrap_err();
        assert_eq!(
            err,
            SchemaError::TypeMismatch {
                record: "id=A-3 (#1 in page)".into(),
                field: "qty".into(),
                expected: "bigint".into(),
                found: "string".into(),
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("A-3") && message.contains("`qty`"),
            "{message}"
        );
        let mut b = builder(&["id"], &[]);
        let _ = b.add_page(&[json!({"id": 1})]).unwrap();
        let err = b.add_page(&[json!({"id": "one"})]).unwrap_err();
        assert!(
            matches!(&err, SchemaError::TypeMismatch { field, .. } if field == "id"),
            "{err}"
        );
    }

    #[test]
    fn failed_page_leaves_schema_unchanged() {
        let mut b = builder(&["id"], &[]);
        let _ = b.add_page(&[json!({"id": 1, "n": 1})]).unwrap();
        let before = b.schema().clone();
        let err = b.add_page(&[
            json!({"id": 2, "n": 1.5, "extra": "x", "obj": {"a": 1}}),
            json!({"id": 3, "n": 18446744073709551615_u64}),
        ]);
        assert!(err.is_err());
        assert_eq!(b.schema(), &before);
        // The same keys are handled afresh afterwards.
        let page = b
            .add_page(&[json!({"id": 4, "extra": 5, "obj": "flat"})])
            .unwrap();
        assert_eq!(names(&b), ["id", "n", "extra", "obj"]);
        assert_eq!(
            page.rows[0],
            vec![
                Some(Scalar::Bigint(4)),
                None,
                Some(Scalar::Bigint(5)),
                Some(Scalar::Text("flat".into()))
            ]
        );
    }

    #[test]
    fn missing_or_null_primary_key() {
        let mut b = builder(&["id"], &[]);
        let err = b
            .add_page(&[json!({"id": 1}), json!({"name": "x"})])
            .unwrap_err();
        assert_eq!(
            err,
            SchemaError::MissingPrimaryKey {
                index: 1,
                field: "id".into()
            }
        );
        let err = b.add_page(&[json!({"id": null})]).unwrap_err();
        assert_eq!(
            err,
            SchemaError::MissingPrimaryKey {
                index: 0,
                field: "id".into()
            }
        );
    }

    #[test]
    fn composite_key_and_no_key() {
        let mut b = builder(&["tenant", "id"], &[]);
        let page = b.add_page(&[json!({"id": 5, "tenant": "acme"})]).unwrap();
        assert_eq!(page.keys, ["acme|5"]);
        let mut b = builder(&[], &[]);
        let page = b.add_page(&[json!({"x": 1})]).unwrap();
        assert_eq!(page.keys, [""]);
        let err = b
            .add_page(&[json!({"x": 18446744073709551615_u64})])
            .unwrap_err();
        assert!(
            matches!(&err, SchemaError::IntegerOutOfRange { record, .. } if record == "#0 in page")
        );
    }

    #[test]
    fn non_object_record_is_an_error() {
        let mut b = builder(&[], &[]);
        let err = b.add_page(&[json!({"a": 1}), json!([1, 2])]).unwrap_err();
        assert_eq!(
            err,
            SchemaError::NotAnObject {
                index: 1,
                found: "list"
            }
        );
    }

    #[test]
    fn all_null_field_is_added_when_it_gets_a_value() {
        let mut b = builder(&["id"], &[]);
        let page = b
            .add_page(&[
                json!({"id": 1, "maybe": null}),
                json!({"id": 2, "maybe": null}),
            ])
            .unwrap();
        assert_eq!(names(&b), ["id"]);
        assert_eq!(page.rows[1], vec![Some(Scalar::Bigint(2))]);
        let page = b
            .add_page(&[
                json!({"id": 3, "maybe": null}),
                json!({"id": 4, "maybe": "now"}),
            ])
            .unwrap();
        assert!(page.schema_changed);
        assert_eq!(names(&b), ["id", "maybe"]);
        assert!(field(&b, "maybe").nullable);
        assert_eq!(page.rows[0], vec![Some(Scalar::Bigint(3)), None]);
        assert_eq!(
            page.rows[1],
            vec![Some(Scalar::Bigint(4)), Some(Scalar::Text("now".into()))]
        );
        // A record without the field gives null.
        let page = b.add_page(&[json!({"id": 5})]).unwrap();
        assert!(!page.schema_changed);
        assert_eq!(page.rows[0], vec![Some(Scalar::Bigint(5)), None]);
    }

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
    fn hints_and_primary_key_use_normalised_names() {
        let mut b = builder(&["orderId"], &[("Order Total", hint(DataType::Double))]);
        let page = b
            .add_page(&[json!({"orderId": 9, "order_total": 2})])
            .unwrap();
        assert_eq!(b.schema().primary_key, ["order_id"]);
        assert_eq!(field(&b, "order_total").data_type, DataType::Double);
        assert_eq!(
            cell(&b, &page.rows[0], "order_total"),
            Some(Scalar::Double(2.0))
        );
    }

    #[test]
    fn scalar_where_object_was_is_an_error() {
        let mut b = builder(&["id"], &[]);
        let _ = b.add_page(&[json!({"id": 1, "a": {"b": 1}})]).unwrap();
        let err = b.add_page(&[json!({"id": 2, "a": 5})]).unwrap_err();
        assert!(
            matches!(&err, SchemaError::TypeMismatch { field, expected, .. }
            if field == "a" && expected == "object"),
            "{err}"
        );
        // A list field accepts anything as JSON.
        let _ = b.add_page(&[json!({"id": 3, "l": [1]})]).unwrap();
        let page = b.add_page(&[json!({"id": 4, "l": {"x": 1}})]).unwrap();
        assert_eq!(
            cell(&b, &page.rows[0], "l"),
            Some(Scalar::Json(r#"{"x":1}"#.into()))
        );
    }

    /// Records parsed as the extractor parses a response (numbers keep their text).
    fn parse(text: &str) -> Vec<Value> {
        match crate::json::from_str(text).unwrap() {
            Value::Array(records) => records,
            other => vec![other],
        }
    }

    #[test]
    fn keys_normalising_to_one_field_with_different_values_are_an_error() {
        let cases = [
            (r#"{"id": 1, "Id": 2}"#, "id", r#""id""#, r#""Id""#),
            (
                r#"{"id": 1, "Name": "A", "name": "b"}"#,
                "name",
                r#""Name""#,
                r#""name""#,
            ),
            (
                r#"{"id": 1, "名前": "A", "😀": "b"}"#,
                "x",
                r#""名前""#,
                r#""😀""#,
            ),
            (
                r#"{"id": 1, "a.b": 1, "a_b": 2}"#,
                "a_b",
                r#""a.b""#,
                r#""a_b""#,
            ),
            (
                r#"{"id": 1, "s": {"Zip": "1"}, "S": {"zip": "2"}}"#,
                "s__zip",
                r#""s"."Zip""#,
                r#""S"."zip""#,
            ),
            (
                r#"{"id": 1, "": "e", " ": "sp"}"#,
                "_empty",
                r#""""#,
                r#"" ""#,
            ),
            (r#"{"id": 1, "ID": "one"}"#, "id", r#""id""#, r#""ID""#),
        ];
        for (text, field, first, second) in cases {
            let mut b = builder(&["id"], &[]);
            let before = b.schema().clone();
            let err = b.add_page(&parse(text)).unwrap_err();
            assert_eq!(
                err,
                SchemaError::NameCollision {
                    record: "id=1 (#0 in page)".into(),
                    field: field.into(),
                    keys: format!("{first} and {second}"),
                },
                "{text}"
            );
            let message = err.to_string();
            assert!(
                message.contains("id=1") && message.contains(first),
                "{message}"
            );
            assert_eq!(b.schema(), &before, "a failed page changes nothing");
        }
    }

    #[test]
    fn colliding_keys_never_overwrite_the_primary_key() {
        let mut b = builder(&["id"], &[]);
        // Record 1 is fine; record 2 carries `Id` as well: the error names it, and nothing of
        // the page is kept (the page fails before any row is made).
        let err = b
            .add_page(&parse(r#"[{"id": 1}, {"id": 2, "ID": 3}]"#))
            .unwrap_err();
        assert!(
            matches!(&err, SchemaError::NameCollision { record, field, .. }
                if record == "id=2 (#1 in page)" && field == "id"),
            "{err}"
        );
        // The same value under both keys loses nothing and loads; a null is no value.
        let page = b
            .add_page(&parse(
                r#"[{"id": 4, "ID": 4, "Name": null, "name": "n"}, {"Id": 5}]"#,
            ))
            .unwrap();
        assert_eq!(page.keys, ["4", "5"]);
        assert_eq!(
            cell(&b, &page.rows[0], "name"),
            Some(Scalar::Text("n".into()))
        );
        // Keys that share a name in different records are one field, as before.
        let page = b
            .add_page(&parse(
                r#"[{"id": 6, "Name": "a"}, {"id": 7, "name": "b"}]"#,
            ))
            .unwrap();
        assert_eq!(names(&b), ["id", "name"]);
        assert_eq!(
            cell(&b, &page.rows[1], "name"),
            Some(Scalar::Text("b".into()))
        );
        // Once two keys share a name, every later record is checked on the first pass.
        let err = b
            .add_page(&parse(r#"[{"id": 9, "name": "b", "Name": "c"}]"#))
            .unwrap_err();
        assert!(
            matches!(&err, SchemaError::NameCollision { keys, .. }
                if keys == r#""name" and "Name""#),
            "{err}"
        );
        // Objects under colliding keys flatten side by side until two leaves meet.
        let page = b
            .add_page(&parse(r#"[{"id": 8, "s": {"a": 1}, "S": {"b": 2}}]"#))
            .unwrap();
        assert_eq!(cell(&b, &page.rows[0], "s__a"), Some(Scalar::Bigint(1)));
        assert_eq!(cell(&b, &page.rows[0], "s__b"), Some(Scalar::Bigint(2)));
    }

    #[test]
    fn a_blank_key_is_the_empty_field() {
        let mut b = builder(&["id"], &[]);
        let page = b
            .add_page(&parse(r#"[{"id": 1, "": "e", "n": {" ": 2}}]"#))
            .unwrap();
        assert_eq!(names(&b), ["id", "_empty", "n___empty"]);
        assert_eq!(
            cell(&b, &page.rows[0], "_empty"),
            Some(Scalar::Text("e".into()))
        );
        assert_eq!(normalize_key("  "), "_empty");
        assert_eq!(normalize_key("a__b"), "a_b");
    }

    #[test]
    fn a_primary_key_holding_an_object_or_a_list_is_an_error() {
        for (text, found) in [
            (r#"{"id": {"a": 1}}"#, "an object"),
            (r#"{"id": [1, 2]}"#, "a list"),
        ] {
            let mut b = builder(&["id"], &[]);
            let err = b.add_page(&parse(text)).unwrap_err();
            assert_eq!(
                err,
                SchemaError::PrimaryKeyNotScalar {
                    index: 0,
                    field: "id".into(),
                    found
                }
            );
        }
        // A float or a bool is a key like any other (as in dlt).
        let mut b = builder(&["id"], &[]);
        let page = b.add_page(&parse(r#"[{"id": 1.5}]"#)).unwrap();
        assert_eq!(page.keys, ["1.5"]);
        let mut b = builder(&["id"], &[]);
        let page = b.add_page(&parse(r#"[{"id": true}]"#)).unwrap();
        assert_eq!(page.keys, ["true"]);
        // A nested key field is fine under its object.
        let mut b = builder(&["sender__id"], &[]);
        let page = b.add_page(&parse(r#"[{"sender": {"id": 7}}]"#)).unwrap();
        assert_eq!(page.keys, ["7"]);
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
    fn child_table_rows_are_checked_before_publishing() {
        let checked = || builder(&["id"], &[]).with_child_tables(None);
        let err = checked()
            .add_page(&parse(
                r#"{"id": 7, "items": [{"sku": "a"}, {"Name": "x", "name": "y"}]}"#,
            ))
            .unwrap_err();
        assert_eq!(
            err,
            SchemaError::NameCollision {
                record: "id=7 (#0 in page)".into(),
                field: "items[].name".into(),
                keys: r#""items"[1]."Name" and "items"[1]."name""#.into(),
            }
        );
        // Deeper lists, numbers, and a value going to a `__v_json` variant.
        let err = checked()
            .add_page(&parse(
                r#"{"id": 8, "items": [{"codes": [1, 18446744073709551616]}]}"#,
            ))
            .unwrap_err();
        assert!(
            matches!(&err, SchemaError::IntegerOutOfRange { field, .. }
                if field == "items[].codes[].value"),
            "{err}"
        );
        let mut b = checked();
        let _ = b.add_page(&parse(r#"{"id": 1, "q": 1}"#)).unwrap();
        let err = b
            .add_page(&parse(r#"{"id": 2, "q": {"a": 1, "A": 2}}"#))
            .unwrap_err();
        assert!(
            matches!(&err, SchemaError::NameCollision { field, .. } if field == "q__v_json[].a"),
            "{err}"
        );
        // The same in different elements, or equal values, is fine.
        let page = checked()
            .add_page(&parse(
                r#"{"id": 9, "items": [{"Name": "x"}, {"name": "y", "NAME": "y"}]}"#,
            ))
            .unwrap();
        assert_eq!(page.rows.len(), 1);
        // Not checked where the list stays JSON: below max_table_nesting, under a `json`
        // hint, without a primary key, or with max_table_nesting = 0.
        let text = r#"{"id": 1, "items": [{"codes": [{"a": 1, "A": 2}]}]}"#;
        assert!(
            builder(&["id"], &[])
                .with_child_tables(Some(1))
                .add_page(&parse(text))
                .is_ok()
        );
        assert!(
            builder(&["id"], &[])
                .with_child_tables(Some(2))
                .add_page(&parse(text))
                .is_err()
        );
        assert!(
            builder(&["id"], &[("items", hint(DataType::Json))])
                .with_child_tables(None)
                .add_page(&parse(text))
                .is_ok()
        );
        assert!(
            builder(&[], &[])
                .with_child_tables(None)
                .add_page(&parse(text))
                .is_ok()
        );
        assert!(
            builder(&["id"], &[])
                .with_child_tables(Some(0))
                .add_page(&parse(text))
                .is_ok()
        );
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
