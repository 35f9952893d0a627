//! The loader: consumes the extractor's topics in a consumer group, decodes each record
//! with its writer schema and merges it by primary key into the destination.
//!
//! Delivery: a batch of records is written in ONE destination transaction together with
//! the next offset of every partition it covers (`_pipeline_offsets`). Only after that
//! commit are the offsets stored in the consumer (and committed to Kafka for lag
//! monitoring). On assignment the loader starts each partition at the offset its
//! destination recorded, so a crash at any moment neither loses nor repeats a row.
//! On revocation the pending batch is written before the partitions are released.

pub mod contract;
pub mod destination;
pub mod dlq;
mod fetch;
pub mod inspect;
pub mod lag;
pub mod metrics;
pub mod nested;
pub mod progress;
pub mod schemas;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use common::broker::BrokerWait;
use common::config::{PipelineConfig, SchemaContract, WriteDisposition};
use common::runs::{self, RunEndMarker};
use common::schema::TableSchema;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schema_registry_converter::async_impl::schema_registry::SrSettings;

use crate::contract::{Projection, Verdict};
use crate::destination::{
    Batch, Delete, Destination, DestinationError, PartitionOffset, RunEnd, TableBatch,
};
use crate::dlq::{DeadLetters, Letter, OnError};
use crate::schemas::{SchemaLookupError, SchemaStore};

/// Choices that are not part of the config document.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub group_id: String,
    /// `sqlite://path` (or a path ending `.db`/`.sqlite`).
    pub destination: String,
    /// Rows per destination transaction, at most.
    pub batch_size: usize,
    /// How long a partly filled batch may wait before it is written.
    pub batch_wait: Duration,
    /// Stop once every assigned partition is at its end offset (batch jobs, tests).
    pub until_caught_up: bool,
    /// Resource names whose topics to consume; empty consumes all.
    pub resources: Vec<String>,
    /// A record that cannot be decoded: dead-letter it and go on, or stop.
    pub on_error: OnError,
    /// Start each partition here instead of at the destination's stored offset (once per
    /// partition per run; a later rebalance resumes from the stored offsets).
    pub replay_from: Option<ReplayFrom>,
    /// See [`Destination::set_version_column`].
    pub version_column: Option<String>,
    /// Kafka static membership (`group.instance.id`): a loader restarted with the same id
    /// takes its predecessor's partitions without waiting for its session to time out.
    pub group_instance_id: Option<String>,
    /// The terminal's progress bar (hidden by default).
    pub progress: progress::LoadProgress,
    /// How long to wait for a Kafka broker that cannot be reached before failing (`None`:
    /// for ever, saying so every few seconds).
    pub broker_timeout: Option<Duration>,
}

/// What sets [`LoadOptions::broker_timeout`], for the error when it runs out.
pub const BROKER_TIMEOUT_SETTING: &str = "--broker-timeout / LOADER_BROKER_TIMEOUT";

/// Where a replay starts reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    Beginning,
    /// This offset in every partition (a partition that starts later is read from its start).
    Offset(i64),
    /// The first record at or after this time (milliseconds since the Unix epoch).
    Timestamp(i64),
}

impl std::str::FromStr for ReplayFrom {
    type Err = String;

