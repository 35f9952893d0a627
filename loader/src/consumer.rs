//! The Kafka side of the loader: the consumer's settings, waiting for the broker and the
//! topics, the poll loop, and the consumer context. The context only forwards: on a
//! rebalance it hands the event to the [`BatchWriter`] that owns the state (pending batch,
//! known offsets, dead letters) and keeps the first failure, typed, for the loop to report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use common::broker::BrokerWait;
use common::config::PipelineConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::error::{LoadError, RebalanceError};
use crate::intake::Intake;
use crate::writer::BatchWriter;
use crate::{LoadOptions, fetch, lag, lock, metrics};

/// Log lines keep the target they had when this code was in the crate root.
const LOG_TARGET: &str = crate::LOG_TARGET;

/// Shared between the poll loop and librdkafka's rebalance callback (which runs inside
/// `poll`, on the same thread). The poll loop never holds the writer across a poll.
pub struct LoaderContext {
    writer: Mutex<BatchWriter>,
    /// A failure raised inside a callback, reported by the loop.
    failure: Mutex<Option<RebalanceError>>,
    assigned: AtomicBool,
    /// Counts assignments and revocations: the poll loop takes the partition queues of
    /// each new assignment (see [`fetch`]).
    assignments: AtomicU64,
    /// The consumer this is the context of, for splitting partition queues in the rebalance
    /// callback (which gets the consumer by reference, not the `Arc` splitting needs).
    consumer: OnceLock<Weak<BaseConsumer<LoaderContext>>>,
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
                let failures = self.writer().on_assign(tpl);
                for failure in failures {
                    self.fail(failure);
                }
                tracing::info!(target: LOG_TARGET, partitions = %describe(tpl), "partitions assigned");
                // Before `assign`, so that no record of these partitions is fetched into
                // the consumer queue: each partition's records come in order from its own.
                match self.consumer.get().and_then(Weak::upgrade) {
                    Some(me) => fetch::split_before_assign(&me, tpl),
                    // Set before subscribing, and the consumer outlives its callbacks.
                    None => self.fail(RebalanceError::ConsumerGone),
                }
                if let Err(e) = consumer.assign(tpl) {
                    self.fail(RebalanceError::Assign(e));
                }
                self.assigned.store(true, Ordering::SeqCst);
                let _ = self.assignments.fetch_add(1, Ordering::SeqCst);
                metrics::assignment(tpl.count());
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(target: LOG_TARGET, partitions = %describe(tpl), "partitions revoked; writing the pending batch first");
                let flushed = self.writer().on_revoke(consumer);
                if let Err(e) = flushed {
                    self.fail(e);
                }
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(target: LOG_TARGET, error = %e, "commit on revoke");
                }
                if let Err(e) = consumer.unassign() {
                    self.fail(RebalanceError::Release(e));
                }
                self.assigned.store(false, Ordering::SeqCst);
                let _ = self.assignments.fetch_add(1, Ordering::SeqCst);
                metrics::assignment(0);
            }
            other => {
                tracing::warn!(target: LOG_TARGET, error = ?other, "rebalance error");
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
    /// The writer; never held across a poll of the consumer (its callbacks take it).
    pub(crate) fn writer(&self) -> MutexGuard<'_, BatchWriter> {
        lock(&self.writer)
    }

    /// Assignments and revocations so far.
    pub(crate) fn assignments(&self) -> u64 {
        self.assignments.load(Ordering::SeqCst)
    }

    /// Whether a rebalance callback failed (the loop then ends with that error).
    pub(crate) fn failed(&self) -> bool {
        lock(&self.failure).is_some()
    }

    /// Logs a failure of a callback; the first one ends the run.
    pub(crate) fn fail(&self, error: RebalanceError) {
        let message = error.to_string();
        tracing::error!(target: LOG_TARGET, error = %message, "loader failure");
        metrics::failed(&message);
        let _ = lock(&self.failure).get_or_insert(error);
    }
}

/// The consumer, with a context around `writer`, not yet subscribed.
pub(crate) fn start(
    cfg: &PipelineConfig,
    opts: &LoadOptions,
    writer: BatchWriter,
) -> KafkaResult<Arc<BaseConsumer<LoaderContext>>> {
    let context = LoaderContext {
        writer: Mutex::new(writer),
        failure: Mutex::new(None),
        assigned: AtomicBool::new(false),
        assignments: AtomicU64::new(0),
        consumer: OnceLock::new(),
    };
    let consumer = Arc::new(consumer(cfg, opts, context)?);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    Ok(consumer)
}

