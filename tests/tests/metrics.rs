//! `--metrics-addr`: both binaries serve Prometheus `/metrics` and `/health` while they
//! run; the figures match what was loaded. Also the extractor's `--interval` (runs again
//! after each run until SIGTERM).

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, Proc, free_port, run_ok, tail, wait_for};

const RUN: Duration = Duration::from_secs(180);
const RECORDS: u64 = 250;

/// The value of the sample `name` (with its labels, as printed) in a scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Every sample of the metric family `name` (labels included in the key).
fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// GET `http://addr/path`: status and body, or `None` while nothing answers.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let response = reqwest::blocking::get(format!("http://{addr}{path}")).ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().ok()?))
}

/// Sends SIGTERM and waits for the exit: its code and stderr.
fn terminate(proc: &mut Proc) -> Result<(Option<i32>, String)> {
    let pid = proc.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status()?;
    let pid_for_wait = proc.name.clone();
    let status = wait_for(&format!("{pid_for_wait} to exit"), RUN, || {
        proc.child.try_wait().ok().flatten()
    })?;
    let mut stderr = String::new();
    if let Some(mut err) = proc.child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr)?;
    }
    Ok((status.code(), stderr))
}

#[test]
fn the_loader_reports_records_batches_and_lag() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_metrics_loader", "")?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;

    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = pipeline.loader()?;
    let _ = cmd
        .args(["--metrics-addr", &addr, "--batch-size", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut loader = Proc {
        child: cmd.spawn()?,
        name: "loader".into(),
    };
    // Healthy from the start (waiting to be assigned partitions, then consuming).
    let (status, _) = wait_for("/health to answer", RUN, || get(&addr, "/health"))?;
    assert_eq!(status, 200);
    // The lag gauges are measured every few seconds, and a scrape may fall between two
    // of them; wait until the extractor's 6 partitions all say "caught up".
    let text = wait_for("every record loaded and lag 0 on 6 partitions", RUN, || {
        let (_, text) = get(&addr, "/metrics")?;
        let lags = samples(&text, "loader_consumer_lag");
        let done = sample(&text, "loader_records_total") == Some(RECORDS as f64)
            && lags.len() == 6
            && lags.iter().all(|(_, lag)| *lag == 0.0);
        done.then_some(text)
    })?;
    // The extractor's topics have 6 partitions; one loader holds them all (the wait above
    // fails when it never reports all 6).
    let batches = sample(&text, "loader_batches_total").context("batches")?;
    ensure!(
        batches >= 3.0,
        "250 records in batches of 100: {batches} batches"
    );
    assert_eq!(
        sample(&text, "loader_batch_seconds_count"),
        Some(batches),
        "one latency observation per batch"
    );
    assert_eq!(sample(&text, "loader_dead_letters_total"), Some(0.0));
    assert_eq!(sample(&text, "loader_discarded_total"), Some(0.0));
    let last = sample(&text, "loader_last_success_timestamp_seconds").context("last")?;
    let now = chrono::Utc::now().timestamp() as f64;
    ensure!((now - last).abs() < 600.0, "last success {last}, now {now}");
    assert_eq!(get(&addr, "/health"), Some((200, "consuming".to_owned())));

    let count: i64 =
        pipeline
            .sqlite()?
            .query_row("SELECT count(*) FROM communications_data", [], |r| r.get(0))?;
    assert_eq!(count as u64, RECORDS);
    let (code, stderr) = terminate(&mut loader)?;
    assert_eq!(code, Some(0), "{}", tail(&stderr, 30));
    Ok(())
}

#[test]
fn the_extractor_runs_on_an_interval_and_reports_each_run() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_metrics_extractor", "")?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = pipeline.extractor()?;
    let _ = cmd
        .args(["--metrics-addr", &addr, "--interval", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut extractor = Proc {
        child: cmd.spawn()?,
        name: "extractor".into(),
    };
    // Two complete runs, then between runs: the counters hold exactly two runs' worth.
    let text = wait_for("two runs and the wait for the next", RUN, || {
        let (_, text) = get(&addr, "/metrics")?;
        let runs = sample(&text, "extractor_runs_total{outcome=\"success\"}")?;
        let waiting = get(&addr, "/health")? == (200, "waiting for the next run".to_owned());
        (runs >= 2.0 && waiting).then_some(text)
    })?;
    let runs = sample(&text, "extractor_runs_total{outcome=\"success\"}").context("runs")?;
    assert_eq!(
        sample(
            &text,
            "extractor_records_total{resource=\"communications_data\"}"
        ),
        Some(RECORDS as f64 * runs),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "extractor_records_sent_total{resource=\"communications_data\"}"
        ),
        Some(RECORDS as f64 * runs)
    );
    ensure!(sample(&text, "extractor_response_bytes_total").is_some_and(|b| b > 0.0));
    assert_eq!(sample(&text, "extractor_throttled_total"), Some(0.0));
    ensure!(sample(&text, "extractor_last_success_timestamp_seconds").is_some_and(|t| t > 0.0));

    // The API's request log: each run starts at offset 0, and every page the extractor
    // counted is a request the API answered (nothing in flight between runs).
    let stats = api.get("/admin/stats")?;
    let pages: Vec<&serde_json::Value> = stats["log"]
        .as_array()
        .context("log")?
        .iter()
        .filter(|e| e.get("endpoint").is_none() && e["status"] == 200)
        .collect();
    let starts = pages.iter().filter(|e| e["offset"] == 0).count();
    assert_eq!(starts as f64, runs, "first pages vs runs");
    assert_eq!(
        sample(
            &text,
            "extractor_pages_total{resource=\"communications_data\"}"
        ),
        Some(pages.len() as f64)
    );
    ensure!(pages.len() as f64 >= 3.0 * runs, "{} pages", pages.len());

    let (code, stderr) = terminate(&mut extractor)?;
    // Stopped while waiting: exit 0. (A stop during a run exits 1 with "interrupted".)
    if stderr.contains("stopped between runs") {
        assert_eq!(code, Some(0), "{}", tail(&stderr, 30));
    } else {
        assert_eq!(code, Some(1), "{}", tail(&stderr, 30));
        ensure!(stderr.contains("interrupted"), "{}", tail(&stderr, 30));
    }
    Ok(())
}
