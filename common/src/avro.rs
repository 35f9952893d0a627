//! The Avro form of a [`TableSchema`] and the two wire formats the pipeline reads and writes.
//!
//! Mapping (field types):
//! - `text` → `string`; `json` → `string` with the field attribute `"x-data-type": "json"`
//!   (and `"x-keep-whole": true` for a field kept whole, not a child table);
//! - `bigint` → `long`; `double` → `double`; `bool` → `boolean`;
//! - `timestamp` → `{"type": "long", "logicalType": "timestamp-micros"}`;
//! - `date` → `{"type": "int", "logicalType": "date"}`; `time` →
//!   `{"type": "long", "logicalType": "time-micros"}`; `binary` → `bytes`;
//! - `decimal` → `{"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s}`
//!   (two's-complement big-endian unscaled integer);
//! - nullable fields are unions `["null", T]` with `"default": null`.
//!
//! The record is named after the table, sanitised to an Avro name, in namespace
//! [`NAMESPACE`]; when sanitising changed the name, the original is kept in the record
//! attribute `"x-table-name"` so [`table_schema`] gives it back.
//!
//! Wire formats: Avro single-object encoding (`C3 01`, the 8-byte little-endian CRC-64-AVRO
//! fingerprint of the schema's Parsing Canonical Form, the datum) and the Confluent framing
//! (`00`, the 4-byte big-endian schema id, the datum). The datum is written and read directly
//! (it is a simple, fully specified format); the tests check it against apache-avro.
//!
//! Note that the canonical form (and so the fingerprint) leaves out logical types and custom
//! attributes: a `json` and a `text` field, or a `timestamp` and a `bigint`, fingerprint alike.
//!
//! This file maps the schemas; the wire formats have a file each:

mod canonical; // the Parsing Canonical Form the fingerprint is taken of
mod decode; // framings parsed, datums read back into rows
mod encode; // rows written as datums, framed either way
mod fingerprint; // CRC-64-AVRO of the canonical form
#[cfg(test)]
mod test_support; // a table with every type, and rows of it

pub use decode::{Decoder, Framing, parse_framing};
pub use encode::Encoder;
pub use fingerprint::{fingerprint, legacy_fingerprint};

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, RecordSchema};
use serde_json::{Value as Json, json};

use crate::schema::{DataType, Field, TableSchema};

/// The namespace of every record schema the pipeline writes.
pub const NAMESPACE: &str = "rest_pipeline";
/// Field attribute telling `json` fields from `text` fields.
pub const DATA_TYPE_ATTRIBUTE: &str = "x-data-type";
/// Field attribute (`true`) marking a `json` field kept whole ([`Field::keep_whole`]): the
/// loader never makes it a child table.
pub const KEEP_WHOLE_ATTRIBUTE: &str = "x-keep-whole";
/// Record attribute with the table name when it is not a valid Avro name itself.
pub const TABLE_NAME_ATTRIBUTE: &str = "x-table-name";

/// First bytes of an Avro single-object encoded message.
const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// First byte of a Confluent-framed message.
const CONFLUENT_MAGIC: u8 = 0x00;

/// Why a schema could not be mapped, or a row or datum encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("table `{table}`: field name `{field}` is not a valid Avro name")]
    InvalidFieldName { table: String, field: String },
    #[error("field `{field}`: invalid decimal precision {precision} / scale {scale}")]
    InvalidDecimal {
        field: String,
        precision: u32,
        scale: u32,
    },
    #[error("Avro schema for table `{table}` rejected by apache-avro")]
    Schema {
        table: String,
        #[source]
        source: apache_avro::Error,
    },
    #[error("Avro schema is not a record (found {found})")]
    NotARecord { found: String },
    #[error("field `{field}`: unsupported Avro type {found}")]
    UnsupportedField { field: String, found: String },
    #[error("row has {found} values but table `{table}` has {expected} fields")]
    RowLength {
        table: String,
        expected: usize,
        found: usize,
    },
    #[error("field `{field}`: expected a {expected} value, found {found}")]
    TypeMismatch {
        field: String,
        expected: DataType,
        found: &'static str,
    },
    #[error("field `{field}` is not nullable but the value is null")]
    NullNotAllowed { field: String },
    #[error("field `{field}`: decimal {value:?} does not fit decimal({precision}, {scale})")]
    DecimalValue {
        field: String,
        value: String,
        precision: u32,
        scale: u32,
    },
    #[error(
        "message too short for {framing} framing: {len} bytes, need at least {need} \
         (first bytes: {first})"
    )]
    ShortMessage {
        framing: &'static str,
        len: usize,
        need: usize,
        first: String,
    },
    #[error(
        "unknown message framing: first bytes {first} (expected C3 01 for Avro single-object \
         encoding or 00 for the Confluent wire format)"
    )]
    UnknownFraming { first: String },
    #[error("field `{field}`: malformed Avro datum at byte {offset}: {reason}")]
    Malformed {
        field: String,
        offset: usize,
        reason: String,
    },
    #[error("{count} trailing bytes after the Avro datum")]
    TrailingBytes { count: usize },
}

