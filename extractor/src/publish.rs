//! The Kafka side: an idempotent producer (`enable.idempotence=true`, `acks=all`) keyed by
//! primary key, or one transactional producer per resource ([`Publisher::transactional`],
//! its transactions driven by `transaction`), the topics they write, and the writer
//! schemas the shared producer publishes so that a replay months later still decodes:
//! - without a schema registry (the default): Avro single-object encoding, and each writer
//!   schema once on a compacted schema topic keyed by its fingerprint (hex);
//! - with `schema_registry.url`: the Confluent wire format, the schema registered under
//!   the subject `<topic>-value`.
//!
//! A delivery callback counts acknowledgements; [`Publisher::finish`] waits for every
//! outstanding message and fails unless each one was acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::avro::Encoder;
use common::broker::{BrokerContext, BrokerWait, Unreachable};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

mod transactional;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Kafka client config: {0}")]
    Config(String),
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    #[error("creating topic `{topic}`: {message}")]
    CreateTopic { topic: String, message: String },
    #[error("producing to `{topic}`: {message}")]
    Produce { topic: String, message: String },
    #[error("producing the record with key {key:?} ({bytes} bytes) to `{topic}`: {message}{hint}")]
    Record {
        topic: String,
        key: String,
        bytes: usize,
        message: String,
        hint: &'static str,
    },
    #[error(
        "{failed} of {sent} messages were not acknowledged by the broker; first failure: topic {topic} \
         partition {partition}: {message}{hint}"
    )]
    Delivery {
        sent: u64,
        failed: u64,
        topic: String,
        partition: i32,
        message: String,
        hint: &'static str,
    },
    #[error("{outstanding} messages still unacknowledged after waiting {waited:?} for the broker")]
    FlushTimeout { outstanding: u64, waited: Duration },
    #[error(
        "registering the schema of `{topic}` under subject `{subject}` in the schema registry: {message}"
    )]
    Registry {
        topic: String,
        subject: String,
        message: String,
    },
    #[error(
        "another extractor took over: a newer producer with transactional.id `{transactional_id}` \
         fenced this one ({message}); this run stopped without writing more records or state"
    )]
    Fenced {
        transactional_id: String,
        message: String,
    },
    #[error("Kafka transaction of transactional.id `{transactional_id}`: {step}: {message}")]
    Transaction {
        transactional_id: String,
        step: &'static str,
        message: String,
    },
}

impl PublishError {
    /// Whether another extractor took over (see [`Publisher::init_transactions`]).
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }
}

/// Whether `code` says that a newer producer with the same `transactional.id` fenced this
/// one: librdkafka's own fatal `_FENCED`, or the broker's answers to a fenced epoch.
pub fn is_fenced_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// How the values of one writer schema are framed, decided once per schema.
#[derive(Debug, Clone, Copy)]
pub enum Framing {
    SingleObject,
    Confluent { schema_id: u32 },
}

#[derive(Default)]
struct FirstFailure {
    topic: String,
    partition: i32,
    message: String,
    /// Whether the broker refused the message as too large for the topic.
    too_large: bool,
    /// Whether it was purged (an aborted transaction) rather than refused.
    purged: bool,
}

/// The delivery reports still outstanding for one group of messages (a page), so that a
/// checkpoint can wait until everything before it was acknowledged.
#[derive(Debug, Default)]
pub struct Acks {
    pending: AtomicU64,
    failed: AtomicU64,
}

