//! Reading single records again with a client of their own: a record the destination
//! refused (for its dead letter) and the time of a partition's last record (for a replay
//! start), and where a replay starts each partition.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::destination::DestinationError;
use crate::{LoadError, ReplayFrom};

/// The offset a replay starts `topic`/`partition` at, clamped to what the partition holds.
pub(crate) fn replay_offset(
    group_id: &str,
    client: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: ReplayFrom,
) -> Result<i64, DestinationError> {
    let kafka_error_text = |e: String| DestinationError::ReadOffsets {
        group_id: group_id.to_owned(),
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
                // after the partition's last record): the found record's time decides, as
                // a right answer is a record at or after `ms`. (Not the last offset's: on
                // a transactional topic that is a commit marker, never read.)
                Some(Offset::Offset(o))
                    if o < high
                        && record_time(client, topic, partition, o)
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

/// A record's key and value bytes, each if it has one.
pub(crate) type KeyAndValue = (Option<Vec<u8>>, Option<Vec<u8>>);

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
pub(crate) fn fetch_record(
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
pub(crate) fn replay_settings(kafka: &BTreeMap<String, String>) -> BTreeMap<String, String> {
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
