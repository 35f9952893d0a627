//! No broker at `bootstrap.servers` (a free port with nothing listening): the extractor and
//! the loader say within seconds that they cannot reach it, at most once every 5 s
//! (instead of librdkafka's hundreds of lines), and stop at once on SIGTERM. The extractor
//! gives up after `--broker-timeout` naming the address and the setting; the loader waits
//! (as in a compose file that starts it before its broker), and both go on once the
//! broker comes up.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, Proc, figure, free_port, run, run_ok, tail, wait_for};

const RUN: Duration = Duration::from_secs(180);
const RECORDS: u64 = 300;
/// The most a stop signal may take to end a process that waits for its broker.
const PROMPT_EXIT: Duration = Duration::from_secs(2);

/// A running binary whose stderr lines are collected with the time they arrived.
struct Watched {
    proc: Proc,
    started: Instant,
    lines: Arc<Mutex<Vec<(Duration, String)>>>,
    /// The threads reading stderr and stdout (which end with the pipes).
    reader: Option<JoinHandle<()>>,
    stdout: Option<JoinHandle<String>>,
}

impl Watched {
    fn spawn(mut cmd: Command, name: &str) -> Result<Self> {
        let started = Instant::now();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut out = child.stdout.take().context("stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut lines) = sink.lock() {
                    lines.push((started.elapsed(), line));
                }
            }
        });
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
            text
        });
        Ok(Self {
            proc: Proc {
                child,
                name: name.to_owned(),
            },
            started,
            lines,
            reader: Some(reader),
            stdout: Some(stdout),
        })
    }

    fn lines(&self) -> Vec<(Duration, String)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        self.lines()
            .into_iter()
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The stderr lines containing `text`, with when they arrived.
    fn matching(&self, text: &str) -> Vec<(Duration, String)> {
        self.lines()
            .into_iter()
            .filter(|(_, l)| l.contains(text))
            .collect()
    }

    /// Waits for the `n`-th stderr line containing `text`; when it arrived.
    fn wait_line(&mut self, text: &str, n: usize, timeout: Duration) -> Result<Duration> {
        let found = wait_for(&format!("{n} line(s) with `{text}`"), timeout, || {
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                return Some(Err(status));
            }
            self.matching(text).get(n - 1).map(|(at, _)| Ok(*at))
        });
        match found {
            Ok(Ok(at)) => Ok(at),
            Ok(Err(status)) => anyhow::bail!(
                "{} exited ({status}) before a line with `{text}`:\n{}",
                self.proc.name,
                tail(&self.stderr(), 40)
            ),
            Err(e) => Err(e.context(tail(&self.stderr(), 40))),
        }
    }

    /// Waits for the exit: the status, how long it took and stdout.
    fn wait(mut self, timeout: Duration) -> Result<(ExitStatus, Duration, String, String)> {
        let from = Instant::now();
        let status = wait_for(&format!("{} to exit", self.proc.name), timeout, || {
            self.proc.child.try_wait().ok().flatten()
        })
        .with_context(|| tail(&self.stderr(), 40))?;
        let took = from.elapsed();
        let stdout = self
            .stdout
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Ok((status, took, stdout, self.stderr()))
    }

    /// SIGTERM, then waits for the exit: the status, how long it took, stdout and stderr.
    fn terminate(self) -> Result<(ExitStatus, Duration, String, String)> {
        let pid = self.proc.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        ensure!(sent.success(), "kill -TERM {pid}");
        self.wait(RUN)
    }
}

/// A pipeline (the demo API's seed resource) whose `bootstrap.servers` is `broker`'s
/// address, where nothing listens until the broker is started.
fn pipeline(broker: &Broker, api: &DemoApi, name: &str) -> Result<Pipeline> {
    Pipeline::new(broker, api, name, "")
}

/// Asserts the "cannot reach" lines in `lines` come at most once every 5 s (less a
/// margin for the time they took to be read).
fn assert_spaced(lines: &[(Duration, String)]) -> Result<()> {
    for pair in lines.windows(2) {
        let gap = pair[1].0.saturating_sub(pair[0].0);
        ensure!(
            gap >= Duration::from_millis(4500),
            "two warnings {gap:?} apart:\n{}\n{}",
            pair[0].1,
            pair[1].1
        );
    }
    Ok(())
}

