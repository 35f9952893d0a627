//! The Avro form of a [`TableSchema`] and the two wire formats the pipeline reads and writes.
//!
//! Mapping (field types):
//! - `text` → `string`; `json` → `string` with the field attribute `"x-data-type": "json"`;
//! - `bigint` → `long`; `double` → `double`; `bool` → `boolean`;
//! - `timestamp` → `{"type": "long", "logicalType": "timestamp-micros"}`;
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

use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, RecordSchema};
use bigdecimal::num_bigint::BigInt;
use bigdecimal::{BigDecimal, Zero as _};
use serde_json::{Value as Json, json};

use crate::schema::{DataType, Field, Row, Scalar, TableSchema, format_decimal};

mod canonical;

/// The namespace of every record schema the pipeline writes.
pub const NAMESPACE: &str = "rest_pipeline";
/// Field attribute telling `json` fields from `text` fields.
pub const DATA_TYPE_ATTRIBUTE: &str = "x-data-type";
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
            Schema::Decimal(d) if matches!(d.inner, InnerDecimalSchema::Bytes) => {
                let precision = u32::try_from(d.precision).map_err(|_| unsupported(inner))?;
                let scale = u32::try_from(d.scale).map_err(|_| unsupported(inner))?;
                (DataType::Decimal, precision, scale)
            }
            _ => return Err(unsupported(inner)),
        };
        fields.push(Field {
            name: rf.name.clone(),
            data_type,
            nullable: null_branch.is_some(),
            precision,
            scale,
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

const RABIN_EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const fn rabin_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (RABIN_EMPTY & 0u64.wrapping_sub(fp & 1));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

static RABIN_TABLE: [u64; 256] = rabin_table();

/// CRC-64-AVRO (Rabin) of `bytes`, as the Avro spec defines it.
fn rabin(bytes: &[u8]) -> u64 {
    bytes.iter().fold(RABIN_EMPTY, |fp, &b| {
        (fp >> 8) ^ RABIN_TABLE[((fp ^ u64::from(b)) & 0xff) as usize]
    })
}

/// The CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, as used by
/// single-object encoding (written little-endian) and computed by other Avro libraries.
pub fn fingerprint(avro: &Schema) -> u64 {
    let json = serde_json::to_value(avro)
        .expect("an apache-avro Schema serialises to JSON (its own canonical_form relies on it)");
    rabin(canonical::canonical_form(&json).as_bytes())
}

/// The fingerprint the extractor wrote before it computed the canonical form itself:
/// apache-avro's `canonical_form`, which differs from the specification for schemas with
/// logical types (see [`canonical`]). The loader looks schemas up by both, so topics written
/// then still decode.
pub fn legacy_fingerprint(avro: &Schema) -> u64 {
    rabin(avro.canonical_form().as_bytes())
}

/// Writes rows of one [`TableSchema`] as Avro datums, framed either way.
#[derive(Debug, Clone)]
pub struct Encoder {
    table: TableSchema,
    schema: Schema,
    json: String,
    fingerprint: u64,
}

impl Encoder {
    pub fn new(table: &TableSchema) -> Result<Self, AvroError> {
        let value = schema_json_value(table)?;
        let schema = parse_schema(table, &value)?;
        let fingerprint = rabin(canonical::canonical_form(&value).as_bytes());
        Ok(Encoder {
            table: table.clone(),
            schema,
            json: value.to_string(),
            fingerprint,
        })
    }

    pub fn table(&self) -> &TableSchema {
        &self.table
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The full schema JSON, custom attributes included (what goes to a schema registry).
    pub fn schema_json(&self) -> String {
        self.json.clone()
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Avro single-object encoding: `C3 01`, the 8-byte little-endian fingerprint, then
    /// the datum. Appends to `out`; on error `out` is left as it was.
    pub fn encode_single_object(&self, row: &Row, out: &mut Vec<u8>) -> Result<(), AvroError> {
        let start = out.len();
        out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        self.encode_datum(row, out)
            .inspect_err(|_| out.truncate(start))
    }

    /// Confluent wire format: `00`, the 4-byte big-endian schema id, then the datum.
    /// Appends to `out`; on error `out` is left as it was.
    pub fn encode_confluent(
        &self,
        schema_id: u32,
        row: &Row,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        let start = out.len();
        out.push(CONFLUENT_MAGIC);
        out.extend_from_slice(&schema_id.to_be_bytes());
        self.encode_datum(row, out)
            .inspect_err(|_| out.truncate(start))
    }

    /// The bare Avro binary datum of `row`, appended to `out` (partially written on error).
    pub fn encode_datum(&self, row: &Row, out: &mut Vec<u8>) -> Result<(), AvroError> {
        if row.len() != self.table.fields.len() {
            return Err(AvroError::RowLength {
                table: self.table.name.clone(),
                expected: self.table.fields.len(),
                found: row.len(),
            });
        }
        for (field, value) in self.table.fields.iter().zip(row) {
            match value {
                None if field.nullable => out.push(0x00),
                None => {
                    return Err(AvroError::NullNotAllowed {
                        field: field.name.clone(),
                    });
                }
                Some(v) => {
                    if field.nullable {
                        out.push(0x02); // union branch 1, zig-zag encoded
                    }
                    write_value(field, v, out)?;
                }
            }
        }
        Ok(())
    }
}

fn write_long(v: i64, out: &mut Vec<u8>) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    // A Vec never holds more than isize::MAX bytes.
    write_long(bytes.len() as i64, out);
    out.extend_from_slice(bytes);
}

fn write_value(field: &Field, value: &Scalar, out: &mut Vec<u8>) -> Result<(), AvroError> {
    match (field.data_type, value) {
        (DataType::Text, Scalar::Text(s)) | (DataType::Json, Scalar::Json(s)) => {
            write_bytes(s.as_bytes(), out)
        }
        (DataType::Bigint, Scalar::Bigint(v)) | (DataType::Timestamp, Scalar::Timestamp(v)) => {
            write_long(*v, out)
        }
        (DataType::Double, Scalar::Double(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (DataType::Bool, Scalar::Bool(v)) => out.push(u8::from(*v)),
        (DataType::Decimal, Scalar::Decimal(text)) => {
            let bytes = decimal_bytes(text, field.precision, field.scale).ok_or_else(|| {
                AvroError::DecimalValue {
                    field: field.name.clone(),
                    value: text.clone(),
                    precision: field.precision,
                    scale: field.scale,
                }
            })?;
            write_bytes(&bytes, out);
        }
        _ => {
            return Err(AvroError::TypeMismatch {
                field: field.name.clone(),
                expected: field.data_type,
                found: value.data_type().as_str(),
            });
        }
    }
    Ok(())
}

/// The unscaled two's-complement big-endian bytes of decimal `text` at `scale`; `None`
/// when it is not a number, has more fractional digits than `scale`, or more than
/// `precision` digits.
fn decimal_bytes(text: &str, precision: u32, scale: u32) -> Option<Vec<u8>> {
    // Fast path: `-?digits.digits` with exactly `scale` fractional digits, fitting an i128.
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if !int.is_empty() && frac.len() == scale as usize {
        let mut v: i128 = 0;
        let mut ok = true;
        for b in int.bytes().chain(frac.bytes()) {
            if !b.is_ascii_digit() {
                ok = false;
                break;
            }
            match v
                .checked_mul(10)
                .and_then(|v| v.checked_add(i128::from(b - b'0')))
            {
                Some(next) => v = next,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            let digits = v.checked_ilog10().map_or(1, |l| l + 1);
            if digits > precision {
                return None;
            }
            return Some(minimal_twos_complement(if negative { -v } else { v }));
        }
    }
    // Anything else: exact arithmetic; rounding would lose data, so it is refused. The
    // checks come before any rescaling so that `1e-999999999` cannot make a huge integer.
    let value = BigDecimal::from_str(text).ok()?.normalized();
    if value.is_zero() {
        return Some(vec![0]);
    }
    if value.fractional_digit_count() > i64::from(scale) {
        return None;
    }
    let int_digits = i64::try_from(value.digits()).ok()? - value.fractional_digit_count();
    if int_digits > i64::from(precision) - i64::from(scale) {
        return None;
    }
    let (unscaled, _) = value
        .with_scale(i64::from(scale))
        .into_bigint_and_exponent();
    Some(unscaled.to_signed_bytes_be())
}

fn minimal_twos_complement(v: i128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < bytes.len() - 1 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

/// How a message is framed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    SingleObject { fingerprint: u64 },
    Confluent { schema_id: u32 },
}

fn hex_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(none)".to_owned();
    }
    let mut s: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02X}")).collect();
    if bytes.len() > 8 {
        s.push("…".to_owned());
    }
    s.join(" ")
}

/// Splits a message into its framing and the datum, chosen by the leading bytes.
pub fn parse_framing(bytes: &[u8]) -> Result<(Framing, &[u8]), AvroError> {
    if bytes.starts_with(&SINGLE_OBJECT_MAGIC) {
        let Some((fp, datum)) = bytes[2..].split_first_chunk::<8>() else {
            return Err(AvroError::ShortMessage {
                framing: "Avro single-object",
                len: bytes.len(),
                need: 10,
                first: hex_prefix(bytes),
            });
        };
        return Ok((
            Framing::SingleObject {
                fingerprint: u64::from_le_bytes(*fp),
            },
            datum,
        ));
    }
    if bytes.first() == Some(&CONFLUENT_MAGIC) {
        let Some((id, datum)) = bytes[1..].split_first_chunk::<4>() else {
            return Err(AvroError::ShortMessage {
                framing: "Confluent",
                len: bytes.len(),
                need: 5,
                first: hex_prefix(bytes),
            });
        };
        return Ok((
            Framing::Confluent {
                schema_id: u32::from_be_bytes(*id),
            },
            datum,
        ));
    }
    Err(AvroError::UnknownFraming {
        first: hex_prefix(bytes),
    })
}

/// Reads datums written with one (writer) schema back into [`Row`]s.
#[derive(Debug, Clone)]
pub struct Decoder {
    schema: Schema,
    table: TableSchema,
    layouts: Vec<Layout>,
}

impl Decoder {
    pub fn new(avro: Schema, primary_key: &[String]) -> Result<Self, AvroError> {
        let (table, layouts) = read_record(&avro, primary_key)?;
        Ok(Decoder {
            schema: avro,
            table,
            layouts,
        })
    }

    pub fn table(&self) -> &TableSchema {
        &self.table
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Decodes one bare datum (framing already removed, see [`parse_framing`]).
    pub fn decode(&self, datum: &[u8]) -> Result<Row, AvroError> {
        let mut reader = Reader {
            bytes: datum,
            pos: 0,
        };
        let mut row = Vec::with_capacity(self.table.fields.len());
        for (field, layout) in self.table.fields.iter().zip(&self.layouts) {
            let malformed = |offset: usize, reason: String| AvroError::Malformed {
                field: field.name.clone(),
                offset,
                reason,
            };
            if let Some(null_branch) = layout.null_branch {
                let at = reader.pos;
                let branch = reader.long().map_err(|r| malformed(at, r))?;
                if branch == i64::from(null_branch) {
                    row.push(None);
                    continue;
                }
                if branch != i64::from(1 - null_branch) {
                    return Err(malformed(at, format!("union branch {branch} out of range")));
                }
            }
            let at = reader.pos;
            let value = read_value(field, &mut reader).map_err(|r| malformed(at, r))?;
            row.push(Some(value));
        }
        if reader.pos != datum.len() {
            return Err(AvroError::TrailingBytes {
                count: datum.len() - reader.pos,
            });
        }
        Ok(row)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("needs {n} bytes, {} left", self.bytes.len() - self.pos))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut n: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.take(1)?[0];
            if shift == 63 && b > 1 {
                return Err("varint longer than 64 bits".to_owned());
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".to_owned())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| format!("negative length {len}"))?;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, String> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| format!("string is not UTF-8: {e}"))
    }
}

fn read_value(field: &Field, reader: &mut Reader<'_>) -> Result<Scalar, String> {
    Ok(match field.data_type {
        DataType::Text => Scalar::Text(reader.string()?),
        DataType::Json => Scalar::Json(reader.string()?),
        DataType::Bigint => Scalar::Bigint(reader.long()?),
        DataType::Timestamp => Scalar::Timestamp(reader.long()?),
        DataType::Double => {
            let b = reader.take(8)?.first_chunk::<8>().ok_or("end of data")?;
            Scalar::Double(f64::from_le_bytes(*b))
        }
        DataType::Bool => match reader.take(1)? {
            [0] => Scalar::Bool(false),
            [1] => Scalar::Bool(true),
            other => return Err(format!("boolean byte {other:02X?}")),
        },
        DataType::Decimal => {
            let bytes = reader.bytes()?;
            let unscaled = if bytes.is_empty() {
                "0".to_owned()
            } else if bytes.len() <= 16 {
                let mut buf = if bytes[0] & 0x80 != 0 {
                    [0xFF; 16]
                } else {
                    [0; 16]
                };
                buf[16 - bytes.len()..].copy_from_slice(bytes);
                i128::from_be_bytes(buf).to_string()
            } else {
                BigInt::from_signed_bytes_be(bytes).to_string()
            };
            Scalar::Decimal(format_decimal(&unscaled, field.scale))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Decimal;
    use apache_avro::rabin::Rabin;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;

    fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
        let (precision, scale) = if data_type == DataType::Decimal {
            (38, 9)
        } else {
            (0, 0)
        };
        Field {
            name: name.to_owned(),
            data_type,
            nullable,
            precision,
            scale,
        }
    }

    /// Every type, nullable and not.
    fn table() -> TableSchema {
        let types = [
            ("text", DataType::Text),
            ("bigint", DataType::Bigint),
            ("double", DataType::Double),
            ("bool", DataType::Bool),
            ("ts", DataType::Timestamp),
            ("dec", DataType::Decimal),
            ("js", DataType::Json),
        ];
        let mut fields = vec![field("id", DataType::Bigint, false)];
        for (name, t) in types {
            fields.push(field(&format!("{name}_req"), t, false));
            fields.push(field(&format!("{name}_opt"), t, true));
        }
        fields.push(Field {
            precision: 6,
            scale: 2,
            ..field("small_dec", DataType::Decimal, true)
        });
        TableSchema {
            name: "orders".to_owned(),
            primary_key: vec!["id".to_owned()],
            fields,
        }
    }

    fn full_row(id: i64, text: &str, big: i64, dec: &str) -> Row {
        vec![
            Some(Scalar::Bigint(id)),
            Some(Scalar::Text(text.to_owned())),
            Some(Scalar::Text(String::new())),
            Some(Scalar::Bigint(big)),
            Some(Scalar::Bigint(-big)),
            Some(Scalar::Double(-0.5)),
            Some(Scalar::Double(f64::MAX)),
            Some(Scalar::Bool(true)),
            Some(Scalar::Bool(false)),
            Some(Scalar::Timestamp(1_704_067_200_123_456)),
            Some(Scalar::Timestamp(-1)),
            Some(Scalar::Decimal(dec.to_owned())),
            Some(Scalar::Decimal("0.000000000".to_owned())),
            Some(Scalar::Json(r#"{"a":[1,2]}"#.to_owned())),
            Some(Scalar::Json("[]".to_owned())),
            Some(Scalar::Decimal("-1234.56".to_owned())),
        ]
    }

    fn null_row(id: i64) -> Row {
        let t = table();
        t.fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if f.nullable {
                    None
                } else if i == 0 {
                    Some(Scalar::Bigint(id))
                } else {
                    full_row(id, "x", 1, "1.000000000")[i].clone()
                }
            })
            .collect()
    }

    fn rows() -> Vec<Row> {
        vec![
            full_row(1, "plain", 42, "0.012500000"),
            full_row(
                i64::MAX,
                "Zoë 😀 日本語 \u{0}",
                i64::MIN + 1,
                "-12345678901234567890.123456789",
            ),
            full_row(
                i64::MIN,
                "",
                i64::MAX,
                "99999999999999999999999999999.999999999",
            ),
            full_row(0, "neg", 0, "-99999999999999999999999999999.999999999"),
            null_row(5),
        ]
    }

    #[test]
    fn rows_round_trip_through_both_framings() {
        let t = table();
        let encoder = Encoder::new(&t).unwrap();
        let decoder = Decoder::new(encoder.schema().clone(), &t.primary_key).unwrap();
        assert_eq!(decoder.table(), &t);
        for row in rows() {
            let mut buf = Vec::new();
            encoder.encode_single_object(&row, &mut buf).unwrap();
            let (framing, datum) = parse_framing(&buf).unwrap();
            assert_eq!(
                framing,
                Framing::SingleObject {
                    fingerprint: encoder.fingerprint()
                }
            );
            assert_eq!(decoder.decode(datum).unwrap(), row);

            buf.clear();
            encoder.encode_confluent(7, &row, &mut buf).unwrap();
            let (framing, datum) = parse_framing(&buf).unwrap();
            assert_eq!(framing, Framing::Confluent { schema_id: 7 });
            assert_eq!(decoder.decode(datum).unwrap(), row);
        }
    }

    #[test]
    fn header_bytes_are_exact() {
        let t = table();
        let encoder = Encoder::new(&t).unwrap();
        let row = null_row(1);
        let mut datum = Vec::new();
        encoder.encode_datum(&row, &mut datum).unwrap();

        let mut buf = vec![0xAA]; // appends, keeping what was there
        encoder.encode_single_object(&row, &mut buf).unwrap();
        let fp = encoder.fingerprint().to_le_bytes();
        assert_eq!(&buf[..3], &[0xAA, 0xC3, 0x01]);
        assert_eq!(&buf[3..11], &fp);
        assert_eq!(&buf[11..], &datum[..]);

        let mut buf = Vec::new();
        encoder
            .encode_confluent(0x0102_0304, &row, &mut buf)
            .unwrap();
        assert_eq!(&buf[..5], &[0x00, 0x01, 0x02, 0x03, 0x04]);
        assert_eq!(&buf[5..], &datum[..]);
    }

    #[test]
    fn parse_framing_rejects_garbage_and_short_input() {
        for bad in [&[][..], &[0xC3], &[0xC3, 0x01, 1, 2, 3], &[0x00, 0, 0, 1]] {
            let err = parse_framing(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    AvroError::ShortMessage { .. } | AvroError::UnknownFraming { .. }
                ),
                "{bad:?}: {err}"
            );
        }
        let err = parse_framing(b"{\"json\": true}").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("7B 22 6A 73 6F 6E 22 3A"), "{message}");
        assert!(matches!(
            parse_framing(&[0xC3, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(AvroError::UnknownFraming { .. })
        ));
        // Just the header: an empty datum.
        let (framing, datum) = parse_framing(&[0x00, 0, 0, 0, 9]).unwrap();
        assert_eq!(framing, Framing::Confluent { schema_id: 9 });
        assert!(datum.is_empty());
    }

    #[test]
    fn fingerprint_matches_apache_avro_and_spec_vectors() {
        let encoder = Encoder::new(&table()).unwrap();
        assert_eq!(fingerprint(encoder.schema()), encoder.fingerprint());
        // apache-avro keeps `{"type":"long"}` for the timestamp field's logical type where
        // the specification (and Java's Avro) has `"long"`: its fingerprint is the legacy one.
        let apache = encoder.schema().fingerprint::<Rabin>().bytes;
        assert_eq!(apache, legacy_fingerprint(encoder.schema()).to_le_bytes());
        assert_ne!(legacy_fingerprint(encoder.schema()), encoder.fingerprint());
        // Logical types are not part of the canonical form: a timestamp fingerprints as a long.
        let plain = encoder.schema_json().replace(
            r#"{"type":"long","logicalType":"timestamp-micros"}"#,
            r#""long""#,
        );
        assert_ne!(plain, encoder.schema_json());
        assert_eq!(
            fingerprint(&Schema::parse_str(&plain).unwrap()),
            encoder.fingerprint()
        );

        // From the Avro repository's share/test/data/schema-tests.txt.
        let vectors: [(&str, i64); 4] = [
            (r#""null""#, 7_195_948_357_588_979_594),
            (r#""boolean""#, -6_970_731_678_124_411_036),
            (
                r#"{"name":"foo","type":"fixed","size":15}"#,
                1_756_455_273_707_447_556,
            ),
            (
                r#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
                -1_759_257_747_318_642_341,
            ),
        ];
        for (canonical, expected) in vectors {
            let schema = Schema::parse_str(canonical).unwrap();
            assert_eq!(schema.canonical_form(), canonical);
            assert_eq!(fingerprint(&schema), expected as u64, "{canonical}");
            assert_eq!(legacy_fingerprint(&schema), expected as u64, "{canonical}");
            assert_eq!(schema.fingerprint::<Rabin>().bytes, expected.to_le_bytes());
        }
        let int = Schema::parse_str(r#""int""#).unwrap();
        assert_eq!(
            int.fingerprint::<Rabin>().bytes,
            fingerprint(&int).to_le_bytes()
        );
        assert_eq!(fingerprint(&int), 0x7275_d51a_3f39_5c8f);
    }

    fn expected_value(t: &TableSchema, row: &Row) -> Value {
        let fields = t
            .fields
            .iter()
            .zip(row)
            .map(|(f, v)| {
                let value = match v {
                    None => Value::Null,
                    Some(Scalar::Text(s) | Scalar::Json(s)) => Value::String(s.clone()),
                    Some(Scalar::Bigint(v)) => Value::Long(*v),
                    Some(Scalar::Double(v)) => Value::Double(*v),
                    Some(Scalar::Bool(v)) => Value::Boolean(*v),
                    Some(Scalar::Timestamp(v)) => Value::TimestampMicros(*v),
                    Some(Scalar::Decimal(s)) => {
                        let unscaled: BigInt = s.replace('.', "").parse().unwrap();
                        Value::Decimal(Decimal::from(unscaled.to_signed_bytes_be()))
                    }
                };
                let value = match (f.nullable, v) {
                    (false, _) => value,
                    (true, None) => Value::Union(0, Box::new(value)),
                    (true, Some(_)) => Value::Union(1, Box::new(value)),
                };
                (f.name.clone(), value)
            })
            .collect();
        Value::Record(fields)
    }

    #[test]
    fn datum_agrees_with_apache_avro_both_ways() {
        let t = table();
        let encoder = Encoder::new(&t).unwrap();
        let decoder = Decoder::new(encoder.schema().clone(), &t.primary_key).unwrap();
        for row in rows() {
            let expected = expected_value(&t, &row);
            let mut datum = Vec::new();
            encoder.encode_datum(&row, &mut datum).unwrap();
            let read = GenericDatumReader::builder(encoder.schema())
                .build()
                .unwrap()
                .read_value(&mut datum.as_slice())
                .unwrap();
            assert_eq!(read, expected);

            let written = GenericDatumWriter::builder(encoder.schema())
                .build()
                .unwrap()
                .write_value_to_vec(expected)
                .unwrap();
            assert_eq!(decoder.decode(&written).unwrap(), row);
        }
    }

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
    fn decimal_bytes_are_minimal_twos_complement() {
        let cases: [(&str, &[u8]); 7] = [
            ("0", &[0x00]),
            ("-1", &[0xFF]),
            ("127", &[0x7F]),
            ("128", &[0x00, 0x80]),
            ("-128", &[0x80]),
            ("-129", &[0xFF, 0x7F]),
            ("65535", &[0x00, 0xFF, 0xFF]),
        ];
        for (text, bytes) in cases {
            assert_eq!(decimal_bytes(text, 38, 0).as_deref(), Some(bytes), "{text}");
        }
        // Slow path: other scales, exponents, more than 38 digits.
        assert_eq!(decimal_bytes("1.5", 5, 2), decimal_bytes("1.50", 5, 2));
        assert_eq!(decimal_bytes("1e2", 5, 0), decimal_bytes("100", 5, 0));
        assert_eq!(decimal_bytes("1.234", 5, 2), None, "would round");
        assert_eq!(decimal_bytes("1000.00", 5, 2), None, "too many digits");
        assert_eq!(decimal_bytes("abc", 5, 2), None);
        assert_eq!(decimal_bytes("1e-999999999", 5, 2), None);
        assert_eq!(decimal_bytes("1e999999999", 5, 2), None);
        assert_eq!(
            decimal_bytes("0e999999999", 5, 2).as_deref(),
            Some(&[0u8][..])
        );
        let forty = "1234567890123456789012345678901234567890";
        let bytes = decimal_bytes(forty, 40, 0).unwrap();
        assert_eq!(BigInt::from_signed_bytes_be(&bytes).to_string(), forty);
    }

    #[test]
    fn encoding_errors_name_the_field() {
        let t = table();
        let encoder = Encoder::new(&t).unwrap();
        let mut buf = vec![1, 2, 3];

        let err = encoder
            .encode_single_object(&vec![None], &mut buf)
            .unwrap_err();
        assert!(matches!(
            err,
            AvroError::RowLength {
                expected: 16,
                found: 1,
                ..
            }
        ));
        assert_eq!(buf, [1, 2, 3], "nothing appended on error");

        let mut row = null_row(1);
        row[1] = None;
        let err = encoder.encode_confluent(1, &row, &mut buf).unwrap_err();
        assert!(matches!(&err, AvroError::NullNotAllowed { field } if field == "text_req"));
        assert_eq!(buf, [1, 2, 3]);

        let mut row = null_row(1);
        row[3] = Some(Scalar::Text("1".to_owned()));
        let err = encoder.encode_confluent(1, &row, &mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `bigint_req`: expected a bigint value, found text"
        );

        let mut row = null_row(1);
        row[15] = Some(Scalar::Decimal("12345.67".to_owned()));
        let err = encoder.encode_confluent(1, &row, &mut buf).unwrap_err();
        assert!(
            matches!(&err, AvroError::DecimalValue { field, precision: 6, scale: 2, .. } if field == "small_dec")
        );
    }

    #[test]
    fn decoding_errors_name_the_field() {
        let t = table();
        let encoder = Encoder::new(&t).unwrap();
        let decoder = Decoder::new(encoder.schema().clone(), &t.primary_key).unwrap();
        let mut datum = Vec::new();
        encoder.encode_datum(&rows()[1], &mut datum).unwrap();
        for cut in [0, 1, 12, datum.len() - 1] {
            let err = decoder.decode(&datum[..cut]).unwrap_err();
            assert!(matches!(err, AvroError::Malformed { .. }), "{cut}: {err}");
        }
        let err = decoder.decode(&datum[..0]).unwrap_err();
        assert!(
            matches!(&err, AvroError::Malformed { field, offset: 0, .. } if field == "id"),
            "{err}"
        );
        datum.push(0);
        assert!(matches!(
            decoder.decode(&datum),
            Err(AvroError::TrailingBytes { count: 1 })
        ));

        // A bad union branch and invalid UTF-8.
        let small = TableSchema {
            name: "t".to_owned(),
            primary_key: vec![],
            fields: vec![field("s", DataType::Text, true)],
        };
        let decoder = Decoder::new(avro_schema(&small).unwrap(), &[]).unwrap();
        let err = decoder.decode(&[0x04]).unwrap_err();
        assert!(err.to_string().contains("union branch 2"), "{err}");
        let err = decoder.decode(&[0x02, 0x02, 0xFF]).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
        // Overlong varint.
        let err = decoder.decode(&[0xFF; 11]).unwrap_err();
        assert!(matches!(err, AvroError::Malformed { .. }), "{err}");
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
}
