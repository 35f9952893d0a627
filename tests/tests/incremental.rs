//! Incremental loading and resumption end to end: the demo API's `/v1/incremental` set
//! grows and changes between runs; each run asks only for what changed since the last
//! run's largest `updated_at` (the cursor, kept in the pipeline's state topic in Kafka),
//! and an extractor killed mid-run resumes from its last checkpoint.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{API_KEY, Broker, DemoApi, Pipeline, Proc, figure, run_ok, wait_for};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(180);
const INITIAL: &str = "2026-01-01T00:00:00Z";

/// The pipeline's `[client]` and `[[resources]]`: `/v1/incremental` paged by `limit`, its
/// `updated_since` the incremental's start value.
fn config(api: &DemoApi, name: &str, limit: u64) -> String {
    api.incremental_toml(name, limit, INITIAL)
}

/// `(offset, updated_since)` of each `/v1/incremental` request in the API's log.
fn requests(api: &DemoApi) -> Result<Vec<(u64, String)>> {
    let stats = api.get("/admin/stats")?;
    let log = stats["log"].as_array().context("log")?;
    log.iter()
        .filter(|e| e["endpoint"] == "/v1/incremental")
        .map(|e| {
            ensure!(e["status"] == 200, "request failed: {e}");
            Ok((
                e["offset"].as_u64().context("offset")?,
                e["since"].as_str().context("since")?.to_owned(),
            ))
        })
        .collect()
}

fn api_records(api: &DemoApi) -> Result<Vec<Value>> {
    match api.get("/admin/incremental/records")? {
        Value::Array(records) => Ok(records),
        other => anyhow::bail!("/admin/incremental/records returned {other}"),
    }
}

/// The destination holds exactly the API's records: id, body and updated_at of each.
fn assert_destination_equals_api(pipeline: &Pipeline, api: &DemoApi) -> Result<()> {
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare("SELECT id, body, updated_at FROM events ORDER BY id")?;
    let rows: Vec<(i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let expected: Vec<(i64, String, String)> = api_records(api)?
        .iter()
        .map(|r| {
            let updated = r["updated_at"].as_str().context("updated_at")?;
            Ok((
                r["id"].as_i64().context("id")?,
                r["body"].as_str().context("body")?.to_owned(),
                // As the destination stores timestamps.
                format!("{}.000000Z", updated.trim_end_matches('Z')),
            ))
        })
        .collect::<Result<_>>()?;
    ensure!(
        rows.len() == expected.len(),
        "{} rows, {} API records",
        rows.len(),
        expected.len()
    );
    for (row, want) in rows.iter().zip(&expected) {
        ensure!(row == want, "destination {row:?}, API {want:?}");
    }
    Ok(())
}

fn load(pipeline: &Pipeline) -> Result<()> {
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    Ok(())
}

/// Runs the extractor of `pipeline` with the API's stats reset; its stdout and the
/// requests it made.
fn extract(
    pipeline: &Pipeline,
    api: &DemoApi,
    args: &[&str],
) -> Result<(String, Vec<(u64, String)>)> {
    let _ = api.post("/admin/reset-stats", json!({}))?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.args(args);
    let out = run_ok(cmd, RUN)?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        requests(api)?,
    ))
}

fn mutate(api: &DemoApi, append: u64, update: &[u64]) -> Result<String> {
    let answer = api.post("/admin/mutate", json!({"append": append, "update": update}))?;
    Ok(answer["max_updated_at"]
        .as_str()
        .context("max_updated_at")?
        .to_owned())
}

