//! Values in PostgreSQL's binary `COPY` format, and text as PostgreSQL's `text` can hold it.

use super::*;

/// Microseconds from 1970-01-01 (Unix) to 2000-01-01 (PostgreSQL's timestamp epoch).
pub(super) const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const POSTGRES_EPOCH_DAYS: i32 = 10_957;

/// One value of the binary `COPY`: the staging position or a field's value, encoded in
/// PostgreSQL's binary format for the column's type.
#[derive(Debug)]
pub(super) enum Cell<'a> {
    Position(i64),
    Value(Option<&'a Scalar>),
}

impl ToSql for Cell<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let value = match self {
            Cell::Position(position) => {
                out.put_i64(*position);
                return Ok(IsNull::No);
            }
            Cell::Value(None) => return Ok(IsNull::Yes),
            Cell::Value(Some(value)) => value,
        };
        match value {
            Scalar::Text(text) => {
                for part in text.split('\0') {
                    out.put_slice(part.as_bytes());
                }
            }
            Scalar::Bigint(number) => out.put_i64(*number),
            Scalar::Double(number) => out.put_f64(*number),
            Scalar::Bool(flag) => out.put_u8(u8::from(*flag)),
            Scalar::Timestamp(micros) => out.put_i64(
                micros
                    .checked_sub(POSTGRES_EPOCH_MICROS)
                    .ok_or("timestamp out of range")?,
            ),
            Scalar::Decimal(text) => encode_numeric(text, out)?,
            // Days and microseconds from 2000-01-01, PostgreSQL's epoch.
            Scalar::Date(days) => out.put_i32(
                days.checked_sub(POSTGRES_EPOCH_DAYS)
                    .ok_or("date out of range")?,
            ),
            Scalar::Time(micros) => out.put_i64(*micros),
            Scalar::Binary(bytes) => out.put_slice(bytes),
            Scalar::Json(text) => {
                out.put_u8(1); // jsonb format version
                out.put_slice(text.as_bytes());
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        // The staging table's types come from the same schema as the values, checked
        // by `check_rows`.
        true
    }

    to_sql_checked!();
}

/// Encodes decimal text (`-12.340`, `7`, `.5`) in `numeric`'s binary format: base-10000
/// digits with a weight, a sign and the display scale (the text's digits after the point).
pub(super) fn encode_numeric(
    text: &str,
    out: &mut BytesMut,
) -> Result<(), Box<dyn std::error::Error + Sync + Send>> {
    let invalid = || format!("invalid decimal text {text:?}");
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid().into());
    }
    let int_part = int_part.trim_start_matches('0');
    let dscale = u16::try_from(frac_part.len()).map_err(|_| invalid())?;
    // Pad the integer part on the left and the fraction on the right to groups of 4.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let digits: Vec<u8> = std::iter::repeat_n(b'0', int_pad)
        .chain(int_part.bytes())
        .chain(frac_part.bytes())
        .chain(std::iter::repeat_n(b'0', frac_pad))
        .map(|b| b - b'0')
        .collect();
    let mut groups: Vec<i16> = digits
        .chunks(4)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0_i16, |acc, &digit| acc * 10 + i16::from(digit))
        })
        .collect();
    let mut weight = i32::try_from((int_part.len() + int_pad) / 4).map_err(|_| invalid())? - 1;
    let leading = groups.iter().take_while(|&&g| g == 0).count();
    let _ = groups.drain(..leading);
    weight -= i32::try_from(leading).map_err(|_| invalid())?;
    while groups.last() == Some(&0) {
        let _ = groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let ndigits = i16::try_from(groups.len()).map_err(|_| invalid())?;
    let weight = i16::try_from(weight).map_err(|_| invalid())?;
    out.put_i16(ndigits);
    out.put_i16(weight);
    out.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0x0000
    });
    out.put_u16(dscale);
    for group in groups {
        out.put_i16(group);
    }
    Ok(())
}

/// PostgreSQL's `text` cannot hold NUL: it is removed, as dlt's PostgreSQL destination
/// does (`SQL_ESCAPE_DICT` in `dlt/common/data_writers/escape.py` maps `\x00` to nothing).
pub(super) fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}
