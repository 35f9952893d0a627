//! dlt's incremental options end to end (dlt 1.31's `dlt/extract/incremental/`), against
//! the demo API's `/incopt/events` (a record set the test writes, served in `seq` order,
//! each request logged): the de-duplication of records at the start value (by primary key,
//! or by the whole record without one), `lag` (numbers and datetimes in seconds),
//! `range_start` / `range_end`, `row_order` and `on_cursor_value_missing`. One broker and
//! one demo API for all the cases, each case its own pipeline.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, run, run_ok};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(120);
/// 2026-06-01T00:00:00Z plus `s` seconds, as the records' `at` text.
fn at(s: u64) -> String {
    format!("2026-06-01T00:{:02}:{:02}Z", s / 60, s % 60)
}

struct Stand {
    broker: Broker,
    api: DemoApi,
    _dir: tempfile::TempDir,
}

impl Stand {
    /// A pipeline `name` whose resources are `(name, extra table lines)`, each on
    /// `/incopt/events` paged by page number (no total: the paging ends on an empty page).
    fn pipeline<S: AsRef<str>>(&self, name: &str, resources: &[(&str, S)]) -> Result<Pipeline> {
        let mut text = format!(
            "[client]\nbase_url = \"{}\"\nauth = {{ type = \"api_key\", name = \"api_key\", \
             api_key = {{ secret = \"api_key\" }}, location = \"query\" }}\n",
            self.api.url
        );
        for (resource, body) in resources {
            text.push_str(&format!(
                "\n[[resources]]\nname = \"{resource}\"\ntopic = \"{name}.{resource}\"\n\
                 write_disposition = \"append\"\n{}\n",
                body.as_ref()
            ));
        }
        Pipeline::with_config(&self.broker, name, &text)
    }

    fn records(&self, records: Value) -> Result<()> {
        let _ = self
            .api
            .post("/incopt/admin", json!({ "records": records }))?;
        Ok(())
    }

    /// The `/incopt/events` requests since the last call, each `(page, since)`.
    fn requests(&self) -> Result<Vec<(u64, Value)>> {
        let log = self.api.get("/incopt/log")?;
        let _ = self.api.post("/incopt/reset", json!({}))?;
        log.as_array()
            .context("log")?
            .iter()
            .map(|e| Ok((e["page"].as_u64().context("page")?, e["since"].clone())))
            .collect()
    }
}

/// The endpoint lines of a resource: `/incopt/events` with `params` and `incremental`.
fn endpoint(params: &str, incremental: &str) -> String {
    format!(
        "[resources.endpoint]\npath = \"/incopt/events\"\ndata_selector = \"data\"\n\
         paginator = {{ type = \"page_number\", base_page = 1, total_path = \"\" }}\n\
         params = {{ {params} }}\nincremental = {{ {incremental} }}\n"
    )
}

fn extract_and_load(pipeline: &Pipeline) -> Result<()> {
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    Ok(())
}

