//! The batch builder: decoded rows, deletes and run ends waiting for the next destination
//! transaction, the next offset of every partition they cover, and when the batch is due.
//!
//! Pure: no broker, no destination. The loader's intake ([`crate::intake`]) fills it, the
//! writer ([`crate::writer`]) takes it whole into one [`Batch`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::schema::{Row, TableSchema};

use crate::destination::{Batch, Delete, PartitionOffset, RunEnd, TableBatch};

/// A (topic, partition) pair.
pub(crate) type TopicPartition = (String, i32);

/// Decoded records waiting for the next destination transaction.
#[derive(Debug, Default)]
pub(crate) struct BatchBuilder {
    deletes: Vec<Delete>,
    tables: Vec<TableBatch>,
    /// Aligned with `tables`: the topic of each table batch and the (partition, offset)
    /// of each of its rows, to dead-letter a row the destination refuses.
    origins: Vec<Origins>,
    run_ends: Vec<RunEnd>,
    rows: usize,
    /// Next offset per topic and partition once this batch is written (by topic first, so
    /// a record's partition is found without allocating its topic's name).
    offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    since: Option<Instant>,
}

/// The topic of a table batch and the (partition, offset) of each of its rows.
pub(crate) type Origins = (String, Vec<(i32, i64)>);

/// A batch taken from the builder, ready for the destination.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) batch: Batch,
    /// Aligned with the batch's tables as taken (before nesting adds child tables).
    pub(crate) origins: Vec<Origins>,
    /// Next offset per (topic, partition), as in `batch.offsets`.
    pub(crate) offsets: BTreeMap<TopicPartition, i64>,
    /// Records the batch covers (rows, deletes, run ends).
    pub(crate) rows: usize,
}

impl BatchBuilder {
    /// Adds a row of `table` consumed at `(topic, partition, offset)`. Consecutive rows of
    /// one table and one writer schema share a [`TableBatch`]. `merge_key`: the table's
    /// merge key columns (see [`TableBatch::merge_key`]), empty without one.
    pub(crate) fn push_row(
        &mut self,
        (topic, partition, offset): (&str, i32, i64),
        table: &str,
        schema: Arc<TableSchema>,
        row: Row,
        merge_key: &[String],
    ) {
        let origin = (partition, offset);
        match (self.tables.last_mut(), self.origins.last_mut()) {
            (Some(last), Some((_, origins)))
                if last.table == table && Arc::ptr_eq(&last.schema, &schema) =>
            {
                last.rows.push(row);
                origins.push(origin);
            }
            _ => {
                self.tables.push(TableBatch {
                    table: table.to_owned(),
                    schema,
                    rows: vec![row],
                    merge_key: merge_key.to_vec(),
                });
                self.origins.push((topic.to_owned(), vec![origin]));
            }
        }
        self.rows += 1;
        self.note_offset(topic, partition, offset);
    }

    /// Adds a delete. The caller writes the pending rows first (see
    /// [`BatchBuilder::has_rows`]): a batch applies its deletes before its rows.
    pub(crate) fn push_delete(&mut self, delete: Delete) {
        self.deletes.push(delete);
        self.rows += 1;
    }

    /// Adds a run end (applied after the batch's rows).
    pub(crate) fn push_run_end(&mut self, end: RunEnd) {
        self.run_ends.push(end);
        self.rows += 1;
    }

    /// Marks the record at `offset` consumed with this batch (a delete, a run end, a
    /// dead-lettered or discarded record).
    pub(crate) fn note_offset(&mut self, topic: &str, partition: i32, offset: i64) {
        let partitions = match self.offsets.get_mut(topic) {
            Some(partitions) => partitions,
            None => self.offsets.entry(topic.to_owned()).or_default(),
        };
        let _ = partitions.insert(partition, offset + 1);
        let _ = self.since.get_or_insert_with(Instant::now);
    }

    /// Whether rows or run ends are pending (a delete must then wait for the next batch).
    pub(crate) fn has_rows(&self) -> bool {
        !self.tables.is_empty() || !self.run_ends.is_empty()
    }

