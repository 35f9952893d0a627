//! Hostile records from the API: a 10 MiB string. By default it fails the run with an error
//! that names the record and the setting to raise, and loses nothing that was acknowledged.
//! With `message.max.bytes` raised in `[kafka]` it is published and loads whole on Apache
//! Kafka; a topic created before the raise makes Kafka refuse it, and the error says which
//! topic setting to raise. On Tansu 0.6 the raised case stalls: Tansu acknowledges the
//! record, then answers every fetch at its offset with no records; the loader must then say
//! so (a "partition stalled here" warning once the session timeout has passed, and the lag
//! left in its summary), never report it loaded. (Undecodable bytes, unknown
//! fingerprints and rows the destination refuses are dead-lettered: `loader_delivery.rs`;
//! hostile names: the destinations' conformance suite.)

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use e2e::{API_KEY, Broker, BrokerKind, DemoApi, Pipeline, run, run_ok};
use serde_json::json;

const RUN: Duration = Duration::from_secs(180);

/// `(id, body length)` of every row, by id.
fn lengths(pipeline: &Pipeline) -> Result<Vec<(i64, i64)>> {
    let conn = pipeline.sqlite()?;
    let mut stmt =
        conn.prepare("SELECT id, length(CAST(body AS BLOB)) FROM communications_data ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[test]
fn a_10_mib_string_fails_the_run_clearly_and_loses_nothing_acknowledged() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(300, &[])?;
    // Record index 150 (id 151) gets a 10 MiB body.
    let _ = api.post("/admin/state", json!({"huge_body_of": 150}))?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_huge", "")?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.env("EXTRACTOR_PAGE_CONCURRENCY", "1");
    // A commit after every page: page 1 (ids 1-100) is committed before page 2 is
    // published. (Within the default 100 ms the run would put both pages in one
    // transaction, since they are fetched during its set-up, and abort it whole.)
    let _ = cmd.env("EXTRACTOR_COMMIT_PAGES", "1");
    let out = run(cmd, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the run must fail: {stderr}");
    ensure!(
        stderr.contains("key \"151\"") && stderr.contains("message.max.bytes"),
        "the error names the record and the setting: {}",
        e2e::tail(&stderr, 10)
    );
    ensure!(!stderr.contains(API_KEY));

    // What the broker acknowledged loads, each record once and whole.
    let mut load = pipeline.loader()?;
    let _ = load.arg("--until-caught-up");
    let _ = run_ok(load, RUN)?;
    // Page 1 at least (with transactions, exactly page 1: page 2's were aborted).
    let first = lengths(&pipeline)?;
    ensure!(first.len() >= 100, "{} rows", first.len());
    let records = api.records()?;
    for (id, length) in &first {
        let body = records[(*id - 1) as usize]["body"]
            .as_str()
            .unwrap_or_default();
        ensure!(*length as usize == body.len(), "id {id}");
    }

    // The rest of the API is still there for the next run: the failure lost nothing that
    // was acknowledged, and published nothing twice.
    let ids: Vec<i64> = first.iter().map(|(id, _)| *id).collect();
    let mut distinct = ids.clone();
    distinct.dedup();
    ensure!(ids == distinct && ids.iter().all(|id| *id != 151));
    Ok(())
}

/// The setting the raised-limit tests give the pipeline: records up to 16 MiB.
const RAISED: &str = "16777216";

/// Produces `payload` (acknowledged) to partition 0 of `topic`, with a raised limit.
fn produce_raw(broker: &Broker, topic: &str, payload: &[u8]) -> Result<()> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("message.max.bytes", RAISED)
        .create()?;
    producer
        .send(
            BaseRecord::to(topic)
                .partition(0)
                .key("junk")
                .payload(payload),
        )
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// An API of 300 records whose record id 151 has a 10 MiB body, and a pipeline `name` on
/// `broker` with `message.max.bytes` raised in `[kafka]`.
fn huge_pipeline(broker: &Broker, name: &str) -> Result<(DemoApi, Pipeline)> {
    let api = DemoApi::start(300, &[])?;
    let _ = api.post("/admin/state", json!({"huge_body_of": 150}))?;
    let pipeline = Pipeline::new(broker, &api, name, "")?;
    pipeline.kafka_settings(&[("message.max.bytes", RAISED)])?;
    Ok((api, pipeline))
}

#[test]
fn a_10_mib_record_loads_whole_once_message_max_bytes_is_raised() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let (api, pipeline) = huge_pipeline(&broker, "e2e_huge_raised")?;
    let topic = "e2e_huge_raised.communications_data";
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.env("EXTRACTOR_PAGE_CONCURRENCY", "1");
    let started = Instant::now();
    let out = run_ok(cmd, RUN)?;
    eprintln!("extractor: {:?}", started.elapsed());
    ensure!(e2e::figure(&String::from_utf8_lossy(&out.stdout), "total", "records") == Some(300.0));
    if broker.kind == BrokerKind::Kafka {
        // The broker's default (about 1 MiB) would refuse the record: the topic the
        // extractor created allows what the producer may send.
        let config = e2e::topics::config(&broker, topic)?;
        ensure!(
            config.get("max.message.bytes").map(String::as_str) == Some("16778240"),
            "{config:?}"
        );
    }

    // And 10 MiB the loader cannot decode: its dead letter is as large (a DLQ topic with
    // the broker's default limit refused it, and the loader used to count it as sent).
    let junk = vec![b'x'; 10 * 1024 * 1024];
    produce_raw(&broker, topic, &junk)?;

    if broker.kind == BrokerKind::Tansu {
        return tansu_stall_is_reported(&pipeline);
    }

    // Loaded whole, or the loader fails: never a stall reported as caught up. The junk's
    // dead letter is expected (`--dead-letters-ok`: exit 0 for it).
    let mut load = pipeline.loader()?;
    let _ = load.args(["--until-caught-up", "--dead-letters-ok"]);
    let started = Instant::now();
    let out = run_ok(load, RUN)?;
    eprintln!("loader: {:?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        e2e::figure(&stdout, "loaded", "dead_letters") == Some(1.0),
        "{stdout}"
    );
    let letters = e2e::topics::read_all(&broker, &format!("{topic}.dlq"))?;
    ensure!(
        letters.len() == 1 && letters[0].value.as_ref().map(Vec::len) == Some(junk.len()),
        "{} dead letters",
        letters.len()
    );
    let rows = lengths(&pipeline)?;
    let records = api.records()?;
    ensure!(rows.len() == records.len(), "{} rows", rows.len());
    for (id, length) in &rows {
        let body = records[(*id - 1) as usize]["body"]
            .as_str()
            .unwrap_or_default();
        ensure!(*length as usize == body.len(), "id {id}: {length} bytes");
    }
    let huge = rows.iter().find(|(id, _)| *id == 151).map(|(_, l)| *l);
    ensure!(huge == Some(10 * 1024 * 1024), "{huge:?}");
    Ok(())
}

/// Tansu 0.6 never delivers the 10 MiB record: the loader holding its partition warns once
/// the session timeout (librdkafka's 45 s) has passed without progress, and when stopped it
/// reports the records it did not load.
fn tansu_stall_is_reported(pipeline: &Pipeline) -> Result<()> {
    let log = pipeline.dir.path().join("stalled-loader.log");
    let mut load = pipeline.loader()?;
    let child = load
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let started = Instant::now();
    let warned = e2e::wait_for("the loader's stall warning", RUN, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("partition stalled here"))
    });
    let pid = child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    let out = child.wait_with_output()?;
    let warned = warned?;
    eprintln!(
        "Tansu: the stall was reported after {:?}",
        started.elapsed()
    );
    ensure!(
        warned.contains("communications_data") && !warned.contains("caught up"),
        "{}",
        e2e::tail(&warned, 20)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lag = e2e::figure(&stdout, "loaded", "lag");
    ensure!(lag.is_some_and(|l| l > 0.0), "lag left: {lag:?}\n{stdout}");
    Ok(())
}

