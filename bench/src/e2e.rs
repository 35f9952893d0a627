//! The bare end-to-end floor of case 1: the same external parts as the pipeline, run as two
//! processes side by side, with none of the project's own work in them.
//!
//! - [`extract`]: GETs every page of the demo API (as `fetch`), parses each page into typed
//!   records with serde (text borrowed from the page), writes each record back out as JSON
//!   and sends it, keyed by `id`, through a transactional producer as the extractor's
//!   (committed every 100 ms once the open transaction is acknowledged). No schema
//!   inference, no Avro, no run markers, no state.
//! - [`load`]: reads the topic `read_committed` from the beginning of every partition,
//!   each partition from a queue of its own in turns (as the loader reads), parses each
//!   record with serde, and upserts it into SQLite as the loader writes it (the
//!   record's row, its `tags` as child rows after deleting its old ones, the partitions'
//!   next offsets in the same transaction, 5,000 records per transaction, WAL and
//!   `synchronous=NORMAL`). No schema registry, no nesting logic, no contract, no group.
//!
//! Any tool that takes the demo API's records through Kafka into SQLite does at least this;
//! what it costs on a machine bounds case 1 from outside the project, and `load` alone over a
//! topic already written bounds the loader's replay the same way.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use crate::{DELETE_CHILDREN, INSERT_CHILD, Pace, commit, floor_db, producer, unassigned_consumer};

/// A page of the demo API: its records under `data`.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    data: Vec<Record<'a>>,
}

/// One record of the demo API, its text borrowed from the page or message it was read from.
#[derive(Serialize, Deserialize)]
struct Record<'a> {
    id: i64,
    customer_id: i64,
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    direction: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow)]
    body: Cow<'a, str>,
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    #[serde(borrow)]
    updated_at: Cow<'a, str>,
    #[serde(borrow)]
    sender: Sender<'a>,
    #[serde(borrow)]
    tags: Vec<Cow<'a, str>>,
    cost: f64,
    duration_seconds: Option<i64>,
    sentiment: f64,
    is_read: bool,
    external_ref: i64,
    #[serde(borrow)]
    campaign_id: Option<Cow<'a, str>>,
}

#[derive(Serialize, Deserialize)]
struct Sender<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    address: Address<'a>,
}

#[derive(Serialize, Deserialize)]
struct Address<'a> {
    #[serde(borrow)]
    country: Cow<'a, str>,
    #[serde(borrow)]
    city: Cow<'a, str>,
}

