//! The seed pipeline end to end, on real parts: Tansu (SQLite storage), the demo API, the
//! extractor and loader binaries, and the SQLite destination.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{API_KEY, Broker, DemoApi, Pipeline, figure, run, run_ok, wait_for};
use rusqlite::types::ValueRef;
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(180);

/// Fast retries for tests: the schedule is the seed's (factor 2, 3 retries), scaled down.
const FAST_RETRY: &str = "retry = { initial_delay = 0.05, max_delay = 1.0, retry_after_max = 2.0 }";

/// `2026-01-01T00:07:00Z` as the destination stores timestamps.
fn stored_timestamp(api: &str) -> String {
    let t = api.strip_suffix('Z').unwrap_or(api);
    format!("{t}.000000Z")
}

/// The destination's value of one column, as JSON, with SQLite's storage class.
fn cell(v: ValueRef<'_>) -> (Value, &'static str) {
    match v {
        ValueRef::Null => (Value::Null, "null"),
        ValueRef::Integer(i) => (json!(i), "integer"),
        ValueRef::Real(f) => (json!(f), "real"),
        ValueRef::Text(t) => (json!(String::from_utf8_lossy(t)), "text"),
        ValueRef::Blob(_) => (json!("<blob>"), "blob"),
    }
}

/// Compares every API record with its destination row, field by field, storage class
/// included.
fn assert_destination_equals(pipeline: &Pipeline, records: &[Value]) -> Result<()> {
    let conn = pipeline.sqlite()?;
    let count: i64 =
        conn.query_row("SELECT count(*) FROM communications_data", [], |r| r.get(0))?;
    ensure!(
        count as usize == records.len(),
        "{count} rows, {} records",
        records.len()
    );
    let mut stmt = conn.prepare(
        "SELECT id, customer_id, channel, direction, status, body, created_at, updated_at, sender__name, \
         sender__address__country, sender__address__city, cost, duration_seconds, sentiment, is_read, \
         external_ref, campaign_id FROM communications_data WHERE id = ?1",
    )?;
    let mut tags_stmt = conn.prepare(
        "SELECT _dlt_parent_id, _dlt_list_idx, value FROM communications_data__tags \
         WHERE _dlt_parent_id = ?1 ORDER BY _dlt_list_idx",
    )?;
    let mut total_tags = 0;
    for rec in records {
        let id = rec["id"].as_i64().context("id")?;
        let row: Vec<(Value, &str)> =
            stmt.query_row([id], |r| (0..17).map(|i| r.get_ref(i).map(cell)).collect())?;
        let opt_int = |v: &Value| {
            if v.is_null() {
                (Value::Null, "null")
            } else {
                (v.clone(), "integer")
            }
        };
        let opt_text = |v: &Value| {
            if v.is_null() {
                (Value::Null, "null")
            } else {
                (v.clone(), "text")
            }
        };
        let expected: Vec<(Value, &str)> = vec![
            (rec["id"].clone(), "integer"),
            (rec["customer_id"].clone(), "integer"),
            (rec["channel"].clone(), "text"),
            (rec["direction"].clone(), "text"),
            (rec["status"].clone(), "text"),
            (rec["body"].clone(), "text"),
            (
                json!(stored_timestamp(
                    rec["created_at"].as_str().context("created_at")?
                )),
                "text",
            ),
            (
                json!(stored_timestamp(
                    rec["updated_at"].as_str().context("updated_at")?
                )),
                "text",
            ),
            (rec["sender"]["name"].clone(), "text"),
            (rec["sender"]["address"]["country"].clone(), "text"),
            (rec["sender"]["address"]["city"].clone(), "text"),
            (json!(rec["cost"].as_f64().context("cost")?), "real"),
            opt_int(&rec["duration_seconds"]),
            (
                json!(rec["sentiment"].as_f64().context("sentiment")?),
                "real",
            ),
            (
                json!(i64::from(rec["is_read"].as_bool().context("is_read")?)),
                "integer",
            ),
            (rec["external_ref"].clone(), "integer"),
            opt_text(&rec["campaign_id"]),
        ];
        ensure!(
            row == expected,
            "id {id}: destination {row:?}\n  expected {expected:?}"
        );
        // `tags` is a child table (dlt's nested tables): one row per element, in order.
        let tags: Vec<(String, i64, String)> = tags_stmt
            .query_map([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let expected_tags: Vec<(String, i64, String)> = rec["tags"]
            .as_array()
            .context("tags")?
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    id.to_string(),
                    i as i64,
                    t.as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        ensure!(
            tags == expected_tags,
            "id {id}: tags {tags:?}, expected {expected_tags:?}"
        );
        total_tags += expected_tags.len();
    }
    // Nothing else (no stale children).
    let child_rows: i64 =
        conn.query_row("SELECT count(*) FROM communications_data__tags", [], |r| {
            r.get(0)
        })?;
    ensure!(
        child_rows as usize == total_tags,
        "{child_rows} rows in communications_data__tags, {total_tags} tags in the API"
    );
    Ok(())
}

#[test]
fn seed_pipeline_end_to_end_then_merge_rerun() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(2500, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_seed", FAST_RETRY)?;

    let out = run_ok(pipeline.extractor()?, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        figure(&stdout, "total", "records"),
        Some(2500.0),
        "{stdout}"
    );
    assert_eq!(figure(&stdout, "total", "pages"), Some(25.0), "{stdout}");
    assert_eq!(figure(&stdout, "total", "retries"), Some(0.0), "{stdout}");
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let out = run_ok(loader, RUN)?;
    assert_eq!(
        figure(&String::from_utf8_lossy(&out.stdout), "loaded", "records"),
        Some(2500.0)
    );
    let before = api.records()?;
    assert_destination_equals(&pipeline, &before)?;

    // The API changes 10% of its records; a second run merges them.
    let _ = api.post("/admin/state", json!({"revision": 1}))?;
    let after = api.records()?;
    let changed: Vec<i64> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .filter_map(|(_, b)| b["id"].as_i64())
        .collect();
    assert!(
        changed.len() > 100,
        "the demo API changed {} records",
        changed.len()
    );
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let out = run_ok(loader, RUN)?;
    assert_eq!(
        figure(&String::from_utf8_lossy(&out.stdout), "loaded", "records"),
        Some(2500.0)
    );
    assert_destination_equals(&pipeline, &after)?;
    Ok(())
}

#[test]
fn retries_recover_and_a_fourth_failure_fails_the_run() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(500, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_retry", FAST_RETRY)?;

    // Three failures in a row on the first page (a 429 with a Retry-After of one second,
    // then 500 and 502) stay within 3 retries; a later run meets 503, 504 and a dropped
    // connection. Each run completes and counts exactly the faults it met.
    let _ = api.post(
        "/admin/faults",
        json!([{"status": 429, "count": 1, "retry_after": "1"}, {"status": 500, "count": 1}, {"status": 502, "count": 1}]),
    )?;
    let started = std::time::Instant::now();
    let out = run_ok(pipeline.extractor()?, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(figure(&stdout, "total", "retries"), Some(3.0), "{stdout}");
    assert_eq!(figure(&stdout, "total", "records"), Some(500.0), "{stdout}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    let _ = api.post(
        "/admin/faults",
        json!([{"status": 503, "count": 1}, {"status": 504, "count": 1}]),
    )?;
    let out = run_ok(pipeline.extractor()?, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(figure(&stdout, "total", "retries"), Some(2.0), "{stdout}");
    assert_eq!(figure(&stdout, "total", "records"), Some(500.0), "{stdout}");
    assert_eq!(api.get("/admin/stats")?["faults_served"], json!(5));

    // Four 503s in a row on the first page: 4 attempts, then a clear error.
    let _ = api.post("/admin/faults", json!([{"status": 503, "count": 4}]))?;
    let out = run(pipeline.extractor()?, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run must fail: {stderr}");
    assert!(stderr.contains("HTTP 503 after 4 attempt(s)"), "{stderr}");
    assert!(
        stderr.contains("api_key=***"),
        "URL with the key redacted: {stderr}"
    );
    assert!(stderr.contains("injected fault"), "body excerpt: {stderr}");
    assert!(!stderr.contains(API_KEY) && !String::from_utf8_lossy(&out.stdout).contains(API_KEY));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("total "),
        "no success summary on failure"
    );
    Ok(())
}

#[test]
fn wrong_key_fails_clearly_and_the_key_is_never_logged() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(300, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_auth", FAST_RETRY)?;

    // Everything a successful run logs, at the most verbose level, has no key in it.
    let mut ok = pipeline.extractor()?;
    let _ = ok.env("RUST_LOG", "trace");
    let out = run_ok(ok, RUN)?;
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(API_KEY),
            "the API key leaked into the output"
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).len() > 1000,
        "trace logging produced output"
    );

    let wrong = "wrong-key-77c1e0b5";
    let mut bad = pipeline.extractor()?;
    let _ = bad.env("API_KEY", wrong).env("RUST_LOG", "trace");
    let out = run(bad, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("HTTP 401 after 1 attempt(s)"), "{stderr}");
    assert!(stderr.contains("invalid api key"), "{stderr}");
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(wrong),
            "the wrong key leaked"
        );
    }
    Ok(())
}

