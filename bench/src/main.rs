//! The floors the pipeline is measured against (see `scripts/bench.sh`):
//! - `produce` / `consume`: a bare idempotent producer and a bare consumer of messages of a
//!   given size on the same broker, i.e. what the broker itself can take and give; with
//!   `--commit-ms`, the producer is transactional as the extractor's is (its `linger.ms`,
//!   a commit once every message of the open transaction is acknowledged, at most that
//!   many ms apart), and with `--rate` it sends no faster than that many messages a second
//!   (a broker's work per message grows as batches shrink, so a floor for a slower sender
//!   has to send as slowly); `consume` waits up to 30 s for its topic, so it can read
//!   while such a producer writes, as the loader reads while the extractor writes;
//! - `upsert`: a bare rusqlite prepared-statement upsert of rows shaped like the demo API's
//!   records, one transaction per 5,000 rows, WAL and `synchronous=NORMAL` as the loader;
//!   with `--children`, the records' `tags` list goes to a child table as the loader writes
//!   it (`t__tags`, keyed `(_dlt_root_id, _dlt_id)`, the record's old tags deleted first;
//!   1.5 tags per record as in the demo API); with `--partitions N`, in the order a
//!   consumer gets the rows when the broker hands out one partition after another.
//! - `connect-json`: the demo API's records as Kafka Connect's `JsonConverter` reads them
//!   (schema and payload in each message), for the Kafka Connect peer in the bench.
//! - `fetch`: every page of the demo API's `/v1/resource` (offset paging), a number of
//!   requests at a time, each body read whole and dropped: how fast the API serves on this
//!   machine, the ceiling of any extractor of it.
//!
//! - `e2e-extract` / `e2e-load`: case 1 with nothing of the project's own in it, run side
//!   by side (see [`e2e`]).
//!
//! Each prints one line: `<what> count=N seconds=S per_second=R`.

mod e2e;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use futures::{StreamExt, TryStreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Produce `count` messages of `size` bytes, keyed 0..count, and wait for every ack.
    Produce {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        commit_ms: Option<u64>,
        #[arg(long)]
        rate: Option<u64>,
    },
    /// Read `count` messages of `topic` from the beginning of every partition.
    Consume {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        count: u64,
    },
    /// Produce the demo API's first `count` records (revision 0) as JSON with schemas, for
    /// Kafka Connect's `JsonConverter`: keyed by `id`; `sender` a nested struct (the
    /// connector flattens it with `__`, as the loader names the columns), `tags` the
    /// list's JSON text, the timestamps Connect `Timestamp`s (epoch milliseconds).
    ConnectJson {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        count: u64,
    },
    /// GET every page of `base_url`'s `/v1/resource` (`limit` records each, `count` in
    /// all), `concurrency` requests at a time, reading each body whole.
    Fetch {
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        api_key: String,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Fetch `count` records of the demo API as `fetch` does and send them, keyed by `id`,
    /// as JSON through a transactional producer (case 1's extract side without the
    /// extractor's own work).
    E2eExtract {
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        api_key: String,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
    },
    /// Read `count` records that `e2e-extract` sends and upsert them with their child rows
    /// into a fresh SQLite file (case 1's load side without the loader's own work).
    E2eLoad {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        db: String,
    },
    /// Upsert `count` rows into a fresh SQLite file.
    Upsert {
        #[arg(long)]
        db: String,
        #[arg(long)]
        count: i64,
        /// Write `tags` as child rows instead of a JSON column.
        #[arg(long)]
        children: bool,
        /// Write the rows in the order a consumer of a topic with this many partitions
        /// gets them when the broker hands out one partition after another (as Tansu
        /// does): ids spread over the partitions by a hash of the key, then partition by
        /// partition, each in id order. 1 (the default) writes them in id order.
        #[arg(long, default_value_t = 1)]
        partitions: u64,
    },
}

fn main() -> Result<()> {
    let (what, count, seconds) = match Args::parse().what {
        What::Produce {
            brokers,
            topic,
            count,
            size,
            commit_ms,
            rate,
        } => {
            let pace = Pace {
                commit: commit_ms.map(Duration::from_millis),
                rate,
            };
            (
                "produce",
                count,
                produce(&brokers, &topic, count, size, pace)?,
            )
        }
        What::Consume {
            brokers,
            topic,
            count,
        } => ("consume", count, consume(&brokers, &topic, count)?),
        What::ConnectJson {
            brokers,
            topic,
            count,
        } => (
            "connect-json",
            count,
            connect_json(&brokers, &topic, count)?,
        ),
        What::Fetch {
            base_url,
            api_key,
            count,
            limit,
            concurrency,
        } => (
            "fetch",
            count,
            fetch(&base_url, &api_key, count, limit, concurrency)?,
        ),
        What::E2eExtract {
            base_url,
            api_key,
            count,
            limit,
            concurrency,
            brokers,
            topic,
        } => (
            "e2e-extract",
            count,
            e2e::extract(
                &base_url,
                &api_key,
                count,
                limit,
                concurrency,
                &brokers,
                &topic,
            )?,
        ),
        What::E2eLoad {
            brokers,
            topic,
            count,
            db,
        } => ("e2e-load", count, e2e::load(&brokers, &topic, count, &db)?),
        What::Upsert {
            db,
            count,
            children,
            partitions,
        } => (
            "upsert",
            count as u64,
            upsert(&db, count, children, partitions)?,
        ),
    };
    println!(
        "{what} count={count} seconds={seconds:.3} per_second={:.0}",
        count as f64 / seconds.max(1e-9)
    );
    Ok(())
}

fn fetch(base_url: &str, api_key: &str, count: u64, limit: u64, concurrency: usize) -> Result<f64> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("{}/v1/resource", base_url.trim_end_matches('/'));
        let started = Instant::now();
        let pages = futures::stream::iter((0..count.div_ceil(limit)).map(|page| {
            let request = client.get(&url).query(&[
                ("api_key", api_key.to_owned()),
                ("offset", (page * limit).to_string()),
                ("limit", limit.to_string()),
            ]);
            async move {
                let response = request.send().await?.error_for_status()?;
                anyhow::Ok(response.bytes().await?.len())
            }
        }))
        .buffer_unordered(concurrency.max(1));
        let bytes: Vec<usize> = pages.try_collect().await?;
        if bytes.contains(&0) {
            bail!("an empty page from {url}");
        }
        Ok(started.elapsed().as_secs_f64())
    })
}