/// Sanitises `name` to an Avro name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn avro_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The schema JSON (with the custom attributes) for `table`.
fn schema_json_value(table: &TableSchema) -> Result<Json, AvroError> {
    let mut fields = Vec::with_capacity(table.fields.len());
    for field in &table.fields {
        if !is_avro_name(&field.name) {
            return Err(AvroError::InvalidFieldName {
                table: table.name.clone(),
                field: field.name.clone(),
            });
        }
        let base = match field.data_type {
            DataType::Text | DataType::Json => json!("string"),
            DataType::Bigint => json!("long"),
            DataType::Double => json!("double"),
            DataType::Bool => json!("boolean"),
            DataType::Timestamp => json!({"type": "long", "logicalType": "timestamp-micros"}),
            DataType::Date => json!({"type": "int", "logicalType": "date"}),
            DataType::Time => json!({"type": "long", "logicalType": "time-micros"}),
            DataType::Binary => json!("bytes"),
            DataType::Decimal => {
                if field.precision == 0 || field.scale > field.precision {
                    return Err(AvroError::InvalidDecimal {
                        field: field.name.clone(),
                        precision: field.precision,
                        scale: field.scale,
                    });
                }
                json!({
                    "type": "bytes",
                    "logicalType": "decimal",
                    "precision": field.precision,
                    "scale": field.scale,
                })
            }
        };
        let mut f = serde_json::Map::new();
        let _ = f.insert("name".to_owned(), json!(field.name));
        if field.nullable {
            let _ = f.insert("type".to_owned(), json!(["null", base]));
            let _ = f.insert("default".to_owned(), Json::Null);
        } else {
            let _ = f.insert("type".to_owned(), base);
        }
        if field.data_type == DataType::Json {
            let _ = f.insert(DATA_TYPE_ATTRIBUTE.to_owned(), json!("json"));
            if field.keep_whole {
                let _ = f.insert(KEEP_WHOLE_ATTRIBUTE.to_owned(), json!(true));
            }
        }
        fields.push(Json::Object(f));
    }
    let name = avro_name(&table.name);
    let mut record = serde_json::Map::new();
    let _ = record.insert("type".to_owned(), json!("record"));
    let _ = record.insert("name".to_owned(), json!(name));
    let _ = record.insert("namespace".to_owned(), json!(NAMESPACE));
    if name != table.name {
        let _ = record.insert(TABLE_NAME_ATTRIBUTE.to_owned(), json!(table.name));
    }
    let _ = record.insert("fields".to_owned(), Json::Array(fields));
    Ok(Json::Object(record))
}

fn parse_schema(table: &TableSchema, value: &Json) -> Result<Schema, AvroError> {
    Schema::parse(value).map_err(|source| AvroError::Schema {
        table: table.name.clone(),
        source,
    })
}

/// The Avro record schema for `table`.
pub fn avro_schema(table: &TableSchema) -> Result<Schema, AvroError> {
    parse_schema(table, &schema_json_value(table)?)
}

/// The [`TableSchema`] an Avro record schema written by [`avro_schema`] stands for (its
/// inverse); `primary_key` is not part of the Avro schema and is taken as given.
pub fn table_schema(avro: &Schema, primary_key: &[String]) -> Result<TableSchema, AvroError> {
    Ok(read_record(avro, primary_key)?.0)
}

/// How one field is laid out in the datum.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Union branch of null, for nullable fields (0 for `["null", T]`, 1 for `[T, "null"]`).
    null_branch: Option<u8>,
}

