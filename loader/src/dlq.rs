//! The dead-letter topics: a record that cannot be decoded or loaded goes to `<topic>.dlq`
//! with headers saying why and where it came from, and the loader goes on.
//!
//! Never twice for one source offset: a dead letter is produced (idempotently) and
//! acknowledged *before* the batch that marks its source offset consumed is committed, and
//! before producing, the loader checks the DLQ topic itself — read to its end when a source
//! topic's partitions are assigned — for that source offset. A crash after the
//! acknowledgement therefore finds the letter there; a crash before it leaves nothing to find.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// Header names on every dead letter.
pub const HEADER_ERROR: &str = "dlq.error";
pub const HEADER_TOPIC: &str = "dlq.source.topic";
pub const HEADER_PARTITION: &str = "dlq.source.partition";
pub const HEADER_OFFSET: &str = "dlq.source.offset";
pub const HEADER_TIME: &str = "dlq.time";
pub const HEADER_GROUP: &str = "dlq.group.id";

/// What to do with a record that cannot be decoded or loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Send it to `<topic>.dlq` and go on.
    #[default]
    DeadLetter,
    /// Stop the loader with an error naming the record (nothing after it is consumed).
    Stop,
}

/// A record on its way to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct Letter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
#[error("dead-letter topic `{topic}`: {message}")]
pub struct DlqError {
    pub topic: String,
    pub message: String,
}

/// Keeps the first delivery failure since it was last taken: a flush returns once every
/// message was delivered *or failed*, so the failure must be looked for.
#[derive(Default)]
struct Deliveries {
    failure: Mutex<Option<rdkafka::error::KafkaError>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && let Ok(mut failure) = self.failure.lock()
        {
            let _ = failure.get_or_insert_with(|| e.clone());
        }
    }
}

pub fn dlq_topic(source: &str) -> String {
    format!("{source}.dlq")
}

