//! Schema evolution mid-stream, under each of dlt's contract modes: the demo API starts
//! drifting halfway through one run (a new field, an int field turning float, a string in
//! an int field), and one topic is loaded into four destinations, one per mode.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, figure, run, run_ok};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(180);
const N: u64 = 1000;

/// What drift did to one record.
struct Drift {
    id: i64,
    priority: Option<i64>,
    /// `Some` when the duration turned into a fractional float.
    float_duration: Option<f64>,
    int_duration: Option<i64>,
    text_customer: Option<String>,
    int_customer: Option<i64>,
}

impl Drift {
    fn of(r: &Value) -> Self {
        let d = &r["duration_seconds"];
        let c = &r["customer_id"];
        Drift {
            id: r["id"].as_i64().unwrap_or_default(),
            priority: r.get("priority").and_then(Value::as_i64),
            float_duration: d.as_f64().filter(|_| d.is_f64()),
            int_duration: d.as_i64(),
            text_customer: c.as_str().map(str::to_owned),
            int_customer: c.as_i64(),
        }
    }

    fn changed(&self) -> bool {
        self.priority.is_some() || self.float_duration.is_some() || self.text_customer.is_some()
    }
}

fn columns(conn: &rusqlite::Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('communications_data')")?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(names)
}

/// A copy of `pipeline`'s config whose contract lets the table be created and applies
/// `mode` to columns and data types, with its own database and group.
fn variant(pipeline: &Pipeline, mode: &str) -> Result<Pipeline> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("pipeline.toml");
    let text = std::fs::read_to_string(&pipeline.config)?.replacen(
        "[resource_defaults]\n",
        &format!(
            "[resource_defaults]\nschema_contract = {{ tables = \"evolve\", columns = \"{mode}\", data_type = \"{mode}\" }}\n"
        ),
        1,
    );
    std::fs::write(&config, text)?;
    Ok(Pipeline {
        db: dir.path().join("dest.db"),
        config,
        group: format!("{}-{mode}", pipeline.group),
        dir,
    })
}

#[test]
fn a_drifting_api_loads_per_contract_mode() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(N, &[])?;
    let _ = api.post("/admin/state", json!({"drift_from": N / 2}))?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_contract", "")?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let records: Vec<Drift> = api.records()?.iter().map(Drift::of).collect();
    let changed = records.iter().filter(|d| d.changed()).count();
    ensure!(
        changed > 100 && changed < N as usize / 2,
        "{changed} drifted records"
    );

    for mode in ["evolve", "freeze", "discard_row", "discard_value"] {
        let p = variant(&pipeline, mode)?;
        let mut load = p.loader()?;
        let _ = load.arg("--until-caught-up");
        let out = run(load, RUN)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        // `freeze` dead-letters the drifted records: exit 3 says so (see --dead-letters-ok).
        let expected_exit = if mode == "freeze" { 3 } else { 0 };
        ensure!(
            out.status.code() == Some(expected_exit),
            "{mode}: exit {:?}, expected {expected_exit}: {stdout}\n{}",
            out.status.code(),
            e2e::tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
        let conn = p.sqlite()?;
        let cols = columns(&conn)?;
        let count: i64 =
            conn.query_row("SELECT count(*) FROM communications_data", [], |r| r.get(0))?;
        let dead = figure(&stdout, "loaded", "dead_letters").context("dead_letters")?;
        let discarded = figure(&stdout, "loaded", "discarded").context("discarded")?;
        let has = |c: &str| cols.iter().any(|n| n == c);
        let expect_all = matches!(mode, "evolve" | "discard_value");
        let expected_rows = if expect_all {
            N as usize
        } else {
            N as usize - changed
        };
        ensure!(
            count as usize == expected_rows,
            "{mode}: {count} rows, expected {expected_rows}"
        );
        let (expected_dead, expected_discarded) = match mode {
            "freeze" => (changed, 0),
            "discard_row" => (0, changed),
            _ => (0, 0),
        };
        ensure!(
            (dead as usize, discarded as usize) == (expected_dead, expected_discarded),
            "{mode}: dead letters {dead}, discarded {discarded}: {stdout}"
        );
        ensure!(
            has("priority") == (mode == "evolve")
                && has("customer_id__v_text") == (mode == "evolve"),
            "{mode}: columns {cols:?}"
        );
        // Row by row: the values each mode keeps.
        let mut stmt = conn.prepare(
            "SELECT duration_seconds, customer_id FROM communications_data WHERE id = ?1",
        )?;
        for d in &records {
            let row: Option<(Option<f64>, Option<i64>)> =
                stmt.query_row([d.id], |r| Ok((r.get(0)?, r.get(1)?))).ok();
            if !expect_all && d.changed() {
                ensure!(row.is_none(), "{mode}: id {} should not be loaded", d.id);
                continue;
            }
            let (duration, customer) =
                row.with_context(|| format!("{mode}: id {} missing", d.id))?;
            let expected_duration = match (mode, d.float_duration) {
                ("discard_value", Some(_)) => None,
                (_, Some(f)) => Some(f),
                (_, None) => d.int_duration.map(|i| i as f64),
            };
            ensure!(
                duration == expected_duration && customer == d.int_customer,
                "{mode}: id {}: ({duration:?}, {customer:?}), expected ({expected_duration:?}, {:?})",
                d.id,
                d.int_customer
            );
        }
        if mode == "evolve" {
            let mut stmt = conn.prepare(
                "SELECT priority, customer_id__v_text FROM communications_data WHERE id = ?1",
            )?;
            for d in &records {
                let (priority, text): (Option<i64>, Option<String>) =
                    stmt.query_row([d.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                ensure!(
                    priority == d.priority && text == d.text_customer,
                    "evolve: id {}: ({priority:?}, {text:?})",
                    d.id
                );
            }
        }
    }
    Ok(())
}
