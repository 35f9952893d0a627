//! Incremental loading and resumption end to end: the demo API's `/v1/incremental` set
//! grows and changes between runs; each run asks only for what changed since the last
//! run's largest `updated_at` (the cursor, kept in the pipeline's state topic in Kafka),
//! and an extractor killed mid-run resumes from its last checkpoint.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, Proc, figure, run_ok, wait_for};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(180);
const INITIAL: &str = "2026-01-01T00:00:00Z";

/// The pipeline's `[client]` and `[[resources]]`: `/v1/incremental` paged by `limit`, its
/// `updated_since` the incremental's start value.
fn config(api: &DemoApi, name: &str, limit: u64) -> String {
    format!(
        r#"[client]
base_url = "{base}"
auth = {{ type = "api_key", name = "api_key", api_key = {{ secret = "api_key" }}, location = "query" }}

[resource_defaults]
primary_key = "id"
write_disposition = "merge"

[[resources]]
name = "events"
topic = "{name}.events"

[resources.endpoint]
path = "/v1/incremental"
data_selector = "data"
paginator = {{ type = "offset", limit = {limit} }}
params = {{ updated_since = {{ type = "incremental", cursor_path = "updated_at", initial_value = "{INITIAL}" }} }}
"#,
        base = api.url,
    )
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
    // largest updated_at, whose record comes again (dlt keeps the boundary).
    let updated: Vec<u64> = (1..=40).map(|i| i * 60).collect();
    let max2 = mutate(&api, 250, &updated)?;
    let (stdout, reqs) = extract(&pipeline, &api, &[])?;
    assert_eq!(figure(&stdout, "total", "records"), Some(291.0), "{stdout}");
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
    assert_eq!(figure(&stdout, "total", "records"), Some(13.0), "{stdout}");
    assert_eq!(reqs, [(0, max2.clone())]);
    load(&pipeline)?;
    assert_destination_equals_api(&pipeline, &api)?;

    // Nothing changed: one request from the newest updated_at, which holds one record.
    let (stdout, reqs) = extract(&pipeline, &api, &[])?;
    assert_eq!(figure(&stdout, "total", "records"), Some(1.0), "{stdout}");
    assert_eq!(reqs, [(0, max3)]);
    Ok(())
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

    let mut cmd = pipeline.extractor()?;
    let _ = cmd.args(["--page-concurrency", "4"]);
    let mut first = Proc {
        child: cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(tmp.path().join("killed.log"))?)
            .spawn()?,
        name: "extractor".into(),
    };
    let fetched = wait_for("the extractor to be mid-run", RUN, || {
        let n = api.get("/admin/stats").ok()?["requests"].as_u64()?;
        (n >= 200).then_some(n)
    })?;
    ensure!(
        first.child.try_wait()?.is_none(),
        "the extractor finished before it was killed"
    );
    first.kill(); // SIGKILL
    ensure!(fetched < 600, "{fetched} pages fetched before the kill");

    let (stdout, reqs) = extract(&pipeline, &api, &["--page-concurrency", "4"])?;
    assert!(stdout.contains("resumed=true"), "{stdout}");
    let first_offset = reqs.first().context("no requests")?.0;
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
    Ok(())
}