#[test]
fn the_extractor_says_at_once_it_cannot_reach_the_broker_and_stops_at_once_on_sigterm() -> Result<()>
{
    let tmp = tempfile::tempdir()?;
    let broker = Broker::unstarted(tmp.path())?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = pipeline(&broker, &api, "e2e_nobroker_extract")?;
    let unreachable = format!("cannot reach the Kafka broker at {}", broker.bootstrap());
    let mut extractor = Watched::spawn(pipeline.extractor()?, "extractor")?;
    let first = extractor.wait_line(&unreachable, 1, RUN)?;
    eprintln!("first warning after {first:?}");
    ensure!(
        first <= Duration::from_secs(5),
        "the first warning came after {first:?}"
    );
    // Watch it wait for 20 s: a handful of lines, at most one warning per 5 s.
    let watched = Duration::from_secs(20);
    let _ = wait_for("20 s of waiting", watched + Duration::from_secs(1), || {
        (extractor.started.elapsed() >= watched).then_some(())
    });
    let warnings: Vec<_> = extractor
        .matching(&unreachable)
        .into_iter()
        .filter(|(at, _)| *at <= watched)
        .collect();
    let lines = extractor.lines();
    ensure!(
        (3..=5).contains(&warnings.len()),
        "{} warnings in 20 s:\n{}",
        warnings.len(),
        extractor.stderr()
    );
    assert_spaced(&warnings)?;
    ensure!(
        lines.len() <= 6,
        "{} lines in 20 s:\n{}",
        lines.len(),
        extractor.stderr()
    );
    // Each says what librdkafka said, once, and how long the wait may still last.
    for (_, line) in &warnings {
        ensure!(
            line.matches("Connection refused").count() == 1
                && line.contains("--broker-timeout / EXTRACTOR_BROKER_TIMEOUT"),
            "{line}"
        );
    }
    ensure!(
        !extractor.stderr().contains("librdkafka"),
        "a librdkafka line got through:\n{}",
        extractor.stderr()
    );

    let (status, took, _, stderr) = extractor.terminate()?;
    eprintln!("exited {took:?} after SIGTERM");
    ensure!(!status.success(), "exit 0 after SIGTERM:\n{stderr}");
    ensure!(
        took <= PROMPT_EXIT,
        "took {took:?} to exit after SIGTERM:\n{stderr}"
    );
    ensure!(
        stderr.contains(&format!(
            "extractor: error: interrupted while waiting for the Kafka broker at {}",
            broker.bootstrap()
        )),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn the_extractor_gives_up_after_its_broker_timeout_naming_the_address_and_the_setting() -> Result<()>
{
    let tmp = tempfile::tempdir()?;
    let broker = Broker::unstarted(tmp.path())?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = pipeline(&broker, &api, "e2e_nobroker_timeout")?;
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.env("EXTRACTOR_BROKER_TIMEOUT", "3s");
    let started = Instant::now();
    let out = run(cmd, RUN)?;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("failed after {took:?}");
    ensure!(!out.status.success(), "exit 0:\n{stderr}");
    ensure!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "failed after {took:?}:\n{stderr}"
    );
    let expected = format!(
        "extractor: error: cannot reach the Kafka broker at {} (kafka.\"bootstrap.servers\") within ",
        broker.bootstrap()
    );
    let error = stderr
        .lines()
        .find(|l| l.starts_with(&expected))
        .with_context(|| format!("no `{expected}` line:\n{stderr}"))?;
    ensure!(
        error.contains("Connection refused")
            && error.ends_with("raise --broker-timeout / EXTRACTOR_BROKER_TIMEOUT to wait longer"),
        "{error}"
    );
    ensure!(stderr.lines().count() <= 3, "{stderr}");
    Ok(())
}

#[test]
fn an_extractor_started_before_its_broker_publishes_once_the_broker_is_up() -> Result<()> {
    // 150 pages: more than the early fetcher holds while it waits for the broker.
    const RECORDS: u64 = 15_000;
    let tmp = tempfile::tempdir()?;
    let mut broker = Broker::unstarted(tmp.path())?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = pipeline(&broker, &api, "e2e_nobroker_late")?;
    let mut cmd = pipeline.extractor()?;
    // Long enough for a broker starting on a busy machine.
    let _ = cmd.args(["--broker-timeout", "150s"]);
    let mut extractor = Watched::spawn(cmd, "extractor")?;
    let unreachable = format!("cannot reach the Kafka broker at {}", broker.bootstrap());
    let _ = extractor.wait_line(&unreachable, 1, RUN)?;
    // While it waits, its early fetcher pages the API until its queue is full, then waits.
    let requests = || -> Result<u64> {
        api.get("/admin/stats")?["requests"]
            .as_u64()
            .context("requests")
    };
    let waiting = wait_for(
        "the early fetcher to fill its queue",
        Duration::from_secs(30),
        || {
            let before = requests().ok()?;
            std::thread::sleep(Duration::from_millis(500));
            (before > 0 && requests().ok()? == before).then_some(before)
        },
    )?;
    eprintln!("{waiting} pages fetched while the broker was down");
    // At most: the 64 queued pages (the first page among them), one waiting for room in the
    // queue, one in the channel before it, one the fetcher is sending, and the up to 16
    // requests it holds besides (8 in flight, the rest answered ahead).
    ensure!(
        (2..=83).contains(&waiting),
        "{waiting} requests while the broker was down"
    );
    broker.restart()?;
    eprintln!("broker up after {:?}", extractor.started.elapsed());
    let (status, _, stdout, stderr) = extractor.wait(RUN)?;
    ensure!(
        status.success(),
        "{status}:\n{stdout}\n{}",
        tail(&stderr, 40)
    );
    ensure!(
        figure(&stdout, "total ", "records") == Some(RECORDS as f64),
        "{stdout}"
    );
    ensure!(
        stderr.contains(&format!(
            "reached the Kafka broker at {}",
            broker.bootstrap()
        )),
        "{stderr}"
    );
    // The records are there: the loader loads every one.
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    let rows: i64 =
        pipeline
            .sqlite()?
            .query_row("SELECT count(*) FROM communications_data", [], |r| r.get(0))?;
    ensure!(rows == RECORDS as i64, "{rows} rows");
    // The pages fetched early were published, not fetched again.
    let all = requests()?;
    ensure!(all == RECORDS / 100, "{all} requests for {RECORDS} records");
    Ok(())
}

/// GET `http://addr/path`: status and body, or `None` while nothing answers.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let response = reqwest::blocking::get(format!("http://{addr}{path}")).ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().ok()?))
}

