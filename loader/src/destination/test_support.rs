//! Test fixtures shared by the conformance suite and the destinations' own tests.

use std::sync::Arc;

use common::schema::{DataType, Field, Row, Scalar, TableSchema};

use super::{Batch, PartitionOffset, TableBatch};

/// A field with decimal precision 38 and scale 9 (used only by `decimal` fields).
pub(crate) fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field {
        name: name.to_owned(),
        data_type,
        nullable,
        precision: 38,
        scale: 9,
        keep_whole: false,
    }
}

pub(crate) fn schema(name: &str, primary_key: &[&str], fields: Vec<Field>) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        name: name.to_owned(),
        primary_key: primary_key.iter().map(|key| (*key).to_owned()).collect(),
        fields,
    })
}

/// `rows` for the table named like the schema.
pub(crate) fn table_batch(schema: &Arc<TableSchema>, rows: Vec<Row>) -> TableBatch {
    TableBatch {
        table: schema.name.clone(),
        schema: Arc::clone(schema),
        rows,
        merge_key: Vec::new(),
    }
}

/// A batch of `tables` for `group_id` with `(topic, partition, next_offset)` offsets.
pub(crate) fn batch_of(
    group_id: &str,
    tables: Vec<TableBatch>,
    offsets: &[(&str, i32, i64)],
) -> Batch {
    Batch {
        group_id: group_id.to_owned(),
        deletes: Vec::new(),
        nested_deletes: Vec::new(),
        tables,
        run_ends: Vec::new(),
        offsets: offsets
            .iter()
            .map(|(topic, partition, next_offset)| PartitionOffset {
                topic: (*topic).to_owned(),
                partition: *partition,
                next_offset: *next_offset,
            })
            .collect(),
    }
}

pub(crate) fn text(value: &str) -> Option<Scalar> {
    Some(Scalar::Text(value.to_owned()))
}

pub(crate) fn int(value: i64) -> Option<Scalar> {
    Some(Scalar::Bigint(value))
}