fn read_record(
    avro: &Schema,
    primary_key: &[String],
) -> Result<(TableSchema, Vec<Layout>), AvroError> {
    let Schema::Record(RecordSchema {
        name,
        fields: record_fields,
        attributes,
        ..
    }) = avro
    else {
        return Err(AvroError::NotARecord {
            found: avro.canonical_form(),
        });
    };
    let table_name = attributes
        .get(TABLE_NAME_ATTRIBUTE)
        .and_then(Json::as_str)
        .map_or_else(|| name.name().to_owned(), str::to_owned);
    let mut fields = Vec::with_capacity(record_fields.len());
    let mut layouts = Vec::with_capacity(record_fields.len());
    for rf in record_fields {
        let unsupported = |s: &Schema| AvroError::UnsupportedField {
            field: rf.name.clone(),
            found: s.canonical_form(),
        };
        let (inner, null_branch) = match &rf.schema {
            Schema::Union(union) => match union.variants() {
                [Schema::Null, t] => (t, Some(0)),
                [t, Schema::Null] => (t, Some(1)),
                _ => return Err(unsupported(&rf.schema)),
            },
            other => (other, None),
        };
        let json_attr = match rf.custom_attributes.get(DATA_TYPE_ATTRIBUTE) {
            None => false,
            Some(Json::String(s)) if s == "json" => true,
            Some(other) => {
                return Err(AvroError::UnsupportedField {
                    field: rf.name.clone(),
                    found: format!("{DATA_TYPE_ATTRIBUTE} {other}"),
                });
            }
        };
        let (data_type, precision, scale) = match inner {
            Schema::String if json_attr => (DataType::Json, 0, 0),
            _ if json_attr => return Err(unsupported(inner)),
            Schema::String => (DataType::Text, 0, 0),
            Schema::Long => (DataType::Bigint, 0, 0),
            Schema::Double => (DataType::Double, 0, 0),
            Schema::Boolean => (DataType::Bool, 0, 0),
            Schema::TimestampMicros => (DataType::Timestamp, 0, 0),
            Schema::Date => (DataType::Date, 0, 0),
            Schema::TimeMicros => (DataType::Time, 0, 0),
            Schema::Bytes => (DataType::Binary, 0, 0),
            Schema::Decimal(d) if matches!(d.inner, InnerDecimalSchema::Bytes) => {
                let precision = u32::try_from(d.precision).map_err(|_| unsupported(inner))?;
                let scale = u32::try_from(d.scale).map_err(|_| unsupported(inner))?;
                (DataType::Decimal, precision, scale)
            }
            _ => return Err(unsupported(inner)),
        };
        let keep_whole = data_type == DataType::Json
            && rf.custom_attributes.get(KEEP_WHOLE_ATTRIBUTE) == Some(&Json::Bool(true));
        fields.push(Field {
            name: rf.name.clone(),
            data_type,
            nullable: null_branch.is_some(),
            precision,
            scale,
            keep_whole,
        });
        layouts.push(Layout { null_branch });
    }
    let table = TableSchema {
        name: table_name,
        primary_key: primary_key.to_vec(),
        fields,
    };
    Ok((table, layouts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::test_support::*;
    use crate::schema::Scalar;

    #[test]
    fn schema_json_round_trips_to_the_same_table() {
        let t = table();
        let encoder = Encoder::new(&t).unwrap();
        let json = encoder.schema_json();
        assert!(json.contains(r#""x-data-type":"json""#), "{json}");
        assert!(
            json.contains(r#""logicalType":"timestamp-micros""#),
            "{json}"
        );
        let parsed = Schema::parse_str(&json).unwrap();
        assert_eq!(table_schema(&parsed, &t.primary_key).unwrap(), t);
        assert_eq!(fingerprint(&parsed), encoder.fingerprint());
        // Also through apache-avro's own serialisation of the schema.
        let again = serde_json::to_string(encoder.schema()).unwrap();
        let parsed = Schema::parse_str(&again).unwrap();
        assert_eq!(table_schema(&parsed, &t.primary_key).unwrap(), t);

        let mut odd = t.clone();
        odd.name = "9 orders-v2".to_owned();
        let encoder = Encoder::new(&odd).unwrap();
        match encoder.schema() {
            Schema::Record(r) => assert_eq!(r.name.fullname(None), "rest_pipeline._9_orders_v2"),
            other => panic!("{other:?}"),
        }
        let parsed = Schema::parse_str(&encoder.schema_json()).unwrap();
        assert_eq!(table_schema(&parsed, &odd.primary_key).unwrap(), odd);
    }

    #[test]
    fn unsupported_schemas_are_refused() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"r","fields":[{"name":"n","type":"int"}]}"#,
        )
        .unwrap();
        let err = table_schema(&schema, &[]).unwrap_err();
        assert!(
            matches!(&err, AvroError::UnsupportedField { field, .. } if field == "n"),
            "{err}"
        );
        let err = table_schema(&Schema::Long, &[]).unwrap_err();
        assert!(matches!(err, AvroError::NotARecord { .. }));
        // `[T, "null"]` unions are read too.
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"r","fields":[{"name":"n","type":["long","null"]}]}"#,
        )
        .unwrap();
        let decoder = Decoder::new(schema, &[]).unwrap();
        assert_eq!(decoder.decode(&[0x02]).unwrap(), vec![None]);
        assert_eq!(
            decoder.decode(&[0x00, 0x54]).unwrap(),
            vec![Some(Scalar::Bigint(42))]
        );
    }

    #[test]
    fn invalid_field_names_are_refused() {
        let t = TableSchema {
            name: "t".to_owned(),
            primary_key: vec![],
            fields: vec![field("bad-name", DataType::Text, true)],
        };
        assert!(matches!(
            avro_schema(&t),
            Err(AvroError::InvalidFieldName { field, .. }) if field == "bad-name"
        ));
    }

    /// A `json` field kept whole (not a child table) says so in its schema, and reads back
    /// so; the fingerprint (canonical form) ignores the mark.
    #[test]
    fn a_json_field_kept_whole_is_marked_and_reads_back() {
        let mut t = table();
        let plain = Encoder::new(&t).unwrap();
        let js = t.field_index("js_opt").unwrap();
        t.fields[js].keep_whole = true;
        let encoder = Encoder::new(&t).unwrap();
        let json = encoder.schema_json();
        assert!(json.contains(r#""x-keep-whole":true"#), "{json}");
        assert!(!plain.schema_json().contains("x-keep-whole"));
        let parsed = Schema::parse_str(&json).unwrap();
        let back = table_schema(&parsed, &t.primary_key).unwrap();
        assert!(back.fields[js].keep_whole);
        assert_eq!(back, t);
        assert_eq!(encoder.fingerprint(), plain.fingerprint());
    }
}
