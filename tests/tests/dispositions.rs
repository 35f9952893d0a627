//! `write_disposition = "replace"` end to end: the extractor marks the end of each run on
//! every partition, and the loader swaps the table to exactly the run's records, in one
//! transaction, only once the run is complete; the `tags` child table follows each swap. (`append` under loader kills is in
//! `loader_delivery.rs`.)

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, Proc, run_ok, wait_for};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(180);

/// `(id, status, body)` of every row, by id.
fn rows(pipeline: &Pipeline) -> Result<Vec<(i64, String, String)>> {
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare("SELECT id, status, body FROM communications_data ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn expected(records: &[Value]) -> Vec<(i64, String, String)> {
    let mut all: Vec<(i64, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default().to_owned(),
                r["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    all.sort();
    all
}

/// `(_dlt_parent_id, _dlt_list_idx, value)` of the `tags` child table, sorted.
fn tags(pipeline: &Pipeline) -> Result<Vec<(String, i64, String)>> {
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare(
        "SELECT _dlt_parent_id, _dlt_list_idx, value FROM communications_data__tags \
         ORDER BY CAST(_dlt_parent_id AS INTEGER), _dlt_list_idx",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The API's tags as the child table holds them.
fn expected_tags(records: &[Value]) -> Vec<(String, i64, String)> {
    let mut all = Vec::new();
    for r in records {
        let id = r["id"].as_i64().unwrap_or_default().to_string();
        for (i, tag) in r["tags"].as_array().into_iter().flatten().enumerate() {
            all.push((
                id.clone(),
                i as i64,
                tag.as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    all.sort_by_key(|(id, i, _)| (id.parse::<i64>().unwrap_or_default(), *i));
    all
}

/// Tables left besides the data table, its `tags` child table and the loader's own.
fn other_tables(pipeline: &Pipeline) -> Result<Vec<String>> {
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT IN ('communications_data', 'communications_data__tags', '_pipeline_offsets', \
         '_pipeline_runs') ORDER BY name",
    )?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(names)
}

fn load(pipeline: &Pipeline) -> Result<String> {
    let mut cmd = pipeline.loader()?;
    let _ = cmd.arg("--until-caught-up");
    let out = run_ok(cmd, RUN)?;
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn replace_swaps_in_each_complete_run_and_ignores_an_interrupted_one() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(1000, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_replace", "")?;
    pipeline.write_disposition("replace")?;

    // Run 1: the table is the API's 1,000 records.
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let log = load(&pipeline)?;
    let first = expected(&api.records()?);
    let first_tags = expected_tags(&api.records()?);
    ensure!(rows(&pipeline)? == first, "after run 1");
    ensure!(
        !first_tags.is_empty() && tags(&pipeline)? == first_tags,
        "tags after run 1"
    );
    ensure!(
        log.contains("replaced the table with the run's rows"),
        "{log}"
    );
    ensure!(other_tables(&pipeline)?.is_empty(), "staging tables left");

    // Run 2 is killed halfway: its records reach the topic, its end never does, so the
    // table keeps run 1's rows (not a mix).
    let _ = api.post(
        "/admin/state",
        json!({"records": 600, "revision": 1, "changed_percent": 50, "latency_ms": 40}),
    )?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.env("EXTRACTOR_PAGE_CONCURRENCY", "1");
    let mut extractor = Proc {
        child: cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?,
        name: "extractor".into(),
    };
    wait_for("the extractor to fetch 3 pages", RUN, || {
        let requests = api.get("/admin/stats").ok()?["requests"].as_u64()?;
        (requests >= 3).then_some(())
    })?;
    extractor.kill();
    let _ = load(&pipeline)?;
    ensure!(
        rows(&pipeline)? == first,
        "an interrupted run must not change the table"
    );
    ensure!(
        tags(&pipeline)? == first_tags,
        "an interrupted run must not change the child table"
    );

    // Run 3 completes: the table is exactly the API's 600 records, at revision 1.
    let _ = api.post("/admin/state", json!({"latency_ms": 0}))?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let _ = load(&pipeline)?;
    let third = expected(&api.records()?);
    ensure!(third.len() == 600 && third != first[..600]);
    let third_tags = expected_tags(&api.records()?);
    ensure!(rows(&pipeline)? == third, "after run 3");
    ensure!(third_tags != first_tags, "revision 1 changes tags");
    ensure!(
        tags(&pipeline)? == third_tags,
        "tags after run 3: no stale children"
    );
    ensure!(other_tables(&pipeline)?.is_empty(), "staging tables left");

    // Rebuilding from the topic (a fresh destination, every run replayed in order) ends in
    // the same table.
    let rebuilt = Pipeline {
        dir: tempfile::tempdir()?,
        config: pipeline.config.clone(),
        db: tmp.path().join("rebuilt.db"),
        group: format!("{}-rebuild", pipeline.group),
    };
    let _ = load(&rebuilt)?;
    ensure!(rows(&rebuilt)? == third, "after a rebuild");
    ensure!(tags(&rebuilt)? == third_tags, "tags after a rebuild");
    ensure!(other_tables(&rebuilt)?.is_empty(), "staging tables left");
    Ok(())
}

#[test]
fn a_resource_without_a_primary_key_is_appended_run_after_run() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(300, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_keyless", "")?;
    // dlt's default: no key, append.
    let text = std::fs::read_to_string(&pipeline.config)?
        .replacen("primary_key = \"id\"\n", "", 1)
        .replacen("write_disposition = \"merge\"\n", "", 1);
    std::fs::write(&pipeline.config, text)?;
    for run in 1..=2 {
        let _ = run_ok(pipeline.extractor()?, RUN)?;
        let _ = load(&pipeline)?;
        let conn = pipeline.sqlite()?;
        let (rows, ids): (i64, i64) = conn.query_row(
            "SELECT count(*), count(DISTINCT id) FROM communications_data",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        ensure!(
            (rows, ids) == (300 * run, 300),
            "run {run}: {rows} rows, {ids} ids"
        );
    }
    Ok(())
}