impl Acks {
    /// Whether every message sent with these acks has had its delivery report.
    pub fn settled(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Whether the broker refused any of them.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire) > 0
    }

    pub(crate) fn sending(&self) {
        let _ = self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// One delivery report (or a send that never left).
    pub(crate) fn reported(&self, ok: bool) {
        if !ok {
            let _ = self.failed.fetch_add(1, Ordering::AcqRel);
        }
        let _ = self.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts acknowledgements and failures from librdkafka's delivery reports.
#[derive(Default)]
pub struct DeliveryCounter {
    acked: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<FirstFailure>>,
}

/// librdkafka's connection failures are summarised (see [`common::broker`]).
impl ClientContext for DeliveryCounter {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        common::broker::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        common::broker::error(&error, reason);
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = Arc<Acks>;

    fn delivery(&self, result: &DeliveryResult<'_>, acks: Arc<Acks>) {
        acks.reported(result.is_ok());
        match result {
            Ok(_) => {
                let _ = self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, msg)) => {
                let _ = self.failed.fetch_add(1, Ordering::Relaxed);
                // Messages purged by an aborted transaction say nothing of why it failed:
                // the refusal that failed it, reported later, replaces them.
                let purged = |code: Option<RDKafkaErrorCode>| {
                    matches!(
                        code,
                        Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                    )
                };
                if let Ok(mut first) = self.first_failure.lock()
                    && first
                        .as_ref()
                        .is_none_or(|f| f.purged && !purged(err.rdkafka_error_code()))
                {
                    *first = Some(FirstFailure {
                        topic: msg.topic().to_owned(),
                        partition: msg.partition(),
                        message: err.to_string(),
                        too_large: err.rdkafka_error_code()
                            == Some(RDKafkaErrorCode::MessageSizeTooLarge),
                        purged: purged(err.rdkafka_error_code()),
                    });
                }
            }
        }
    }
}

/// How long one attempt to reach the broker may take: short, so a stop signal or a
/// broker that comes up is noticed soon.
const BROKER_ATTEMPT: Duration = Duration::from_millis(500);
/// The pause between two attempts.
const BROKER_RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How long [`Publisher::ensure_topics`] waits for the leaders of the topics it created.
const LEADERS_WAIT: Duration = Duration::from_secs(5);
/// How often it asks.
const LEADERS_POLL: Duration = Duration::from_millis(5);

/// librdkafka settings the pipeline's guarantees rest on; a config cannot turn them off.
const ENFORCED: [(&str, &str); 2] = [("enable.idempotence", "true"), ("acks", "all")];

/// Producer settings used unless the config's `kafka` table says otherwise.
const PRODUCER_DEFAULTS: [(&str, &str); 6] = [
    ("linger.ms", "20"),
    ("batch.num.messages", "10000"),
    ("batch.size", "1048576"),
    // The send queue bounds the extractor's memory: when the API is faster than the broker,
    // fetching waits here instead of buffering without limit.
    // 8 MiB is a fraction of a second of what the broker takes: a larger queue published
    // no faster and only added memory (BENCHMARKS.md).
    ("queue.buffering.max.messages", "20000"),
    ("queue.buffering.max.kbytes", "8192"),
    // Java-client compatible key hashing, so other producers agree on partitions.
    ("partitioner", "murmur2_random"),
];

pub use common::broker::client_config;

/// What a raised `message.max.bytes` changes besides the producer's own check.
#[derive(Debug, PartialEq)]
struct LargeRecords {
    /// `queue.buffering.max.kbytes` unless the config sets it: a record waits in the send
    /// queue before it leaves, and one the queue cannot hold is refused with "queue full"
    /// for ever. The queue holds the largest record plus the usual 8 MiB.
    queue_kbytes: Option<String>,
    /// `max.message.bytes` for the resource topics the extractor creates: the broker's
    /// default (about 1 MiB) would refuse what the producer may send. A record batch
    /// carries some framing besides its records: 1 KiB is ample.
    topic_max_message_bytes: Option<String>,
}

impl LargeRecords {
    fn from_settings(settings: &BTreeMap<String, String>) -> Self {
        let max = settings
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse::<usize>().ok());
        Self {
            queue_kbytes: max
                .filter(|_| !settings.contains_key("queue.buffering.max.kbytes"))
                .map(|max| (max.div_ceil(1024) + 8192).to_string()),
            topic_max_message_bytes: max.map(|max| (max + 1024).to_string()),
        }
    }
}

