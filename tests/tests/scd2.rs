//! dlt's `scd2` merge strategy end to end (extractor → Kafka → loader into SQLite, against
//! the demo API's `/v1/resource`): two extractor runs with records changed and removed in
//! between. After each run's load the table holds every version: the first run's records
//! from its time, the changed and removed ones retired at the second run's time, the
//! changed and new ones active from it. Both runs replayed at once into a fresh database
//! give the same table, timestamps included (a run's time is its id, not the loader's
//! clock); and the second run's time is after the first's.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, run_ok};
use serde_json::json;

const RUN: Duration = Duration::from_secs(120);
const FIRST: u64 = 20;
const SECOND: u64 = 16;

/// A version as the test compares it: `(id, status, body, from, to)`.
type Version = (i64, String, String, Option<String>, Option<String>);
/// A record as the API served it: its identity (the whole record as JSON text, or with
/// `row_version_column_name` its `updated_at`), and `(id, status, body)`.
type Record = (String, (i64, String, String));
/// A version being computed: the record, its from and its to.
type Computed = (Record, String, Option<String>);

fn config(api: &DemoApi, pipeline: &str) -> String {
    format!(
        r#"[client]
base_url = "{base}"
auth = {{ type = "api_key", name = "api_key", api_key = {{ secret = "api_key" }}, location = "query" }}

[[resources]]
name = "contacts"
topic = "{pipeline}.contacts"
primary_key = "id"
write_disposition = {{ disposition = "merge", strategy = "scd2" }}
endpoint = {{ path = "/v1/resource", data_selector = "data", paginator = {{ type = "offset", limit = 10 }} }}

[[resources]]
name = "versions"
topic = "{pipeline}.versions"
write_disposition = {{ disposition = "merge", strategy = "scd2", validity_column_names = ["valid_from", "valid_to"], active_record_timestamp = "9999-12-31", row_version_column_name = "updated_at" }}
endpoint = {{ path = "/v1/resource", data_selector = "data", paginator = {{ type = "offset", limit = 10 }} }}
"#,
        base = api.url
    )
}

fn load(pipeline: &Pipeline, url: &str) -> Result<()> {
    let mut loader = pipeline.loader_to(url)?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    Ok(())
}

/// Every version in `db`'s `contacts` table, sorted.
fn versions(db: &std::path::Path) -> Result<Vec<Version>> {
    versions_in(db, "contacts", "_dlt_valid_from", "_dlt_valid_to")
}

/// Every version in `db`'s `table` with validity columns `from` and `to`, sorted; a `to`
/// of 9999-12-31 (the `active_record_timestamp` the `versions` resource sets) as `None`.
fn versions_in(db: &std::path::Path, table: &str, from: &str, to: &str) -> Result<Vec<Version>> {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT id, status, body, {from}, \
         CASE WHEN {to} LIKE '9999-12-31%' THEN NULL ELSE {to} END FROM {table}"
    ))?;
    let mut rows: Vec<Version> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    rows.sort();
    Ok(rows)
}

/// The API's records now, each whole (to tell a changed record) with `(id, status, body)`.
fn snapshot(api: &DemoApi, by_version: bool) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for r in api.records()? {
        let text = |k: &str| r[k].as_str().map(str::to_owned).context(k.to_owned());
        out.push((
            if by_version {
                text("updated_at")?
            } else {
                r.to_string()
            },
            (
                r["id"].as_i64().context("id")?,
                text("status")?,
                text("body")?,
            ),
        ));
    }
    Ok(out)
}

