//! The batch writer: owns the destination, the pending batch, the nesting of list fields
//! into child tables and the dead letters. It writes a batch in one transaction and then
//! hands its offsets to the consumer ([`StoreOffsets`]); it salvages a batch the
//! destination refuses a record of; it starts newly assigned partitions at the offsets the
//! destination recorded ([`BatchWriter::on_assign`]) and writes the pending batch before
//! partitions are released ([`BatchWriter::on_revoke`]).
//!
//! The consumer's rebalance callback only forwards to it (see [`crate::consumer`]), so all
//! of this runs without a broker in tests, against a SQLite database.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use common::schema::{Row, TableSchema};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use crate::batch::{BatchBuilder, Origins, TopicPartition};
use crate::consumer::plain_client;
use crate::destination::{self, Batch, Destination, DestinationError, SchemaChanges};
use crate::dlq::{DeadLetters, DlqError, Letter, OnError};
use crate::error::{LoadError, RebalanceError};
use crate::{ReplayFrom, metrics, nested, reread};

/// Log lines keep the target they had when this code was in the crate root.
const LOG_TARGET: &str = crate::LOG_TARGET;

/// Where the offsets of a written batch go once the destination committed it: the
/// consumer (for lag monitoring; the destination's copy is the authority).
pub(crate) trait StoreOffsets {
    fn store_offsets(&self, tpl: &TopicPartitionList) -> KafkaResult<()>;
}

impl<C: ConsumerContext> StoreOffsets for BaseConsumer<C> {
    fn store_offsets(&self, tpl: &TopicPartitionList) -> KafkaResult<()> {
        Consumer::store_offsets(self, tpl)
    }
}

/// The state of a loader between two polls: what is pending, what is loaded, what went
/// to the dead-letter topics.
pub(crate) struct BatchWriter {
    group_id: String,
    on_error: OnError,
    destination: Box<dyn Destination>,
    /// Turns list fields into child tables just before a batch is written.
    nester: nested::Nester,
    pending: BatchBuilder,
    /// The next offset per partition as far as the destination knows (stored offsets at
    /// assignment, then each written batch): what "caught up" compares with the end.
    known_next: HashMap<TopicPartition, i64>,
    dead_letters: DeadLetters,
    replay_from: Option<ReplayFrom>,
    /// Partitions already started at `replay_from` in this run.
    replayed: HashSet<TopicPartition>,
    kafka: BTreeMap<String, String>,
    records: u64,
    batches: u64,
    discarded: u64,
    /// The rows of the last written batch, whose storage the next records are decoded into
    /// (see [`BatchWriter::spare_row`]).
    spare_rows: Vec<Row>,
}

/// The settings a [`BatchWriter`] needs besides its destination.
pub(crate) struct WriterSettings {
    pub(crate) group_id: String,
    pub(crate) on_error: OnError,
    pub(crate) nest_routes: HashMap<String, nested::NestRoute>,
    pub(crate) replay_from: Option<ReplayFrom>,
    /// The config's `kafka` table (for dead letters, replays and fetching records again).
    pub(crate) kafka: BTreeMap<String, String>,
}

impl BatchWriter {
    pub(crate) fn new(destination: Box<dyn Destination>, settings: WriterSettings) -> Self {
        BatchWriter {
            dead_letters: DeadLetters::new(&settings.kafka, &settings.group_id),
            group_id: settings.group_id,
            on_error: settings.on_error,
            destination,
            nester: nested::Nester::new(settings.nest_routes),
            pending: BatchBuilder::default(),
            known_next: HashMap::new(),
            replay_from: settings.replay_from,
            replayed: HashSet::new(),
            kafka: settings.kafka,
            records: 0,
            batches: 0,
            discarded: 0,
            spare_rows: Vec::new(),
        }
    }

    /// A row to decode the next record into: one of the last written batch's, so that its
    /// texts' storage is reused instead of allocated again (empty when none is left).
    pub(crate) fn spare_row(&mut self) -> Row {
        self.spare_rows.pop().unwrap_or_default()
    }

    /// Keeps the rows of a written batch's own tables (not the child tables nesting added)
    /// for [`BatchWriter::spare_row`]: at most one batch's worth.
    fn keep_rows(&mut self, batch: Batch, own_tables: usize) {
        self.spare_rows.clear();
        for table in batch.tables.into_iter().take(own_tables) {
            self.spare_rows.extend(table.rows);
        }
    }

    /// The batch being built.
    pub(crate) fn pending(&mut self) -> &mut BatchBuilder {
        &mut self.pending
    }