pub struct Publisher {
    producer: ThreadedProducer<DeliveryCounter>,
    settings: BTreeMap<String, String>,
    /// librdkafka's send queue in bytes (`queue.buffering.max.kbytes`): a record larger
    /// than this could never be enqueued.
    queue_bytes: usize,
    /// `max.message.bytes` for the resource topics this publisher creates, when the config
    /// raises `message.max.bytes`.
    topic_max_message_bytes: Option<String>,
    schema_topic: String,
    registry: Option<SrSettings>,
    sent: AtomicU64,
    bytes: AtomicU64,
    framings: tokio::sync::Mutex<HashMap<(String, u64), Framing>>,
    /// The acks of messages nobody waits for one by one.
    untracked: Arc<Acks>,
    /// Set for a transactional producer (see [`Publisher::transactional`]).
    transactional_id: Option<String>,
}

impl Publisher {
    pub fn new(
        settings: &BTreeMap<String, String>,
        schema_topic: &str,
        registry: Option<SrSettings>,
    ) -> Result<Self, PublishError> {
        let mut cfg = common::broker::client_config_with(&PRODUCER_DEFAULTS, settings);
        let limits = LargeRecords::from_settings(settings);
        if let Some(kbytes) = &limits.queue_kbytes {
            let _ = cfg.set("queue.buffering.max.kbytes", kbytes);
        }
        let queue_bytes = cfg
            .get("queue.buffering.max.kbytes")
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(usize::MAX, |kb| kb.saturating_mul(1024));
        for (k, v) in ENFORCED {
            if cfg.get(k).is_some_and(|given| given != v) {
                tracing::warn!(
                    setting = k,
                    "kafka.{k} is always {v}: the pipeline's delivery guarantee needs it"
                );
            }
            let _ = cfg.set(k, v);
        }
        let producer: ThreadedProducer<DeliveryCounter> = cfg
            .create_with_context(DeliveryCounter::default())
            .map_err(|e| PublishError::Config(e.to_string()))?;
        Ok(Self {
            producer,
            settings: settings.clone(),
            queue_bytes,
            topic_max_message_bytes: limits.topic_max_message_bytes,
            schema_topic: schema_topic.to_owned(),
            registry,
            sent: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            framings: tokio::sync::Mutex::new(HashMap::new()),
            untracked: Arc::default(),
            transactional_id: settings.get("transactional.id").cloned(),
        })
    }