/// How [`send_all`] sends: in transactions committed this often (`None`: idempotent, no
/// transactions), no faster than `rate` messages a second (`None`: as fast as it can).
#[derive(Debug, Default, Clone, Copy)]
struct Pace {
    commit: Option<Duration>,
    rate: Option<u64>,
}

fn produce(brokers: &str, topic: &str, count: u64, size: usize, pace: Pace) -> Result<f64> {
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    send_all(brokers, topic, count, pace, |i| {
        (i.to_string(), payload.clone())
    })
}

/// Connect's schema of a field: `(name, type, optional)`, or a named logical type.
fn connect_field(name: &str, kind: &str, optional: bool) -> serde_json::Value {
    serde_json::json!({ "field": name, "type": kind, "optional": optional })
}

fn connect_json(brokers: &str, topic: &str, count: u64) -> Result<f64> {
    let timestamp = |name: &str| {
        serde_json::json!({ "field": name, "type": "int64", "optional": false,
            "name": "org.apache.kafka.connect.data.Timestamp", "version": 1 })
    };
    let address = serde_json::json!({ "field": "address", "type": "struct", "optional": false,
        "fields": [connect_field("country", "string", false), connect_field("city", "string", false)] });
    let sender = serde_json::json!({ "field": "sender", "type": "struct", "optional": false,
        "fields": [connect_field("name", "string", false), address] });
    let schema = serde_json::json!({
        "type": "struct", "name": "communications_data", "optional": false,
        "fields": [
            connect_field("id", "int64", false),
            connect_field("customer_id", "int64", false),
            connect_field("channel", "string", false),
            connect_field("direction", "string", false),
            connect_field("status", "string", false),
            connect_field("body", "string", false),
            timestamp("created_at"),
            timestamp("updated_at"),
            sender,
            connect_field("tags", "string", false),
            connect_field("cost", "double", false),
            connect_field("duration_seconds", "int64", true),
            connect_field("sentiment", "double", false),
            connect_field("is_read", "boolean", false),
            connect_field("external_ref", "int64", false),
            connect_field("campaign_id", "string", true),
        ]
    });
    let millis = |v: &serde_json::Value| -> Result<i64> {
        let text = v.as_str().context("a timestamp is text")?;
        Ok(chrono::DateTime::parse_from_rfc3339(text)?.timestamp_millis())
    };
    let mut failure = None;
    let seconds = send_all(brokers, topic, count, Pace::default(), |i| {
        let mut r = demo_api::record::record(i, 0, 0, count);
        let key = r["id"].to_string();
        let converted = (|| -> Result<()> {
            r["created_at"] = millis(&r["created_at"])?.into();
            r["updated_at"] = millis(&r["updated_at"])?.into();
            r["tags"] = r["tags"].to_string().into();
            Ok(())
        })();
        if let (Err(e), None) = (converted, &failure) {
            failure = Some(e);
        }
        let message = serde_json::json!({ "schema": schema, "payload": r });
        (key, message.to_string().into_bytes())
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(seconds),
    }
}

/// Sends `count` messages, `message(i)` giving each one's key and payload, to a topic of
/// 6 partitions (made if missing), and waits for every ack.
fn send_all(
    brokers: &str,
    topic: &str,
    count: u64,
    pace: Pace,
    mut message: impl FnMut(u64) -> (String, Vec<u8>),
) -> Result<f64> {
    let producer = producer(brokers, topic, pace)?;
    if pace.commit.is_some() {
        producer.init_transactions(Duration::from_secs(30))?;
        producer.begin_transaction()?;
    }
    let started = Instant::now();
    let mut began = started;
    for i in 0..count {
        if let Some(rate) = pace.rate
            && i % 100 == 0
        {
            let due = started + Duration::from_secs_f64(i as f64 / rate.max(1) as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        if let Some(every) = pace.commit
            && began.elapsed() >= every
        {
            commit(&producer)?;
            producer.begin_transaction()?;
            began = Instant::now();
        }
        let (key, payload) = message(i);
        let mut record = BaseRecord::to(topic).key(key.as_str()).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    if pace.commit.is_some() {
        commit(&producer)?;
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(started.elapsed().as_secs_f64())
}

/// A producer with the extractor's settings (transactional when `pace` commits), and
/// `topic` made with 6 partitions if missing.
fn producer(
    brokers: &str,
    topic: &str,
    pace: Pace,
) -> Result<ThreadedProducer<DefaultProducerContext>> {
    // The extractor's producer settings, so the ceiling is for the same kind of traffic
    // (its transactional producer lingers 5 ms).
    let mut config = ClientConfig::new();
    let _ = config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1048576")
        .set("queue.buffering.max.messages", "500000")
        .set("partitioner", "murmur2_random");
    if pace.commit.is_some() {
        let _ = config
            .set("transactional.id", format!("bench-floor-{topic}"))
            .set("linger.ms", "5");
    }
    let producer: ThreadedProducer<DefaultProducerContext> = config.create()?;
    // The topic as the extractor makes its topics: 6 partitions.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let topics = [NewTopic::new(topic, 6, TopicReplication::Fixed(1))];
    let created = futures::executor::block_on(admin.create_topics(&topics, &AdminOptions::new()))?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(producer)
}

/// Commits the open transaction as the extractor does: once every message in it is
/// acknowledged (rust-rdkafka's own flush, the commit's first step, waits in 100 ms steps).
fn commit(producer: &ThreadedProducer<DefaultProducerContext>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    producer.commit_transaction(Duration::from_secs(60))?;
    Ok(())
}

/// A bare consumer (`read_committed`, as the loader) assigned every partition of `topic`
/// from its beginning, once the topic exists (waiting up to 30 s for it: a producer started
/// beside the consumer may still be making it).
fn assigned_consumer(brokers: &str, topic: &str) -> Result<BaseConsumer> {
    let (consumer, tpl) = unassigned_consumer(brokers, topic)?;
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// The consumer of [`assigned_consumer`] and the partitions it is to be assigned (every
/// partition of `topic` from its beginning), not yet assigned.
fn unassigned_consumer(brokers: &str, topic: &str) -> Result<(BaseConsumer, TopicPartitionList)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-floor")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.max.bytes", "52428800")
        .set("queued.max.messages.kbytes", "65536")
        .create()?;
    // The topic may still be being made by a producer started beside this consumer.
    let deadline = Instant::now() + Duration::from_secs(30);
    let partitions = loop {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if partitions > 0 {
            break partitions;
        }
        if Instant::now() >= deadline {
            bail!("no topic {topic} after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    Ok((consumer, tpl))
}

fn consume(brokers: &str, topic: &str, count: u64) -> Result<f64> {
    let consumer = assigned_consumer(brokers, topic)?;
    let started = Instant::now();
    let mut seen = 0u64;
    let mut bytes = 0usize;
    while seen < count {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                bytes += m.payload().map_or(0, <[u8]>::len);
                seen += 1;
            }
            Some(Err(e)) => return Err(e.into()),
            None => bail!("no message for 10 s after {seen} of {count}"),
        }
    }
    let _ = std::hint::black_box(bytes);
    Ok(started.elapsed().as_secs_f64())
}

const COLUMNS: [(&str, &str); 18] = [
    ("id", "INTEGER NOT NULL"),
    ("customer_id", "INTEGER"),
    ("channel", "TEXT"),
    ("direction", "TEXT"),
    ("status", "TEXT"),
    ("body", "TEXT"),
    ("created_at", "TEXT"),
    ("updated_at", "TEXT"),
    ("sender__name", "TEXT"),
    ("sender__address__country", "TEXT"),
    ("sender__address__city", "TEXT"),
    ("tags", "TEXT"),
    ("cost", "REAL"),
    ("duration_seconds", "INTEGER"),
    ("sentiment", "REAL"),
    ("is_read", "INTEGER"),
    ("external_ref", "INTEGER"),
    ("campaign_id", "TEXT"),
];

/// The partition a key goes to: a multiplicative hash, which spreads consecutive ids over
/// the partitions like a producer's key hash does.
fn partition_of(id: i64, partitions: u64) -> u64 {
    ((id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % partitions
}

/// Deletes a record's child rows (`tags`) before its new ones are written.
const DELETE_CHILDREN: &str = "DELETE FROM t__tags WHERE \"_dlt_root_id\" = ?1";
/// One child row: value, root id (also the parent's), list index, row id.
const INSERT_CHILD: &str = "INSERT INTO t__tags (\"value\", \"_dlt_root_id\", \"_dlt_parent_id\", \
     \"_dlt_list_idx\", \"_dlt_id\") VALUES (?1, ?2, ?2, ?3, ?4)";

/// A fresh SQLite file at `path` as the loader keeps it (WAL, `synchronous=NORMAL`) with
/// the table `t` of [`COLUMNS`] and its child table `t__tags`; and the upsert of a row of
/// `t` (its [`COLUMNS`] as parameters, in order).
fn floor_db(path: &str) -> Result<(rusqlite::Connection, String)> {
    let _ = std::fs::remove_file(path);
    let conn = rusqlite::Connection::open(path)?;
    let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let defs: Vec<String> = COLUMNS
        .iter()
        .map(|(n, t)| format!("\"{n}\" {t}"))
        .collect();
    conn.execute_batch(&format!(
        "CREATE TABLE t ({}, PRIMARY KEY (\"id\"));
         CREATE TABLE t__tags (\"value\" TEXT, \"_dlt_root_id\" TEXT NOT NULL, \
           \"_dlt_parent_id\" TEXT NOT NULL, \"_dlt_list_idx\" INTEGER NOT NULL, \
           \"_dlt_id\" TEXT NOT NULL, PRIMARY KEY (\"_dlt_root_id\", \"_dlt_id\"))",
        defs.join(", ")
    ))?;
    let names: Vec<String> = COLUMNS.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let marks: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = names[1..]
        .iter()
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    let upsert = format!(
        "INSERT INTO t ({}) VALUES ({}) ON CONFLICT (\"id\") DO UPDATE SET {}",
        names.join(", "),
        marks.join(", "),
        updates.join(", ")
    );
    Ok((conn, upsert))
}

fn upsert(path: &str, count: i64, children: bool, partitions: u64) -> Result<f64> {
    let partitions = partitions.max(1);
    let order: Vec<i64> = (0..partitions)
        .flat_map(|p| (0..count).filter(move |&id| partition_of(id, partitions) == p))
        .collect();
    let (mut conn, sql) = floor_db(path)?;
    let body = "Nachricht: héllo wörld — 你好, ¿qué tal? 🚀 Zürich";
    let started = Instant::now();
    let mut i = 0;
    while i < count {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut delete = tx.prepare_cached(DELETE_CHILDREN)?;
            let mut child = tx.prepare_cached(INSERT_CHILD)?;
            for &id in &order[i as usize..(i + 5000).min(count) as usize] {
                if children {
                    let root = (id + 1).to_string();
                    let _ = delete.execute([&root])?;
                    for idx in 0..(1 + id % 2) {
                        // 32 hex digits, as long as the loader's SHA-256 based ids.
                        let row_id = format!("{:032x}", (id as u128) << 8 | idx as u128);
                        let _ = child.execute(rusqlite::params![
                            format!("tag{idx}"),
                            root,
                            idx,
                            row_id
                        ])?;
                    }
                }
                let _ = stmt.execute(rusqlite::params![
                    id + 1,
                    1_000_000 + id % 5000,
                    "sms",
                    "inbound",
                    "sent",
                    body,
                    "2026-01-01T00:00:00.000000Z",
                    "2026-01-01T00:00:00.000000Z",
                    "Customer 1",
                    "DE",
                    "Zürich",
                    (!children).then_some("[\"tag0\"]"),
                    0.0125,
                    Some(42),
                    -0.5,
                    1,
                    9_007_199_254_740_993_i64 + id,
                    Option::<&str>::None,
                ])?;
            }
        }
        tx.commit()?;
        i += 5000;
    }
    Ok(started.elapsed().as_secs_f64())
}
