//! The loader's delivery promises on real parts: dead letters (once per source offset),
//! `--on-error stop`, and several loaders sharing a topic into PostgreSQL while one is
//! killed and another joins.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, PgSchema, Pipeline, Proc, figure, run, run_ok, wait_for};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const RUN: Duration = Duration::from_secs(180);

/// Produces raw `payloads` to partition 0 of `topic`, acknowledged.
fn produce_raw(broker: &Broker, topic: &str, payloads: &[&[u8]]) -> Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .create()?;
    for (i, payload) in payloads.iter().enumerate() {
        let key = format!("bad-{i}");
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(0)
                    .key(key.as_bytes())
                    .payload(*payload),
            )
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// A message's headers as a map, and its payload.
type Letter = (HashMap<String, String>, Vec<u8>);

/// Every message of partition 0 of `topic`.
fn read_all(broker: &Broker, topic: &str) -> Result<Vec<Letter>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "dlq-test-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let (low, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let mut next = low;
    while next < high {
        let msg = wait_for("a dead letter", Duration::from_secs(30), || {
            consumer.poll(Duration::from_millis(200))
        })??;
        next = msg.offset() + 1;
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((headers, msg.payload().unwrap_or_default().to_vec()));
    }
    Ok(out)
}

#[test]
fn undecodable_records_are_dead_lettered_once_and_the_rest_loads() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(300, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_dlq", "")?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let topic = "e2e_dlq.communications_data";
    // Not Avro at all; and single-object framing with a fingerprint nobody registered.
    let unknown_fingerprint = [0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x02];
    produce_raw(&broker, topic, &[b"{\"id\": 1}", &unknown_fingerprint])?;

    // `--on-error stop` ends the run naming the record's place, and keeps what came first.
    let mut stop = pipeline.loader()?;
    let _ = stop.args(["--until-caught-up", "--on-error", "stop"]);
    let out = run(stop, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "--on-error stop exited 0");
    ensure!(
        stderr.contains(topic) && stderr.contains("partition 0"),
        "the error names topic and partition: {stderr}"
    );

    // The default: both go to the DLQ with their origin, everything else loads; the
    // summary names the dead-letter topic and the exit status (3) says not every record
    // reached the destination.
    let mut load = pipeline.loader()?;
    let _ = load.arg("--until-caught-up");
    let out = run(load, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        e2e::tail(&stderr, 30)
    );
    assert_eq!(
        figure(&stdout, "loaded", "dead_letters"),
        Some(2.0),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("dead-lettered records=2 topic={topic}.dlq")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "loader: 2 record(s) went to the dead-letter topic(s) {topic}.dlq (2), not to the destination"
        )) && stderr.contains("exit 3; --dead-letters-ok exits 0"),
        "{}",
        e2e::tail(&stderr, 10)
    );
    let rows: i64 = pipeline
        .sqlite()?
        .query_row("SELECT count(*) FROM communications_data", [], |r| r.get(0))
        .with_context(|| {
            format!(
                "{stdout}\n{}",
                e2e::tail(&String::from_utf8_lossy(&out.stderr), 30)
            )
        })?;
    assert_eq!(rows, 300);
    let letters = read_all(&broker, &format!("{topic}.dlq"))?;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let (first, payload) = &letters[0];
    assert_eq!(payload, b"{\"id\": 1}");
    assert_eq!(first["dlq.source.topic"], topic);
    assert_eq!(first["dlq.source.partition"], "0");
    assert_eq!(first["dlq.group.id"], pipeline.group);
    assert!(!first["dlq.error"].is_empty());
    assert!(first["dlq.time"].ends_with('Z'), "{first:?}");
    let offsets: Vec<&str> = letters
        .iter()
        .map(|(h, _)| h["dlq.source.offset"].as_str())
        .collect();
    assert_ne!(offsets[0], offsets[1]);
    assert!(
        letters[1].0["dlq.error"].contains("0807060504030201"),
        "the error names the unknown fingerprint: {:?}",
        letters[1].0
    );

    // Rebuild into a fresh destination from the same topic: the rows come back, the DLQ
    // does not get the same source offsets a second time.
    let rebuilt = pipeline.dir.path().join("rebuilt.db");
    let mut replay = pipeline.loader_to(&format!("sqlite://{}", rebuilt.display()))?;
    let _ = replay.arg("--until-caught-up");
    let out = run_ok(replay, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        figure(&stdout, "loaded", "dead_letters"),
        Some(0.0),
        "{stdout}"
    );
    assert_eq!(read_all(&broker, &format!("{topic}.dlq"))?.len(), 2);
    let rows: i64 = rusqlite::Connection::open(&rebuilt)?.query_row(
        "SELECT count(*) FROM communications_data",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(rows, 300);
    Ok(())
}