/// The ids in `table`, ascending, duplicates kept.
fn ids(pipeline: &Pipeline, table: &str) -> Result<Vec<i64>> {
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare(&format!("SELECT id FROM \"{table}\" ORDER BY id"))?;
    let ids = stmt
        .query_map([], |r| r.get::<_, i64>(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

fn event(id: u64, seq: u64, name: &str) -> Value {
    json!({"id": id, "seq": seq, "at": at(seq), "name": name})
}

/// dlt keeps the digests of the records at the cursor (`unique_hashes`) and skips them on
/// the next run, so `append` does not load them twice: with a primary key the key decides
/// (a changed record at the same cursor is skipped, as dlt's), without one the whole
/// record does (it is loaded again). A new record at the cursor is loaded.
fn dedup_at_the_start_value(stand: &Stand) -> Result<()> {
    let inc = "start_param = \"since\", cursor_path = \"seq\", initial_value = 0";
    let keyed = format!("primary_key = \"id\"\n{}", endpoint("", inc));
    let unkeyed = endpoint("", inc);
    let pipeline = stand.pipeline("incopt_dedup", &[("keyed", &keyed), ("unkeyed", &unkeyed)])?;
    let first: Vec<Value> = [(1, 10), (2, 20), (3, 30), (4, 30), (5, 30)]
        .into_iter()
        .map(|(id, seq)| event(id, seq, "v1"))
        .collect();
    stand.records(json!(first))?;
    extract_and_load(&pipeline)?;
    assert_eq!(ids(&pipeline, "keyed")?, [1, 2, 3, 4, 5]);
    assert_eq!(ids(&pipeline, "unkeyed")?, [1, 2, 3, 4, 5]);

    // Record 5 changes at the same cursor, 6 is new at it, 7 is past it.
    let mut second = first[..4].to_vec();
    second.extend([event(5, 30, "v2"), event(6, 30, "v1"), event(7, 40, "v1")]);
    stand.records(json!(second))?;
    let _ = stand.requests()?;
    extract_and_load(&pipeline)?;
    let since: Vec<Value> = stand.requests()?.into_iter().map(|(_, s)| s).collect();
    ensure!(since.iter().all(|s| *s == json!("30")), "{since:?}");
    assert_eq!(ids(&pipeline, "keyed")?, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(ids(&pipeline, "unkeyed")?, [1, 2, 3, 4, 5, 5, 6, 7]);

    // Nothing new: the records at the cursor 40 (7) are not loaded again.
    extract_and_load(&pipeline)?;
    assert_eq!(ids(&pipeline, "keyed")?, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(ids(&pipeline, "unkeyed")?, [1, 2, 3, 4, 5, 5, 6, 7]);
    Ok(())
}

/// `lag` re-reads a window behind the cursor: the start value sent and the records kept
/// go back by it (a number by the number, a datetime by seconds), while the saved cursor
/// stays the largest value seen.
fn lag(stand: &Stand) -> Result<()> {
    let numbers = endpoint(
        "",
        "start_param = \"since\", cursor_path = \"seq\", initial_value = 0, lag = 15",
    );
    let pipeline = stand.pipeline("incopt_lag", &[("numbers", &numbers)])?;
    let records = |n: u64| -> Vec<Value> { (1..=n).map(|id| event(id, id * 10, "v1")).collect() };
    stand.records(json!(records(5)))?;
    extract_and_load(&pipeline)?;
    assert_eq!(ids(&pipeline, "numbers")?, [1, 2, 3, 4, 5]);
    stand.records(json!(records(6)))?;
    let _ = stand.requests()?;
    extract_and_load(&pipeline)?;
    // From 50 - 15 = 35: 40, 50 again and the new 60.
    let since: Vec<Value> = stand.requests()?.into_iter().map(|(_, s)| s).collect();
    ensure!(since.iter().all(|s| *s == json!("35")), "{since:?}");
    assert_eq!(ids(&pipeline, "numbers")?, [1, 2, 3, 4, 4, 5, 5, 6]);
    // The cursor is 60, not the lagged start: the next run starts at 45.
    extract_and_load(&pipeline)?;
    let since: Vec<Value> = stand.requests()?.into_iter().map(|(_, s)| s).collect();
    ensure!(since.iter().all(|s| *s == json!("45")), "{since:?}");
    assert_eq!(ids(&pipeline, "numbers")?, [1, 2, 3, 4, 4, 5, 5, 5, 6, 6]);

    // A datetime cursor: lag in seconds, the start value in the cursor's own format.
    let datetimes = endpoint(
        "",
        &format!(
            "start_param = \"since\", cursor_path = \"at\", initial_value = \"{}\", lag = 25",
            at(0)
        ),
    );
    let pipeline = stand.pipeline("incopt_lag_at", &[("datetimes", &datetimes)])?;
    stand.records(json!(records(5)))?;
    extract_and_load(&pipeline)?;
    assert_eq!(ids(&pipeline, "datetimes")?, [1, 2, 3, 4, 5]);
    stand.records(json!(records(6)))?;
    let _ = stand.requests()?;
    extract_and_load(&pipeline)?;
    let since: Vec<Value> = stand.requests()?.into_iter().map(|(_, s)| s).collect();
    ensure!(since.iter().all(|s| *s == json!(at(25))), "{since:?}");
    assert_eq!(ids(&pipeline, "datetimes")?, [1, 2, 3, 3, 4, 4, 5, 5, 6]);
    Ok(())
}

/// `range_start = "open"` drops the records at the start value, `range_end = "closed"`
/// keeps those at the end value (dlt's defaults are the other way round).
fn range_bounds(stand: &Stand) -> Result<()> {
    let inc = "cursor_path = \"seq\", initial_value = 20, end_value = 50";
    let default = endpoint("", inc);
    let flipped = endpoint(
        "",
        &format!("{inc}, range_start = \"open\", range_end = \"closed\""),
    );
    let pipeline = stand.pipeline(
        "incopt_range",
        &[("default_range", &default), ("flipped_range", &flipped)],
    )?;
    stand.records(json!(
        (1..=6)
            .map(|id| event(id, id * 10, "v1"))
            .collect::<Vec<_>>()
    ))?;
    extract_and_load(&pipeline)?;
    assert_eq!(ids(&pipeline, "default_range")?, [2, 3, 4]);
    assert_eq!(ids(&pipeline, "flipped_range")?, [3, 4, 5]);
    Ok(())
}

/// `row_order` says the API returns records in cursor order: the paging stops after the
/// first page with a record beyond the range (`desc`: below the start value; `asc`: at or
/// past the end value). Without it every page is read (and filtered).
fn row_order(stand: &Stand) -> Result<()> {
    // Nine records, three a page: seq 90, 80, 70 | 60, 50, 40 | 30, 20, 10 in desc order.
    stand.records(json!(
        (1..=9)
            .map(|id| event(id, id * 10, "v1"))
            .collect::<Vec<_>>()
    ))?;
    let cases = [
        (
            "order = \"desc\"",
            "cursor_path = \"seq\", initial_value = 55, row_order = \"desc\"",
            vec![1, 2],
            vec![6, 7, 8, 9],
        ),
        (
            "order = \"desc\"",
            "cursor_path = \"seq\", initial_value = 55",
            vec![1, 2, 3, 4],
            vec![6, 7, 8, 9],
        ),
        (
            "order = \"asc\"",
            "cursor_path = \"seq\", initial_value = 0, end_value = 45, row_order = \"asc\"",
            vec![1, 2],
            vec![1, 2, 3, 4],
        ),
        (
            "order = \"asc\"",
            "cursor_path = \"seq\", initial_value = 0, end_value = 45",
            vec![1, 2, 3, 4],
            vec![1, 2, 3, 4],
        ),
    ];
    for (i, (params, inc, pages, expected)) in cases.into_iter().enumerate() {
        let pipeline = stand.pipeline(
            &format!("incopt_order_{i}"),
            &[("ordered", &endpoint(params, inc))],
        )?;
        let _ = stand.requests()?;
        extract_and_load(&pipeline)?;
        let asked: Vec<u64> = stand.requests()?.into_iter().map(|(p, _)| p).collect();
        assert_eq!(asked, pages, "{inc}");
        assert_eq!(ids(&pipeline, "ordered")?, expected, "{inc}");
    }
    Ok(())
}

/// `on_cursor_value_missing`: a record without a cursor value (or with `null`) fails the
/// run by default (`raise`), is kept with `include`, dropped with `exclude`.
fn cursor_value_missing(stand: &Stand) -> Result<()> {
    stand.records(json!([
        event(1, 10, "v1"),
        {"id": 2, "name": "no seq"},
        {"id": 3, "seq": null, "name": "null seq"},
        event(4, 40, "v1"),
    ]))?;
    let inc = "cursor_path = \"seq\", initial_value = 0";
    let pipeline = stand.pipeline(
        "incopt_missing",
        &[
            (
                "included",
                &endpoint("", &format!("{inc}, on_cursor_value_missing = \"include\"")),
            ),
            (
                "excluded",
                &endpoint("", &format!("{inc}, on_cursor_value_missing = \"exclude\"")),
            ),
        ],
    )?;
    extract_and_load(&pipeline)?;
    assert_eq!(ids(&pipeline, "included")?, [1, 2, 3, 4]);
    assert_eq!(ids(&pipeline, "excluded")?, [1, 4]);

    let raising = stand.pipeline("incopt_raise", &[("raised", &endpoint("", inc))])?;
    let out = run(raising.extractor()?, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the run succeeded: {stderr}");
    ensure!(
        stderr.contains("has no value at cursor_path `seq`")
            && stderr.contains("on_cursor_value_missing"),
        "{stderr}"
    );
    Ok(())
}

/// One case of the test, on the shared broker and demo API.
type Case = fn(&Stand) -> Result<()>;

#[test]
fn incremental_options_work_as_dlt_does() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let stand = Stand {
        broker: Broker::start(dir.path())?,
        api: DemoApi::start(10, &[])?,
        _dir: dir,
    };
    let only = std::env::var("INCOPT_ONLY").ok();
    let cases: [(&str, Case); 5] = [
        ("dedup", dedup_at_the_start_value),
        ("lag", lag),
        ("range", range_bounds),
        ("row_order", row_order),
        ("missing", cursor_value_missing),
    ];
    for (name, case) in cases {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        case(&stand).with_context(|| format!("case {name}"))?;
    }
    Ok(())
}