    pub(crate) fn pending_ref(&self) -> &BatchBuilder {
        &self.pending
    }

    pub(crate) fn on_error(&self) -> OnError {
        self.on_error
    }

    /// The next offset of a partition already taken: in the pending batch, or loaded.
    pub(crate) fn taken_to(&self, topic: &str, partition: i32) -> Option<i64> {
        self.pending
            .next_offset(topic, partition)
            .or_else(|| self.known_next.get(&(topic.to_owned(), partition)).copied())
    }

    /// The next offset per partition as far as the destination knows.
    pub(crate) fn known_next(&self) -> &HashMap<TopicPartition, i64> {
        &self.known_next
    }

    /// The offsets the destination stored for the group.
    pub(crate) fn stored_offsets(
        &mut self,
    ) -> Result<Vec<destination::PartitionOffset>, DestinationError> {
        self.destination.stored_offsets(&self.group_id)
    }

    /// What writing rows of `writer` into `table` would change (list fields become child
    /// tables, not columns of the table).
    pub(crate) fn schema_changes(
        &mut self,
        table: &str,
        writer: &TableSchema,
    ) -> Result<SchemaChanges, DestinationError> {
        let view = self.nester.parent_view(table, writer);
        self.destination.schema_changes(table, &view)
    }

    /// Sends a record to its dead-letter topic; whether it was sent now (not already there).
    pub(crate) fn dead_letter(&mut self, letter: &Letter) -> Result<bool, DlqError> {
        self.dead_letters.send(letter)
    }

    /// Counts a record the schema contract discarded.
    pub(crate) fn discard(&mut self) {
        self.discarded += 1;
    }

    /// Records written so far (dead-lettered ones aside).
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    pub(crate) fn batches(&self) -> u64 {
        self.batches
    }

    pub(crate) fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Dead letters sent by this process, per dead-letter topic.
    pub(crate) fn dead_letter_counts(&self) -> &BTreeMap<String, u64> {
        self.dead_letters.counts()
    }

    /// Writes the pending batch in one transaction, then stores its offsets in `consumer`.
    pub(crate) fn flush(&mut self, consumer: &dyn StoreOffsets) -> Result<(), LoadError> {
        let Some(taken) = self.pending.take(&self.group_id) else {
            return Ok(());
        };
        let mut batch = taken.batch;
        let started = Instant::now();
        self.nester
            .explode(&mut batch, &mut *self.destination)
            .map_err(|e| match e {
                nested::NestError::Destination(e) => LoadError::Destination(e),
                other => LoadError::Nest(other.to_string()),
            })?;
        let written = self.destination.write_batch(&batch);
        let (stats, refused) = match written {
            Ok(stats) => {
                self.keep_rows(batch, taken.origins.len());
                (stats, 0)
            }
            Err(e) if e.is_row_error() && self.on_error == OnError::DeadLetter => {
                self.salvage(batch, &taken.origins, e)?
            }
            Err(e) => return Err(e.into()),
        };
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &taken.offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        self.known_next
            .extend(taken.offsets.iter().map(|(k, v)| (k.clone(), *v)));
        if let Err(e) = consumer.store_offsets(&tpl) {
            // The destination holds the truth; Kafka's copy only feeds lag monitoring.
            tracing::warn!(target: LOG_TARGET, error = %e, "storing offsets in the consumer");
        }
        self.records += taken.rows.saturating_sub(refused) as u64;
        self.batches += 1;
        metrics::batch_written(taken.rows as u64, started.elapsed().as_secs_f64());
        tracing::debug!(target: LOG_TARGET,
            rows = stats.rows,
            partitions = taken.offsets.len(),
            ms = started.elapsed().as_millis() as u64,
            "batch written"
        );
        Ok(())
    }

    /// Partitions were assigned: starts each at the offset the destination recorded (or
    /// the replay start), and learns what is already dead-lettered for them (perhaps by
    /// another loader of the group) before anything could be sent twice. Every failure is
    /// returned, in order; the partitions are assigned all the same.
    pub(crate) fn on_assign(&mut self, tpl: &mut TopicPartitionList) -> Vec<RebalanceError> {
        let mut failures = Vec::new();
        // Another loader may have created child tables for keys that come here now.
        self.nester.forget_tables();
        if let Err(e) = self.seek_to_stored(tpl) {
            failures.push(RebalanceError::StoredOffsets(e));
        }
        let topics: BTreeSet<String> = tpl
            .elements()
            .iter()
            .map(|e| e.topic().to_owned())
            .collect();
        for topic in &topics {
            if let Err(e) = self.dead_letters.refresh(topic) {
                failures.push(RebalanceError::DeadLetters(e));
            }
        }
        failures
    }