fn spawn_loader(pipeline: &Pipeline, url: &str, name: &str) -> Result<Proc> {
    let mut cmd = pipeline.loader_to(url)?;
    let _ = cmd.args(["--batch-size", "200", "--group-instance-id", name]);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(pipeline.dir.path().join(format!("{name}.log")))?;
    Ok(Proc {
        child: cmd.stdout(Stdio::null()).stderr(log).spawn()?,
        name: name.into(),
    })
}

/// The last lines of every loader's log, for a failure message.
fn logs(pipeline: &Pipeline) -> String {
    let mut text = String::new();
    for i in 0..4 {
        let path = pipeline.dir.path().join(format!("loader-{i}.log"));
        if let Ok(log) = std::fs::read_to_string(&path) {
            text.push_str(&format!("--- loader-{i}\n{}\n", e2e::tail(&log, 15)));
        }
    }
    text
}

#[test]
fn three_postgres_loaders_share_six_partitions_through_a_kill_and_a_join() -> Result<()> {
    let Some(mut pg) = PgSchema::create("e2e_scale")? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    const N: i64 = 30_000;
    let api = DemoApi::start(N as u64, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_scale", "")?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let end = topic_end(&broker, "e2e_scale.communications_data")?;

    let count = |pg: &mut PgSchema| -> Option<i64> {
        pg.query("SELECT count(*) FROM {schema}.communications_data")
            .ok()
            .map(|rows| rows[0].get(0))
    };
    let mut loaders = Vec::new();
    for i in 0..3 {
        loaders.push(spawn_loader(&pipeline, &pg.url, &format!("loader-{i}"))?);
    }
    let seen = wait_for("a third of the rows", RUN, || {
        count(&mut pg).filter(|n| *n >= N / 3)
    })
    .with_context(|| logs(&pipeline))?;
    loaders[0].kill(); // SIGKILL mid-batch, most likely
    ensure!(
        seen < N,
        "the loaders finished before the kill ({seen} rows)"
    );
    // The killed loader comes back under its static id (as a restarted pod would) and takes
    // its partitions back; a fourth loader joins the group.
    loaders.push(spawn_loader(&pipeline, &pg.url, "loader-0")?);
    loaders.push(spawn_loader(&pipeline, &pg.url, "loader-3")?);

    let offsets_sum = |pg: &mut PgSchema| -> Option<i64> {
        pg.query("SELECT coalesce(sum(next_offset), 0)::bigint FROM {schema}._pipeline_offsets")
            .ok()
            .map(|rows| rows[0].get(0))
    };
    let _ = wait_for("every offset in the destination", RUN, || {
        offsets_sum(&mut pg).filter(|n| *n == end)
    })
    .with_context(|| logs(&pipeline))?;
    for loader in &mut loaders {
        loader.kill();
    }

    // Every record exactly once, with the API's values.
    assert_eq!(count(&mut pg), Some(N));
    let rows =
        pg.query("SELECT id, body, status, external_ref FROM {schema}.communications_data")?;
    let by_id: HashMap<i64, (String, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    for rec in api.records()? {
        let id = rec["id"].as_i64().context("id")?;
        let (body, status, external_ref) = by_id.get(&id).context("missing id")?;
        ensure!(
            rec["body"] == body.as_str()
                && rec["status"] == status.as_str()
                && rec["external_ref"].as_i64() == Some(*external_ref),
            "id {id}: {body:?} {status:?} {external_ref} vs {rec}"
        );
    }
    let partitions = pg.query("SELECT count(*) FROM {schema}._pipeline_offsets")?;
    assert_eq!(partitions[0].get::<_, i64>(0), 6);
    Ok(())
}

fn loaded(out: &std::process::Output) -> Option<f64> {
    figure(&String::from_utf8_lossy(&out.stdout), "loaded", "records")
}

/// `(id, body)` of every row, by id.
fn bodies(db: &std::path::Path) -> Result<Vec<(i64, String)>> {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt = conn.prepare("SELECT id, body FROM communications_data ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn api_bodies(records: &[serde_json::Value]) -> Vec<(i64, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap_or_default(),
                r["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn replays_rebuild_from_a_point_and_a_version_column_keeps_newer_rows() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(600, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_replay", "")?;
    let old = api.records()?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    // Kafka timestamps are milliseconds; step past the first run's last one.
    std::thread::sleep(Duration::from_millis(50));
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let _ = api.post(
        "/admin/state",
        serde_json::json!({"revision": 2, "changed_percent": 50}),
    )?;
    let new = api.records()?;
    ensure!(api_bodies(&new) != api_bodies(&old), "the API changed");
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    // A late re-extraction of stale data: revision 0 again, older `updated_at`.
    let _ = api.post("/admin/state", serde_json::json!({"revision": 0}))?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;

    let db = |name: &str| pipeline.dir.path().join(name);
    let sqlite = |name: &str| format!("sqlite://{}", db(name).display());
    let load = |url: &str, extra: &[&str]| -> Result<std::process::Output> {
        let mut cmd = pipeline.loader_to(url)?;
        let _ = cmd.arg("--until-caught-up").args(extra);
        run_ok(cmd, RUN)
    };

    // With the version column the stale versions leave the newer rows alone...
    let out = load(&sqlite("versioned.db"), &["--version-column", "updated_at"])?;
    assert_eq!(loaded(&out), Some(1800.0));
    assert_eq!(bodies(&db("versioned.db"))?, api_bodies(&new));
    // ...without it, plain merge: the last version in the topic wins.
    let _ = load(&sqlite("plain.db"), &[])?;
    assert_eq!(bodies(&db("plain.db"))?, api_bodies(&old));

    // In place, from the beginning: everything is read again, nothing moves backwards.
    let out = load(
        &sqlite("versioned.db"),
        &[
            "--replay-from",
            "beginning",
            "--version-column",
            "updated_at",
        ],
    )?;
    assert_eq!(loaded(&out), Some(1800.0));
    assert_eq!(bodies(&db("versioned.db"))?, api_bodies(&new));

    // From a time: only the second and third runs are read.
    let out = load(
        &sqlite("since.db"),
        &[
            "--replay-from",
            &format!("time:{between}"),
            "--version-column",
            "updated_at",
        ],
    )?;
    assert_eq!(loaded(&out), Some(1200.0));
    assert_eq!(bodies(&db("since.db"))?, api_bodies(&new));

    // From an offset in every partition: the records at offset 50 or later (without
    // transactions 6 partitions × 50 records fewer; with them, commit markers take some
    // of those offsets).
    let from_50 = e2e::topics::read_all(&broker, "e2e_replay.communications_data")?
        .iter()
        .filter(|r| r.offset >= 50)
        .count();
    ensure!(
        (1500..1800).contains(&from_50),
        "{from_50} records from offset 50"
    );
    let out = load(&sqlite("offset.db"), &["--replay-from", "offset:50"])?;
    assert_eq!(loaded(&out), Some(from_50 as f64));

    // A bad position is refused before anything is read.
    let mut bad = pipeline.loader_to(&sqlite("bad.db"))?;
    let _ = bad.args(["--replay-from", "yesterday"]);
    let out = run(bad, RUN)?;
    ensure!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.contains("--replay-from") && stderr.contains("beginning"),
        "{stderr}"
    );
    Ok(())
}

/// 20, or `KILLS` from the environment (for a quick local look).
fn kill_count() -> usize {
    std::env::var("KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20)
}

/// A small deterministic generator for the kill moments (the seed is printed, so a failing
/// schedule can be replayed).
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, low: u64, high: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        low + (self.0 >> 33) % (high - low)
    }
}

/// Starts the loader into `url` again and again, killing it (SIGKILL) after a random
/// moment each time, then lets one run finish; returns the finishing run's output.
fn kill_repeatedly(pipeline: &Pipeline, url: &str, kills: usize) -> Result<std::process::Output> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    let mut moments = Moments(seed);
    for i in 0..kills {
        let mut cmd = pipeline.loader_to(url)?;
        let _ = cmd.args(["--batch-size", "150", "--batch-wait-ms", "50"]);
        let path = pipeline.dir.path().join(format!("kill-{i}.log"));
        let log = std::fs::File::create(&path)?;
        let mut proc = Proc {
            child: cmd.stdout(Stdio::null()).stderr(log).spawn()?,
            name: format!("loader-kill-{i}"),
        };
        // The moment counts from when the loader has its partitions: killing it while it
        // waits to join the group would test nothing.
        let started = std::time::Instant::now();
        let _ = wait_for("the loader to get its partitions", RUN, || {
            std::fs::read_to_string(&path)
                .ok()
                .filter(|log| log.contains("partitions assigned"))
        })?;
        let joined = started.elapsed();
        std::thread::sleep(Duration::from_millis(moments.next_ms(300, 3000)));
        proc.kill();
        eprintln!("kill {i}: joined after {joined:?}");
    }
    let mut last = pipeline.loader_to(url)?;
    let _ = last.arg("--until-caught-up");
    run_ok(last, RUN)
}