    /// `beginning`, `offset:N`, or `time:RFC3339` (e.g. `time:2026-11-01T00:00:00Z`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "beginning" {
            return Ok(ReplayFrom::Beginning);
        }
        if let Some(n) = s.strip_prefix("offset:") {
            return n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(ReplayFrom::Offset)
                .ok_or_else(|| format!("`{n}` is not an offset (a whole number >= 0)"));
        }
        if let Some(t) = s.strip_prefix("time:") {
            return chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| ReplayFrom::Timestamp(t.timestamp_millis()))
                .map_err(|e| format!("`{t}` is not an RFC 3339 time: {e}"));
        }
        Err(format!(
            "`{s}`: expected `beginning`, `offset:N` or `time:RFC3339`"
        ))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    pub records: u64,
    pub batches: u64,
    pub dead_letters: u64,
    /// `dead_letters` per dead-letter topic.
    pub dead_letter_topics: std::collections::BTreeMap<String, u64>,
    /// Records the schema contract discarded (`discard_row`).
    pub discarded: u64,
    pub seconds: f64,
    /// Records left to load at the end, over every partition of the topics whoever holds
    /// it (see [`lag`]); `None` when it could not be measured.
    pub lag: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The Kafka error is part of the message, not a `source()`: printed once either way.
    #[error("Kafka consumer: {0}")]
    Kafka(KafkaError),
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error("topic `{topic}` partition {partition} offset {offset}: {message}")]
    Record {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
    #[error("no configured resource matches {0:?}")]
    NoResources(Vec<String>),
    #[error("schema registry: {0}")]
    Registry(String),
    #[error("during a rebalance: {0}")]
    Rebalance(String),
    #[error("child tables: {0}")]
    Nest(String),
    #[error(transparent)]
    DeadLetter(#[from] dlq::DlqError),
    #[error(transparent)]
    Unreachable(#[from] common::broker::Unreachable),
}

impl From<KafkaError> for LoadError {
    fn from(error: KafkaError) -> Self {
        LoadError::Kafka(error)
    }
}

/// Where a topic's records go.
#[derive(Debug, Clone)]
struct Route {
    table: String,
    primary_key: Vec<String>,
    /// The column with the `hard_delete` hint, if any.
    hard_delete: Option<String>,
    /// merge: upsert by key; append: insert every record (the table has no key);
    /// replace: merge into the run's staging table, swapped in when the run ends.
    disposition: WriteDisposition,
    /// What a new table, column or type may do (dlt's `schema_contract`).
    contract: SchemaContract,
}

/// Decoded records waiting for the next destination transaction.
#[derive(Default)]
struct Pending {
    deletes: Vec<Delete>,
    tables: Vec<TableBatch>,
    /// Aligned with `tables`: the topic of each table batch and the (partition, offset)
    /// of each of its rows, to dead-letter a row the destination refuses.
    origins: Vec<(String, Vec<(i32, i64)>)>,
    run_ends: Vec<RunEnd>,
    rows: usize,
    /// Next offset per (topic, partition) once this batch is written.
    offsets: BTreeMap<(String, i32), i64>,
    since: Option<Instant>,
}

/// Shared between the poll loop and librdkafka's rebalance callback (which runs inside
/// `poll`, on the same thread).
pub struct LoaderContext {
    group_id: String,
    on_error: OnError,
    destination: Mutex<Box<dyn Destination>>,
    /// Turns list fields into child tables just before a batch is written.
    nester: Mutex<nested::Nester>,
    pending: Mutex<Pending>,
    /// An error raised inside a callback, reported by the loop.
    failure: Mutex<Option<String>>,
    assigned: AtomicBool,
    /// Counts assignments and revocations: the poll loop takes the partition queues of
    /// each new assignment (see [`fetch`]).
    assignments: AtomicU64,
    /// The consumer this is the context of, for splitting partition queues in the rebalance
    /// callback (which gets the consumer by reference, not the `Arc` splitting needs).
    consumer: OnceLock<Weak<BaseConsumer<LoaderContext>>>,
    /// The next offset per partition as far as the destination knows (stored offsets at
    /// assignment, then each written batch): what "caught up" compares with the end.
    known_next: Mutex<HashMap<(String, i32), i64>>,
    dead_letters: Mutex<DeadLetters>,
    replay_from: Option<ReplayFrom>,
    /// Partitions already started at `replay_from` in this run.
    replayed: Mutex<std::collections::HashSet<(String, i32)>>,
    kafka: BTreeMap<String, String>,
    records: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
    discarded: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere already ended the run; keep going with the
    // data, which is only ever mutated whole.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// librdkafka's connection failures are summarised (see [`common::broker`]).
impl ClientContext for LoaderContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        common::broker::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        common::broker::error(&error, reason);
    }
}

impl ConsumerContext for LoaderContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Another loader may have created child tables for keys that come here now.
                lock(&self.nester).forget_tables();
                if let Err(e) = self.seek_to_stored(tpl) {
                    self.fail(format!("reading stored offsets: {e}"));
                }
                // Learn what is already dead-lettered for these partitions (perhaps by
                // another loader of the group) before anything could be sent twice.
                let topics: std::collections::BTreeSet<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| e.topic().to_owned())
                    .collect();
                for topic in &topics {
                    if let Err(e) = lock(&self.dead_letters).refresh(topic) {
                        self.fail(e.to_string());
                    }
                }
                tracing::info!(partitions = %describe(tpl), "partitions assigned");
                // Before `assign`, so that no record of these partitions is fetched into
                // the consumer queue: each partition's records come in order from its own.
                match self.consumer.get().and_then(Weak::upgrade) {
                    Some(me) => fetch::split_before_assign(&me, tpl),
                    // Set before subscribing, and the consumer outlives its callbacks.
                    None => self.fail("the consumer is gone during its own rebalance".into()),
                }
                if let Err(e) = consumer.assign(tpl) {
                    self.fail(format!("assigning partitions: {e}"));
                }
                self.assigned.store(true, Ordering::SeqCst);
                let _ = self.assignments.fetch_add(1, Ordering::SeqCst);
                metrics::assignment(tpl.count());
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = %describe(tpl), "partitions revoked; writing the pending batch first");
                if let Err(e) = self.flush(consumer) {
                    self.fail(e.to_string());
                }
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(error = %e, "commit on revoke");
                }
                if let Err(e) = consumer.unassign() {
                    self.fail(format!("releasing partitions: {e}"));
                }
                self.assigned.store(false, Ordering::SeqCst);
                let _ = self.assignments.fetch_add(1, Ordering::SeqCst);
                metrics::assignment(0);
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
                self.assigned.store(false, Ordering::SeqCst);
                let _ = self.assignments.fetch_add(1, Ordering::SeqCst);
                metrics::assignment(0);
            }
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

impl LoaderContext {
    /// Assignments and revocations so far.
    pub(crate) fn assignments(&self) -> u64 {
        self.assignments.load(Ordering::SeqCst)
    }

    /// Whether a rebalance callback failed (the loop then ends with that error).
    pub(crate) fn failed(&self) -> bool {
        lock(&self.failure).is_some()
    }

    pub(crate) fn fail(&self, message: String) {
        tracing::error!(error = %message, "loader failure");
        metrics::failed(&message);
        let _ = lock(&self.failure).get_or_insert(message);
    }

