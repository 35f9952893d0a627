//! `extractor --interval`: one process runs again after each run, each run an ordinary
//! incremental run (its cursor from the state topic), until SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, Proc, free_port, run_ok, tail, wait_for};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(180);
const INITIAL: &str = "2026-01-01T00:00:00Z";

fn config(api: &DemoApi, name: &str) -> String {
    api.incremental_toml(name, 100, INITIAL)
}

/// The `updated_since` of every `/v1/incremental` request so far, in order.
fn sinces(api: &DemoApi) -> Result<Vec<String>> {
    let stats = api.get("/admin/stats")?;
    stats["log"]
        .as_array()
        .context("log")?
        .iter()
        .filter(|e| e["endpoint"] == "/v1/incremental")
        .map(|e| Ok(e["since"].as_str().context("since")?.to_owned()))
        .collect()
}

fn mutate(api: &DemoApi, append: u64, update: &[u64]) -> Result<String> {
    let answer = api.post("/admin/mutate", json!({"append": append, "update": update}))?;
    Ok(answer["max_updated_at"]
        .as_str()
        .context("max_updated_at")?
        .to_owned())
}

fn health(addr: &str) -> Option<(u16, String)> {
    let response = reqwest::blocking::get(format!("http://{addr}/health")).ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().ok()?))
}

#[test]
fn scheduled_runs_pick_up_each_change_from_the_last_cursor() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;
    let name = "e2e_interval";
    let pipeline = Pipeline::with_config(&broker, name, &config(&api, name))?;
    let max1 = mutate(&api, 300, &[])?;

    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = pipeline.extractor()?;
    let _ = cmd
        .args(["--interval", "1s", "--metrics-addr", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut extractor = Proc {
        child: cmd.spawn()?,
        name: "extractor".into(),
    };
    // Run 1 from initial_value, run 2 from run 1's largest updated_at.
    wait_for("a second run from the first run's cursor", RUN, || {
        sinces(&api).ok()?.contains(&max1).then_some(())
    })?;
    let seen = sinces(&api)?;
    assert_eq!(seen.first().map(String::as_str), Some(INITIAL), "{seen:?}");
    // A change while the process runs is picked up by a later run, whose successor then
    // asks from the new largest updated_at.
    let max2 = mutate(&api, 20, &[7, 150])?;
    wait_for("a run from the changed set's cursor", RUN, || {
        sinces(&api).ok()?.contains(&max2).then_some(())
    })?;
    let seen = sinces(&api)?;
    // The cursor only moves forwards: INITIAL, then max1, then max2.
    let order: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .chunk_by(|a, b| a == b)
        .map(|c| c[0])
        .collect();
    ensure!(
        order.len() >= 3 && order[0] == INITIAL && order[1] == max1,
        "{order:?}"
    );
    ensure!(order.last() == Some(&max2.as_str()), "{order:?}");

    // SIGTERM while waiting: exit 0.
    wait_for("the wait between runs", RUN, || {
        (health(&addr)? == (200, "waiting for the next run".to_owned())).then_some(())
    })?;
    let _ = Command::new("kill")
        .args(["-TERM", &extractor.child.id().to_string()])
        .status()?;
    let status = wait_for("the extractor to exit", RUN, || {
        extractor.child.try_wait().ok().flatten()
    })?;
    let mut stderr = String::new();
    if let Some(mut err) = extractor.child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr)?;
    }
    if stderr.contains("stopped between runs") {
        assert_eq!(status.code(), Some(0), "{}", tail(&stderr, 30));
    } else {
        // The 1 s wait ended between the health check and the signal.
        assert_eq!(status.code(), Some(1), "{}", tail(&stderr, 30));
        ensure!(stderr.contains("interrupted"), "{}", tail(&stderr, 30));
    }

    // Everything the runs published loads to the API's current set.
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare("SELECT id, body FROM events ORDER BY id")?;
    let rows: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut expected: Vec<(i64, String)> = match api.get("/admin/incremental/records")? {
        Value::Array(records) => records
            .iter()
            .map(|r| {
                Ok((
                    r["id"].as_i64().context("id")?,
                    r["body"].as_str().context("body")?.to_owned(),
                ))
            })
            .collect::<Result<_>>()?,
        other => anyhow::bail!("records: {other}"),
    };
    expected.sort();
    assert_eq!(rows.len(), 320);
    assert_eq!(rows, expected);
    Ok(())
}