#[test]
fn missing_secret_names_the_key_and_where_it_looked() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_secret", "")?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.env_remove("API_KEY").current_dir(tmp.path());
    let out = run(cmd, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("client.auth.api_key") && stderr.contains("API_KEY"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn loader_killed_mid_topic_resumes_without_loss_or_duplicates() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(20_000, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_kill", FAST_RETRY)?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;

    // Small batches so the loader is still mid-topic when it is killed.
    let mut first = pipeline.loader()?;
    let _ = first.args(["--batch-size", "100"]);
    let mut first = e2e::Proc {
        child: first
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
        name: "loader".into(),
    };
    let rows_now = || -> Option<i64> {
        let conn = pipeline.sqlite().ok()?;
        conn.query_row("SELECT count(*) FROM communications_data", [], |r| r.get(0))
            .ok()
    };
    let seen = wait_for("the loader to be mid-topic", RUN, || {
        rows_now().filter(|n| *n >= 2000)
    })?;
    first.kill(); // SIGKILL
    assert!(
        seen < 20_000,
        "the loader finished before it was killed ({seen} rows)"
    );

    let mut second = pipeline.loader()?;
    let _ = second.arg("--until-caught-up");
    let out = run_ok(second, RUN)?;
    let resumed =
        figure(&String::from_utf8_lossy(&out.stdout), "loaded", "records").context("loaded")?;
    let conn = pipeline.sqlite()?;
    let stored: i64 =
        conn.query_row("SELECT count(*) FROM communications_data", [], |r| r.get(0))?;
    // The destination's offsets say exactly which records it holds: the restart consumed
    // only the rest, and the two runs add up to the topic (its records, and the commit
    // markers of the extractor's transactions between them).
    let offsets: i64 = conn.query_row(
        "SELECT sum(next_offset) FROM _pipeline_offsets WHERE group_id = ?1",
        [&pipeline.group],
        |r| r.get(0),
    )?;
    let end: i64 = e2e::topics::watermarks(&broker, "e2e_kill.communications_data")?
        .iter()
        .map(|(_, high)| high)
        .sum();
    assert_eq!(
        offsets, end,
        "offsets recorded in the destination cover the topic once"
    );
    assert!(
        resumed <= (20_000 - seen) as f64,
        "the restart re-read rows the destination had: {resumed} after {seen}"
    );
    assert_destination_equals(&pipeline, &api.records()?)?;
    assert_eq!(stored, 20_000);
    Ok(())
}

#[test]
fn loader_stops_cleanly_on_sigterm_and_commits_what_it_wrote() -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(20_000, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_term", FAST_RETRY)?;
    // Offsets count records one for one only without transactions' commit markers.
    let mut extractor = pipeline.extractor()?;
    let _ = extractor.arg("--no-transactions");
    let _ = run_ok(extractor, RUN)?;

    let mut cmd = pipeline.loader()?;
    let _ = cmd.args(["--batch-size", "100"]);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id().to_string();
    let rows_now = || -> Option<i64> {
        let conn = pipeline.sqlite().ok()?;
        conn.query_row("SELECT count(*) FROM communications_data", [], |r| r.get(0))
            .ok()
    };
    let _ = wait_for("the loader to be mid-topic", RUN, || {
        rows_now().filter(|n| *n >= 2000)
    })?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    ensure!(status.success(), "kill -TERM");
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "SIGTERM ends the loader with exit 0: {stderr}"
    );
    let loaded =
        figure(&String::from_utf8_lossy(&out.stdout), "loaded", "records").context("summary")?;

    // What it wrote, what its offsets say, and what it committed to Kafka agree.
    let conn = pipeline.sqlite()?;
    let rows: i64 = conn.query_row("SELECT count(*) FROM communications_data", [], |r| r.get(0))?;
    ensure!(
        rows as f64 == loaded && rows < 20_000,
        "{rows} rows, {loaded} loaded"
    );
    let mut stored = conn.prepare(
        "SELECT topic, partition, next_offset FROM _pipeline_offsets WHERE group_id = ?1",
    )?;
    let stored: Vec<(String, i32, i64)> = stored
        .query_map([&pipeline.group], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    ensure!(
        stored.iter().map(|s| s.2).sum::<i64>() == rows,
        "offsets cover exactly the rows: {stored:?}"
    );

    let kafka: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", &pipeline.group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, _) in &stored {
        let _ = tpl.add_partition(topic, *partition);
    }
    let committed = kafka.committed_offsets(tpl, Duration::from_secs(10))?;
    for (topic, partition, next) in &stored {
        let offset = committed
            .find_partition(topic, *partition)
            .map(|e| e.offset());
        ensure!(
            offset == Some(Offset::Offset(*next)),
            "{topic}/{partition}: Kafka has {offset:?}, destination {next}"
        );
    }
    Ok(())
}
