//! The record schema: what the extractor infers from the API's records (plus `columns`
//! hints) and what the loader turns into a table. Its Avro form lives in [`crate::avro`].
//!
//! Rules (documented in docs/design.md, "Schema and Avro"):
//! - field names follow dlt's `snake_case` naming convention ([`normalize_identifier`]):
//!   `customerId` → `customer_id`, other punctuation → `_`, a leading digit gets a `_`
//!   prefix, trailing `_` become `x`; `columns` hints and `primary_key` are normalised too;
//! - nested objects are flattened into `parent__child` fields, as dlt does (recursively:
//!   `sender__address__city`); an object under a `data_type: json` hint, or at nesting
//!   level `max_table_nesting` or deeper, stays JSON text ([`Field::keep_whole`]);
//! - a run starts from the resource's last writer schema when there is one
//!   ([`SchemaBuilder::with_previous`]): types and variants carry over across runs;
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
//! - `date`, `time` and `binary` come only from a hint, as in dlt: `date` from `YYYY-MM-DD`
//!   or an RFC 3339 timestamp (its UTC date), `time` from `HH:MM:SS[.ffffff]`, `binary`
//!   from standard base64 text;
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
//!
//! This file holds the schema's types; the rest is one file per job:

mod builder; // `SchemaBuilder`: inference page by page, widening, variants, hints
mod dates; // dlt's date, time and binary values: parsing and text forms
mod names; // dlt's `snake_case` naming, flattened paths, variant names
#[cfg(test)]
mod test_support; // builders and lookups shared by the tests beside each file
mod values; // numbers, decimals and timestamps: detection and conversion

pub use builder::SchemaBuilder;
pub use dates::{base64_encode, date_text, time_text};
pub use names::{
    EMPTY_KEY, VARIANT_SEPARATOR, normalize_identifier, normalize_key, normalize_path,
    variant_name, variant_of,
};
pub(crate) use values::format_decimal;
pub use values::{parse_timestamp, parse_timestamp_to_micros};

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

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
    /// A calendar date (Avro `int` + `date`), only from a `data_type` hint, as dlt's.
    Date,
    /// A time of day, microsecond precision (Avro `long` + `time-micros`); hint only.
    Time,
    /// Bytes (Avro `bytes`), from base64 text as dlt decodes it; hint only.
    Binary,
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
    /// Only for `Json`: the value stays one JSON column, never a child table — an object or
    /// a list at nesting level `max_table_nesting` or deeper (as dlt keeps them whole), or
    /// a field under a `data_type = "json"` hint. Other `json` fields hold lists, which the
    /// loader makes child tables.
    pub keep_whole: bool,
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
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    Binary(Vec<u8>),
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
    /// dlt's `timezone` (for timestamps): `true`, dlt's default, is what the loader does
    /// (UTC instants); `false` (naive timestamps) is refused by the config check.
    #[serde(default)]
    pub timezone: Option<bool>,
    /// dlt's `partition`, `cluster` and `sort` hints and a column's `description`: dlt's
    /// SQLite and PostgreSQL destinations do nothing with them, and neither does the
    /// loader. Accepted so that dlt configs load.
    #[serde(default)]
    pub partition: Option<bool>,
    #[serde(default)]
    pub cluster: Option<bool>,
    #[serde(default)]
    pub sort: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
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
            DataType::Date => "date",
            DataType::Time => "time",
            DataType::Binary => "binary",
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
            Scalar::Date(_) => DataType::Date,
            Scalar::Time(_) => DataType::Time,
            Scalar::Binary(_) => DataType::Binary,
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
            Scalar::Date(days) => out.push_str(&date_text(*days)),
            Scalar::Time(micros) => out.push_str(&time_text(*micros)),
            Scalar::Binary(bytes) => out.push_str(&base64_encode(bytes)),
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