/// One load of 20,000 records into the destination `url_for` names, killed at 20 random
/// moments and then finished; checks that the killed runs did load something, then hands
/// the API's `(id, body)`s, sorted, and the topic's end (the sum of its high watermarks: its
/// records, and the commit markers of the extractor's transactions), to `check` to compare
/// with the destination.
///
/// With `append`, the extractor runs twice over the same records, so the topic holds each
/// record twice and the destination must hold each exactly twice: 40,000 rows.
fn load_through_kills(
    name: &str,
    disposition: &str,
    url_for: impl FnOnce(&Pipeline) -> String,
    check: impl FnOnce(&Pipeline, Vec<(i64, String)>, i64) -> Result<()>,
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    const N: u64 = 20_000;
    let api = DemoApi::start(N, &[])?;
    let pipeline = Pipeline::new(&broker, &api, name, "")?;
    pipeline.write_disposition(disposition)?;
    // A killed loader stays a group member until its session times out, and the next
    // loader's join waits for that: keep the session short so 20 restarts stay quick.
    pipeline.kafka_settings(&[
        ("session.timeout.ms", "1500"),
        ("heartbeat.interval.ms", "300"),
    ])?;
    let runs = if disposition == "append" { 2 } else { 1 };
    for _ in 0..runs {
        let _ = run_ok(pipeline.extractor()?, RUN)?;
    }
    let out = kill_repeatedly(&pipeline, &url_for(&pipeline), kill_count())?;
    let finished = loaded(&out).context("loaded")?;
    ensure!(
        finished < (N * runs) as f64,
        "the killed runs loaded nothing: the last run loaded {finished}"
    );
    let mut expected = Vec::new();
    for _ in 0..runs {
        expected.extend(api_bodies(&api.records()?));
    }
    expected.sort();
    let end = topic_end(&broker, &format!("{name}.communications_data"))?;
    check(&pipeline, expected, end)
}