pub struct DeadLetters {
    settings: BTreeMap<String, String>,
    group_id: String,
    producer: Option<ThreadedProducer<Deliveries>>,
    /// Source coordinates already on a DLQ topic.
    sent: HashSet<(String, i32, i64)>,
    /// How far each DLQ topic (partition 0) has been read.
    read_to: HashMap<String, i64>,
    created: HashSet<String>,
    /// Dead letters sent by this process, per dead-letter topic.
    counts: BTreeMap<String, u64>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl DeadLetters {
    pub fn new(settings: &BTreeMap<String, String>, group_id: &str) -> Self {
        Self {
            settings: settings.clone(),
            group_id: group_id.to_owned(),
            producer: None,
            sent: HashSet::new(),
            read_to: HashMap::new(),
            created: HashSet::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Dead letters sent by this process.
    pub fn count(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Dead letters sent by this process, per dead-letter topic.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Reads the DLQ topic of `source` from where the last read stopped to its end,
    /// remembering which source offsets it already holds.
    pub fn refresh(&mut self, source: &str) -> Result<(), DlqError> {
        let topic = dlq_topic(source);
        let err = |message: String| DlqError {
            topic: topic.clone(),
            message,
        };
        let consumer =
            crate::plain_client(&self.settings, &format!("{}.dlq-reader", self.group_id))
                .map_err(|e| err(e.to_string()))?;
        let (low, high) = match consumer.fetch_watermarks(&topic, 0, TIMEOUT) {
            Ok(w) => w,
            // No DLQ topic yet: nothing was dead-lettered.
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::UnknownTopicOrPartition
                            | RDKafkaErrorCode::UnknownPartition
                            | RDKafkaErrorCode::UnknownTopic
                    )
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let start = self.read_to.get(&topic).copied().unwrap_or(0).max(low);
        if start < high {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, Offset::Offset(start))
                .map_err(|e| err(e.to_string()))?;
            consumer.assign(&tpl).map_err(|e| err(e.to_string()))?;
            let deadline = Instant::now() + TIMEOUT;
            let mut next = start;
            while next < high {
                if Instant::now() > deadline {
                    return Err(err(format!("timed out reading at offset {next} of {high}")));
                }
                let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                    continue;
                };
                let msg = msg.map_err(|e| err(e.to_string()))?;
                next = msg.offset() + 1;
                if let Some(source) = msg.headers().and_then(source_of) {
                    let _ = self.sent.insert(source);
                }
            }
        }
        let _ = self.read_to.insert(topic, high);
        Ok(())
    }

    /// Sends `letter` to its DLQ topic and waits for the broker's acknowledgement, unless
    /// that source offset is already there. Returns whether it was sent now.
    pub fn send(&mut self, letter: &Letter) -> Result<bool, DlqError> {
        let coords = (letter.topic.clone(), letter.partition, letter.offset);
        if self.sent.contains(&coords) {
            tracing::info!(topic = %letter.topic, partition = letter.partition, offset = letter.offset, "already dead-lettered");
            return Ok(false);
        }
        let topic = dlq_topic(&letter.topic);
        let err = |message: String| DlqError {
            topic: topic.clone(),
            message,
        };
        self.ensure_topic(&topic)?;
        let group_id = self.group_id.clone();
        let producer = self.producer()?;
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_ERROR,
                value: Some(letter.error.as_str()),
            })
            .insert(Header {
                key: HEADER_TOPIC,
                value: Some(letter.topic.as_str()),
            })
            .insert(Header {
                key: HEADER_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: HEADER_OFFSET,
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: HEADER_TIME,
                value: Some(time.as_str()),
            })
            .insert(Header {
                key: HEADER_GROUP,
                value: Some(group_id.as_str()),
            });
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&topic).partition(0).headers(headers);
        if let Some(k) = &letter.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &letter.payload {
            record = record.payload(p.as_slice());
        }
        producer.send(record).map_err(|(e, _)| err(e.to_string()))?;
        producer
            .flush(TIMEOUT)
            .map_err(|e| err(format!("not acknowledged: {e}")))?;
        let failure = producer
            .context()
            .failure
            .lock()
            .map_err(|_| err("delivery state poisoned".to_owned()))?
            .take();
        if let Some(e) = failure {
            let hint = if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) {
                " (raise the topic's `max.message.bytes` on the broker; the loader sets it from \
                 `message.max.bytes` only on the dead-letter topics it creates)"
            } else {
                ""
            };
            return Err(err(format!(
                "the broker refused the dead letter of {}/{} offset {}: {e}{hint}",
                letter.topic, letter.partition, letter.offset
            )));
        }
        let _ = self.sent.insert(coords);
        *self.counts.entry(topic.clone()).or_default() += 1;
        tracing::warn!(
            topic = %letter.topic, partition = letter.partition, offset = letter.offset, dlq = %topic,
            error = %letter.error, "record sent to the dead-letter topic"
        );
        Ok(true)
    }

    fn producer(&mut self) -> Result<&ThreadedProducer<Deliveries>, DlqError> {
        if self.producer.is_none() {
            let mut cfg = common::broker::client_config(&self.settings);
            let _ = cfg
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .remove("group.id");
            let producer = cfg
                .create_with_context(Deliveries::default())
                .map_err(|e| DlqError {
                    topic: "(producer)".into(),
                    message: e.to_string(),
                })?;
            self.producer = Some(producer);
        }
        self.producer.as_ref().ok_or_else(|| DlqError {
            topic: "(producer)".into(),
            message: "producer unavailable".into(),
        })
    }

    fn ensure_topic(&mut self, topic: &str) -> Result<(), DlqError> {
        if self.created.contains(topic) {
            return Ok(());
        }
        let err = |message: String| DlqError {
            topic: topic.to_owned(),
            message,
        };
        let cfg = common::broker::client_config(&self.settings);
        let admin: AdminClient<DefaultClientContext> =
            cfg.create().map_err(|e| err(e.to_string()))?;
        let mut new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
        // A dead letter is as large as its record: as the extractor does for the topics it
        // creates, a raised `message.max.bytes` raises the topic's limit (plus framing).
        let max_message = self
            .settings
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map(|max| (max + 1024).to_string());
        if let Some(max) = &max_message {
            new_topic = new_topic.set("max.message.bytes", max);
        }
        let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        // The loader's thread is not async; the admin call resolves on librdkafka's thread.
        let results = futures::executor::block_on(admin.create_topics([&new_topic], &opts))
            .map_err(|e| err(e.to_string()))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(err(code.to_string())),
            }
        }
        let _ = self.created.insert(topic.to_owned());
        Ok(())
    }
}

/// The source coordinates in a dead letter's headers.
fn source_of(headers: &rdkafka::message::BorrowedHeaders) -> Option<(String, i32, i64)> {
    let mut topic = None;
    let mut partition = None;
    let mut offset = None;
    for h in headers.iter() {
        let value = h.value.and_then(|v| std::str::from_utf8(v).ok());
        match h.key {
            HEADER_TOPIC => topic = value.map(str::to_owned),
            HEADER_PARTITION => partition = value.and_then(|v| v.parse().ok()),
            HEADER_OFFSET => offset = value.and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    Some((topic?, partition?, offset?))
}