#[test]
fn the_loader_waits_for_its_broker_saying_so_and_stops_at_once_on_sigterm() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::unstarted(tmp.path())?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = pipeline(&broker, &api, "e2e_nobroker_loader_stop")?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = pipeline.loader()?;
    let _ = cmd.args(["--metrics-addr", &addr]);
    let mut loader = Watched::spawn(cmd, "loader")?;
    let unreachable = format!("cannot reach the Kafka broker at {}", broker.bootstrap());
    let first = loader.wait_line(&unreachable, 1, RUN)?;
    eprintln!("first warning after {first:?}");
    ensure!(
        first <= Duration::from_secs(5),
        "the first warning came after {first:?}"
    );
    let (status, health) = wait_for("/health to answer", RUN, || get(&addr, "/health"))?;
    ensure!(
        status == 200
            && health.starts_with(&format!(
                "waiting for the Kafka broker at {}: ",
                broker.bootstrap()
            ))
            && health.contains("Connection refused"),
        "/health: {status} {health}"
    );
    // It keeps waiting, and saying so.
    let _ = loader.wait_line(&unreachable, 3, RUN)?;
    let warnings = loader.matching(&unreachable);
    assert_spaced(&warnings)?;
    ensure!(
        loader.lines().len() <= warnings.len() + 3,
        "{}",
        loader.stderr()
    );
    ensure!(
        !loader.stderr().contains("librdkafka"),
        "a librdkafka line got through:\n{}",
        loader.stderr()
    );

    let (status, took, stdout, stderr) = loader.terminate()?;
    eprintln!("exited {took:?} after SIGTERM");
    ensure!(status.success(), "{status}:\n{stderr}");
    ensure!(
        took <= PROMPT_EXIT,
        "took {took:?} to exit after SIGTERM:\n{stderr}"
    );
    ensure!(
        stderr.contains("stopped while waiting for the Kafka broker"),
        "{stderr}"
    );
    // Nothing was loaded, and what is left to load is unknown.
    ensure!(
        figure(&stdout, "loaded ", "records") == Some(0.0) && stdout.contains("lag=unknown"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn a_loader_started_before_its_broker_loads_once_the_broker_is_up() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut broker = Broker::unstarted(tmp.path())?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = pipeline(&broker, &api, "e2e_nobroker_loader_late")?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = pipeline.loader()?;
    let _ = cmd.args(["--metrics-addr", &addr]);
    let mut loader = Watched::spawn(cmd, "loader")?;
    let unreachable = format!("cannot reach the Kafka broker at {}", broker.bootstrap());
    let _ = loader.wait_line(&unreachable, 1, RUN)?;

    broker.restart()?;
    let _ = loader.wait_line(
        &format!("reached the Kafka broker at {}", broker.bootstrap()),
        1,
        RUN,
    )?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let records = api.records()?;
    let loaded = wait_for("every record in the destination", RUN, || {
        let rows: i64 = pipeline
            .sqlite()
            .ok()?
            .query_row("SELECT count(*) FROM communications_data", [], |r| r.get(0))
            .ok()?;
        (rows == records.len() as i64).then_some(rows)
    })
    .with_context(|| tail(&loader.stderr(), 40))?;
    ensure!(loaded == RECORDS as i64, "{loaded} rows");
    let (status, health) = get(&addr, "/health").context("/health")?;
    ensure!(
        status == 200 && health == "consuming",
        "/health: {status} {health}"
    );
    let (status, _, stdout, stderr) = loader.terminate()?;
    ensure!(status.success(), "{status}:\n{stderr}");
    ensure!(
        figure(&stdout, "loaded ", "records") == Some(RECORDS as f64),
        "{stdout}"
    );
    Ok(())
}
