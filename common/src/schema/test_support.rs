//! What the schema tests share: a builder with hints, and lookups by field name.

use serde_json::Value;

use super::*;

pub(super) fn builder(pk: &[&str], hints: &[(&str, ColumnHint)]) -> SchemaBuilder {
    SchemaBuilder::new(
        "orders",
        pk.iter().map(|s| (*s).to_owned()).collect(),
        hints
            .iter()
            .map(|(k, h)| ((*k).to_owned(), h.clone()))
            .collect(),
    )
}

pub(super) fn hint(data_type: DataType) -> ColumnHint {
    ColumnHint {
        data_type: Some(data_type),
        ..ColumnHint::default()
    }
}

pub(super) fn field<'a>(b: &'a SchemaBuilder, name: &str) -> &'a Field {
    let schema = b.schema();
    match schema.field_index(name) {
        Some(i) => &schema.fields[i],
        None => panic!("no field {name} in {:?}", schema.fields),
    }
}

/// The value of field `name` in `row` (serde_json orders object keys alphabetically
/// unless its `preserve_order` feature is on, so tests look fields up by name).
pub(super) fn cell(b: &SchemaBuilder, row: &Row, name: &str) -> Option<Scalar> {
    match b.schema().field_index(name) {
        Some(i) => row[i].clone(),
        None => panic!("no field {name}"),
    }
}

pub(super) fn names(b: &SchemaBuilder) -> Vec<&str> {
    b.schema().fields.iter().map(|f| f.name.as_str()).collect()
}

/// Records parsed as the extractor parses a response (numbers keep their text).
pub(super) fn parse(text: &str) -> Vec<Value> {
    match crate::json::from_str(text).unwrap() {
        Value::Array(records) => records,
        other => vec![other],
    }
}