    /// Waits until the broker answers a metadata request, for as long as `wait` allows
    /// (started before this publisher, so that it reports the first connection failure).
    /// It says every few seconds that it cannot reach the broker and what librdkafka said
    /// (see [`common::broker`]); quiet when the broker answers at once.
    pub async fn wait_for_broker(&self, mut wait: BrokerWait) -> Result<(), PublishError> {
        loop {
            let producer = self.producer.clone();
            let attempt = tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(None, BROKER_ATTEMPT)
                    .map(|_| ())
            })
            .await;
            let error = match attempt {
                Ok(Ok(())) => {
                    wait.reached();
                    return Ok(());
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("metadata task failed: {e}"),
            };
            wait.failed(&error)?;
            tokio::time::sleep(BROKER_RETRY_PAUSE).await;
        }
    }

    /// Creates, in one request, those of the resource topics, the compacted schema topic
    /// and the compacted `state_topic` (one partition each) that the cluster's metadata does
    /// not list: an admin client and a CreateTopics request cost 26-37 ms on Apache Kafka
    /// (1-5 ms on Tansu) even when every topic exists, the listing about 1 ms.
    ///
    /// The listing goes through the producer's own client, which connects it: the
    /// idempotent producer then has its producer id before the first record, instead of
    /// connecting only when a message is queued and retrying the id on a 500 ms timer
    /// (which delayed the first acknowledgement by up to a second).
    pub async fn ensure_topics(
        &self,
        topics: &[String],
        state_topic: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<(), PublishError> {
        let compacted = |name| {
            NewTopic::new(name, 1, TopicReplication::Fixed(replication))
                .set("cleanup.policy", "compact")
        };
        let mut new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| {
                let topic = NewTopic::new(t, partitions, TopicReplication::Fixed(replication));
                // The broker's own limit (`message.max.bytes`, about 1 MiB by default)
                // would refuse what the config lets the producer send.
                match &self.topic_max_message_bytes {
                    Some(max) => topic.set("max.message.bytes", max),
                    None => topic,
                }
            })
            .collect();
        if self.registry.is_none() {
            new_topics.push(compacted(&self.schema_topic));
        }
        new_topics.push(compacted(state_topic));
        let producer = self.producer.clone();
        let listed = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|md| {
                    md.topics()
                        .iter()
                        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                        .map(|t| t.name().to_owned())
                        .collect::<Vec<_>>()
                })
        })
        .await;
        match listed {
            Ok(Ok(existing)) => new_topics.retain(|t| !existing.iter().any(|e| e == t.name)),
            // Creating them all says what is wrong, if anything is.
            Ok(Err(e)) => tracing::debug!(error = %e, "listing topics failed"),
            Err(e) => tracing::debug!(error = %e, "listing topics failed"),
        }
        if new_topics.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<BrokerContext> = client_config(&self.settings)
            .create_with_context(BrokerContext)
            .map_err(|e| PublishError::Config(e.to_string()))?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(new_topics.iter(), &opts)
            .await
            .map_err(|e| PublishError::CreateTopic {
                topic: new_topics
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", "),
                message: e.to_string(),
            })?;
        release(admin);
        let mut created = Vec::new();
        for result in results {
            match result {
                Ok(topic) => {
                    tracing::info!(topic, "created topic");
                    created.push(topic);
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(PublishError::CreateTopic {
                        topic,
                        message: code.to_string(),
                    });
                }
            }
        }
        self.wait_for_leaders(created).await;
        Ok(())
    }

    /// Waits, for [`LEADERS_WAIT`] at most, until every partition of the `topics` just
    /// created has a leader that answers for it. Apache Kafka answers CreateTopics before
    /// then: a client that uses such a topic is told it has no partition, or that the
    /// broker is not its leader, and tries again only after 100 ms
    /// (`topic.metadata.refresh.fast.interval.ms`, `retry.backoff.ms`). The probe
    /// transaction and the state read, both on the new state topic, waited that long.
    /// Asking here every few milliseconds, the clients that come next find the leaders
    /// ready. Past the limit the run goes on: its clients retry on their own.
    async fn wait_for_leaders(&self, topics: Vec<String>) {
        if topics.is_empty() {
            return;
        }
        let producer = self.producer.clone();
        let waited = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + LEADERS_WAIT;
            // Led: the metadata names a leader for each partition, and that leader answers
            // for it (the metadata has it a moment before the leader itself knows).
            let led = |topic: &str| {
                let client = producer.client();
                let partitions = client
                    .fetch_metadata(Some(topic), BROKER_ATTEMPT)
                    .ok()
                    .and_then(|md| {
                        let t = md.topics().iter().find(|t| t.name() == topic)?;
                        let ready = t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions()
                                .iter()
                                .all(|p| p.error().is_none() && p.leader() >= 0);
                        ready.then(|| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                    });
                partitions.is_some_and(|ids| {
                    ids.iter()
                        .all(|&p| client.fetch_watermarks(topic, p, BROKER_ATTEMPT).is_ok())
                })
            };
            let mut waiting = topics;
            while Instant::now() < deadline {
                waiting.retain(|t| !led(t));
                if waiting.is_empty() {
                    return Ok(());
                }
                std::thread::sleep(LEADERS_POLL);
            }
            Err(waiting)
        })
        .await;
        match waited {
            Ok(Ok(())) => {}
            Ok(Err(waiting)) => tracing::debug!(
                topics = ?waiting,
                "new topics without a leader in the metadata yet; going on"
            ),
            Err(e) => tracing::debug!(error = %e, "waiting for the new topics' leaders failed"),
        }
    }

    /// Makes `encoder`'s schema known to readers of `topic` before any record uses it:
    /// published and acknowledged on the schema topic, or registered in the registry.
    pub async fn framing(&self, topic: &str, encoder: &Encoder) -> Result<Framing, PublishError> {
        let key = (topic.to_owned(), encoder.fingerprint());
        let mut framings = self.framings.lock().await;
        if let Some(f) = framings.get(&key) {
            return Ok(*f);
        }
        let framing = match &self.registry {
            Some(sr) => {
                let subject = format!("{topic}-value");
                let schema = SuppliedSchema::new(None, SchemaType::Avro, encoder.schema_json());
                let registered = post_schema(sr, subject.clone(), schema)
                    .await
                    .map_err(|e| PublishError::Registry {
                        topic: topic.to_owned(),
                        subject,
                        message: e.to_string(),
                    })?;
                Framing::Confluent {
                    schema_id: registered.id,
                }
            }
            None => {
                let fp = format!("{:016x}", encoder.fingerprint());
                self.send(
                    &self.schema_topic,
                    fp.as_bytes(),
                    encoder.schema_json().as_bytes(),
                )
                .await?;
                self.flush().await?;
                tracing::info!(topic, fingerprint = %fp, schema_topic = %self.schema_topic, "published writer schema");
                Framing::SingleObject
            }
        };
        let _ = framings.insert(key, framing);
        Ok(framing)
    }

    /// Enqueues one message; waits while librdkafka's queue is full.
    pub async fn send(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), PublishError> {
        self.send_tracked(topic, Some(key), value, None, &self.untracked)
            .await
    }

    /// [`Publisher::send`], counting the message's delivery report in `acks`. A record of
    /// a `replace` run carries the run id in its [`common::run_markers::RUN_HEADER`] header. A
    /// record without a key (its resource has no primary key) goes to any partition.
    pub async fn send_tracked(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        run: Option<&str>,
        acks: &Arc<Acks>,
    ) -> Result<(), PublishError> {
        let mut record = BaseRecord::with_opaque_to(topic, Arc::clone(acks)).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(run) = run {
            record = record.headers(OwnedHeaders::new_with_capacity(1).insert(Header {
                key: common::run_markers::RUN_HEADER,
                value: Some(run),
            }));
        }
        self.enqueue(record, acks).await
    }

    /// Ends a `replace` (or `scd2`) run: once every record sent so far is acknowledged,
    /// writes a run-end marker (see [`common::run_markers`]) to every partition of `topic`,
    /// `disposition` in its disposition header, and waits for those too. Returns the
    /// partition count.
    pub async fn end_run(
        &self,
        topic: &str,
        run: u64,
        records: u64,
        disposition: &str,
    ) -> Result<i32, PublishError> {
        self.flush().await?;
        let partitions = self.partition_count(topic).await?;
        let marker = common::run_markers::RunEndMarker { run, partitions };
        let value = marker.value(records);
        let run_text = run.to_string();
        let partitions_text = partitions.to_string();
        for partition in 0..partitions {
            let headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: common::run_markers::MARKER_HEADER,
                    value: Some(common::run_markers::RUN_END),
                })
                .insert(Header {
                    key: common::run_markers::RUN_HEADER,
                    value: Some(&run_text),
                })
                .insert(Header {
                    key: common::run_markers::PARTITIONS_HEADER,
                    value: Some(&partitions_text),
                })
                .insert(Header {
                    key: common::run_markers::DISPOSITION_HEADER,
                    value: Some(disposition),
                });
            let record = BaseRecord::with_opaque_to(topic, Arc::clone(&self.untracked))
                .partition(partition)
                .key(common::run_markers::MARKER_KEY)
                .payload(value.as_bytes())
                .headers(headers);
            self.enqueue(record, &self.untracked).await?;
        }
        self.flush().await?;
        Ok(partitions)
    }

    /// How many partitions `topic` has, from the broker's metadata.
    async fn partition_count(&self, topic: &str) -> Result<i32, PublishError> {
        let producer = self.producer.clone();
        let name = topic.to_owned();
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), Duration::from_secs(30))
        })
        .await
        .map_err(|e| PublishError::Produce {
            topic: topic.to_owned(),
            message: format!("metadata task failed: {e}"),
        })?
        .map_err(|e| PublishError::Produce {
            topic: topic.to_owned(),
            message: format!("reading the topic's partitions: {e}"),
        })?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        match i32::try_from(partitions) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(PublishError::Produce {
                topic: topic.to_owned(),
                message: "the broker reports no partitions for the topic".to_owned(),
            }),
        }
    }

    /// Enqueues `record`, whose delivery report `acks` counts; waits while librdkafka's
    /// queue is full.
    async fn enqueue(
        &self,
        mut record: BaseRecord<'_, [u8], [u8], Arc<Acks>>,
        acks: &Arc<Acks>,
    ) -> Result<(), PublishError> {
        acks.sending();
        let size = record.key.map_or(0, <[u8]>::len) + record.payload.map_or(0, <[u8]>::len);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    let _ = self.sent.fetch_add(1, Ordering::Relaxed);
                    let _ = self.bytes.fetch_add(size as u64, Ordering::Relaxed);
                    return Ok(());
                }
                // A record the queue cannot hold even when empty would wait for ever.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if size > self.queue_bytes =>
                {
                    acks.reported(false);
                    return Err(record_error(
                        &back,
                        size,
                        format!("larger than the send queue ({} bytes)", self.queue_bytes),
                        " (raise `queue.buffering.max.kbytes` in the config's [kafka] table \
                         above the record's size)",
                    ));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, back)) => {
                    acks.reported(false);
                    // In a transaction, a refused record makes every later send fail:
                    // the refusal is what to report.
                    if self.transactional_id.is_some() {
                        self.check()?;
                    }
                    let hint = match &e {
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge) => {
                            " (raise `message.max.bytes` in the config's [kafka] table to \
                             publish it; the topics the extractor creates get a matching \
                             `max.message.bytes`, a topic that already exists needs it raised on \
                             the broker)"
                        }
                        _ => "",
                    };
                    return Err(record_error(&back, size, e.to_string(), hint));
                }
            }
        }
    }

    /// Messages enqueued so far, and their key + value bytes.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Waits until every enqueued message was acknowledged or failed; fails on any failure.
    pub async fn flush(&self) -> Result<(), PublishError> {
        // librdkafka's flush waits for the delivery reports in steps of its 100 ms poll (the
        // reports are served on the producer's own thread), which made every writer schema
        // publication up to 0.1 s late. A flush that does not wait sends what lingers; the
        // counters then tell when every report is in.
        let _ = self.producer.flush(Duration::ZERO);
        if !self.all_reported(false).await {
            self.check()?;
            let ctx = self.producer.context();
            let reported = ctx.acked.load(Ordering::Relaxed) + ctx.failed.load(Ordering::Relaxed);
            return Err(PublishError::FlushTimeout {
                outstanding: self.sent.load(Ordering::Relaxed).saturating_sub(reported),
                waited: flush_timeout(&self.settings),
            });
        }
        // Every message was reported; none failed, so every one was acknowledged.
        self.check()
    }

    fn check(&self) -> Result<(), PublishError> {
        let ctx = self.producer.context();
        let failed = ctx.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return Ok(());
        }
        let first = ctx
            .first_failure
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .unwrap_or_default();
        Err(PublishError::Delivery {
            sent: self.sent.load(Ordering::Relaxed),
            failed,
            topic: first.topic,
            partition: first.partition,
            message: first.message,
            hint: if first.too_large {
                " (the broker refused a record larger than the topic allows: raise the topic's \
                 `max.message.bytes` on the broker; the extractor sets it from `message.max.bytes` \
                 only on the topics it creates)"
            } else {
                ""
            },
        })
    }

    /// Waits for everything outstanding; `Ok` only when the broker acknowledged every
    /// message this publisher sent.
    pub async fn finish(&self) -> Result<u64, PublishError> {
        self.flush().await?;
        Ok(self.producer.context().acked.load(Ordering::Relaxed))
    }

    /// Waits, watching the counters, until every message sent has had its delivery report
    /// (or, `or_failure`, one failed: in a transaction the rest then wait for the abort);
    /// false if that took longer than the flush timeout (librdkafka's delivery timeout).
    async fn all_reported(&self, or_failure: bool) -> bool {
        let deadline = Instant::now() + flush_timeout(&self.settings);
        loop {
            let ctx = self.producer.context();
            let failed = ctx.failed.load(Ordering::Relaxed);
            let reported = ctx.acked.load(Ordering::Relaxed) + failed;
            if reported >= self.sent.load(Ordering::Relaxed) || (or_failure && failed > 0) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The error for `record` (`size` bytes of key and value) that could not be sent.
fn record_error(
    record: &BaseRecord<'_, [u8], [u8], Arc<Acks>>,
    size: usize,
    message: String,
    hint: &'static str,
) -> PublishError {
    PublishError::Record {
        topic: record.topic.to_owned(),
        key: record
            .key
            .map(|k| String::from_utf8_lossy(k).chars().take(64).collect())
            .unwrap_or_default(),
        bytes: size,
        message,
        hint,
    }
}

/// Drops a librdkafka client on a thread of its own. Destroying one waits for its threads,
/// which wake up every 100 ms or so: done inline, that adds about 0.1 s to every short-lived
/// client and to the end of a run (BENCHMARKS.md, case 3). Only for clients with nothing
/// left to deliver: a process that exits first just ends the thread.
pub fn release<T: Send + 'static>(client: T) {
    let spawned = std::thread::Builder::new()
        .name("kafka-release".into())
        .spawn(move || drop(client));
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "could not start a thread to release a Kafka client");
    }
}