/// Consumer settings used unless the config's `kafka` table says otherwise.
const CONSUMER_DEFAULTS: [(&str, &str); 4] = [
    ("auto.offset.reset", "earliest"),
    // A subscribed topic created after the loader started is noticed at the next metadata
    // refresh: 30 s instead of librdkafka's 5 minutes.
    ("topic.metadata.refresh.interval.ms", "30000"),
    // The prefetch queues bound the loader's memory. The limit holds for each partition's
    // queue (the loader splits every partition off: `fetch`), so 8 MiB held up to 48 MiB
    // of six partitions: a 1M-record replay peaked at 171 MB, 82 MB at 100k.
    // librdkafka sizes `fetch.max.bytes` to it, never below `message.max.bytes`, so a
    // large record still fits. At 512 KiB the same replay peaked at 54 MB, as fast.
    ("queued.max.messages.kbytes", "512"),
    // A partition whose queue is full is fetched again after this long: librdkafka's
    // 1 s default left a small queue empty most of the time (the 1M replay took 13 s
    // instead of 8 at 2 MiB). 10 ms keeps it filled.
    ("fetch.queue.backoff.ms", "10"),
];

fn consumer(
    cfg: &PipelineConfig,
    opts: &LoadOptions,
    context: LoaderContext,
) -> KafkaResult<BaseConsumer<LoaderContext>> {
    let mut client = common::broker::client_config_with(&CONSUMER_DEFAULTS, &cfg.kafka);
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
    // Only records of committed transactions: the extractor's aborted ones (a run killed
    // mid-transaction, a fenced extractor) are never loaded. librdkafka's default too, set
    // here so that a config cannot turn it off.
    if cfg
        .kafka
        .get("isolation.level")
        .is_some_and(|level| level != "read_committed")
    {
        tracing::warn!(target: LOG_TARGET, "kafka.isolation.level is always read_committed: records of aborted transactions must not be loaded");
    }
    // Offsets are stored by the loader after each destination commit, never before.
    let _ = client
        .set("isolation.level", "read_committed")
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
pub(crate) enum Waited {
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
pub(crate) fn wait_for_topics(
    consumer: &BaseConsumer<LoaderContext>,
    topics: &[&str],
    stop: &CancellationToken,
    broker: BrokerWait,
) -> Result<Waited, LoadError> {
    const EVERY: Duration = Duration::from_millis(200);
    // A loader started beside the extractor of a first run finds the topics soon after
    // their creation: the checks start this far apart and grow by half to `EVERY`. At
    // 200 ms from the start, case 1's loader found its topic 160 ms after the extractor
    // created it (BENCHMARKS.md).
    const FIRST: Duration = Duration::from_millis(10);
    const SAY_EVERY: Duration = Duration::from_secs(10);
    // Short, so that a stop signal or a broker that comes up is noticed soon.
    const ATTEMPT: Duration = Duration::from_millis(500);
    let mut broker = Some(broker);
    let mut said: Option<Instant> = None;
    let mut pause = FIRST;
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
                if stop.is_cancelled() {
                    tracing::info!(target: LOG_TARGET, "stopped while waiting for the Kafka broker");
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
                tracing::info!(target: LOG_TARGET,
                    topics = %missing.join(","),
                    "not created yet: consuming the other topics; these are picked up at the next metadata refresh (topic.metadata.refresh.interval.ms) after their creation"
                );
            }
            return Ok(Waited::Ready);
        }
        if said.is_none_or(|at| at.elapsed() >= SAY_EVERY) {
            tracing::info!(target: LOG_TARGET,
                topics = %missing.join(","),
                "waiting for the topics to be created (the extractor creates them on its first run)"
            );
            said = Some(Instant::now());
        }
        if stop.is_cancelled() {
            return Ok(Waited::NoTopics);
        }
        std::thread::sleep(pause);
        pause = (pause * 3 / 2).min(EVERY);
    }
}

/// A client that is never subscribed: for metadata and watermark queries.
pub fn plain_client(settings: &BTreeMap<String, String>, name: &str) -> KafkaResult<BaseConsumer> {
    let mut client = common::broker::client_config(settings);
    let _ = client
        .set("group.id", name)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    client.create()
}