#[test]
fn each_run_fetches_only_what_changed_since_the_last() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;
    let name = "e2e_incr";
    let pipeline = Pipeline::with_config(&broker, name, &config(&api, name, 100))?;

    // Run 1: everything from initial_value.
    let max1 = mutate(&api, 2500, &[])?;
    let (stdout, reqs) = extract(&pipeline, &api, &["--page-concurrency", "1"])?;
    assert_eq!(
        figure(&stdout, "total", "records"),
        Some(2500.0),
        "{stdout}"
    );
    assert_eq!(reqs.len(), 25, "{reqs:?}");
    assert!(reqs.iter().all(|(_, since)| since == INITIAL), "{reqs:?}");
    assert!(stdout.contains("resumed=false"), "{stdout}");
    load(&pipeline)?;
    assert_destination_equals_api(&pipeline, &api)?;

    // Run 2: 250 new records and 40 updated ones; the run asks from the last run's
    // largest updated_at, whose record comes again and is skipped (dlt's de-duplication at
    // the start value).
    let updated: Vec<u64> = (1..=40).map(|i| i * 60).collect();
    let max2 = mutate(&api, 250, &updated)?;
    let (stdout, reqs) = extract(&pipeline, &api, &[])?;
    assert_eq!(figure(&stdout, "total", "records"), Some(290.0), "{stdout}");
    let offsets: Vec<u64> = reqs.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, [0, 100, 200], "{reqs:?}");
    assert!(reqs.iter().all(|(_, since)| *since == max1), "{reqs:?}");
    load(&pipeline)?;
    assert_destination_equals_api(&pipeline, &api)?;

    // Run 3, from another directory (nothing on local disk): the cursor comes from the
    // state topic.
    let elsewhere = Pipeline::with_config(&broker, name, &config(&api, name, 100))?;
    let max3 = mutate(&api, 10, &[5, 2600])?;
    let (stdout, reqs) = extract(&elsewhere, &api, &[])?;
    assert_eq!(figure(&stdout, "total", "records"), Some(12.0), "{stdout}");
    assert_eq!(reqs, [(0, max2.clone())]);
    load(&pipeline)?;
    assert_destination_equals_api(&pipeline, &api)?;

    // Nothing changed: one request from the newest updated_at, whose one record was
    // loaded already.
    let (stdout, reqs) = extract(&pipeline, &api, &[])?;
    assert_eq!(figure(&stdout, "total", "records"), Some(0.0), "{stdout}");
    assert_eq!(reqs, [(0, max3.clone())]);

    // The state topic's last record for the resource: the complete run and its cursor.
    let states = state_records(&broker, "_e2e_incr_state")?;
    assert!(
        states.iter().all(|(key, _)| key == "e2e_incr/events"),
        "{states:?}"
    );
    let (_, last) = states.last().context("no state records")?;
    assert_eq!(last["complete"], true, "{last}");
    assert_eq!(last["cursor"], json!(max3), "{last}");
    // dlt's `unique_hashes`: the one record at the cursor, skipped by the next run.
    assert_eq!(
        last["unique_hashes"].as_array().map(Vec::len),
        Some(1),
        "{last}"
    );
    assert_eq!(last["checkpoint"], Value::Null, "{last}");
    // While a run went, its records said where it stood, without the key.
    assert!(
        states
            .iter()
            .any(|(_, v)| v["complete"] == false && v["checkpoint"]["offset"].is_u64()),
        "{states:?}"
    );
    assert!(!format!("{states:?}").contains(API_KEY));
    Ok(())
}

/// Every committed `(key, value)` of partition 0 of `topic`, in order (a killed
/// extractor's open transaction holds the rest).
fn state_records(broker: &Broker, topic: &str) -> Result<Vec<(String, Value)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "e2e-state-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // The end of what is committed: a commit marker or an open transaction may follow.
        .set("enable.partition.eof", "true")
        .create()?;
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut records = Vec::new();
    wait_for("the state topic's end", RUN, || {
        while let Some(polled) = consumer.poll(Duration::from_millis(100)) {
            let m = match polled {
                Ok(m) => m,
                // The end of what is committed: only once past the high watermark (the
                // markers of a commit that just returned may not be written yet).
                Err(KafkaError::PartitionEOF(_))
                    if e2e::topics::past(&consumer, topic, 0, high) =>
                {
                    return Some(());
                }
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(_) => return None,
            };
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = serde_json::from_slice(m.payload().unwrap_or_default()).ok()?;
            records.push((key, value));
            if m.offset() + 1 >= high {
                return Some(());
            }
        }
        None
    })?;
    Ok(records)
}

