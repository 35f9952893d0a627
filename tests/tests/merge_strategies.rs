//! dlt's write dispositions in their table form end to end (extractor → Kafka → loader into
//! SQLite, against the demo API): `{ disposition = "merge", strategy = "upsert" }`,
//! `{ disposition = "merge" }` (dlt's default strategy, `delete-insert`), `merge` without a
//! primary key (appends, as dlt's does), `{ disposition = "append" }` and
//! `{ disposition = "replace" }`, over two runs with half the records changed and ten new
//! ones in between; `delete-insert` with a `merge_key` over two runs loaded at once, and
//! replayed into a fresh database; and the strategies and keys not supported, refused by
//! `--check` naming the key.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, run, run_ok};
use serde_json::json;

const RUN: Duration = Duration::from_secs(120);
const FIRST: u64 = 30;
const SECOND: u64 = 40;

/// The config's `[client]` and one resource per `(name, lines)` on the demo API's
/// `/v1/resource`, each with its own topic; no `resource_defaults`.
fn config(api: &DemoApi, pipeline: &str, resources: &[(&str, &str)]) -> String {
    let mut text = format!(
        r#"[client]
base_url = "{base}"
auth = {{ type = "api_key", name = "api_key", api_key = {{ secret = "api_key" }}, location = "query" }}
"#,
        base = api.url
    );
    for (name, lines) in resources {
        text.push_str(&format!(
            "\n[[resources]]\nname = \"{name}\"\ntopic = \"{pipeline}.{name}\"\n{lines}\n\
             endpoint = {{ path = \"/v1/resource\", data_selector = \"data\", paginator = {{ type = \"offset\", limit = 10 }} }}\n"
        ));
    }
    text
}

fn extract_and_load(pipeline: &Pipeline) -> Result<()> {
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    Ok(())
}

/// `(id, status, body)` of every row of `table`, sorted (duplicates kept).
fn rows(pipeline: &Pipeline, table: &str) -> Result<Vec<(i64, String, String)>> {
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare(&format!(
        "SELECT id, status, body FROM \"{table}\" ORDER BY id, status, body"
    ))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The API's records now as `(id, status, body)`, sorted.
fn api_rows(api: &DemoApi) -> Result<Vec<(i64, String, String)>> {
    let mut out = Vec::new();
    for r in api.records()? {
        let text = |k: &str| r[k].as_str().map(str::to_owned).context(k.to_owned());
        out.push((
            r["id"].as_i64().context("id")?,
            text("status")?,
            text("body")?,
        ));
    }
    out.sort();
    Ok(out)
}

/// One broker for the file's pipelines (each has its own demo API and topics).
#[test]
fn merge_strategies_end_to_end() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(dir.path())?;
    write_disposition_table_forms_over_two_runs(&broker)?;
    merge_key_replaces_the_rows_of_the_runs_merge_keys(&broker)
}

fn write_disposition_table_forms_over_two_runs(broker: &Broker) -> Result<()> {
    let api = DemoApi::start(FIRST, &[])?;
    let name = "e2e_merge_strategies";
    let text = config(
        &api,
        name,
        &[
            (
                "upsert",
                "primary_key = \"id\"\nwrite_disposition = { disposition = \"merge\", strategy = \"upsert\" }",
            ),
            (
                "delete_insert",
                "primary_key = \"id\"\nwrite_disposition = { disposition = \"merge\", strategy = \"delete-insert\" }",
            ),
            (
                "default_merge",
                "primary_key = \"id\"\nwrite_disposition = { disposition = \"merge\" }",
            ),
            ("no_key", "write_disposition = \"merge\""),
            (
                "append",
                "primary_key = \"id\"\nwrite_disposition = { disposition = \"append\" }",
            ),
            (
                "replace",
                "primary_key = \"id\"\nwrite_disposition = { disposition = \"replace\" }",
            ),
        ],
    );
    let pipeline = Pipeline::with_config(broker, name, &text)?;

    extract_and_load(&pipeline)?;
    let first = api_rows(&api)?;
    ensure!(
        first.len() == FIRST as usize,
        "the API serves {FIRST} records"
    );
    for table in [
        "upsert",
        "delete_insert",
        "default_merge",
        "no_key",
        "append",
        "replace",
    ] {
        assert_eq!(rows(&pipeline, table)?, first, "run 1, table {table}");
    }

    // Half the records change, ten are new.
    let _ = api.post(
        "/admin/state",
        json!({"revision": 1, "changed_percent": 50, "records": SECOND}),
    )?;
    extract_and_load(&pipeline)?;
    let second = api_rows(&api)?;
    let changed = second.iter().filter(|r| !first.contains(r)).count();
    ensure!(
        changed >= (SECOND - FIRST) as usize + 5,
        "the second run must see changed records besides the new ones ({changed} differ)"
    );
    let mut both: Vec<_> = first.iter().chain(&second).cloned().collect();
    both.sort();
    for table in ["upsert", "delete_insert", "default_merge", "replace"] {
        assert_eq!(
            rows(&pipeline, table)?,
            second,
            "run 2, table {table}: one row per key, the latest"
        );
    }
    for table in ["no_key", "append"] {
        assert_eq!(
            rows(&pipeline, table)?,
            both,
            "run 2, table {table}: every record of both runs"
        );
    }

    // Only `append` and `merge` without a key have no primary key constraint.
    let conn = pipeline.sqlite()?;
    for (table, keyed) in [("upsert", true), ("no_key", false)] {
        let pk: i64 = conn.query_row(
            &format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE pk > 0"),
            [],
            |r| r.get(0),
        )?;
        assert_eq!(pk > 0, keyed, "table {table}: primary key");
    }
    Ok(())
}

