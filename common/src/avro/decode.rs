//! Messages read back: the framing told by the leading bytes, then the datum read with the
//! writer's schema into a [`Row`], every error naming the field.

use apache_avro::Schema;
use bigdecimal::num_bigint::BigInt;

use super::*;
use crate::schema::{Row, Scalar, format_decimal};

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
        let mut row = Vec::with_capacity(self.table.fields.len());
        self.decode_into(datum, &mut row)?;
        Ok(row)
    }

    /// Decodes one bare datum into `row`, reusing its storage: a text or binary value goes
    /// into the allocation of the text or bytes `row` held at its position, so rows of a
    /// written batch decode the next records without allocating. On success `row` holds
    /// exactly the datum's values; after an error its content is unspecified.
    pub fn decode_into(&self, datum: &[u8], row: &mut Row) -> Result<(), AvroError> {
        let mut reader = Reader {
            bytes: datum,
            pos: 0,
        };
        row.resize_with(self.table.fields.len(), || None);
        for ((field, layout), slot) in self.table.fields.iter().zip(&self.layouts).zip(row) {
            let malformed = |offset: usize, reason: String| AvroError::Malformed {
                field: field.name.clone(),
                offset,
                reason,
            };
            if let Some(null_branch) = layout.null_branch {
                let at = reader.pos;
                let branch = reader.long().map_err(|r| malformed(at, r))?;
                if branch == i64::from(null_branch) {
                    *slot = None;
                    continue;
                }
                if branch != i64::from(1 - null_branch) {
                    return Err(malformed(at, format!("union branch {branch} out of range")));
                }
            }
            let at = reader.pos;
            read_value(field, &mut reader, slot).map_err(|r| malformed(at, r))?;
        }
        if reader.pos != datum.len() {
            return Err(AvroError::TrailingBytes {
                count: datum.len() - reader.pos,
            });
        }
        Ok(())
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

    fn string(&mut self) -> Result<&'a str, String> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|e| format!("string is not UTF-8: {e}"))
    }
}

/// `slot`'s text storage, emptied, to be written again (a new string if it holds none).
fn reused_text(slot: &mut Option<Scalar>) -> String {
    match slot.take() {
        Some(Scalar::Text(mut text) | Scalar::Json(mut text) | Scalar::Decimal(mut text)) => {
            text.clear();
            text
        }
        _ => String::new(),
    }
}

/// `slot`'s byte storage, emptied, to be written again (a new vector if it holds none).
fn reused_bytes(slot: &mut Option<Scalar>) -> Vec<u8> {
    match slot.take() {
        Some(Scalar::Binary(mut bytes)) => {
            bytes.clear();
            bytes
        }
        _ => Vec::new(),
    }
}

/// Reads one (non-null) value into `slot`, reusing the text or bytes it held.
fn read_value(
    field: &Field,
    reader: &mut Reader<'_>,
    slot: &mut Option<Scalar>,
) -> Result<(), String> {
    let value = match field.data_type {
        DataType::Text | DataType::Json => {
            let read = reader.string()?;
            let mut text = reused_text(slot);
            text.push_str(read);
            if field.data_type == DataType::Text {
                Scalar::Text(text)
            } else {
                Scalar::Json(text)
            }
        }
        DataType::Bigint => Scalar::Bigint(reader.long()?),
        DataType::Timestamp => Scalar::Timestamp(reader.long()?),
        DataType::Date => {
            let days = reader.long()?;
            Scalar::Date(i32::try_from(days).map_err(|_| format!("date {days} beyond an int"))?)
        }
        DataType::Time => Scalar::Time(reader.long()?),
        DataType::Binary => {
            let read = reader.bytes()?;
            let mut bytes = reused_bytes(slot);
            bytes.extend_from_slice(read);
            Scalar::Binary(bytes)
        }
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
    };
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::test_support::*;
    use apache_avro::Decimal;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;

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
    fn decoding_into_a_used_row_gives_what_decoding_gives() {
        let t = table();
        let encoder = Encoder::new(&t).unwrap();
        let decoder = Decoder::new(encoder.schema().clone(), &t.primary_key).unwrap();
        let rows = rows();
        // Every row decoded into the storage of every other one (texts where numbers go,
        // nulls where texts go, longer and shorter rows).
        let mut previous: Vec<Row> = rows.clone();
        previous.push(Vec::new());
        previous.push(vec![
            Some(Scalar::Text("left over".into()));
            t.fields.len() + 3
        ]);
        for row in &rows {
            let mut datum = Vec::new();
            encoder.encode_datum(row, &mut datum).unwrap();
            for used in &previous {
                let mut into = used.clone();
                decoder.decode_into(&datum, &mut into).unwrap();
                assert_eq!(&into, row);
            }
        }
        // Errors are those of `decode`.
        let mut datum = Vec::new();
        encoder.encode_datum(&rows[1], &mut datum).unwrap();
        for cut in [0, 1, 12, datum.len() - 1] {
            let mut into = rows[0].clone();
            let err = decoder.decode_into(&datum[..cut], &mut into).unwrap_err();
            assert_eq!(
                err.to_string(),
                decoder.decode(&datum[..cut]).unwrap_err().to_string()
            );
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
                    Some(Scalar::Date(v)) => Value::Date(*v),
                    Some(Scalar::Time(v)) => Value::TimeMicros(*v),
                    Some(Scalar::Binary(v)) => Value::Bytes(v.clone()),
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
}