/// The sum of the high watermarks of `topic`'s partitions.
fn topic_end(broker: &Broker, topic: &str) -> Result<i64> {
    Ok(e2e::topics::watermarks(broker, topic)?
        .iter()
        .map(|(_, high)| high)
        .sum())
}

/// [`load_through_kills`] into SQLite: every API record in the table exactly once per
/// extractor run, and the stored offsets covering the topic once.
fn kills_into_sqlite(name: &str, disposition: &str) -> Result<()> {
    load_through_kills(
        name,
        disposition,
        |p| format!("sqlite://{}", p.db.display()),
        |pipeline, expected, end| {
            let offsets: i64 = pipeline.sqlite()?.query_row(
                "SELECT sum(next_offset) FROM _pipeline_offsets WHERE group_id = ?1",
                [&pipeline.group],
                |r| r.get(0),
            )?;
            assert_eq!(offsets, end, "the stored offsets cover the topic once");
            let conn = pipeline.sqlite()?;
            let mut stmt =
                conn.prepare("SELECT id, body FROM communications_data ORDER BY id, body")?;
            let got: Vec<(i64, String)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            assert_eq!(got.len(), expected.len());
            assert!(got == expected, "every record exactly once per run");
            Ok(())
        },
    )
}

/// [`kills_into_sqlite`], into a PostgreSQL schema of its own.
fn kills_into_postgres(name: &str, disposition: &str) -> Result<()> {
    let Some(mut pg) = PgSchema::create(name)? else {
        return Ok(());
    };
    let url = pg.url.clone();
    load_through_kills(
        &format!("{name}_pg"),
        disposition,
        |_| url,
        |_, expected, end| {
            let offsets: i64 = pg
                .query("SELECT sum(next_offset)::bigint FROM {schema}._pipeline_offsets")?[0]
                .get(0);
            assert_eq!(offsets, end, "the stored offsets cover the topic once");
            let rows = pg.query(
                "SELECT id, body FROM {schema}.communications_data ORDER BY id, body COLLATE \"C\"",
            )?;
            let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            assert_eq!(got.len(), expected.len());
            assert!(got == expected, "every record exactly once per run");
            Ok(())
        },
    )
}