/// What is not supported is refused by `--check`, each problem naming its key.
#[test]
fn unsupported_strategies_and_keys_are_refused_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // `--check` needs no broker; the address is never dialled.
    let text = r#"[pipeline]
name = "e2e_merge_refused"

[kafka]
"bootstrap.servers" = "127.0.0.1:9"

[client]
base_url = "http://127.0.0.1:9"

[[resources]]
name = "cdc"
primary_key = "id"
write_disposition = { disposition = "merge", strategy = "cdc", validity_column_names = ["from", "to"] }

[[resources]]
name = "merge_key"
primary_key = "id"
merge_key = "day"
write_disposition = { disposition = "merge", strategy = "upsert" }

[[resources]]
name = "append_upsert"
write_disposition = { disposition = "append", strategy = "upsert" }
"#;
    let config = dir.path().join("pipeline.toml");
    std::fs::write(&config, text)?;
    let mut check = std::process::Command::new(e2e::bin("extractor")?);
    let _ = check.arg("--config").arg(&config).arg("--check");
    let out = run(check, RUN)?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    for expected in [
        "problem: resources[0].write_disposition.strategy: dlt's `cdc` merge strategy is not supported",
        "problem: resources[0].write_disposition.validity_column_names: not supported",
        "problem: resources[1].merge_key: applies to `merge` with the `delete-insert` strategy only",
        "problem: resources[2].write_disposition.strategy: a merge strategy applies to `disposition = \"merge\"` only",
    ] {
        assert!(said.contains(expected), "missing {expected:?} in:\n{said}");
    }
    Ok(())
}

/// `(id, channel, body)` of every row of `table`, sorted.
fn channel_rows(db: &std::path::Path, table: &str) -> Result<Vec<(i64, String, String)>> {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT id, channel, body FROM \"{table}\" ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// dlt's delete-insert with a merge key, over two extractor runs of an incremental resource
/// that are both in the topic before the loader starts (so one partition's second run may be
/// loaded before another's first): the second run's records replace every row of their
/// channels, the other channels keep the first run's rows. A replay into a fresh database
/// gives the same table, and so does replaying every record over the loaded one.
fn merge_key_replaces_the_rows_of_the_runs_merge_keys(broker: &Broker) -> Result<()> {
    let api = DemoApi::start(0, &[])?;
    let _ = api.post("/admin/mutate", json!({"append": 30}))?;
    let name = "e2e_merge_key";
    let mut text = config(&api, name, &[]);
    text.push_str(&format!(
        r#"
[[resources]]
name = "events"
topic = "{name}.events"
primary_key = "id"
merge_key = "channel"
write_disposition = {{ disposition = "merge", strategy = "delete-insert" }}

[resources.endpoint]
path = "/v1/incremental"
data_selector = "data"
paginator = {{ type = "offset", limit = 10 }}
params = {{ updated_since = {{ type = "incremental", cursor_path = "updated_at", initial_value = "2026-06-01T00:00:00Z" }} }}
"#
    ));
    let pipeline = Pipeline::with_config(broker, name, &text)?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let _ = api.post("/admin/mutate", json!({"append": 2, "update": [3, 30]}))?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;

    // What dlt leaves: the second run's records, and the first run's rows of the channels
    // the second run did not have (unchanged records: the API serves them as before).
    let second_ids = [3, 30, 31, 32];
    let current = api.get("/admin/incremental/records")?;
    let mut all = Vec::new();
    for r in current.as_array().context("records")? {
        let text = |k: &str| r[k].as_str().map(str::to_owned).context(k.to_owned());
        all.push((
            r["id"].as_i64().context("id")?,
            text("channel")?,
            text("body")?,
        ));
    }
    let second_channels: Vec<&String> = all
        .iter()
        .filter(|r| second_ids.contains(&r.0))
        .map(|r| &r.1)
        .collect();
    let mut expected: Vec<_> = all
        .iter()
        .filter(|r| second_ids.contains(&r.0) || !second_channels.contains(&&r.1))
        .cloned()
        .collect();
    expected.sort();
    ensure!(
        expected.len() > second_ids.len() && expected.len() < all.len(),
        "the second run must replace some channels and leave others ({} of {} rows)",
        expected.len(),
        all.len()
    );

    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    assert_eq!(channel_rows(&pipeline.db, "events")?, expected, "loaded");

    // The topic replayed into a fresh database: the same rows.
    let fresh = pipeline.dir.path().join("fresh.db");
    let mut replay = pipeline.loader_to(&format!("sqlite://{}", fresh.display()))?;
    let _ = replay.arg("--until-caught-up");
    let _ = run_ok(replay, RUN)?;
    assert_eq!(channel_rows(&fresh, "events")?, expected, "replayed");

    // Every record applied a second time over the loaded table (what a loader would do
    // that lost its offsets): the merge keys' recorded runs keep the table as it is.
    let mut again = pipeline.loader()?;
    let _ = again.args(["--replay-from", "beginning", "--until-caught-up"]);
    let _ = run_ok(again, RUN)?;
    assert_eq!(
        channel_rows(&pipeline.db, "events")?,
        expected,
        "replayed in place"
    );
    Ok(())
}