/// How long a flush may wait: a little over librdkafka's own delivery timeout, after
/// which every message has either been acknowledged or failed.
fn flush_timeout(settings: &BTreeMap<String, String>) -> Duration {
    let message_timeout_ms = settings
        .get("message.timeout.ms")
        .or_else(|| settings.get("delivery.timeout.ms"))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(300_000);
    Duration::from_millis(message_timeout_ms + 5_000)
}

#[cfg(test)]
mod tests {
    use super::transactional::transactional_settings;
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_transactional_producer_gets_its_id_and_a_transaction_timeout_as_long_as_delivery() {
        let plain = transactional_settings(&settings(&[("transactional.id", "mine")]), "p/r");
        assert_eq!(
            plain.get("transactional.id").map(String::as_str),
            Some("p/r")
        );
        assert_eq!(plain.get("transaction.timeout.ms"), None);
        let long = transactional_settings(&settings(&[("message.timeout.ms", "300000")]), "p/r");
        assert_eq!(
            long.get("transaction.timeout.ms").map(String::as_str),
            Some("300000")
        );
        let own = transactional_settings(
            &settings(&[
                ("delivery.timeout.ms", "120000"),
                ("transaction.timeout.ms", "90000"),
            ]),
            "p/r",
        );
        assert_eq!(
            own.get("transaction.timeout.ms").map(String::as_str),
            Some("90000")
        );
    }

    #[test]
    fn a_raised_message_max_bytes_sizes_the_queue_and_new_topics() {
        assert_eq!(
            LargeRecords::from_settings(&settings(&[])),
            LargeRecords {
                queue_kbytes: None,
                topic_max_message_bytes: None
            }
        );
        assert_eq!(
            LargeRecords::from_settings(&settings(&[("message.max.bytes", "16777216")])),
            LargeRecords {
                queue_kbytes: Some("24576".into()),
                topic_max_message_bytes: Some("16778240".into())
            }
        );
        // A queue the config sizes itself is left alone; a record larger than it fails
        // with its own error instead of waiting for ever (the end-to-end test).
        let own_queue = LargeRecords::from_settings(&settings(&[
            ("message.max.bytes", "16777216"),
            ("queue.buffering.max.kbytes", "4096"),
        ]));
        assert_eq!(own_queue.queue_kbytes, None);
    }
}