#[test]
fn twenty_kills_during_one_load_lose_and_duplicate_nothing_sqlite() -> Result<()> {
    kills_into_sqlite("e2e_kills", "merge")
}

#[test]
fn twenty_kills_during_one_load_lose_and_duplicate_nothing_postgres() -> Result<()> {
    kills_into_postgres("e2e_kills", "merge")
}

#[test]
fn twenty_kills_during_an_append_load_lose_and_duplicate_nothing_sqlite() -> Result<()> {
    kills_into_sqlite("e2e_kills_append", "append")
}

#[test]
fn twenty_kills_during_an_append_load_lose_and_duplicate_nothing_postgres() -> Result<()> {
    kills_into_postgres("e2e_kills_append", "append")
}

#[test]
fn a_tombstone_deletes_its_row_and_a_keyless_one_is_dead_lettered() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(300, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_tomb", "")?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let topic = "e2e_tomb.communications_data";
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()?;
    for key in ["5", "7"] {
        // The extractor's partitioner (murmur2, as Java clients) puts the tombstone in the
        // key's partition, after the key's record.
        producer
            .send(BaseRecord::<str, [u8]>::to(topic).key(key))
            .map_err(|(e, _)| e)?;
    }
    producer
        .send(BaseRecord::<str, [u8]>::to(topic).partition(0))
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(30))?;

    // `--dead-letters-ok`: a dead letter is expected here, the run exits 0 and says so.
    let mut load = pipeline.loader()?;
    let _ = load.args(["--until-caught-up", "--dead-letters-ok"]);
    let out = run_ok(load, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        figure(&stdout, "loaded", "dead_letters"),
        Some(1.0),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loader: 1 record(s) went to the dead-letter topic(s)")
            && stderr.contains("(exit 0: --dead-letters-ok)"),
        "{}",
        e2e::tail(&stderr, 10)
    );
    let ids: Vec<i64> = bodies(&pipeline.db)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 298);
    assert!(!ids.contains(&5) && !ids.contains(&7) && ids.contains(&6));
    // Record 7 had two tags: its child rows went with it.
    assert_eq!(orphan_tags(&pipeline)?, 0);
    Ok(())
}