/// Fetches `count` records (pages of `limit`, `concurrency` at a time) and sends them to
/// `topic` (6 partitions, made if missing); the seconds it took.
pub(crate) fn extract(
    base_url: &str,
    api_key: &str,
    count: u64,
    limit: u64,
    concurrency: usize,
    brokers: &str,
    topic: &str,
) -> Result<f64> {
    let every = Duration::from_millis(100);
    let producer = producer(
        brokers,
        topic,
        Pace {
            commit: Some(every),
            rate: None,
        },
    )?;
    producer.init_transactions(Duration::from_secs(30))?;
    producer.begin_transaction()?;
    let started = Instant::now();
    // Fetching on a runtime of its own, pages handed over through a bounded channel.
    let (pages, received) = mpsc::sync_channel::<bytes::Bytes>(concurrency.max(1) * 2);
    let url = format!("{}/v1/resource", base_url.trim_end_matches('/'));
    let key = api_key.to_owned();
    let fetcher =
        std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = reqwest::Client::new();
                let mut bodies =
                    futures::stream::iter((0..count.div_ceil(limit)).map(|page| {
                        let request = client.get(&url).query(&[
                            ("api_key", key.clone()),
                            ("offset", (page * limit).to_string()),
                            ("limit", limit.to_string()),
                        ]);
                        async move {
                            anyhow::Ok(request.send().await?.error_for_status()?.bytes().await?)
                        }
                    }))
                    .buffer_unordered(concurrency.max(1));
                while let Some(body) = bodies.next().await {
                    if pages.send(body?).is_err() {
                        break;
                    }
                }
                Ok(())
            })
        });
    let mut began = Instant::now();
    let mut sent = 0u64;
    let mut json = Vec::with_capacity(1024);
    let mut id = String::new();
    for body in received {
        let page: Page<'_> = serde_json::from_slice(&body).context("a page of the demo API")?;
        for record in &page.data {
            json.clear();
            serde_json::to_writer(&mut json, record)?;
            id.clear();
            let _ = write!(id, "{}", record.id);
            let mut message = BaseRecord::to(topic).key(id.as_str()).payload(&json);
            loop {
                match producer.send(message) {
                    Ok(()) => break,
                    Err((e, back))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                    {
                        message = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
            sent += 1;
        }
        if began.elapsed() >= every {
            commit(&producer)?;
            producer.begin_transaction()?;
            began = Instant::now();
        }
    }
    fetcher
        .join()
        .map_err(|_| anyhow::anyhow!("the fetching thread panicked"))??;
    commit(&producer)?;
    producer.flush(Duration::from_secs(60))?;
    if sent != count {
        bail!("sent {sent} records, expected {count}");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Reads `count` records of `topic` and upserts them into a fresh SQLite file at `db`; the
/// seconds from the first record to the last commit.
pub(crate) fn load(brokers: &str, topic: &str, count: u64, db: &str) -> Result<f64> {
    const BATCH: u64 = 5000;
    let (mut conn, upsert) = floor_db(db)?;
    conn.execute_batch(
        "CREATE TABLE offsets (\"topic\" TEXT NOT NULL, \"partition\" INTEGER NOT NULL, \
         \"next_offset\" INTEGER NOT NULL, PRIMARY KEY (\"topic\", \"partition\"))",
    )?;
    let mut turns = Turns::assign(brokers, topic)?;
    let mut started = None;
    let mut seen = 0u64;
    let mut root = String::new();
    let mut row_id = String::new();
    while seen < count {
        let tx = conn.transaction()?;
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        {
            let mut row = tx.prepare_cached(&upsert)?;
            let mut delete = tx.prepare_cached(DELETE_CHILDREN)?;
            let mut child = tx.prepare_cached(INSERT_CHILD)?;
            let end = (seen + BATCH).min(count);
            while seen < end {
                let message = match turns.poll() {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("no record for 10 s after {seen} of {count}"),
                };
                let _ = started.get_or_insert_with(Instant::now);
                let r: Record<'_> = serde_json::from_slice(message.payload().unwrap_or_default())
                    .with_context(|| {
                    format!(
                        "record at {topic}/{}/{}",
                        message.partition(),
                        message.offset()
                    )
                })?;
                root.clear();
                let _ = write!(root, "{}", r.id);
                let _ = delete.execute([&root])?;
                for (idx, tag) in r.tags.iter().enumerate() {
                    // 32 hex digits, as long as the loader's SHA-256 based ids.
                    row_id.clear();
                    let _ = write!(row_id, "{:032x}", (r.id as u128) << 8 | idx as u128);
                    let _ = child.execute(rusqlite::params![tag, root, idx as i64, row_id])?;
                }
                let _ = row.execute(rusqlite::params![
                    r.id,
                    r.customer_id,
                    r.channel,
                    r.direction,
                    r.status,
                    r.body,
                    r.created_at,
                    r.updated_at,
                    r.sender.name,
                    r.sender.address.country,
                    r.sender.address.city,
                    Option::<&str>::None,
                    r.cost,
                    r.duration_seconds,
                    r.sentiment,
                    r.is_read,
                    r.external_ref,
                    r.campaign_id,
                ])?;
                let _ = next.insert(message.partition(), message.offset() + 1);
                seen += 1;
            }
            let mut offsets = tx.prepare_cached(
                "INSERT INTO offsets VALUES (?1, ?2, ?3) \
                 ON CONFLICT (\"topic\", \"partition\") DO UPDATE SET \"next_offset\" = excluded.\"next_offset\"",
            )?;
            for (partition, offset) in &next {
                let _ = offsets.execute(rusqlite::params![topic, partition, offset])?;
            }
        }
        tx.commit()?;
    }
    Ok(started.map_or(0.0, |s| s.elapsed().as_secs_f64()))
}

/// Records taken from one partition before the next one's turn (as the loader reads).
const TURN: usize = 100;

/// Every partition of a topic read from a queue of its own, [`TURN`] records at a time, as
/// the loader reads them (librdkafka's partition queues): each batch of 5,000 then holds all
/// partitions over one stretch of keys, as the loader's do, instead of a fetch response's
/// run of one partition.
struct Turns {
    consumer: Arc<BaseConsumer>,
    queues: Vec<PartitionQueue<rdkafka::consumer::DefaultConsumerContext>>,
    turn: usize,
    taken: usize,
}

impl Turns {
    fn assign(brokers: &str, topic: &str) -> Result<Self> {
        let (consumer, tpl) = unassigned_consumer(brokers, topic)?;
        let consumer = Arc::new(consumer);
        // Split before the assignment, so that no record is fetched into the consumer queue.
        let queues = tpl
            .elements()
            .iter()
            .map(|e| {
                consumer
                    .split_partition_queue(e.topic(), e.partition())
                    .with_context(|| format!("no queue for {}/{}", e.topic(), e.partition()))
            })
            .collect::<Result<Vec<_>>>()?;
        consumer.assign(&tpl)?;
        Ok(Self {
            consumer,
            queues,
            turn: 0,
            taken: 0,
        })
    }

    /// The next record, waiting up to 10 s for one (the clock is read only once no record
    /// is at hand, not once per record).
    fn poll(&mut self) -> Option<KafkaResult<BorrowedMessage<'_>>> {
        let mut deadline = None;
        loop {
            // Fields, not `&mut self`: the record returned borrows `self.queues`.
            let partitions = self.queues.len();
            for _ in 0..partitions {
                if self.taken >= TURN {
                    (self.turn, self.taken) = ((self.turn + 1) % partitions, 0);
                }
                if let Some(polled) = self.queues[self.turn].poll(Duration::ZERO) {
                    self.taken += 1;
                    return Some(polled);
                }
                (self.turn, self.taken) = ((self.turn + 1) % partitions, 0);
            }
            // Serves the consumer's events; its own queue holds no records.
            if let Some(polled) = self.consumer.poll(Duration::from_millis(10)) {
                return Some(polled);
            }
            let deadline =
                *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(10));
            if Instant::now() >= deadline {
                return None;
            }
        }
    }
}
