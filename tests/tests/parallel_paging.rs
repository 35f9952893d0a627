//! Parallel paging: once the first page gives the total, the extractor fetches the rest
//! with a bounded number of requests in flight, and the result equals a sequential run's.

use std::time::Duration;

use anyhow::Result;
use e2e::{Broker, DemoApi, Pipeline, figure, run_ok};
use serde_json::json;

const RUN: Duration = Duration::from_secs(180);

/// `(id, body, updated_at)` of every row, by id.
fn rows(pipeline: &Pipeline) -> Result<Vec<(i64, String, String)>> {
    let conn = pipeline.sqlite()?;
    let mut stmt =
        conn.prepare("SELECT id, body, updated_at FROM communications_data ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Extracts with `concurrency` and loads; returns the API's peak of requests in flight.
fn extract_and_load(api: &DemoApi, pipeline: &Pipeline, concurrency: &str) -> Result<u64> {
    let _ = api.post("/admin/reset-stats", json!({}))?;
    let mut extract = pipeline.extractor()?;
    let _ = extract.args(["--page-concurrency", concurrency]);
    let out = run_ok(extract, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(figure(&stdout, "total", "pages"), Some(25.0), "{stdout}");
    assert_eq!(
        figure(&stdout, "total", "records"),
        Some(2500.0),
        "{stdout}"
    );
    let mut load = pipeline.loader()?;
    let _ = load.arg("--until-caught-up");
    let _ = run_ok(load, RUN)?;
    Ok(api.get("/admin/stats")?["peak_in_flight"]
        .as_u64()
        .unwrap_or_default())
}

#[test]
fn pages_after_the_first_are_fetched_concurrently_within_the_bound() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(2500, &["--latency-ms", "20"])?;

    let sequential = Pipeline::new(&broker, &api, "e2e_seq", "")?;
    let peak = extract_and_load(&api, &sequential, "1")?;
    assert_eq!(peak, 1, "sequential paging has one request in flight");

    let parallel = Pipeline::new(&broker, &api, "e2e_par", "")?;
    let peak = extract_and_load(&api, &parallel, "4")?;
    assert!(
        (2..=4).contains(&peak),
        "with --page-concurrency 4 the API saw a peak of {peak} requests in flight"
    );
    let expected = rows(&sequential)?;
    assert_eq!(expected.len(), 2500);
    assert_eq!(rows(&parallel)?, expected);
    Ok(())
}
