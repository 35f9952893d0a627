//! Rows of one table written as Avro datums (the binary encoding, written directly), in
//! either framing: single-object (`C3 01` + fingerprint) or Confluent (`00` + schema id).

use std::str::FromStr;

use apache_avro::Schema;
use bigdecimal::{BigDecimal, Zero as _};

use super::fingerprint::rabin;
use super::*;
use crate::schema::{Row, Scalar};

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
        (DataType::Date, Scalar::Date(days)) => write_long(i64::from(*days), out),
        (DataType::Time, Scalar::Time(micros)) => write_long(*micros, out),
        (DataType::Binary, Scalar::Binary(bytes)) => write_bytes(bytes, out),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::test_support::*;
    use bigdecimal::num_bigint::BigInt;

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
}