    /// Partitions are about to be released: the pending batch is written first.
    pub(crate) fn on_revoke(&mut self, consumer: &dyn StoreOffsets) -> Result<(), RebalanceError> {
        self.flush(consumer)
            .map_err(|e| RebalanceError::Flush(Box::new(e)))
    }

    /// Starts each newly assigned partition at the offset the destination recorded.
    fn seek_to_stored(&mut self, tpl: &mut TopicPartitionList) -> Result<(), DestinationError> {
        let stored = self.destination.stored_offsets(&self.group_id)?;
        let stored: HashMap<(&str, i32), i64> = stored
            .iter()
            .map(|s| ((s.topic.as_str(), s.partition), s.next_offset))
            .collect();
        let assigned: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let mut replay_client: Option<BaseConsumer> = None;
        for (topic, partition) in assigned {
            // The destination is the authority: a partition it has no offset for has had
            // nothing loaded into it (a fresh database, say), whatever the group committed
            // in Kafka, so it is read from its beginning.
            let replay = self
                .replay_from
                .filter(|_| self.replayed.insert((topic.clone(), partition)));
            if let Some(from) = replay {
                // One client for all the partitions of this assignment.
                let client = match &replay_client {
                    Some(c) => c,
                    None => replay_client.insert(
                        plain_client(
                            &reread::replay_settings(&self.kafka),
                            &format!("{}.replay", self.group_id),
                        )
                        .map_err(|e| DestinationError::ReadOffsets {
                            group_id: self.group_id.clone(),
                            error: format!("replay client: {e}").into(),
                        })?,
                    ),
                };
                let offset =
                    reread::replay_offset(&self.group_id, client, &topic, partition, from)?;
                tracing::info!(target: LOG_TARGET, topic = %topic, partition, offset, "replaying from");
                let _ = self.known_next.insert((topic.clone(), partition), offset);
                let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(offset));
                continue;
            }
            let offset = match stored.get(&(topic.as_str(), partition)) {
                Some(next) => {
                    let _ = self.known_next.insert((topic.clone(), partition), *next);
                    Offset::Offset(*next)
                }
                None => {
                    let _ = self.known_next.remove(&(topic.clone(), partition));
                    Offset::Beginning
                }
            };
            let _ = tpl.set_partition_offset(&topic, partition, offset);
        }
        Ok(())
    }

    /// The batch failed on a record the destination refuses: finds every such record by
    /// bisection (each trial a rolled-back transaction), dead-letters them (fetched again
    /// from Kafka by offset, with the destination's error), and writes the rest with all the
    /// offsets in one transaction, as the batch would have been.
    fn salvage(
        &mut self,
        mut batch: Batch,
        origins: &[Origins],
        first: DestinationError,
    ) -> Result<(destination::BatchStats, usize), LoadError> {
        tracing::warn!(target: LOG_TARGET, error = %first, "a record was refused by the destination; finding every refused record of the batch");
        let all: Vec<(usize, usize)> = batch
            .tables
            .iter()
            .enumerate()
            .flat_map(|(t, tb)| (0..tb.rows.len()).map(move |r| (t, r)))
            .collect();
        let mut refused = Vec::new();
        find_refused(self.destination.as_mut(), &batch, &all, &mut refused)?;
        if refused.is_empty() {
            // Not any one record's fault after all.
            return Err(first.into());
        }
        let mut fetcher = None;
        for ((t, r), error) in &refused {
            let Some((topic, rows)) = origins.get(*t) else {
                return Err(first.into());
            };
            let Some(&(partition, offset)) = rows.get(*r) else {
                return Err(first.into());
            };
            let client = match &fetcher {
                Some(c) => c,
                None => fetcher.insert(plain_client(
                    &self.kafka,
                    &format!("{}.refetch", self.group_id),
                )?),
            };
            let (key, payload) = reread::fetch_record(client, topic, partition, offset)?;
            tracing::warn!(target: LOG_TARGET, topic = %topic, partition, offset, error = %error, "the destination refused the record; dead-lettered");
            let _ = self.dead_letters.send(&Letter {
                topic: topic.clone(),
                partition,
                offset,
                key,
                payload,
                error: format!("the destination refused the record: {error}"),
            })?;
        }
        // The child rows (lists, see `nested`) of a refused record go with it: child tables
        // come after the batch's own tables and point at their root by `_dlt_root_id`.
        let mut text = String::new();
        let refused_roots: HashSet<String> = refused
            .iter()
            .filter_map(|((t, r), _)| {
                let tb = batch.tables.get(*t)?;
                let key_fields: Option<Vec<usize>> = tb
                    .schema
                    .primary_key
                    .iter()
                    .map(|k| tb.schema.field_index(k))
                    .collect();
                Some(nested::key_id(&tb.rows[*r], &key_fields?, &mut text))
            })
            .collect();
        for (t, tb) in batch.tables.iter_mut().enumerate() {
            if t >= origins.len() {
                let Some(root) = tb.schema.field_index(nested::ROOT_ID) else {
                    continue;
                };
                tb.rows.retain(|row| match row.get(root) {
                    Some(Some(common::schema::Scalar::Text(id))) => !refused_roots.contains(id),
                    _ => true,
                });
                continue;
            }
            let mut r = 0;
            tb.rows.retain(|_| {
                let keep = !refused.iter().any(|((rt, rr), _)| *rt == t && *rr == r);
                r += 1;
                keep
            });
        }
        batch.tables.retain(|tb| !tb.rows.is_empty());
        let stats = self.destination.write_batch(&batch)?;
        Ok((stats, refused.len()))
    }
}