/// Apache Kafka only: a topic made before the raise keeps the broker's limit, so the broker
/// refuses the record; the run fails saying which topic setting to raise, and succeeds
/// once it is raised.
#[test]
fn a_topic_older_than_the_raise_refuses_the_record_and_the_error_says_what_to_raise() -> Result<()>
{
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start_kind(tmp.path(), BrokerKind::Kafka, &[])?;
    let (_api, pipeline) = huge_pipeline(&broker, "e2e_huge_old_topic")?;
    let topic = "e2e_huge_old_topic.communications_data";
    e2e::topics::create(&broker, topic, 6, &[])?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.env("EXTRACTOR_PAGE_CONCURRENCY", "1");
    let out = run(cmd, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the run must fail: {stderr}");
    ensure!(
        stderr.contains(topic)
            && stderr.contains("Message size too large")
            && stderr.contains("`max.message.bytes`"),
        "the error names the topic and its setting: {}",
        e2e::tail(&stderr, 5)
    );
    eprintln!("{}", e2e::tail(&stderr, 1));

    e2e::topics::set_config(&broker, topic, &[("max.message.bytes", "16778240")])?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.env("EXTRACTOR_PAGE_CONCURRENCY", "1");
    let _ = run_ok(cmd, RUN)?;
    Ok(())
}

/// A send queue smaller than the record (set in `[kafka]`) fails the run at once, naming
/// the setting, instead of waiting for room that never comes.
#[test]
fn a_record_larger_than_the_send_queue_fails_the_run_instead_of_waiting() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let (_api, pipeline) = huge_pipeline(&broker, "e2e_huge_queue")?;
    pipeline.kafka_settings(&[("queue.buffering.max.kbytes", "4096")])?;
    let out = run(pipeline.extractor()?, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the run must fail: {stderr}");
    ensure!(
        stderr.contains("key \"151\"") && stderr.contains("`queue.buffering.max.kbytes`"),
        "the error names the record and the setting: {}",
        e2e::tail(&stderr, 5)
    );
    eprintln!("{}", e2e::tail(&stderr, 1));
    Ok(())
}