/// Rows of the `tags` child table whose root record is not in the table.
fn orphan_tags(pipeline: &Pipeline) -> Result<i64> {
    let conn = pipeline.sqlite()?;
    let children: i64 =
        conn.query_row("SELECT count(*) FROM communications_data__tags", [], |r| {
            r.get(0)
        })?;
    anyhow::ensure!(children > 0, "no child rows at all");
    Ok(conn.query_row(
        "SELECT count(*) FROM communications_data__tags \
         WHERE _dlt_root_id NOT IN (SELECT CAST(id AS TEXT) FROM communications_data)",
        [],
        |r| r.get(0),
    )?)
}

#[test]
fn a_hard_delete_column_deletes_the_rows_it_marks() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(300, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_hard", "")?;
    // First a plain load; then `is_read = true` marks a record deleted.
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let mut load = pipeline.loader()?;
    let _ = load.arg("--until-caught-up");
    let _ = run_ok(load, RUN)?;
    assert_eq!(bodies(&pipeline.db)?.len(), 300);
    let text = std::fs::read_to_string(&pipeline.config)?;
    let text = text.replacen(
        "write_disposition = \"merge\"\n",
        "write_disposition = \"merge\"\ncolumns = { is_read = { hard_delete = true } }\n",
        1,
    );
    std::fs::write(&pipeline.config, text)?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let mut load = pipeline.loader()?;
    let _ = load.arg("--until-caught-up");
    let _ = run_ok(load, RUN)?;
    let expected: Vec<i64> = api
        .records()?
        .iter()
        .filter(|r| r["is_read"] == false)
        .filter_map(|r| r["id"].as_i64())
        .collect();
    let ids: Vec<i64> = bodies(&pipeline.db)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(ids.len(), 150);
    // The deleted records had tags (odd indexes have 1 or 3): their child rows are gone.
    assert_eq!(orphan_tags(&pipeline)?, 0);
    Ok(())
}

#[test]
fn rows_the_destination_refuses_are_dead_lettered_and_the_rest_loads() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(1000, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_refused", "")?;
    // A table someone made with a rule the API's data breaks for every 50th id: the loader
    // adds the other columns and merges into it.
    pipeline.sqlite()?.execute_batch(
        "CREATE TABLE communications_data (id INTEGER NOT NULL PRIMARY KEY CHECK (id % 50 != 7))",
    )?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    // The environment's form of `--dead-letters-ok`: these dead letters are expected.
    let mut load = pipeline.loader()?;
    let _ = load
        .arg("--until-caught-up")
        .env("LOADER_DEAD_LETTERS_OK", "true");
    let out = run_ok(load, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        figure(&stdout, "loaded", "dead_letters"),
        Some(20.0),
        "{stdout}"
    );
    assert_eq!(
        figure(&stdout, "loaded", "records"),
        Some(980.0),
        "{stdout}"
    );
    let expected: Vec<i64> = (1..=1000).filter(|id| id % 50 != 7).collect();
    let ids: Vec<i64> = bodies(&pipeline.db)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, expected);
    let letters = read_all(&broker, "e2e_refused.communications_data.dlq")?;
    assert_eq!(letters.len(), 20);
    for (headers, payload) in &letters {
        assert!(
            headers["dlq.error"].contains("CHECK constraint failed"),
            "{headers:?}"
        );
        assert!(!payload.is_empty(), "the record's own bytes");
    }
    // Run again from scratch (a rebuild into a fresh file with the same rule): the same 20
    // offsets are not dead-lettered twice.
    let rebuilt = tmp.path().join("rebuilt.db");
    rusqlite::Connection::open(&rebuilt)?.execute_batch(
        "CREATE TABLE communications_data (id INTEGER NOT NULL PRIMARY KEY CHECK (id % 50 != 7))",
    )?;
    let mut load = pipeline.loader_to(&format!("sqlite://{}", rebuilt.display()))?;
    let _ = load.arg("--until-caught-up");
    let _ = run_ok(load, RUN)?;
    assert_eq!(
        read_all(&broker, "e2e_refused.communications_data.dlq")?.len(),
        20
    );
    Ok(())
}

