//! The loader: consumes the extractor's topics in a consumer group, decodes each record
//! with its writer schema and merges it by primary key into the destination.
//!
//! Delivery: a batch of records is written in ONE destination transaction together with
//! the next offset of every partition it covers (`_pipeline_offsets`). Only after that
//! commit are the offsets stored in the consumer (and committed to Kafka for lag
//! monitoring). On assignment the loader starts each partition at the offset its
//! destination recorded, so a crash at any moment neither loses nor repeats a row.
//! On revocation the pending batch is written before the partitions are released.
//!
//! Where to look:
//! - [`consumer`]: rdkafka settings, waiting for the broker and topics, the poll loop, and
//!   a consumer context that only forwards rebalance events to the writer;
//! - [`fetch`]: the order records are taken in (a queue per partition, in turns);
//! - [`intake`]: one consumed record into the pending batch (routes, decoding, contract,
//!   deletes, run ends, rejects);
//! - [`batch`]: the pending batch (pure);
//! - [`writer`]: owns the destination, nesting and dead letters: flush, salvage, assign,
//!   revoke;
//! - [`reread`]: single records read again (refused records, replay starts);
//! - [`lag`]: the lag of every partition and stalled partitions;
//! - [`destination`]: SQLite and PostgreSQL behind one trait.

mod batch;
mod consumer;
pub mod contract;
pub mod destination;
pub mod dlq;
mod error;
mod fetch;
mod intake;
pub mod lag;
pub mod metrics;
pub mod nested;
pub mod progress_bar;
mod reread;
pub mod schemas;
pub mod show_rows;
mod writer;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::broker::BrokerWait;
use common::config::PipelineConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use tokio_util::sync::CancellationToken;

use crate::consumer::Waited;
pub use crate::consumer::{LoaderContext, plain_client};
use crate::dlq::OnError;
pub use crate::error::{LoadError, RebalanceError};
use crate::intake::Intake;
use crate::schemas::SchemaStore;
use crate::writer::{BatchWriter, WriterSettings};

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
    pub progress: progress_bar::LoadProgress,
    /// How long to wait for a Kafka broker that cannot be reached before failing (`None`:
    /// for ever, saying so every few seconds).
    pub broker_timeout: Option<Duration>,
    /// How often the lag is measured (gauges, stall warning) and the progress logged.
    pub lag_every: Duration,
}

/// The target of the loader's own log lines (`loader`, whichever module logs them), as
/// before the crate was split into modules: log filters and readers see the same lines.
pub(crate) const LOG_TARGET: &str = "loader";

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
    pub dead_letter_topics: BTreeMap<String, u64>,
    /// Records the schema contract discarded (`discard_row`).
    pub discarded: u64,
    pub seconds: f64,
    /// Records left to load at the end, over every partition of the topics whoever holds
    /// it (see [`lag`]); `None` when it could not be measured.
    pub lag: Option<i64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere already ended the run; keep going with the
    // data, which is only ever mutated whole.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Consumes until `stop` is cancelled (or, with `until_caught_up`, until every assigned
/// partition is at its end). Blocking: run it on its own thread.
pub fn run(
    cfg: &PipelineConfig,
    opts: &LoadOptions,
    registry: Option<SrSettings>,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let routes = intake::routes(cfg, &opts.resources)?;
    // Before the first client, so that the wait reports its first connection failure.
    let servers = cfg
        .kafka
        .get("bootstrap.servers")
        .map_or("", String::as_str);
    let wait = BrokerWait::start(servers, opts.broker_timeout, BROKER_TIMEOUT_SETTING);
    let mut destination = destination::open(&opts.destination)?;
    destination.set_version_column(opts.version_column.clone());
    let writer = BatchWriter::new(
        destination,
        WriterSettings {
            group_id: opts.group_id.clone(),
            on_error: opts.on_error,
            nest_routes: intake::nest_routes(cfg, &opts.resources),
            replay_from: opts.replay_from,
            kafka: cfg.kafka.clone(),
        },
    );
    let consumer = consumer::start(cfg, opts, writer)?;
    let topic_names: Vec<String> = routes.keys().cloned().collect();
    let topics: Vec<&str> = topic_names.iter().map(String::as_str).collect();
    match consumer::wait_for_topics(&consumer, &topics, &stop, wait)? {
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

    let schemas = SchemaStore::new(&cfg.schema_topic, &cfg.kafka, registry, runtime);
    let mut intake = Intake::new(routes, schemas);
    let mut lags = lag::LagWatch::new(&topics, &cfg.kafka, &opts.group_id);
    let result = consumer::poll_loop(&consumer, opts, &mut intake, &mut lags, &stop);
    let ctx = consumer.context();
    // Whatever ended the loop, what was decoded before it is written and committed.
    let flushed = ctx.writer().flush(&*consumer);
    // What is left to load, by this loader or the rest of the group, measured after the
    // last batch (and before the partitions are released, to tell which were held here).
    let left = if flushed.is_ok() {
        consumer::final_lag(&consumer, &mut lags)
    } else {
        None
    };
    let records = ctx.writer().records();
    opts.progress
        .update(records, left.as_ref().map(lag::Survey::view));
    opts.progress.finish();
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit");
    }
    consumer.unsubscribe();
    result?;
    flushed?;
    let writer = ctx.writer();
    let dead_letter_topics = writer.dead_letter_counts().clone();
    Ok(LoadReport {
        records: writer.records(),
        batches: writer.batches(),
        dead_letters: dead_letter_topics.values().sum(),
        dead_letter_topics,
        discarded: writer.discarded(),
        seconds: started.elapsed().as_secs_f64(),
        lag: left.as_ref().map(lag::Survey::lag),
    })
}
