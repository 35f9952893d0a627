//! dlt's column hints beyond `data_type`, `nullable`, `precision`/`scale` and `hard_delete`
//! (docs/config.md, `columns`): the ones dlt's SQLite and PostgreSQL destinations ignore
//! (`partition`, `cluster`, `sort`, `description`, `timezone = true`) load the demo API's
//! records as they would load without them; the others (`unique`, `dedup_sort`,
//! `primary_key`, `row_key`, `parent_key`, `root_key`, `variant`, `incremental`,
//! `timezone = false`) stop the extractor and the loader before anything runs, with an
//! error naming the key and what to write instead.

use std::time::Duration;

use anyhow::{Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, run, run_ok};

const RUN: Duration = Duration::from_secs(180);
const N: u64 = 30;

/// The demo's resource with `columns` set to `hints` (an inline TOML table).
fn config(api: &DemoApi, broker: &Broker, name: &str, hints: &str) -> Result<Pipeline> {
    let rest = format!(
        r#"{client}
[[resources]]
name = "communications_data"
topic = "{name}.communications_data"
columns = {hints}
endpoint = {{ path = "/v1/resource", data_selector = "data", paginator = {{ type = "offset", limit = 10 }} }}
"#,
        client = api.client_toml(""),
    );
    Pipeline::with_config(broker, name, &rest)
}

#[test]
fn hints_dlt_ignores_on_sqlite_and_postgres_load_and_the_others_are_refused() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(N, &[])?;

    // Accepted: the same table as without them.
    let pipeline = config(
        &api,
        &broker,
        "hints_ignored",
        r#"{ created_at = { data_type = "timestamp", timezone = true, partition = true, cluster = true, sort = true, description = "when it was sent" }, channel = { sort = false, description = "the channel" } }"#,
    )?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    let conn = pipeline.sqlite()?;
    let (rows, first): (i64, String) = conn.query_row(
        "SELECT count(*), min(created_at) FROM communications_data",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ensure!(rows == N as i64, "{rows} rows, expected {N}");
    let api_first = api.records()?[0]["created_at"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(
        e2e_instant(&first).is_some() && e2e_instant(&first) == e2e_instant(&api_first),
        "created_at {first} is not the API's {api_first}"
    );

    // Refused, by the extractor and by the loader, before any request or broker contact.
    let refused: &[(&str, &str, &[&str])] = &[
        (
            "unique",
            "{ channel = { unique = true } }",
            &["UNIQUE constraint on PostgreSQL", "add the constraint"],
        ),
        (
            "dedup_sort",
            r#"{ updated_at = { dedup_sort = "desc" } }"#,
            &["--version-column"],
        ),
        (
            "primary_key",
            "{ id = { primary_key = true } }",
            &["write the resource's `primary_key"],
        ),
        (
            "root_key",
            "{ id = { root_key = true } }",
            &["_dlt_root_id"],
        ),
        (
            "variant",
            "{ id = { variant = true } }",
            &["variant columns"],
        ),
        (
            "incremental",
            "{ updated_at = { incremental = true } }",
            &["endpoint.incremental"],
        ),
        (
            "timezone",
            r#"{ created_at = { data_type = "timestamp", timezone = false } }"#,
            &["`timezone = false`", "remove the key"],
        ),
    ];
    for (key, hints, needles) in refused {
        let pipeline = config(&api, &broker, &format!("hints_{key}"), hints)?;
        let mut loader = pipeline.loader()?;
        let _ = loader.arg("--until-caught-up");
        for (side, cmd) in [("extractor", pipeline.extractor()?), ("loader", loader)] {
            let out = run(cmd, RUN)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(!out.status.success(), "{side} accepted `{key}`: {stderr}");
            ensure!(
                stderr.contains(&format!(".{key}: ")),
                "{side}: the error does not name `{key}`: {stderr}"
            );
            for needle in *needles {
                ensure!(
                    stderr.contains(needle),
                    "{side}, `{key}`: {needle:?} not in {stderr}"
                );
            }
        }
    }
    Ok(())
}

/// An RFC 3339 or SQLite timestamp text as seconds since the epoch (both sides' forms).
fn e2e_instant(text: &str) -> Option<i64> {
    let normalised = text.replace(' ', "T");
    chrono::DateTime::parse_from_rfc3339(&normalised)
        .ok()
        .map(|t| t.timestamp())
}
