//! What was only ever seen on Tansu, checked on Apache Kafka: replay by time past a
//! partition's last record, the compacted state and schema topics after Kafka's log cleaner
//! has run, and the idempotent producer through a broker restart (SIGKILL) mid-run. Each
//! test says what it found different on Tansu. (The 10 MiB record: `hostile.rs`.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::topics::{self, Record};
use e2e::{Broker, BrokerKind, DemoApi, Pipeline, Proc, figure, run_ok, wait_for};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(180);

/// `(id, body)` of every row of `table` in the SQLite file at `db`, by id.
fn bodies(db: &std::path::Path, table: &str) -> Result<Vec<(i64, String)>> {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt = conn.prepare(&format!("SELECT id, body FROM {table} ORDER BY id"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// `(id, body)` of the API's `records`, by id.
fn api_bodies(records: &[Value]) -> Result<Vec<(i64, String)>> {
    let mut out: Vec<(i64, String)> = records
        .iter()
        .map(|r| {
            Ok((
                r["id"].as_i64().context("id")?,
                r["body"].as_str().context("body")?.to_owned(),
            ))
        })
        .collect::<Result<_>>()?;
    out.sort();
    Ok(out)
}

/// The loader into a fresh SQLite file `name` in the pipeline's directory, until caught up;
/// the file's path and the loader's `records=` figure.
fn load_fresh(
    pipeline: &Pipeline,
    name: &str,
    extra: &[&str],
) -> Result<(std::path::PathBuf, f64)> {
    let db = pipeline.dir.path().join(name);
    let mut cmd = pipeline.loader_to(&format!("sqlite://{}", db.display()))?;
    let _ = cmd.arg("--until-caught-up").args(extra);
    let t = Instant::now();
    let out = run_ok(cmd, RUN)?;
    eprintln!("\nload {name} {extra:?}: {:?}", t.elapsed());
    let loaded = figure(&String::from_utf8_lossy(&out.stdout), "loaded", "records")
        .context("the loader's summary")?;
    Ok((db, loaded))
}

/// A replay from a time after every record reads nothing, and from a time before every
/// record reads everything. Both brokers stamp records with the producer's time
/// (CreateTime) and find in-range times alike, but for a time after a partition's last
/// record Tansu 0.6's ListOffsets answers offset 0 where Kafka answers "none" (-1): the
/// loader checks the last record's time, so both pass (before that check, Tansu replayed
/// all 300 records here).
#[test]
fn a_replay_from_a_time_after_the_last_record_reads_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(300, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_time_edges", "")?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;

    // Both brokers stamp records with the producer's time (CreateTime), not their own.
    let records = topics::read_all(&broker, "e2e_time_edges.communications_data")?;
    ensure!(records.len() == 300, "{} records", records.len());
    ensure!(
        records
            .iter()
            .all(|r| matches!(r.timestamp, Some((_, false)))),
        "every record has a CreateTime timestamp: {:?}",
        records.iter().map(|r| r.timestamp).collect::<Vec<_>>()
    );
    let last = records
        .iter()
        .filter_map(|r| r.timestamp.map(|(t, _)| t))
        .max()
        .context("timestamps")?;
    let after = chrono::DateTime::from_timestamp_millis(last + 60_000)
        .context("a time")?
        .to_rfc3339();

    let (db, loaded) = load_fresh(
        &pipeline,
        "after.db",
        &["--replay-from", &format!("time:{after}")],
    )?;
    ensure!(
        loaded == 0.0,
        "a replay from after the end loaded {loaded} records"
    );
    ensure!(
        !db.exists() || bodies(&db, "communications_data").map_or(true, |b| b.is_empty()),
        "rows were written"
    );
    let (db, loaded) = load_fresh(
        &pipeline,
        "before.db",
        &["--replay-from", "time:2000-01-01T00:00:00Z"],
    )?;
    ensure!(
        loaded == 300.0,
        "a replay from 2000 loaded {loaded} records"
    );
    ensure!(bodies(&db, "communications_data")? == api_bodies(&api.records()?)?);
    Ok(())
}

/// The pipeline's `[client]` and two resources: `events`, incremental on the API's
/// `/v1/incremental` set, and `roller`, the plain `/v1/resource` records, whose runs
/// write to the state and schema topics under keys of their own.
fn compaction_config(api: &DemoApi, name: &str) -> String {
    format!(
        r#"{events}
[[resources]]
name = "roller"
topic = "{name}.roller"
endpoint = {{ path = "/v1/resource", data_selector = "data", paginator = {{ type = "offset", limit = 100 }} }}
"#,
        events = api.incremental_toml(name, 100, "2026-01-01T00:00:00Z"),
    )
}

/// Appends and updates records of the API's incremental set; its newest `updated_at`.
fn mutate(api: &DemoApi, append: u64, update: &[u64]) -> Result<String> {
    let answer = api.post("/admin/mutate", json!({"append": append, "update": update}))?;
    Ok(answer["max_updated_at"]
        .as_str()
        .context("max_updated_at")?
        .to_owned())
}

/// The `updated_since` of every `/v1/incremental` request since the last stats reset.
fn incremental_requests(api: &DemoApi) -> Result<Vec<String>> {
    let stats = api.get("/admin/stats")?;
    stats["log"]
        .as_array()
        .context("log")?
        .iter()
        .filter(|e| e["endpoint"] == "/v1/incremental")
        .map(|e| Ok(e["since"].as_str().context("since")?.to_owned()))
        .collect()
}

/// Runs the extractor on `resource` only, with the API's request log reset first.
fn extract(pipeline: &Pipeline, api: &DemoApi, resource: &str) -> Result<String> {
    let _ = api.post("/admin/reset-stats", json!({}))?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.args(["--resource", resource]);
    let out = run_ok(cmd, RUN)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn with_key<'r>(records: &'r [Record], key: &str) -> Vec<&'r Record> {
    records.iter().filter(|r| r.key == key.as_bytes()).collect()
}

/// Apache Kafka only: the state and schema topics are created compacted; once Kafka's log
/// cleaner has removed the superseded records, the next run still resumes from the last
/// run's cursor, and a fresh destination is rebuilt with the writer schemas the compacted
/// topic kept. (Tansu 0.6 stores `cleanup.policy=compact` but was not seen to compact: 8 of
/// 8 state records and 4 of 4 schema records still there 30 s after four runs.)
#[test]
fn after_log_compaction_runs_resume_from_the_cursor_and_a_fresh_loader_rebuilds() -> Result<()> {
    const ROLL_MS: u64 = 1000;
    let tmp = tempfile::tempdir()?;
    // Segments roll after a second, and the cleaner looks every 200 ms at any log with
    // something to clean.
    let broker = Broker::start_kind(
        tmp.path(),
        BrokerKind::Kafka,
        &[
            &format!("log.roll.ms={ROLL_MS}"),
            "log.cleaner.backoff.ms=200",
            "log.cleaner.min.cleanable.ratio=0.01",
        ],
    )?;
    let api = DemoApi::start(10, &[])?;
    let name = "e2e_compact";
    let (state_topic, schema_topic) = ("_e2e_compact_state", "_e2e_compact_schemas");
    let state_key = "e2e_compact/events";
    let pipeline = Pipeline::with_config(&broker, name, &compaction_config(&api, name))?;

    // Three runs of `events`, each writing its state at least twice (start, end) and its
    // writer schema once.
    let _ = mutate(&api, 300, &[])?;
    let _ = extract(&pipeline, &api, "events")?;
    for (topic, policy) in [
        (state_topic, "compact"),
        (schema_topic, "compact"),
        ("e2e_compact.events", "delete"),
    ] {
        let config = topics::config(&broker, topic)?;
        ensure!(
            config.get("cleanup.policy").map(String::as_str) == Some(policy),
            "{topic}: cleanup.policy {:?}",
            config.get("cleanup.policy")
        );
    }
    let _ = mutate(&api, 50, &[1, 2, 3])?;
    let _ = extract(&pipeline, &api, "events")?;
    let max3 = mutate(&api, 20, &[4, 310])?;
    let _ = extract(&pipeline, &api, "events")?;
    // Records written so far: the high watermarks (compaction leaves gaps, never moves
    // them; the cleaner may already have been at work).
    let written = topics::watermarks(&broker, state_topic)?[0].1;
    let schemas_written = topics::watermarks(&broker, schema_topic)?[0].1;
    let schemas = topics::read_all(&broker, schema_topic)?;
    // Writer schemas keyed by their fingerprints (the first run's, then the schema of the
    // changed records), each run publishing its schema again.
    let fingerprints: std::collections::BTreeSet<Vec<u8>> =
        schemas.iter().map(|r| r.key.clone()).collect();
    ensure!(
        (fingerprints.len() as i64) < schemas_written,
        "no schema was published twice: {fingerprints:?}"
    );
    ensure!(written >= 6, "{written} state records for {state_key}");
    ensure!(schemas_written >= 3, "{schemas_written} schema records");

    // A segment rolls at the first record written a second after the segment's first: the
    // `roller` run then closes the segments that hold every `events` record, and the
    // cleaner may compact them, down to one state record for `events` and each writer
    // schema once (none lost). (Letting time pass, not waiting for a result.)
    std::thread::sleep(Duration::from_millis(ROLL_MS + 500));
    let _ = extract(&pipeline, &api, "roller")?;
    let started = Instant::now();
    let (states, schemas) = wait_for("the log cleaner", Duration::from_secs(120), || {
        let states = topics::read_all(&broker, state_topic).ok()?;
        let schemas = topics::read_all(&broker, schema_topic).ok()?;
        let once = |key: &[u8]| schemas.iter().filter(|r| r.key == key).count() == 1;
        (with_key(&states, state_key).len() == 1 && fingerprints.iter().all(|f| once(f)))
            .then_some((states, schemas))
    })?;
    let state_marks = topics::watermarks(&broker, state_topic)?;
    let schema_marks = topics::watermarks(&broker, schema_topic)?;
    eprintln!(
        "compacted after {:?}: state topic {} records of offsets {:?} ({written} for {state_key} before, 1 after); \
         schema topic {} records of offsets {:?} ({schemas_written} before the roller's)",
        started.elapsed(),
        states.len(),
        state_marks,
        schemas.len(),
        schema_marks,
    );
    // What survived is the last run's final state.
    let kept = with_key(&states, state_key);
    let state: Value = serde_json::from_slice(kept[0].value.as_deref().context("a tombstone")?)?;
    ensure!(
        state["complete"] == true && state["cursor"] == json!(max3),
        "{state}"
    );

    // The next run starts from that cursor, and fetches only what changed since.
    let _ = mutate(&api, 5, &[7])?;
    let stdout = extract(&pipeline, &api, "events")?;
    let sinces = incremental_requests(&api)?;
    ensure!(
        !sinces.is_empty() && sinces.iter().all(|s| *s == max3),
        "requests from {sinces:?}, expected {max3}"
    );
    // 5 new and 1 updated; the record at the cursor itself comes again and is skipped
    // (dlt's de-duplication at the start value, kept in the compacted state).
    ensure!(figure(&stdout, "total", "records") == Some(6.0), "{stdout}");

    // A fresh destination from the topics, with only the compacted schema topic.
    let (db, loaded) = load_fresh(&pipeline, "rebuilt.db", &[])?;
    let events = match api.get("/admin/incremental/records")? {
        Value::Array(records) => records,
        other => anyhow::bail!("/admin/incremental/records returned {other}"),
    };
    ensure!(bodies(&db, "events")? == api_bodies(&events)?);
    ensure!(bodies(&db, "roller")? == api_bodies(&api.records()?)?);
    eprintln!("rebuilt: {loaded} records loaded");
    Ok(())
}

/// The offset of the checkpoint a resumed run's log says it starts at, if it has one.
fn resumed_at(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.contains("resuming the unfinished run"))?;
    let after = &line[line.find("offset")?..];
    let digits: String = after
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// How many times each key is in `records`.
fn per_key(records: &[Record]) -> BTreeMap<Vec<u8>, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        *counts.entry(r.key.clone()).or_insert(0) += 1;
    }
    counts
}