/// The rows among `rows` (table index, row index) the destination refuses, each with its
/// error, found by trying halves of the batch (rolled back) until single rows fail.
fn find_refused(
    destination: &mut dyn Destination,
    batch: &Batch,
    rows: &[(usize, usize)],
    refused: &mut Vec<((usize, usize), String)>,
) -> Result<(), LoadError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut trial = batch.clone();
    for (t, tb) in trial.tables.iter_mut().enumerate() {
        tb.rows = rows
            .iter()
            .filter(|(rt, _)| *rt == t)
            .map(|&(_, r)| batch.tables[t].rows[r].clone())
            .collect();
    }
    match destination.try_batch(&trial) {
        Ok(()) => Ok(()),
        Err(e) if !e.is_row_error() => Err(e.into()),
        Err(e) if rows.len() == 1 => {
            refused.push((rows[0], e.to_string()));
            Ok(())
        }
        Err(_) => {
            let (left, right) = rows.split_at(rows.len() / 2);
            find_refused(destination, batch, left, refused)?;
            find_refused(destination, batch, right, refused)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::sync::Arc;

    use common::schema::{DataType, Field, Scalar};

    use crate::destination::sqlite::SqliteDestination;

    /// The offsets handed to the consumer, per call.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<Vec<(String, i32, i64)>>>);

    impl StoreOffsets for Recorder {
        fn store_offsets(&self, tpl: &TopicPartitionList) -> KafkaResult<()> {
            let offsets = tpl
                .elements()
                .iter()
                .map(|e| {
                    let next = match e.offset() {
                        Offset::Offset(o) => o,
                        other => panic!("not an offset: {other:?}"),
                    };
                    (e.topic().to_owned(), e.partition(), next)
                })
                .collect();
            self.0.borrow_mut().push(offsets);
            Ok(())
        }
    }

    fn writer(dir: &tempfile::TempDir) -> BatchWriter {
        let destination =
            SqliteDestination::open(dir.path().join("w.db")).expect("open the database");
        BatchWriter::new(
            Box::new(destination),
            WriterSettings {
                group_id: "g".into(),
                on_error: OnError::Stop,
                nest_routes: HashMap::new(),
                replay_from: None,
                kafka: BTreeMap::new(),
            },
        )
    }

    fn schema() -> Arc<TableSchema> {
        let field = |name: &str, data_type| Field {
            name: name.into(),
            data_type,
            nullable: true,
            precision: 0,
            scale: 0,
            keep_whole: false,
        };
        Arc::new(TableSchema {
            name: "t".into(),
            fields: vec![field("id", DataType::Bigint), field("name", DataType::Text)],
            primary_key: vec!["id".into()],
        })
    }

    fn row(id: i64, name: &str) -> common::schema::Row {
        vec![Some(Scalar::Bigint(id)), Some(Scalar::Text(name.into()))]
    }

    #[test]
    fn a_flush_writes_the_rows_and_the_offsets_then_hands_them_to_the_consumer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut w = writer(&dir);
        let consumer = Recorder::default();
        w.flush(&consumer).expect("nothing to write");
        assert!(
            consumer.0.borrow().is_empty(),
            "an empty batch stores nothing"
        );

        let s = schema();
        w.pending()
            .push_row(("p.t", 0, 4), "t", Arc::clone(&s), row(1, "a"), &[]);
        w.pending()
            .push_row(("p.t", 1, 9), "t", Arc::clone(&s), row(2, "b"), &[]);
        w.pending().note_offset("p.t", 1, 10);
        assert_eq!(w.taken_to("p.t", 1), Some(11), "pending counts");
        w.flush(&consumer).expect("write");

        assert_eq!(
            *consumer.0.borrow(),
            [vec![("p.t".to_owned(), 0, 5), ("p.t".to_owned(), 1, 11)]]
        );
        let stored: Vec<(String, i32, i64)> = w
            .stored_offsets()
            .expect("read offsets")
            .into_iter()
            .map(|o| (o.topic, o.partition, o.next_offset))
            .collect();
        assert_eq!(stored, [("p.t".into(), 0, 5), ("p.t".into(), 1, 11)]);
        assert_eq!(w.known_next().get(&("p.t".into(), 0)), Some(&5));
        assert_eq!(w.taken_to("p.t", 1), Some(11), "loaded counts");
        assert_eq!((w.records(), w.batches()), (2, 1));
        assert!(w.pending_ref().is_empty());
    }

    #[test]
    fn a_written_batch_leaves_its_rows_to_decode_into() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut w = writer(&dir);
        assert!(w.spare_row().is_empty(), "nothing written yet");
        let s = schema();
        w.pending()
            .push_row(("p.t", 0, 0), "t", Arc::clone(&s), row(1, "a"), &[]);
        w.pending()
            .push_row(("p.t", 0, 1), "t", Arc::clone(&s), row(2, "b"), &[]);
        w.flush(&Recorder::default()).expect("write");
        let mut spare = vec![w.spare_row(), w.spare_row()];
        spare.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(spare, [row(1, "a"), row(2, "b")]);
        assert!(w.spare_row().is_empty(), "one batch's rows, no more");
    }

    #[test]
    fn assigned_partitions_start_at_the_stored_offsets_or_the_beginning() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut w = writer(&dir);
        w.pending()
            .push_row(("p.t", 0, 41), "t", schema(), row(1, "a"), &[]);
        w.flush(&Recorder::default()).expect("write");
        // As after a rebalance: nothing known but what the destination stored.
        w.known_next.clear();
        let _ = w.known_next.insert(("p.t".into(), 1), 7);

        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition("p.t", 0);
        let _ = tpl.add_partition("p.t", 1);
        w.seek_to_stored(&mut tpl).expect("seek");
        let offset = |p| tpl.find_partition("p.t", p).map(|e| e.offset());
        assert_eq!(offset(0), Some(Offset::Offset(42)));
        assert_eq!(offset(1), Some(Offset::Beginning), "nothing stored for it");
        assert_eq!(w.known_next().get(&("p.t".into(), 0)), Some(&42));
        assert_eq!(w.known_next().get(&("p.t".into(), 1)), None, "forgotten");
    }

    #[test]
    fn a_revoke_writes_the_pending_batch_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut w = writer(&dir);
        w.pending()
            .push_row(("p.t", 2, 0), "t", schema(), row(1, "a"), &[]);
        let consumer = Recorder::default();
        w.on_revoke(&consumer).expect("revoke");
        assert_eq!(*consumer.0.borrow(), [vec![("p.t".to_owned(), 2, 1)]]);
        assert_eq!(w.records(), 1);
    }

    /// The writer's log lines keep the target they had in the crate root (`loader`).
    #[test]
    fn log_lines_keep_the_crate_target() {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .expect("not poisoned")
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .without_time()
            .with_writer(move || sink.clone())
            .finish();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut w = writer(&dir);
        // A first batch before the subscriber exists registers the writer's callsites in
        // this thread, so that the subscriber's registration below re-reads their
        // interest. Without it a test thread that registers them concurrently, while no
        // subscriber exists, can leave them cached as disabled (1 run in 3 lost the line).
        w.pending()
            .push_row(("p.t", 0, 0), "t", schema(), row(1, "a"), &[]);
        w.flush(&Recorder::default()).expect("write");
        w.pending()
            .push_row(("p.t", 0, 1), "t", schema(), row(2, "b"), &[]);
        tracing::subscriber::with_default(subscriber, || w.flush(&Recorder::default()))
            .expect("write");
        let log = String::from_utf8(buffer.0.lock().expect("not poisoned").clone()).expect("utf-8");
        assert!(log.contains("DEBUG loader: batch written rows=1"), "{log}");
    }
}
