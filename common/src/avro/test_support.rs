//! What the Avro tests share: a table with every type, nullable and not, and rows of it.

use crate::schema::{DataType, Field, Row, Scalar, TableSchema};

pub(super) fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
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
        keep_whole: false,
    }
}

/// Every type, nullable and not.
pub(super) fn table() -> TableSchema {
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

pub(super) fn full_row(id: i64, text: &str, big: i64, dec: &str) -> Row {
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

pub(super) fn null_row(id: i64) -> Row {
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

pub(super) fn rows() -> Vec<Row> {
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