/// The broker is killed (SIGKILL) and started again on the same data while the extractor
/// publishes. The run either succeeds or fails saying why; after it (and a resumed run if
/// it failed) the destination equals the API, and no record is in the topic twice except
/// those of pages a resumed run fetched again (at least once): the idempotent producer
/// itself duplicated nothing.
#[test]
fn a_broker_restart_mid_run_loses_nothing_and_the_producer_duplicates_nothing() -> Result<()> {
    const RECORDS: u64 = 60_000;
    let tmp = tempfile::tempdir()?;
    let mut broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_restart", "")?;
    let topic = "e2e_restart.communications_data";
    let log = std::fs::File::create(pipeline.dir.path().join("extractor-1.log"))?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.stdout(std::process::Stdio::null()).stderr(log);
    let mut extractor = Proc {
        child: cmd.spawn()?,
        name: "extractor".into(),
    };
    // The kill lands while the producer streams: a fifth of the records acknowledged, and
    // batches in flight.
    wait_for("a fifth of the records in the topic", RUN, || {
        let marks = topics::watermarks(&broker, topic).ok()?;
        let stored: i64 = marks.iter().map(|(l, h)| h - l).sum();
        (stored >= RECORDS as i64 / 5).then_some(())
    })?;
    let killed_at = Instant::now();
    broker.stop();
    let before = api.get("/admin/stats")?["requests"]
        .as_u64()
        .unwrap_or_default();
    broker.restart()?;
    eprintln!(
        "{:?} restarted in {:?}; {before} of 600 pages fetched at the kill",
        broker.kind, broker.started_in,
    );
    let status = wait_for("the extractor's end", Duration::from_secs(400), || {
        extractor.child.try_wait().ok().flatten()
    })?;
    let first_log = std::fs::read_to_string(pipeline.dir.path().join("extractor-1.log"))?;
    eprintln!(
        "first run: {status} {:?} after the kill; its last lines:\n{}",
        killed_at.elapsed(),
        e2e::tail(&first_log, 4)
    );

    let warnings: Vec<&str> = first_log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    eprintln!(
        "the run's {} warnings, first and last:\n{}\n{}",
        warnings.len(),
        warnings.first().unwrap_or(&""),
        warnings.last().unwrap_or(&"")
    );

    // Pages a resumed run fetched again: their records may be in the topic twice.
    let mut refetched: Vec<u64> = Vec::new();
    if !status.success() {
        ensure!(
            first_log.contains("extractor: error:"),
            "the failed run says why: {}",
            e2e::tail(&first_log, 10)
        );
        let _ = api.post("/admin/reset-stats", json!({}))?;
        let out = run_ok(pipeline.extractor()?, RUN)?;
        eprintln!(
            "resumed run: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
        // It starts at its checkpoint: the pages its early fetcher requested from offset 0
        // before it read the state were dropped unpublished.
        let checkpoint = resumed_at(&String::from_utf8_lossy(&out.stderr));
        eprintln!("resumed at offset {checkpoint:?}");
        let stats = api.get("/admin/stats")?;
        refetched = stats["log"]
            .as_array()
            .context("log")?
            .iter()
            .filter_map(|e| e["offset"].as_u64())
            .filter(|o| checkpoint.is_none_or(|c| *o >= c))
            .collect();
    }

    let records = topics::read_all(&broker, topic)?;
    let counts = per_key(&records);
    let twice: Vec<i64> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .filter_map(|(k, _)| String::from_utf8_lossy(k).parse().ok())
        .collect();
    // Ids are the record's index + 1; a page at offset o holds ids o+1 ..= o+100.
    let producer_duplicates: Vec<i64> = twice
        .iter()
        .copied()
        .filter(|id| {
            !refetched
                .iter()
                .any(|o| (*o as i64) < *id && *id <= *o as i64 + 100)
        })
        .collect();
    eprintln!(
        "topic: {} records, {} keys, {} keys more than once ({} outside the pages fetched again)",
        records.len(),
        counts.len(),
        twice.len(),
        producer_duplicates.len()
    );
    ensure!(
        counts.len() as u64 == RECORDS,
        "{} keys in the topic",
        counts.len()
    );
    ensure!(
        producer_duplicates.is_empty(),
        "records the producer wrote twice: {:?}",
        &producer_duplicates[..producer_duplicates.len().min(20)]
    );

    let (db, _) = load_fresh(&pipeline, "dest-restart.db", &[])?;
    ensure!(bodies(&db, "communications_data")? == api_bodies(&api.records()?)?);
    Ok(())
}
