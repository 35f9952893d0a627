//! Looking at a test broker's topics from outside the pipeline: their configs (read, set,
//! created with them) through the admin API, and every record of a topic with its key,
//! offset and timestamp, for tests that count what the broker holds.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{Broker, wait_for};

fn admin(broker: &Broker) -> Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()?)
}

fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future))
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(Duration::from_secs(30)))
}

/// The topic's configuration as the broker describes it (every entry, defaults included).
pub fn config(broker: &Broker, topic: &str) -> Result<BTreeMap<String, String>> {
    let admin = admin(broker)?;
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options()))??;
    let resource = results
        .into_iter()
        .next()
        .context("no answer to DescribeConfigs")?
        .map_err(|e| anyhow::anyhow!("describing topic `{topic}`: {e}"))?;
    Ok(resource
        .entries
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect())
}

/// Sets the topic's dynamic configs to exactly `configs` (Kafka's AlterConfigs replaces the
/// topic's whole set: a key left out goes back to the broker's default).
pub fn set_config(broker: &Broker, topic: &str, configs: &[(&str, &str)]) -> Result<()> {
    let admin = admin(broker)?;
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in configs {
        alter = alter.set(k, v);
    }
    let results = block_on(admin.alter_configs([&alter], &options()))??;
    for result in results {
        if let Err((_, code)) = result {
            bail!("altering topic `{topic}`: {code}");
        }
    }
    Ok(())
}

/// Creates `topic` with `partitions` and `configs`.
pub fn create(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin = admin(broker)?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = block_on(admin.create_topics([&new], &options()))??;
    for result in results {
        if let Err((_, code)) = result {
            bail!("creating topic `{topic}`: {code}");
        }
    }
    Ok(())
}

/// One record as the broker holds it.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    /// `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Milliseconds since the epoch, and whether the broker set it (LogAppendTime) rather
    /// than the producer (CreateTime).
    pub timestamp: Option<(i64, bool)>,
}

/// A plain consumer (no group offsets) of the test broker, for watermarks.
/// `read_uncommitted`: librdkafka's default, `read_committed`, makes the high watermark the
/// last stable offset, which stops before a transaction whose commit markers the broker has
/// not written yet, even when the producer's commit has returned. `read_all` then skipped
/// the records of that transaction (a fresh clone's suite read 242 of 300 records twice).
pub fn consumer(broker: &Broker) -> Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "e2e-topic-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_uncommitted")
        .create()?)
}

/// A plain `read_committed` consumer that reports the end of each partition: the last
/// offset of a transactional partition is a commit marker, never delivered as a message.
fn end_aware_consumer(broker: &Broker) -> Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "e2e-topic-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()?)
}

/// Whether `consumer`'s position in `topic`/`partition` is at `high` or beyond: past every
/// record and marker the partition held when its watermarks were read.
pub fn past(consumer: &BaseConsumer, topic: &str, partition: i32, high: i64) -> bool {
    consumer.position().ok().is_some_and(|position| {
        matches!(
            position.find_partition(topic, partition).map(|e| e.offset()),
            Some(Offset::Offset(at)) if at >= high
        )
    })
}

/// `(low, high)` watermarks of each of the topic's partitions, by partition.
pub fn watermarks(broker: &Broker, topic: &str) -> Result<Vec<(i64, i64)>> {
    let consumer = consumer(broker)?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        bail!("topic `{topic}` has no partitions (does it exist?)");
    }
    (0..partitions as i32)
        .map(|p| Ok(consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?))
        .collect()
}

/// Every record of every partition of `topic`, from its low to its high watermark (read
/// when the call starts), partition by partition; of transactions, the committed ones only
/// (`read_committed`).
pub fn read_all(broker: &Broker, topic: &str) -> Result<Vec<Record>> {
    let marks = watermarks(broker, topic)?;
    let consumer = end_aware_consumer(broker)?;
    let mut records = Vec::new();
    for (partition, (low, high)) in marks.into_iter().enumerate() {
        let partition = partition as i32;
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        wait_for(
            &format!("the end of {topic}/{partition}"),
            Duration::from_secs(60),
            || {
                while let Some(msg) = consumer.poll(Duration::from_millis(100)) {
                    let msg = match msg {
                        Ok(msg) => msg,
                        // The end of what is committed so far. A producer's commit returns
                        // before the broker has written its markers, and until then a
                        // `read_committed` reader ends before that transaction's records:
                        // the end counts only once the reader is past the high watermark.
                        // (An earlier partition's end, reported late, is not this one's.)
                        Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                            if p == partition && past(&consumer, topic, partition, high) {
                                return Some(());
                            }
                            continue;
                        }
                        Err(_) => return None,
                    };
                    let offset = msg.offset();
                    records.push(Record {
                        partition,
                        offset,
                        key: msg.key().unwrap_or_default().to_vec(),
                        value: msg.payload().map(<[u8]>::to_vec),
                        timestamp: match msg.timestamp() {
                            Timestamp::CreateTime(t) => Some((t, false)),
                            Timestamp::LogAppendTime(t) => Some((t, true)),
                            Timestamp::NotAvailable => None,
                        },
                    });
                    if offset + 1 >= high {
                        return Some(());
                    }
                }
                None
            },
        )?;
    }
    Ok(records)
}