    /// Starts each newly assigned partition at the offset the destination recorded.
    fn seek_to_stored(&self, tpl: &mut TopicPartitionList) -> Result<(), DestinationError> {
        let stored = lock(&self.destination).stored_offsets(&self.group_id)?;
        let stored: HashMap<(&str, i32), i64> = stored
            .iter()
            .map(|s| ((s.topic.as_str(), s.partition), s.next_offset))
            .collect();
        let mut known = lock(&self.known_next);
        let assigned: Vec<(String, i32)> = tpl
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
                .filter(|_| lock(&self.replayed).insert((topic.clone(), partition)));
            if let Some(from) = replay {
                // One client for all the partitions of this assignment.
                let client = match &replay_client {
                    Some(c) => c,
                    None => replay_client.insert(
                        plain_client(
                            &replay_settings(&self.kafka),
                            &format!("{}.replay", self.group_id),
                        )
                        .map_err(|e| DestinationError::ReadOffsets {
                            group_id: self.group_id.clone(),
                            error: format!("replay client: {e}").into(),
                        })?,
                    ),
                };
                let offset = self.replay_offset(client, &topic, partition, from)?;
                tracing::info!(topic = %topic, partition, offset, "replaying from");
                let _ = known.insert((topic.clone(), partition), offset);
                let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(offset));
                continue;
            }
            let offset = match stored.get(&(topic.as_str(), partition)) {
                Some(next) => {
                    let _ = known.insert((topic.clone(), partition), *next);
                    Offset::Offset(*next)
                }
                None => {
                    let _ = known.remove(&(topic.clone(), partition));
                    Offset::Beginning
                }
            };
            let _ = tpl.set_partition_offset(&topic, partition, offset);
        }
        Ok(())
    }

    /// The offset a replay starts `topic`/`partition` at, clamped to what the partition holds.
    fn replay_offset(
        &self,
        client: &BaseConsumer,
        topic: &str,
        partition: i32,
        from: ReplayFrom,
    ) -> Result<i64, DestinationError> {
        let kafka_error_text = |e: String| DestinationError::ReadOffsets {
            group_id: self.group_id.clone(),
            error: format!("replay start of {topic}/{partition}: {e}").into(),
        };
        let kafka_error = |e: rdkafka::error::KafkaError| kafka_error_text(e.to_string());
        let (low, high) = client
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(kafka_error)?;
        let offset = match from {
            ReplayFrom::Beginning => low,
            ReplayFrom::Offset(n) => n,
            ReplayFrom::Timestamp(ms) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, partition, Offset::Offset(ms))
                    .map_err(kafka_error)?;
                let found = client
                    .offsets_for_times(tpl, Duration::from_secs(10))
                    .map_err(kafka_error)?;
                match found.find_partition(topic, partition).map(|e| e.offset()) {
                    // Tansu 0.6 answers the first offset where Kafka answers "none" (a time
                    // after the partition's last record): the last record's time decides.
                    Some(Offset::Offset(o))
                        if o < high
                            && record_time(client, topic, partition, high - 1)
                                .map_err(|e| kafka_error_text(e.to_string()))?
                                .is_some_and(|last| last < ms) =>
                    {
                        high
                    }
                    Some(Offset::Offset(o)) => o,
                    // No record at or after that time.
                    _ => high,
                }
            }
        };
        Ok(offset.clamp(low, high))
    }

    /// Writes the pending batch in one transaction, then stores its offsets in the consumer.
    fn flush(&self, consumer: &BaseConsumer<Self>) -> Result<(), LoadError> {
        let mut pending = lock(&self.pending);
        if pending.offsets.is_empty() {
            return Ok(());
        }
        let taken = std::mem::take(&mut *pending);
        let batch = Batch {
            group_id: self.group_id.clone(),
            deletes: taken.deletes,
            nested_deletes: Vec::new(),
            tables: taken.tables,
            run_ends: taken.run_ends,
            offsets: taken
                .offsets
                .iter()
                .map(|((topic, partition), next)| PartitionOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    next_offset: *next,
                })
                .collect(),
        };
        let mut batch = batch;
        let started = Instant::now();
        let mut destination = lock(&self.destination);
        lock(&self.nester)
            .explode(&mut batch, &mut **destination)
            .map_err(|e| match e {
                nested::NestError::Destination(e) => LoadError::Destination(e),
                other => LoadError::Nest(other.to_string()),
            })?;
        let written = destination.write_batch(&batch);
        drop(destination);
        let (stats, refused) = match written {
            Ok(stats) => (stats, 0),
            Err(e) if e.is_row_error() && self.on_error == OnError::DeadLetter => {
                self.salvage(batch, &taken.origins, e)?
            }
            Err(e) => return Err(e.into()),
        };
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &taken.offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        lock(&self.known_next).extend(taken.offsets.iter().map(|(k, v)| (k.clone(), *v)));
        if let Err(e) = consumer.store_offsets(&tpl) {
            // The destination holds the truth; Kafka's copy only feeds lag monitoring.
            tracing::warn!(error = %e, "storing offsets in the consumer");
        }
        let _ = self
            .records
            .fetch_add(taken.rows.saturating_sub(refused) as u64, Ordering::Relaxed);
        let _ = self.batches.fetch_add(1, Ordering::Relaxed);
        metrics::batch_written(taken.rows as u64, started.elapsed().as_secs_f64());
        tracing::debug!(
            rows = stats.rows,
            partitions = taken.offsets.len(),
            ms = started.elapsed().as_millis() as u64,
            "batch written"
        );
        Ok(())
    }
}