/// A loader started before the extractor ever ran (as `docker compose up` starts them)
/// waits for its topics and loads as soon as records arrive; a resource's topic created
/// later (here: its resource extracted on its own, afterwards) is picked up too.
/// librdkafka alone notices a topic created after the subscription only at its next
/// metadata refresh, five minutes later by default.
#[test]
fn a_loader_started_before_its_topics_exist_loads_each_once_it_is_created() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(2_000, &[])?;
    let resource = |name: &str| {
        format!(
            r#"
[[resources]]
name = "{name}"
topic = "early.{name}"
endpoint = {{ path = "/v1/resource", data_selector = "data", paginator = {{ type = "offset", limit = 100 }} }}
"#
        )
    };
    let pipeline = Pipeline::with_config(
        &broker,
        "early",
        &format!(
            "{client}{first}{second}",
            client = api.client_toml(""),
            first = resource("first"),
            second = resource("second"),
        ),
    )?;
    let url = format!("sqlite://{}", pipeline.db.display());
    let mut loader = spawn_loader(&pipeline, &url, "loader-0")?;
    let log = pipeline.dir.path().join("loader-0.log");
    let _ = wait_for("the loader to wait for its topics", RUN, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|text| text.contains("waiting for the topics to be created"))
    })
    .with_context(|| logs(&pipeline))?;
    ensure!(
        loader.child.try_wait()?.is_none(),
        "the loader exited while waiting: {}",
        logs(&pipeline)
    );
    let count = |table: &str| -> Option<i64> {
        let db = pipeline.sqlite().ok()?;
        db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .ok()
    };
    for table in ["first", "second"] {
        let mut extractor = pipeline.extractor()?;
        let _ = extractor.args(["--resource", table]);
        let _ = run_ok(extractor, RUN)?;
        // Within the 30 s metadata refresh for the second, at once for the first.
        let loaded = wait_for(
            &format!("the loader to load 2,000 rows into {table}"),
            Duration::from_secs(60),
            || count(table).filter(|n| *n == 2_000),
        );
        if loaded.is_err() {
            loader.kill();
        }
        let _ = loaded.with_context(|| logs(&pipeline))?;
    }
    loader.kill();
    Ok(())
}

/// A loader whose `pipeline.name` is not the extractor's looks for another schema topic,
/// which does not exist: it fails naming that topic and the first record, instead of
/// dead-lettering every record (it did, one every 200 ms, and ignored SIGTERM meanwhile).
#[test]
fn a_loader_of_another_pipeline_name_fails_instead_of_dead_lettering() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(dir.path())?;
    let api = DemoApi::start(150, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "schemaname", "")?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    // The same topics, another pipeline name, so another schema topic.
    let text = std::fs::read_to_string(&pipeline.config)?.replacen(
        "name = \"schemaname\"",
        "name = \"othername\"",
        1,
    );
    std::fs::write(&pipeline.config, text)?;
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let out = run(loader, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the loader succeeded:\n{stderr}");
    for wanted in [
        "topic `schemaname.communications_data` partition ",
        "reading the schema topic `_othername_schemas`",
        "`pipeline.schema_topic`, by default `_<pipeline.name>_schemas`, must be the extractor's",
    ] {
        ensure!(stderr.contains(wanted), "{wanted:?} not in:\n{stderr}");
    }
    ensure!(
        !stderr.contains("dead-letter topic"),
        "a record was dead-lettered:\n{stderr}"
    );
    // Nothing was written: no table, no offsets past the start.
    let rows: i64 = pipeline
        .sqlite()?
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'communications_data'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    ensure!(rows == 0, "the table was created");
    Ok(())
}