    /// The next offset of `topic`/`partition` once this batch is written, if it covers it.
    pub(crate) fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(topic)?.get(&partition).copied()
    }

    /// Whether the batch covers nothing (no record, not even a skipped one).
    pub(crate) fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Whether the batch must be written now: `size` records or more, or its first record
    /// waited `wait` or longer by `now`.
    pub(crate) fn is_due(&self, now: Instant, size: usize, wait: Duration) -> bool {
        self.rows >= size
            || self
                .since
                .is_some_and(|t| now.saturating_duration_since(t) >= wait)
    }

    /// Empties the builder into one destination batch for `group_id`; `None` when it
    /// covers no record.
    pub(crate) fn take(&mut self, group_id: &str) -> Option<Taken> {
        if self.is_empty() {
            return None;
        }
        let taken = std::mem::take(self);
        let offsets: BTreeMap<TopicPartition, i64> = taken
            .offsets
            .into_iter()
            .flat_map(|(topic, partitions)| {
                partitions
                    .into_iter()
                    .map(move |(partition, next)| ((topic.clone(), partition), next))
            })
            .collect();
        let batch = Batch {
            group_id: group_id.to_owned(),
            deletes: taken.deletes,
            nested_deletes: Vec::new(),
            tables: taken.tables,
            run_ends: taken.run_ends,
            offsets: offsets
                .iter()
                .map(|((topic, partition), next)| PartitionOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    next_offset: *next,
                })
                .collect(),
        };
        Some(Taken {
            batch,
            origins: taken.origins,
            offsets,
            rows: taken.rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::schema::{DataType, Field, Scalar};

    fn schema() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            name: "t".into(),
            fields: vec![Field {
                name: "id".into(),
                data_type: DataType::Bigint,
                nullable: false,
                precision: 0,
                scale: 0,
                keep_whole: false,
            }],
            primary_key: vec!["id".into()],
        })
    }

    fn row(id: i64) -> Row {
        vec![Some(Scalar::Bigint(id))]
    }

    #[test]
    fn an_empty_builder_is_not_taken() {
        let mut b = BatchBuilder::default();
        assert!(b.is_empty());
        assert!(!b.is_due(Instant::now(), 1, Duration::ZERO));
        assert!(b.take("g").is_none());
    }

    #[test]
    fn consecutive_rows_of_one_table_and_schema_share_a_table_batch() {
        let (a, other) = (schema(), schema());
        let mut b = BatchBuilder::default();
        b.push_row(("p.t", 0, 10), "t", Arc::clone(&a), row(1), &[]);
        b.push_row(("p.t", 1, 5), "t", Arc::clone(&a), row(2), &[]);
        // Another writer schema, then another table: new table batches.
        b.push_row(("p.t", 0, 11), "t", Arc::clone(&other), row(3), &[]);
        b.push_row(("p.u", 0, 3), "u", Arc::clone(&other), row(4), &[]);
        let taken = b.take("g").expect("rows pending");
        assert!(b.is_empty(), "taking empties the builder");
        let shape: Vec<(&str, usize)> = taken
            .batch
            .tables
            .iter()
            .map(|t| (t.table.as_str(), t.rows.len()))
            .collect();
        assert_eq!(shape, [("t", 2), ("t", 1), ("u", 1)]);
        assert_eq!(
            taken.origins,
            [
                ("p.t".to_owned(), vec![(0, 10), (1, 5)]),
                ("p.t".to_owned(), vec![(0, 11)]),
                ("p.u".to_owned(), vec![(0, 3)]),
            ]
        );
        assert_eq!(taken.rows, 4);
        let offsets: Vec<(&str, i32, i64)> = taken
            .batch
            .offsets
            .iter()
            .map(|o| (o.topic.as_str(), o.partition, o.next_offset))
            .collect();
        assert_eq!(offsets, [("p.t", 0, 12), ("p.t", 1, 6), ("p.u", 0, 4)]);
        assert_eq!(taken.batch.group_id, "g");
    }

    #[test]
    fn deletes_run_ends_and_skipped_records_move_the_offsets() {
        let mut b = BatchBuilder::default();
        b.note_offset("p.t", 0, 7);
        assert!(!b.is_empty() && !b.has_rows());
        assert_eq!(b.next_offset("p.t", 0), Some(8));
        b.push_delete(Delete {
            table: "t".into(),
            key_columns: vec!["id".into()],
            key: vec!["1".into()],
        });
        b.note_offset("p.t", 0, 8);
        assert!(!b.has_rows(), "a delete is not a row");
        b.push_run_end(RunEnd {
            topic: "p.t".into(),
            table: "t".into(),
            run: 1,
            partition: 0,
            partitions: 1,
            scd2: None,
        });
        b.note_offset("p.t", 0, 9);
        assert!(b.has_rows(), "a run end waits for the deletes");
        let taken = b.take("g").expect("pending");
        assert_eq!((taken.rows, taken.batch.deletes.len()), (2, 1));
        assert_eq!(taken.batch.run_ends.len(), 1);
        assert_eq!(taken.offsets, BTreeMap::from([(("p.t".into(), 0), 10)]));
    }

    #[test]
    fn a_batch_is_due_by_size_or_by_age() {
        let mut b = BatchBuilder::default();
        b.push_row(("p.t", 0, 0), "t", schema(), row(1), &[]);
        let now = Instant::now();
        assert!(!b.is_due(now, 2, Duration::from_secs(60)));
        assert!(b.is_due(now, 1, Duration::from_secs(60)), "size reached");
        let later = now + Duration::from_secs(61);
        assert!(
            b.is_due(later, 2, Duration::from_secs(60)),
            "waited long enough"
        );
    }
}