/// Takes records into batches and writes each batch when it is due (or nothing more
/// came), until `stop` is cancelled, a rebalance callback failed, or, with
/// `until_caught_up`, every assigned partition is at its end. Logs the progress and the
/// lag every [`LoadOptions::lag_every`].
pub(crate) fn poll_loop(
    consumer: &Arc<BaseConsumer<LoaderContext>>,
    opts: &LoadOptions,
    intake: &mut Intake,
    lags: &mut lag::LagWatch,
    stop: &CancellationToken,
) -> Result<(), LoadError> {
    let ctx = consumer.context();
    let mut last_progress_check = Instant::now();
    let mut last_report = Instant::now();
    let mut reported = 0;
    let mut turns = fetch::Turns::default();
    while !stop.is_cancelled() {
        let polled = turns.poll(consumer, IDLE_AFTER, |polled| match polled {
            Ok(msg) => intake
                .add(&mut ctx.writer(), &msg, &**consumer)
                .map(|()| false),
            // Summarised once every few seconds by the context (`common::broker`).
            Err(e) if common::broker::is_connection_failure(&e) => Ok(true),
            Err(e) => {
                tracing::warn!(target: LOG_TARGET, error = %e, "consumer error");
                Ok(true)
            }
        });
        if let Some(failure) = lock(&ctx.failure).take() {
            return Err(LoadError::Rebalance(Box::new(failure)));
        }
        let idle = match polled {
            Some(result) => result?,
            None => true,
        };
        // One clock reading per turn serves every check below.
        let now = Instant::now();
        let due = ctx
            .writer()
            .pending_ref()
            .is_due(now, opts.batch_size, opts.batch_wait);
        if due || idle {
            ctx.writer().flush(&**consumer)?;
            opts.progress.update(ctx.writer().records(), None);
        }
        if idle {
            past_commit_markers(consumer)?;
        }
        let since_report = now.saturating_duration_since(last_report);
        if since_report >= opts.lag_every {
            last_report = Instant::now();
            let records = ctx.writer().records();
            let survey = match lags.survey(consumer, Duration::from_secs(10)) {
                Ok(survey) => Some(survey),
                Err(e) => {
                    tracing::warn!(target: LOG_TARGET, error = %e, "measuring the lag");
                    None
                }
            };
            opts.progress
                .update(records, survey.as_ref().map(lag::Survey::view));
            let records_per_second =
                ((records - reported) as f64 / since_report.as_secs_f64()).round() as u64;
            match &survey {
                Some(s) => tracing::info!(target: LOG_TARGET,
                    records,
                    records_per_second,
                    lag = s.lag(),
                    lag_here = s.lag_here(),
                    partitions_held = s.held(),
                    partitions = s.partitions.len(),
                    stalled = s.stalled,
                    "progress"
                ),
                None => {
                    tracing::info!(target: LOG_TARGET, records, records_per_second, lag = "unknown", "progress")
                }
            }
            reported = records;
        }
        if opts.until_caught_up
            && idle
            && now.saturating_duration_since(last_progress_check) >= Duration::from_millis(300)
        {
            last_progress_check = Instant::now();
            if caught_up(consumer, lags.client()?)? {
                tracing::info!(target: LOG_TARGET, "caught up: every assigned partition is at its end offset");
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Stores, for each partition this loader holds and has nothing pending of, its position
/// when that is past the offset the destination stored: the records before it were all
/// loaded, and what lies between is the commit marker of a transaction (or the records of
/// an aborted one), which a `read_committed` consumer steps over but never gets. Without
/// this the stored offset would stop at a transaction's marker, and lag figures (this
/// loader's, Kafka's tools') would count it for ever, the partition soon "stalled".
/// Written as a batch of offsets only, when the loop is idle.
fn past_commit_markers(consumer: &BaseConsumer<LoaderContext>) -> Result<(), LoadError> {
    let position = consumer.position()?;
    let mut writer = consumer.context().writer();
    let mut moved = false;
    for e in position.elements() {
        let Offset::Offset(at) = e.offset() else {
            continue;
        };
        if writer
            .pending_ref()
            .next_offset(e.topic(), e.partition())
            .is_some()
        {
            continue;
        }
        let key = (e.topic().to_owned(), e.partition());
        if writer
            .known_next()
            .get(&key)
            .is_some_and(|known| at > *known)
        {
            // `note_offset` takes the offset of the last thing consumed.
            writer
                .pending()
                .note_offset(e.topic(), e.partition(), at - 1);
            moved = true;
        }
    }
    if moved {
        writer.flush(consumer)?;
    }
    Ok(())
}

/// The lag of every partition when the run ends, with a log line naming the partitions
/// still behind; `None` (and a warning) when the broker or the destination does not answer.
pub(crate) fn final_lag(
    consumer: &BaseConsumer<LoaderContext>,
    lags: &mut lag::LagWatch,
) -> Option<lag::Survey> {
    match lags.survey(consumer, Duration::from_secs(5)) {
        Ok(survey) => {
            if survey.lag() > 0 {
                tracing::info!(target: LOG_TARGET,
                    lag = survey.lag(),
                    partitions = %survey.behind(),
                    stalled = survey.stalled,
                    "records left to load at exit (partition=lag)"
                );
            }
            Some(survey)
        }
        Err(e) => {
            tracing::warn!(target: LOG_TARGET, error = %e, "measuring the lag left at exit");
            None
        }
    }
}

/// How long nothing may arrive before the loop counts as idle and writes what it holds (a
/// partly filled batch is written at the latest after `--batch-wait-ms`): the end of an
/// extractor's run, or of one of its transactions, reaches the destination this long after
/// its last record. It was 100 ms; the poll's wake-up is 10 ms ([`fetch`]).
const IDLE_AFTER: Duration = Duration::from_millis(20);

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
    let known = consumer.context().writer().known_next().clone();
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
