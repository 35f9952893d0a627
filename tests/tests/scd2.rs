//! dlt's `scd2` merge strategy end to end (extractor → Kafka → loader into SQLite, against
//! the demo API's `/v1/resource`): two extractor runs with records changed and removed in
//! between. After each run's load the table holds every version: the first run's records
//! from its time, the changed and removed ones retired at the second run's time, the
//! changed and new ones active from it. Both runs replayed at once into a fresh database
//! give the same table, timestamps included (a run's time is its id, not the loader's
//! clock), and so do both runs loaded into PostgreSQL; the second run's time is after the
//! first's. A second resource has three of
//! dlt's scd2 options. An incremental resource with a `merge_key` (dlt's incremental scd2)
//! retires only rows of the channels its second run has.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, PgSchema, Pipeline, run_ok};
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

/// One broker for the file's pipelines (each has its own demo API and topics).
#[test]
fn scd2_end_to_end() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(dir.path())?;
    scd2_keeps_every_version_and_a_replay_rebuilds_it(&broker)?;
    a_merge_key_retires_only_the_runs_channels(&broker)
}

fn scd2_keeps_every_version_and_a_replay_rebuilds_it(broker: &Broker) -> Result<()> {
    let api = DemoApi::start(FIRST, &[])?;
    let name = "e2e_scd2";
    let pipeline = Pipeline::with_config(broker, name, &config(&api, name))?;
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

    // And into PostgreSQL: the same versions, timestamps included.
    if let Some(mut pg) = PgSchema::create("e2e_scd2")? {
        load(&pipeline, &pg.url)?;
        let utc = |column: &str| {
            format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        };
        let sql = format!(
            "SELECT id, status, body, {}, {} FROM {{schema}}.contacts",
            utc("_dlt_valid_from"),
            utc("_dlt_valid_to")
        );
        let mut got: Vec<Version> = pg
            .query(&sql)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        got.sort();
        assert_eq!(got, after_second, "PostgreSQL");
    }
    Ok(())
}

/// dlt's incremental scd2: two runs of an incremental resource with `merge_key = "channel"`;
/// the second run has four records (two updated, two new), so only the active rows of their
/// channels that the run does not have are retired; the other channels' rows stay active.
fn a_merge_key_retires_only_the_runs_channels(broker: &Broker) -> Result<()> {
    let api = DemoApi::start(0, &[])?;
    let _ = api.post("/admin/mutate", json!({"append": 30}))?;
    let name = "e2e_scd2_merge_key";
    let text = format!(
        r#"[client]
base_url = "{base}"
auth = {{ type = "api_key", name = "api_key", api_key = {{ secret = "api_key" }}, location = "query" }}

[[resources]]
name = "events"
topic = "{name}.events"
primary_key = "id"
merge_key = "channel"
write_disposition = {{ disposition = "merge", strategy = "scd2" }}

[resources.endpoint]
path = "/v1/incremental"
data_selector = "data"
paginator = {{ type = "offset", limit = 10 }}
params = {{ updated_since = {{ type = "incremental", cursor_path = "updated_at", initial_value = "2026-06-01T00:00:00Z" }} }}
"#,
        base = api.url
    );
    let pipeline = Pipeline::with_config(broker, name, &text)?;
    let records = |api: &DemoApi| -> Result<Vec<(i64, String, String)>> {
        let current = api.get("/admin/incremental/records")?;
        let mut out = Vec::new();
        for r in current.as_array().context("records")? {
            let text = |k: &str| r[k].as_str().map(str::to_owned).context(k.to_owned());
            out.push((
                r["id"].as_i64().context("id")?,
                text("channel")?,
                text("body")?,
            ));
        }
        Ok(out)
    };
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let first = records(&api)?;
    let _ = api.post("/admin/mutate", json!({"append": 2, "update": [3, 30]}))?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let second_ids = [3, 30, 31, 32];
    let second: Vec<_> = records(&api)?
        .into_iter()
        .filter(|r| second_ids.contains(&r.0))
        .collect();
    load(&pipeline, &format!("sqlite://{}", pipeline.db.display()))?;

    // `(id, channel, body, retired)` of every version, sorted.
    let conn = rusqlite::Connection::open(&pipeline.db)?;
    let mut stmt =
        conn.prepare("SELECT id, channel, body, _dlt_valid_to IS NOT NULL FROM events")?;
    let mut got: Vec<(i64, String, String, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    got.sort();
    let channels: BTreeSet<&String> = second.iter().map(|r| &r.1).collect();
    let mut want: Vec<(i64, String, String, bool)> = first
        .iter()
        .map(|r| {
            let retired = channels.contains(&r.1) && !second.contains(r);
            (r.0, r.1.clone(), r.2.clone(), retired)
        })
        .chain(
            second
                .iter()
                .filter(|r| !first.contains(r))
                .map(|r| (r.0, r.1.clone(), r.2.clone(), false)),
        )
        .collect();
    want.sort();
    let retired = want.iter().filter(|r| r.3).count();
    let kept = first.len() - retired;
    ensure!(
        retired > 2 && kept > 0,
        "the second run must retire rows of its channels and keep the other channels' \
         ({retired} retired, {kept} kept)"
    );
    assert_eq!(got, want, "only the second run's channels lose rows");
    Ok(())
}