impl LoaderContext {
    /// The batch failed on a record the destination refuses: finds every such record by
    /// bisection (each trial a rolled-back transaction), dead-letters them (fetched again
    /// from Kafka by offset, with the destination's error), and writes the rest with all the
    /// offsets in one transaction, as the batch would have been.
    fn salvage(
        &self,
        mut batch: Batch,
        origins: &[(String, Vec<(i32, i64)>)],
        first: DestinationError,
    ) -> Result<(destination::BatchStats, usize), LoadError> {
        tracing::warn!(error = %first, "a record was refused by the destination; finding every refused record of the batch");
        let all: Vec<(usize, usize)> = batch
            .tables
            .iter()
            .enumerate()
            .flat_map(|(t, tb)| (0..tb.rows.len()).map(move |r| (t, r)))
            .collect();
        let mut refused = Vec::new();
        {
            let mut destination = lock(&self.destination);
            find_refused(destination.as_mut(), &batch, &all, &mut refused)?;
        }
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
            let (key, payload) = fetch_record(client, topic, partition, offset)?;
            tracing::warn!(topic = %topic, partition, offset, error = %error, "the destination refused the record; dead-lettered");
            let _ = lock(&self.dead_letters).send(&Letter {
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
        let refused_roots: std::collections::HashSet<String> = refused
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
        let stats = lock(&self.destination).write_batch(&batch)?;
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

/// A record's key and value bytes, each if it has one.
type KeyAndValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Reads `topic`/`partition` from `offset` with `client` until `take` accepts a record (it
/// sees each record at or after `offset`), for at most 30 s; `what` names the read in errors.
fn read_at<T>(
    client: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
    what: &str,
    mut take: impl FnMut(&BorrowedMessage<'_>) -> Option<T>,
) -> Result<T, LoadError> {
    let place = |message: String| LoadError::Record {
        topic: topic.to_owned(),
        partition,
        offset,
        message,
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    client.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match client.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) if msg.partition() == partition && msg.offset() >= offset => {
                if let Some(found) = take(&msg) {
                    return Ok(found);
                }
            }
            Some(Ok(_)) | None => {}
            Some(Err(e)) => return Err(place(format!("{what}: {e}"))),
        }
    }
    Err(place(format!("{what} timed out")))
}

/// The key and value of the record at `offset`, read again from the broker.
fn fetch_record(
    client: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<KeyAndValue, LoadError> {
    read_at(
        client,
        topic,
        partition,
        offset,
        "reading the record again",
        |msg| {
            (msg.offset() == offset).then(|| {
                (
                    msg.key().map(<[u8]>::to_vec),
                    msg.payload().map(<[u8]>::to_vec),
                )
            })
        },
    )
}

/// The replay client's settings: it reads single records (see [`record_time`]), and a
/// re-assigned client waits for its previous fetch, which the broker holds up to
/// `fetch.wait.max.ms` (500 ms by default) when there is nothing more to send.
fn replay_settings(kafka: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut settings = kafka.clone();
    let _ = settings.insert("fetch.wait.max.ms".to_owned(), "10".to_owned());
    settings
}

/// The timestamp of the record at `offset` (milliseconds since the epoch), read from the
/// broker; `None` when the record has none or is gone (compacted away, say).
fn record_time(
    client: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<i64>, LoadError> {
    read_at(
        client,
        topic,
        partition,
        offset,
        "reading the record's timestamp",
        |msg| {
            Some(
                (msg.offset() == offset)
                    .then(|| msg.timestamp().to_millis())
                    .flatten(),
            )
        },
    )
}

/// Consumes until cancelled (or, with `until_caught_up`, until every assigned partition
/// is at its end). Blocking: run it on its own thread.
pub fn run(
    cfg: &PipelineConfig,
    opts: &LoadOptions,
    registry: Option<SrSettings>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let routes = routes(cfg, &opts.resources)?;
    // Before the first client, so that the wait reports its first connection failure.
    let servers = cfg
        .kafka
        .get("bootstrap.servers")
        .map_or("", String::as_str);
    let wait = BrokerWait::start(servers, opts.broker_timeout, BROKER_TIMEOUT_SETTING);
    let mut destination = destination::open(&opts.destination)?;
    destination.set_version_column(opts.version_column.clone());
    let context = LoaderContext {
        group_id: opts.group_id.clone(),
        on_error: opts.on_error,
        destination: Mutex::new(destination),
        nester: Mutex::new(nested::Nester::new(nest_routes(cfg, &opts.resources))),
        pending: Mutex::new(Pending::default()),
        failure: Mutex::new(None),
        assigned: AtomicBool::new(false),
        assignments: AtomicU64::new(0),
        consumer: OnceLock::new(),
        known_next: Mutex::new(HashMap::new()),
        dead_letters: Mutex::new(DeadLetters::new(&cfg.kafka, &opts.group_id)),
        replay_from: opts.replay_from,
        replayed: Mutex::new(Default::default()),
        kafka: cfg.kafka.clone(),
        records: Default::default(),
        batches: Default::default(),
        discarded: Default::default(),
    };
    let consumer = Arc::new(consumer(cfg, opts, context)?);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    let topics: Vec<&str> = routes.keys().map(String::as_str).collect();
    match wait_for_topics(&consumer, &topics, &stop, wait)? {
        Waited::Ready => {}
        stopped => {
            return Ok(LoadReport {
                seconds: started.elapsed().as_secs_f64(),
                // No topic exists: nothing to load; no broker: nobody knows.
                lag: (stopped == Waited::NoTopics).then_some(0),
                ..LoadReport::default()
            });
        }
    }
    consumer.subscribe(&topics)?;
    tracing::info!(group = %opts.group_id, topics = %topics.join(","), destination = %destination::redact_url(&opts.destination), "consuming");

    let mut schemas = SchemaStore::new(&cfg.schema_topic, &cfg.kafka, registry, runtime);
    let mut tables: HashMap<(String, usize), Arc<Projection>> = HashMap::new();
    let mut lags = lag::LagWatch::new(&topics, &cfg.kafka, &opts.group_id);
    let result = poll_loop(
        &consumer,
        opts,
        &routes,
        &mut schemas,
        &mut tables,
        &mut lags,
        &stop,
    );
    let ctx = consumer.context();
    // Whatever ended the loop, what was decoded before it is written and committed.
    let flushed = ctx.flush(&consumer);
    // What is left to load, by this loader or the rest of the group, measured after the
    // last batch (and before the partitions are released, to tell which were held here).
    let left = if flushed.is_ok() {
        final_lag(&consumer, &mut lags)
    } else {
        None
    };
    opts.progress.update(
        ctx.records.load(Ordering::Relaxed),
        left.as_ref().map(lag::Survey::view),
    );
    opts.progress.finish();
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit");
    }
    consumer.unsubscribe();
    result?;
    flushed?;
    // One guard for both figures (two `lock` calls in one expression would deadlock).
    let dead_letter_topics = lock(&ctx.dead_letters).counts().clone();
    Ok(LoadReport {
        records: ctx.records.load(Ordering::Relaxed),
        batches: ctx.batches.load(Ordering::Relaxed),
        dead_letters: dead_letter_topics.values().sum(),
        dead_letter_topics,
        discarded: ctx.discarded.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        lag: left.as_ref().map(lag::Survey::lag),
    })
}

/// The lag of every partition when the run ends, with a log line naming the partitions
/// still behind; `None` (and a warning) when the broker or the destination does not answer.
fn final_lag(
    consumer: &BaseConsumer<LoaderContext>,
    lags: &mut lag::LagWatch,
) -> Option<lag::Survey> {
    match lags.survey(consumer, Duration::from_secs(5)) {
        Ok(survey) => {
            if survey.lag() > 0 {
                tracing::info!(
                    lag = survey.lag(),
                    partitions = %survey.behind(),
                    stalled = survey.stalled,
                    "records left to load at exit (partition=lag)"
                );
            }
            Some(survey)
        }
        Err(e) => {
            tracing::warn!(error = %e, "measuring the lag left at exit");
            None
        }
    }
}

/// Per destination table of a merge or append resource with a primary key: how its list
/// fields become child tables (see [`nested`]).
fn nest_routes(cfg: &PipelineConfig, selected: &[String]) -> HashMap<String, nested::NestRoute> {
    cfg.resources
        .iter()
        .filter(|r| selected.is_empty() || selected.contains(&r.name))
        .filter(|r| !r.primary_key.is_empty())
        .map(|r| {
            let json_columns = r
                .columns
                .iter()
                .filter(|(_, hint)| hint.data_type == Some(common::schema::DataType::Json))
                .filter_map(|(name, _)| common::schema::normalize_path(name))
                .collect();
            let route = nested::NestRoute {
                primary_key: r
                    .primary_key
                    .iter()
                    .map(|k| common::schema::normalize_path(k).unwrap_or_else(|| k.clone()))
                    .collect(),
                merge: r.write_disposition != WriteDisposition::Append,
                max_table_nesting: r.max_table_nesting,
                json_columns,
                replace: r.write_disposition == WriteDisposition::Replace,
            };
            (r.table_name.clone(), route)
        })
        .collect()
}

fn routes(cfg: &PipelineConfig, selected: &[String]) -> Result<BTreeMap<String, Route>, LoadError> {
    let routes: BTreeMap<String, Route> = cfg
        .resources
        .iter()
        .filter(|r| selected.is_empty() || selected.contains(&r.name))
        .map(|r| {
            (
                r.topic.clone(),
                Route {
                    table: r.table_name.clone(),
                    primary_key: r.primary_key.clone(),
                    hard_delete: r
                        .columns
                        .iter()
                        .find(|(_, hint)| hint.hard_delete == Some(true))
                        .map(|(name, _)| name.clone()),
                    disposition: r.write_disposition,
                    contract: r.schema_contract,
                },
            )
        })
        .collect();
    if routes.is_empty() {
        return Err(LoadError::NoResources(selected.to_vec()));
    }
    Ok(routes)
}

/// Consumer settings used unless the config's `kafka` table says otherwise.
const CONSUMER_DEFAULTS: [(&str, &str); 3] = [
    ("auto.offset.reset", "earliest"),
    // A subscribed topic created after the loader started is noticed at the next metadata
    // refresh: 30 s instead of librdkafka's 5 minutes.
    ("topic.metadata.refresh.interval.ms", "30000"),
    // The prefetch queue bounds the loader's memory; librdkafka sizes `fetch.max.bytes` to
    // it, never below `message.max.bytes`. 8 MiB replays as fast as 64 MiB did, with about
    // 20 MB less peak memory (BENCHMARKS.md).
    ("queued.max.messages.kbytes", "8192"),
];

fn consumer(
    cfg: &PipelineConfig,
    opts: &LoadOptions,
    context: LoaderContext,
) -> KafkaResult<BaseConsumer<LoaderContext>> {
    let mut client = ClientConfig::new();
    for (k, v) in CONSUMER_DEFAULTS {
        let _ = client.set(k, v);
    }
    for (k, v) in &cfg.kafka {
        let _ = client.set(k, v);
    }
    // Records as large as the producer may send must fit a fetch, or the partition would
    // stall at the first one on a broker that does not hand out an oversized first record
    // (Kafka before 0.10.1). Apache Kafka 4 hands it out anyway (a 10 MiB record loaded
    // with a 1 MiB `fetch.message.max.bytes`); Tansu 0.6 returns it under no fetch limit.
    if let Some(max) = cfg.kafka.get("message.max.bytes")
        && !cfg.kafka.contains_key("fetch.message.max.bytes")
        && !cfg.kafka.contains_key("max.partition.fetch.bytes")
    {
        let _ = client.set("fetch.message.max.bytes", max);
    }
    // Offsets are stored by the loader after each destination commit, never before.
    let _ = client
        .set("group.id", &opts.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    if let Some(id) = &opts.group_instance_id {
        let _ = client.set("group.instance.id", id);
    }
    client.create_with_context(context)
}

/// How [`wait_for_topics`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Waited {
    /// At least one topic exists.
    Ready,
    /// Stopped while no topic existed.
    NoTopics,
    /// Stopped while the broker could not be reached.
    NoBroker,
}

/// Waits until the broker answers (as `broker` allows: for ever by default, since a
/// loader started before its broker is usual in a compose file; saying every few seconds
/// that it cannot reach it, and so does `/health`) and at least one of the topics exists,
/// as a loader started beside the extractor must: librdkafka notices a subscribed topic
/// created later only at its next metadata refresh (see [`CONSUMER_DEFAULTS`]). Says every
/// 10 s which topics it waits for, and which are still missing when it goes on (a resource
/// the extractor never published must not hold up the others). A stop signal ends the wait
/// within a second.
///
/// It asks through the (not yet subscribed) `consumer` and polls it between two attempts:
/// librdkafka's reasons for a failed connection reach [`common::broker`] then, instead of
/// being delivered stale once the broker is up.
fn wait_for_topics(
    consumer: &BaseConsumer<LoaderContext>,
    topics: &[&str],
    stop: &AtomicBool,
    broker: BrokerWait,
) -> Result<Waited, LoadError> {
    const EVERY: Duration = Duration::from_millis(200);
    const SAY_EVERY: Duration = Duration::from_secs(10);
    // Short, so that a stop signal or a broker that comes up is noticed soon.
    const ATTEMPT: Duration = Duration::from_millis(500);
    let mut broker = Some(broker);
    let mut said: Option<Instant> = None;
    loop {
        // One listing of the cluster's topics per check, whatever the number of topics.
        let metadata = match consumer.fetch_metadata(None, ATTEMPT) {
            Ok(metadata) => metadata,
            Err(e) => {
                // Serves librdkafka's log lines and errors (no message comes before the
                // subscription).
                let _ = consumer.poll(Duration::ZERO);
                if let Some(wait) = &mut broker {
                    wait.failed(&e)?;
                    metrics::waiting_for_broker(Some(&wait.status()));
                }
                if stop.load(Ordering::Relaxed) {
                    tracing::info!("stopped while waiting for the Kafka broker");
                    return Ok(Waited::NoBroker);
                }
                let _ = consumer.poll(EVERY);
                continue;
            }
        };
        if let Some(wait) = broker.take() {
            wait.reached();
            metrics::waiting_for_broker(None);
        }
        let missing: Vec<&str> = topics
            .iter()
            .copied()
            .filter(|topic| {
                !metadata.topics().iter().any(|t| {
                    t.name() == *topic && t.error().is_none() && !t.partitions().is_empty()
                })
            })
            .collect();
        if missing.len() < topics.len() {
            if !missing.is_empty() {
                tracing::info!(
                    topics = %missing.join(","),
                    "not created yet: consuming the other topics; these are picked up at the next metadata refresh (topic.metadata.refresh.interval.ms) after their creation"
                );
            }
            return Ok(Waited::Ready);
        }
        if said.is_none_or(|at| at.elapsed() >= SAY_EVERY) {
            tracing::info!(
                topics = %missing.join(","),
                "waiting for the topics to be created (the extractor creates them on its first run)"
            );
            said = Some(Instant::now());
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(Waited::NoTopics);
        }
        std::thread::sleep(EVERY);
    }
}

/// A client that is never subscribed: for metadata and watermark queries.
pub fn plain_client(settings: &BTreeMap<String, String>, name: &str) -> KafkaResult<BaseConsumer> {
    let mut client = ClientConfig::new();
    for (k, v) in settings {
        let _ = client.set(k, v);
    }
    let _ = client
        .set("group.id", name)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    client.create()
}

fn poll_loop(
    consumer: &Arc<BaseConsumer<LoaderContext>>,
    opts: &LoadOptions,
    routes: &BTreeMap<String, Route>,
    schemas: &mut SchemaStore,
    tables: &mut HashMap<(String, usize), Arc<Projection>>,
    lags: &mut lag::LagWatch,
    stop: &AtomicBool,
) -> Result<(), LoadError> {
    let ctx = consumer.context();
    let mut last_progress_check = Instant::now();
    let mut last_report = Instant::now();
    let mut reported = 0;
    let mut turns = fetch::Turns::default();
    while !stop.load(Ordering::Relaxed) {
        let polled = turns.poll(
            consumer,
            Duration::from_millis(100),
            |polled| match polled {
                Ok(msg) => {
                    add_message(ctx, &msg, routes, schemas, tables, consumer).map(|()| false)
                }
                // Summarised once every few seconds by the context (`common::broker`).
                Err(e) if common::broker::is_connection_failure(&e) => Ok(true),
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    Ok(true)
                }
            },
        );
        if let Some(failure) = lock(&ctx.failure).take() {
            return Err(LoadError::Rebalance(failure));
        }
        let idle = match polled {
            Some(result) => result?,
            None => true,
        };
        let due = {
            let p = lock(&ctx.pending);
            p.rows >= opts.batch_size || p.since.is_some_and(|t| t.elapsed() >= opts.batch_wait)
        };
        if due || idle {
            ctx.flush(consumer)?;
            opts.progress
                .update(ctx.records.load(Ordering::Relaxed), None);
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            let records = ctx.records.load(Ordering::Relaxed);
            let survey = match lags.survey(consumer, Duration::from_secs(10)) {
                Ok(survey) => Some(survey),
                Err(e) => {
                    tracing::warn!(error = %e, "measuring the lag");
                    None
                }
            };
            opts.progress
                .update(records, survey.as_ref().map(lag::Survey::view));
            let records_per_second = (records - reported) / PROGRESS_EVERY.as_secs();
            match &survey {
                Some(s) => tracing::info!(
                    records,
                    records_per_second,
                    lag = s.lag(),
                    lag_here = s.lag_here(),
                    partitions_held = s.held(),
                    partitions = s.partitions.len(),
                    stalled = s.stalled,
                    "progress"
                ),
                None => tracing::info!(records, records_per_second, lag = "unknown", "progress"),
            }
            reported = records;
        }
        if opts.until_caught_up
            && idle
            && last_progress_check.elapsed() >= Duration::from_millis(300)
        {
            last_progress_check = Instant::now();
            if caught_up(consumer, lags.client()?)? {
                tracing::info!("caught up: every assigned partition is at its end offset");
                return Ok(());
            }
        }
    }
    Ok(())
}

fn add_message(
    ctx: &LoaderContext,
    msg: &BorrowedMessage<'_>,
    routes: &BTreeMap<String, Route>,
    schemas: &mut SchemaStore,
    tables: &mut HashMap<(String, usize), Arc<Projection>>,
    consumer: &BaseConsumer<LoaderContext>,
) -> Result<(), LoadError> {
    in_order(ctx, msg)?;
    let Some(route) = routes.get(msg.topic()) else {
        return Err(LoadError::Record {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            message: "no configured resource uses this topic".into(),
        });
    };
    if let Some(marker) = header(msg, runs::MARKER_HEADER) {
        return run_marker(ctx, msg, route, marker, consumer);
    }
    let Some(payload) = msg.payload() else {
        return tombstone(ctx, msg, route, consumer);
    };
    // A replace run's records go to the run's staging table.
    let table = match route.disposition {
        WriteDisposition::Replace => {
            match header(msg, runs::RUN_HEADER).and_then(runs::parse_run) {
                Some(run) => destination::staging_table(&route.table, run),
                None => {
                    let message = format!(
                        "a record of a `replace` resource without a valid `{}` header (was it \
                     published by this pipeline's extractor?)",
                        runs::RUN_HEADER
                    );
                    return reject(ctx, msg, message, consumer);
                }
            }
        }
        WriteDisposition::Merge | WriteDisposition::Append => route.table.clone(),
    };
    let decoded = schemas
        .decoder(payload, &route.primary_key)
        .map_err(|e: SchemaLookupError| e.to_string())
        .and_then(|(decoder, datum)| {
            let row = decoder.decode(datum).map_err(|e| e.to_string())?;
            Ok((decoder, row))
        });
    let (decoder, row) = match decoded {
        Ok(ok) => ok,
        Err(message) => return reject(ctx, msg, message, consumer),
    };
    if let Some(column) = &route.hard_delete
        && let Some(key) = hard_delete_key(decoder.table(), &row, column, &route.primary_key)
    {
        let delete = Delete {
            table,
            key_columns: route.primary_key.clone(),
            key,
        };
        return push_delete(ctx, msg, delete, consumer);
    }
    let key = (route.table.clone(), Arc::as_ptr(&decoder) as usize);
    let projection = match tables.get(&key) {
        Some(p) => Arc::clone(p),
        None => {
            let p = Arc::new(projection(ctx, route, decoder.table(), consumer)?);
            let _ = tables.insert(key, Arc::clone(&p));
            p
        }
    };
    let row = match projection.apply(row) {
        Verdict::Write(row) => row,
        Verdict::Reject(message) => return reject(ctx, msg, message, consumer),
        Verdict::Discard(message) => {
            tracing::debug!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), reason = %message, "record discarded");
            let _ = ctx.discarded.fetch_add(1, Ordering::Relaxed);
            metrics::discarded();
            note_offset(ctx, msg);
            return Ok(());
        }
    };
    let schema = Arc::clone(&projection.schema);
    let mut pending = lock(&ctx.pending);
    let origin = (msg.partition(), msg.offset());
    let pending = &mut *pending;
    match (pending.tables.last_mut(), pending.origins.last_mut()) {
        (Some(last), Some((_, origins)))
            if last.table == table && Arc::ptr_eq(&last.schema, &schema) =>
        {
            last.rows.push(row);
            origins.push(origin);
        }
        _ => {
            pending.tables.push(TableBatch {
                table,
                schema,
                rows: vec![row],
            });
            pending.origins.push((msg.topic().to_owned(), vec![origin]));
        }
    }
    pending.rows += 1;
    let _ = pending
        .offsets
        .insert((msg.topic().to_owned(), msg.partition()), msg.offset() + 1);
    let _ = pending.since.get_or_insert_with(Instant::now);
    Ok(())
}

/// How a writer schema's records go into the route's table: as they are unless the
/// resource's schema contract restricts something, in which case the pending batch is
/// written first and the table's current shape is read from the destination.
fn projection(
    ctx: &LoaderContext,
    route: &Route,
    writer: &TableSchema,
    consumer: &BaseConsumer<LoaderContext>,
) -> Result<Projection, LoadError> {
    let mut writer = writer.clone();
    if route.disposition == WriteDisposition::Append {
        // Every record is a new row: a table without a key is appended to.
        writer.primary_key.clear();
    }
    let writer = Arc::new(writer);
    if route.contract == SchemaContract::default() {
        return Ok(Projection::identity(writer));
    }
    ctx.flush(consumer)?;
    // List fields become child tables, not columns of this table.
    let view = lock(&ctx.nester).parent_view(&route.table, &writer);
    let changes = lock(&ctx.destination).schema_changes(&route.table, &view)?;
    let projection = Projection::new(&writer, &changes, route.contract);
    if !projection.is_identity() {
        tracing::info!(table = %route.table, new_columns = ?changes.new_columns, retyped = ?changes.retyped_columns, table_exists = changes.table_exists, "schema contract applies to a new writer schema");
    }
    Ok(projection)
}

/// The value of the message's header `name`, if it has one.
fn header<'a>(msg: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a [u8]> {
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// A control message of the extractor. A run-end marker on a `replace` topic goes into
/// the batch (the destination swaps the table once every partition has ended the run);
/// on another topic it is only consumed. An unknown or malformed marker is rejected like
/// an undecodable record.
fn run_marker(
    ctx: &LoaderContext,
    msg: &BorrowedMessage<'_>,
    route: &Route,
    marker: &[u8],
    consumer: &BaseConsumer<LoaderContext>,
) -> Result<(), LoadError> {
    if marker != runs::RUN_END.as_bytes() {
        let message = format!(
            "unknown control message `{}`",
            String::from_utf8_lossy(marker)
        );
        return reject(ctx, msg, message, consumer);
    }
    let end = match RunEndMarker::from_headers(|name| header(msg, name)) {
        Ok(end) => end,
        Err(message) => return reject(ctx, msg, message, consumer),
    };
    if route.disposition != WriteDisposition::Replace {
        tracing::debug!(
            topic = msg.topic(),
            partition = msg.partition(),
            run = end.run,
            "run-end marker on a topic that is not replaced; skipped"
        );
        note_offset(ctx, msg);
        return Ok(());
    }
    tracing::debug!(
        topic = msg.topic(),
        partition = msg.partition(),
        run = end.run,
        "run ended"
    );
    {
        let mut pending = lock(&ctx.pending);
        pending.run_ends.push(RunEnd {
            topic: msg.topic().to_owned(),
            table: route.table.clone(),
            run: end.run,
            partition: msg.partition(),
            partitions: end.partitions,
        });
        pending.rows += 1;
    }
    note_offset(ctx, msg);
    Ok(())
}

/// The primary key values (as text) of a record that the `hard_delete` column marks as
/// deleted: `true` in a bool column, any non-null value in another; `None` otherwise.
fn hard_delete_key(
    schema: &TableSchema,
    row: &common::schema::Row,
    column: &str,
    primary_key: &[String],
) -> Option<Vec<String>> {
    let index = schema
        .fields
        .iter()
        .position(|f| f.name.eq_ignore_ascii_case(column))?;
    match row.get(index)? {
        None | Some(common::schema::Scalar::Bool(false)) => return None,
        Some(_) => {}
    }
    primary_key
        .iter()
        .map(|key| {
            let value = row.get(schema.field_index(key)?)?.as_ref()?;
            let mut text = String::new();
            value.render(&mut text);
            Some(text)
        })
        .collect()
}

/// A record with a key and no value deletes the row with that primary key. The batch so
/// far is written first, so the delete lands after every earlier version of the row and
/// before every later one. A key that does not fit the primary key is rejected like an
/// undecodable record.
fn tombstone(
    ctx: &LoaderContext,
    msg: &BorrowedMessage<'_>,
    route: &Route,
    consumer: &BaseConsumer<LoaderContext>,
) -> Result<(), LoadError> {
    let key_columns = &route.primary_key;
    let key = msg.key().map(String::from_utf8_lossy);
    let values: Option<Vec<String>> = match (&key, key_columns.len()) {
        (None, _) | (_, 0) => None,
        (Some(key), 1) => Some(vec![key.clone().into_owned()]),
        // Composite keys are joined with `|` by the extractor.
        (Some(key), n) => Some(key.split('|').map(str::to_owned).collect::<Vec<_>>())
            .filter(|parts| parts.len() == n),
    };
    let Some(values) = values else {
        let message = format!(
            "a tombstone whose key {key:?} does not give the primary key ({})",
            key_columns.join(", ")
        );
        return reject(ctx, msg, message, consumer);
    };
    let delete = Delete {
        table: route.table.clone(),
        key_columns: key_columns.clone(),
        key: values,
    };
    push_delete(ctx, msg, delete, consumer)
}

/// Adds a delete to the pending batch. A batch applies its deletes before its rows, so
/// when rows are pending they are written first: the delete then lands after every earlier
/// version of its row and before every later one. Consecutive deletes share a batch.
fn push_delete(
    ctx: &LoaderContext,
    msg: &BorrowedMessage<'_>,
    delete: Delete,
    consumer: &BaseConsumer<LoaderContext>,
) -> Result<(), LoadError> {
    let rows_pending = {
        let pending = lock(&ctx.pending);
        !pending.tables.is_empty() || !pending.run_ends.is_empty()
    };
    if rows_pending {
        ctx.flush(consumer)?;
    }
    {
        let mut pending = lock(&ctx.pending);
        pending.deletes.push(delete);
        pending.rows += 1;
    }
    note_offset(ctx, msg);
    Ok(())
}

/// A record that cannot be decoded: dead-lettered (and marked consumed with the next
/// batch), or, with `--on-error stop`, the end of the run after writing what came before it
/// — nothing after it is marked consumed, so a fixed loader resumes exactly here.
fn reject(
    ctx: &LoaderContext,
    msg: &BorrowedMessage<'_>,
    message: String,
    consumer: &BaseConsumer<LoaderContext>,
) -> Result<(), LoadError> {
    match ctx.on_error {
        OnError::Stop => {
            ctx.flush(consumer)?;
            Err(LoadError::Record {
                topic: msg.topic().to_owned(),
                partition: msg.partition(),
                offset: msg.offset(),
                message,
            })
        }
        OnError::DeadLetter => {
            let letter = Letter {
                topic: msg.topic().to_owned(),
                partition: msg.partition(),
                offset: msg.offset(),
                key: msg.key().map(<[u8]>::to_vec),
                payload: msg.payload().map(<[u8]>::to_vec),
                error: message,
            };
            if lock(&ctx.dead_letters).send(&letter)? {
                metrics::dead_lettered();
            }
            note_offset(ctx, msg);
            Ok(())
        }
    }
}

/// A partition's records must come in offset order (see [`fetch`]): a record older than one
/// already taken (in the pending batch or loaded) is refused before it is applied, so an
/// older version of a row can never overwrite a newer one.
fn in_order(ctx: &LoaderContext, msg: &BorrowedMessage<'_>) -> Result<(), LoadError> {
    let key = (msg.topic().to_owned(), msg.partition());
    let pending = lock(&ctx.pending).offsets.get(&key).copied();
    let taken = pending.or_else(|| lock(&ctx.known_next).get(&key).copied());
    match taken {
        Some(next) if msg.offset() < next => Err(LoadError::Record {
            topic: key.0,
            partition: key.1,
            offset: msg.offset(),
            message: format!(
                "out of order: the partition's records up to offset {} were already taken, \
                 and an older record is never applied over them (was the topic deleted and \
                 created again? then rebuild the destination)",
                next - 1
            ),
        }),
        _ => Ok(()),
    }
}

fn note_offset(ctx: &LoaderContext, msg: &BorrowedMessage<'_>) {
    let mut pending = lock(&ctx.pending);
    let _ = pending
        .offsets
        .insert((msg.topic().to_owned(), msg.partition()), msg.offset() + 1);
    let _ = pending.since.get_or_insert_with(Instant::now);
}

/// How often the loop measures the lag of every partition (see [`lag`]) and logs its
/// progress (records loaded, rate, lag).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// True when the group has given this loader partitions and each one's next offset is
/// the partition's end (high watermark). `watermarks` is a separate client: on the
/// consumer's own connection the query would wait behind its long-polling fetch.
fn caught_up(
    consumer: &BaseConsumer<LoaderContext>,
    watermarks: &BaseConsumer,
) -> Result<bool, LoadError> {
    if !consumer.context().assigned.load(Ordering::SeqCst) {
        return Ok(false);
    }
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok(false);
    }
    let position = consumer.position()?;
    let known = lock(&consumer.context().known_next).clone();
    for elem in assignment.elements() {
        let (topic, partition) = (elem.topic(), elem.partition());
        let (low, high) = watermarks.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        let offset_in = |tpl: &TopicPartitionList| match tpl
            .find_partition(topic, partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        let next = match offset_in(&position)
            .or_else(|| known.get(&(topic.to_owned(), partition)).copied())
        {
            Some(next) => next,
            // Nothing consumed yet and nothing stored: it starts at the beginning.
            None => low,
        };
        if next < high {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `main` prints (`{:#}` walks `source()`s; `error_chain` also drops repeats):
    /// every cause once. `#[error("… {0}")]` on a `#[from]` field printed it twice:
    /// `committing the batch transaction: database or disk is full: committing the …`.
    #[test]
    fn a_nested_error_chain_prints_each_cause_once() {
        // As rusqlite reports a failed commit: the code and SQLite's message.
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".to_owned()),
        );
        let nested: anyhow::Error = LoadError::from(DestinationError::Transaction {
            action: "committing",
            error: Box::new(full),
        })
        .into();
        let nested = nested.context("loading");
        let expected = "loading: committing the batch transaction: database or disk is full";
        assert_eq!(format!("{nested:#}"), expected);
        assert_eq!(common::cli::error_chain(nested.as_ref()), expected);

        let kafka: anyhow::Error = LoadError::from(KafkaError::MessageConsumption(
            rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
        ))
        .into();
        let line = format!("{kafka:#}");
        assert!(line.starts_with("Kafka consumer: "), "{line}");
        assert_eq!(
            line.matches("Broker transport failure").count(),
            1,
            "{line}"
        );
    }
}