#[test]
fn a_killed_extractor_resumes_from_its_checkpoint() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &["--latency-ms", "30"])?;
    let name = "e2e_incr_kill";
    // 600 pages of 10, 4 in flight (pages complete out of order).
    let pipeline = Pipeline::with_config(&broker, name, &config(&api, name, 10))?;
    let _ = mutate(&api, 6000, &[])?;

    kill_mid_run(&pipeline, &api, tmp.path())?;
    let states = state_records(&broker, "_e2e_incr_kill_state")?;
    let (_, killed) = states.last().context("no state records")?;
    assert_eq!(killed["complete"], false, "{killed}");
    let killed_run = killed["run"].as_u64().context("run")?;

    let (stdout, reqs) = extract(&pipeline, &api, &["--page-concurrency", "4"])?;
    assert!(stdout.contains("resumed=true"), "{stdout}");
    // The same run: its id, and its start value below.
    assert!(
        stdout.contains(&format!("run_id={killed_run} ")),
        "{stdout}"
    );
    let first_offset = reqs.first().context("no requests")?.0;
    eprintln!(
        "resumed at offset {first_offset}: {} of 600 pages fetched again",
        reqs.len()
    );
    assert!(
        first_offset >= 100,
        "the resumed run started at offset {first_offset}"
    );
    assert_eq!(
        reqs.iter().map(|(o, _)| *o).min(),
        Some(first_offset),
        "the resumed run went back before its checkpoint: {reqs:?}"
    );
    // No page skipped: from the checkpoint to the end, every page once.
    let mut offsets: Vec<u64> = reqs.iter().map(|(o, _)| *o).collect();
    offsets.sort_unstable();
    let expected: Vec<u64> = (first_offset..6000).step_by(10).collect();
    assert_eq!(offsets, expected);
    // The same run: the same start value.
    assert!(reqs.iter().all(|(_, since)| since == INITIAL), "{reqs:?}");

    load(&pipeline)?;
    assert_destination_equals_api(&pipeline, &api)?;

    // Every record changes; a run is killed mid-way; `--fresh` starts over instead of
    // resuming, from the cursor of the last complete run.
    let max = api_records(&api)?
        .iter()
        .filter_map(|r| r["updated_at"].as_str().map(str::to_owned))
        .max()
        .context("no records")?;
    let _ = mutate(&api, 0, &(1..=6000).collect::<Vec<u64>>())?;
    kill_mid_run(&pipeline, &api, tmp.path())?;
    let (stdout, reqs) = extract(&pipeline, &api, &["--page-concurrency", "4", "--fresh"])?;
    assert!(stdout.contains("resumed=false"), "{stdout}");
    assert_eq!(reqs.first().map(|(o, _)| *o), Some(0), "{reqs:?}");
    assert_eq!(reqs.len(), 600);
    assert!(reqs.iter().all(|(_, since)| *since == max), "{reqs:?}");
    load(&pipeline)?;
    assert_destination_equals_api(&pipeline, &api)?;
    Ok(())
}

/// Starts the extractor (4 pages in flight) and kills it (SIGKILL) once the API has
/// answered 200 requests, before it finished.
fn kill_mid_run(pipeline: &Pipeline, api: &DemoApi, dir: &std::path::Path) -> Result<()> {
    let _ = api.post("/admin/reset-stats", json!({}))?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.args(["--page-concurrency", "4"]);
    let mut run = Proc {
        child: cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("killed.log"))?)
            .spawn()?,
        name: "extractor".into(),
    };
    let fetched = wait_for("the extractor to be mid-run", RUN, || {
        let n = api.get("/admin/stats").ok()?["requests"].as_u64()?;
        (n >= 200).then_some(n)
    })?;
    ensure!(
        run.child.try_wait()?.is_none(),
        "the extractor finished before it was killed"
    );
    run.kill();
    ensure!(fetched < 600, "{fetched} pages fetched before the kill");
    eprintln!("killed after {fetched} requests");
    // The killed run's last requests are still being answered (30 ms each) and would be
    // logged after the next run resets the request log: wait until none is in flight.
    wait_for("the killed run's requests to end", RUN, || {
        (api.get("/admin/stats").ok()?["in_flight"].as_u64()? == 0).then_some(())
    })?;
    Ok(())
}

#[test]
fn sigterm_saves_the_checkpoint_of_everything_sent() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &["--latency-ms", "30"])?;
    let name = "e2e_incr_term";
    let pipeline = Pipeline::with_config(&broker, name, &config(&api, name, 10))?;
    let _ = mutate(&api, 6000, &[])?;

    let _ = api.post("/admin/reset-stats", json!({}))?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.args(["--page-concurrency", "4"]);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let _ = wait_for("the extractor to be mid-run", RUN, || {
        let n = api.get("/admin/stats").ok()?["requests"].as_u64()?;
        (n >= 200).then_some(n)
    })?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    ensure!(status.success(), "kill -TERM");
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(stderr.contains("interrupted"), "{stderr}");
    // Every page it fetched was published, but for the few in flight when it stopped.
    let fetched = requests(&api)?.len() as u64;
    ensure!(fetched < 600, "{fetched} pages fetched before SIGTERM");

    let (stdout, reqs) = extract(&pipeline, &api, &["--page-concurrency", "4"])?;
    assert!(stdout.contains("resumed=true"), "{stdout}");
    let first_page = reqs.first().context("no requests")?.0 / 10;
    assert!(
        (fetched.saturating_sub(4)..=fetched).contains(&first_page),
        "fetched {fetched} pages, the rerun started at page {first_page}"
    );
    load(&pipeline)?;
    assert_destination_equals_api(&pipeline, &api)?;
    Ok(())
}