/// What dlt's scd2 leaves after loads of `runs` (each a snapshot, at times `times`): a
/// record equal to an active version keeps it; another is a new version; an active
/// version no record of a load equals is retired at the load's time.
fn expected(runs: &[&[Record]], times: &[String]) -> Vec<Version> {
    let mut table: Vec<Computed> = Vec::new();
    for (run, time) in runs.iter().zip(times) {
        let now: BTreeSet<&String> = run.iter().map(|(whole, _)| whole).collect();
        for version in table.iter_mut().filter(|v| v.2.is_none()) {
            if !now.contains(&version.0.0) {
                version.2 = Some(time.clone());
            }
        }
        // One INSERT … SELECT: the run's records are compared with the rows active before it.
        let active: BTreeSet<String> = table
            .iter()
            .filter(|v| v.2.is_none())
            .map(|v| v.0.0.clone())
            .collect();
        for record in run.iter() {
            if !active.contains(&record.0) {
                table.push((record.clone(), time.clone(), None));
            }
        }
    }
    let mut out: Vec<Version> = table
        .into_iter()
        .map(|((_, (id, status, body)), from, to)| (id, status, body, Some(from), to))
        .collect();
    out.sort();
    out
}

#[test]
fn scd2_keeps_every_version_and_a_replay_rebuilds_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(dir.path())?;
    let api = DemoApi::start(FIRST, &[])?;
    let name = "e2e_scd2";
    let pipeline = Pipeline::with_config(&broker, name, &config(&api, name))?;
    let db = format!("sqlite://{}", pipeline.db.display());

    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let first = snapshot(&api, false)?;
    let first_versions = snapshot(&api, true)?;
    load(&pipeline, &db)?;
    let after_first = versions(&pipeline.db)?;
    let t1 = after_first
        .first()
        .and_then(|v| v.3.clone())
        .context("no rows after the first run")?;
    assert_eq!(
        after_first,
        expected(&[&first], std::slice::from_ref(&t1)),
        "run 1"
    );

    // Half the records change, the last four are gone.
    let _ = api.post(
        "/admin/state",
        json!({"revision": 1, "changed_percent": 50, "records": SECOND}),
    )?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let second = snapshot(&api, false)?;
    let second_versions = snapshot(&api, true)?;
    let changed = second.iter().filter(|r| !first.contains(r)).count();
    ensure!(
        changed >= 3 && changed < second.len(),
        "the second run must change some records and keep others ({changed} differ)"
    );
    load(&pipeline, &db)?;
    let after_second = versions(&pipeline.db)?;
    let t2 = after_second
        .iter()
        .filter_map(|v| v.3.clone())
        .find(|t| *t != t1)
        .context("no version of the second run")?;
    ensure!(
        t2 > t1,
        "the second run's time {t2} is after the first's {t1}"
    );
    let want = expected(&[&first, &second], &[t1.clone(), t2.clone()]);
    let retired = want.iter().filter(|v| v.4.is_some()).count();
    ensure!(
        retired >= changed + (FIRST - SECOND) as usize,
        "changed and removed records are retired ({retired})"
    );
    assert_eq!(after_second, want, "run 2");

    // dlt's options: other validity columns, an active row's `valid_to` 9999-12-31, and
    // versions told apart by `updated_at` only.
    let by_version = versions_in(&pipeline.db, "versions", "valid_from", "valid_to")?;
    let want_versions = expected(
        &[&first_versions, &second_versions],
        &[t1.clone(), t2.clone()],
    );
    ensure!(
        want_versions.iter().any(|v| v.4.is_some()),
        "some versions are retired"
    );
    ensure!(
        want_versions.len() < want.len(),
        "a record changed without a new `updated_at` keeps its version ({} vs {} rows)",
        want_versions.len(),
        want.len()
    );
    assert_eq!(by_version, want_versions, "run 2, options");

    // Both runs from the topic into a fresh database: the same table, timestamps too.
    let fresh = pipeline.dir.path().join("fresh.db");
    load(&pipeline, &format!("sqlite://{}", fresh.display()))?;
    assert_eq!(versions(&fresh)?, after_second, "replayed");
    assert_eq!(
        versions_in(&fresh, "versions", "valid_from", "valid_to")?,
        by_version,
        "replayed, options"
    );
    Ok(())
}
