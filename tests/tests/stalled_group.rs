//! A stalled group is visible (issue 12, item 8). Three PostgreSQL loaders share a
//! 6-partition topic; one is killed with -9 after about a third of the rows are loaded.
//!
//! On Apache Kafka the group drops the dead member when its session times out and hands
//! its partitions to a live loader: with and without static membership, the handover comes
//! within the session timeout plus a margin, and meanwhile the live loaders' `/metrics`
//! show the lag of the partitions nobody loads (every loader measures every partition).
//!
//! On Tansu, as an operator did: static membership, the default session timeout (45 s),
//! one loader killed and a fourth started. Within the session timeout plus a margin either
//! every row loads, or the stall is visible: a live loader's `/metrics` counts stalled
//! partitions and shows the lag of the partitions no live loader holds, and its log warns
//! about the killed loader's partitions.
//!
//! On both, a loader's summary line reports the lag left when it exits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::{Broker, BrokerKind, DemoApi, PgSchema, Pipeline, Proc, bin, figure, tail, wait_for};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

const RUN: Duration = Duration::from_secs(240);
const N: i64 = 30_000;
const PARTITIONS: i32 = 6;
/// The loaders' `session.timeout.ms` on Kafka: a realistic one (the broker's minimum by
/// default).
const KAFKA_SESSION_TIMEOUT: Duration = Duration::from_millis(6_000);
/// On Tansu the loaders keep librdkafka's default, as the operator's did: with 6 s, Tansu
/// 0.6 was seen to leave three loaders of a new group without partitions for minutes
/// before any kill.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_millis(45_000);
/// Beyond the session timeout: the rebalance, the 5 s between two lag measurements (a
/// partition is declared stalled 0-5 s after the timeout has passed, and a loader's first
/// measurement comes 5 s after it starts), and a busy machine.
const MARGIN: Duration = Duration::from_secs(30);
const STALL_WARNING: &str = "partition stalled";

/// One loader process: its log (stderr), its stdout (the summary line) and where its
/// `/metrics` answer.
struct Loader {
    name: String,
    proc: Proc,
    log: PathBuf,
    out: PathBuf,
    addr: Option<String>,
}

impl Loader {
    /// A loader of the pipeline's group into `url`, under the static id `name` if
    /// `instance_id`.
    fn spawn(pipeline: &Pipeline, url: &str, name: &str, instance_id: bool) -> Result<Self> {
        // The lag measured every second: on Kafka the handover comes 3-6 s after the kill
        // (the session timeout less up to one heartbeat interval), which the default 5 s
        // cadence can miss entirely; the CI run failed on that once.
        let mut args = vec![
            "--group-id",
            pipeline.group.as_str(),
            "--batch-size",
            "200",
            "--lag-every",
            "1s",
        ];
        if instance_id {
            args.extend(["--group-instance-id", name]);
        }
        Self::spawn_with(pipeline, url, name, &args)
    }

    /// A loader into `url` with `args` (its group among them), serving `/metrics` on a
    /// free port.
    fn spawn_with(pipeline: &Pipeline, url: &str, name: &str, args: &[&str]) -> Result<Self> {
        let log = pipeline.dir.path().join(format!("{name}.log"));
        let out = pipeline.dir.path().join(format!("{name}.out"));
        let mut cmd = Command::new(bin("loader")?);
        let _ = cmd
            .arg("--config")
            .arg(&pipeline.config)
            .args(["--destination", url, "--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info");
        let child = cmd
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Self {
            name: name.to_owned(),
            proc: Proc {
                child,
                name: name.to_owned(),
            },
            log,
            out,
            addr: None,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `/metrics` address the loader logged (it listens on port 0).
    fn addr(&mut self) -> Option<String> {
        if self.addr.is_none() {
            let log = self.log();
            let line = log.lines().find(|l| l.contains("serving /metrics"))?;
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))?;
            self.addr = Some(addr.to_owned());
        }
        self.addr.clone()
    }

    fn scrape(&mut self) -> Option<Scrape> {
        let addr = self.addr()?;
        let text = reqwest::blocking::get(format!("http://{addr}/metrics"))
            .ok()?
            .text()
            .ok()?;
        Some(Scrape::parse(&text))
    }

    /// The partitions the loader holds, as its last `partitions assigned` or `partitions
    /// revoked` line says.
    fn held(&self) -> BTreeSet<i32> {
        held(&self.log())
    }

    /// SIGTERM, then its exit code and the `lag=` of its summary line.
    fn terminate(&mut self) -> Result<(Option<i32>, Option<f64>)> {
        let pid = self.proc.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status()?;
        let status = wait_for(&format!("{} to exit", self.name), RUN, || {
            self.proc.child.try_wait().ok().flatten()
        })?;
        let out = std::fs::read_to_string(&self.out)?;
        Ok((status.code(), figure(&out, "loaded", "lag")))
    }
}

/// The partitions a loader's log says it holds now.
fn held(log: &str) -> BTreeSet<i32> {
    let last = log
        .lines()
        .rfind(|l| l.contains("partitions assigned") || l.contains("partitions revoked"));
    match last {
        Some(line) if line.contains("partitions assigned") => line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("partitions="))
            .unwrap_or_default()
            .split(',')
            .filter_map(|tp| tp.rsplit_once('/')?.1.parse().ok())
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// The partitions a loader's log has warned about as stalled.
fn stall_warnings(log: &str) -> BTreeSet<i32> {
    log.lines()
        .filter(|l| l.contains(STALL_WARNING))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("partition=")?.parse().ok())
        })
        .collect()
}

/// What the tests read of a loader's `/metrics`.
#[derive(Debug, Default)]
struct Scrape {
    /// `loader_consumer_lag` by partition.
    lag: BTreeMap<i32, i64>,
    assigned: Option<i64>,
    stalled: Option<i64>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut scrape = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if let Some(labels) = key.strip_prefix("loader_consumer_lag{") {
                let partition = labels
                    .split(',')
                    .find_map(|l| l.strip_prefix("partition=\""))
                    .and_then(|p| p.trim_end_matches(['"', '}']).parse().ok());
                if let Some(p) = partition {
                    let _ = scrape.lag.insert(p, value as i64);
                }
            } else if key == "loader_assigned_partitions" {
                scrape.assigned = Some(value as i64);
            } else if key == "loader_stalled_partitions" {
                scrape.stalled = Some(value as i64);
            }
        }
        scrape
    }
}

/// The test's view of the group's progress: per partition, the high watermark and the
/// next offset the destination stored.
struct Truth<'a> {
    pg: &'a mut PgSchema,
    client: BaseConsumer,
    topic: String,
}

impl<'a> Truth<'a> {
    fn new(broker: &Broker, pg: &'a mut PgSchema, topic: &str) -> Result<Self> {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", "stalled-group-test")
            .create()?;
        Ok(Self {
            pg,
            client,
            topic: topic.to_owned(),
        })
    }

    fn stored(&mut self) -> Option<BTreeMap<i32, i64>> {
        let rows = self
            .pg
            .query("SELECT partition, next_offset FROM {schema}._pipeline_offsets")
            .ok()?;
        Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn stored_sum(&mut self) -> Option<i64> {
        Some(self.stored()?.values().sum())
    }

    /// Records left per partition (high watermark minus the stored offset).
    fn remaining(&mut self) -> Result<BTreeMap<i32, i64>> {
        let stored = self.stored().unwrap_or_default();
        (0..PARTITIONS)
            .map(|p| {
                let (low, high) =
                    self.client
                        .fetch_watermarks(&self.topic, p, Duration::from_secs(10))?;
                Ok((p, high - stored.get(&p).copied().unwrap_or(low)))
            })
            .collect()
    }
}

/// The last lines of every loader's log, for a failure message.
fn logs(loaders: &[Loader]) -> String {
    loaders
        .iter()
        .map(|l| format!("--- {}\n{}\n", l.name, tail(&l.log(), 12)))
        .collect()
}

/// The pipeline `name` (its loaders' `session.timeout.ms` set to `session` if given) and its
/// topic, created empty with 6 partitions so that the loaders can form their group before
/// any record arrives (a loader alone in the group would otherwise load much of the topic
/// before the others join).
fn pipeline_with_topic(
    broker: &Broker,
    api: &DemoApi,
    name: &str,
    session: Option<Duration>,
) -> Result<Pipeline> {
    let pipeline = Pipeline::new(broker, api, name, "")?;
    if let Some(session) = session {
        let ms = session.as_millis().to_string();
        pipeline.kafka_settings(&[("session.timeout.ms", ms.as_str())])?;
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()?;
    let topic = format!("{name}.communications_data");
    let created = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(admin.create_topics(
            &[NewTopic::new(
                &topic,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        ))?;
    for result in created {
        let _ = result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    Ok(pipeline)
}

/// The extractor publishing N records, running. Without transactions: the lags compared
/// here count offsets, which are then the records one for one (no commit markers).
fn spawn_extractor(pipeline: &Pipeline) -> Result<Proc> {
    let log = std::fs::File::create(pipeline.dir.path().join("extractor.log"))?;
    Ok(Proc {
        child: pipeline
            .extractor()?
            .arg("--no-transactions")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
        name: "extractor".into(),
    })
}

/// Three loaders, then (once about a third of the rows are loaded) one of them that holds
/// partitions with rows left killed with -9. With `form_first` (Kafka) the loaders first
/// share all 6 partitions of the empty topic and each measures every partition's lag, and
/// the extractor publishes while they load; otherwise (Tansu, whose group takes long to
/// settle) the extractor publishes everything first, as when the operator ran it. Returns
/// the loaders (the killed one first), the extractor (perhaps still running), the kill's
/// moment and the killed loader's partitions that still had rows to load.
fn three_loaders_then_a_kill(
    pipeline: &Pipeline,
    truth: &mut Truth<'_>,
    url: &str,
    instance_ids: bool,
    form_first: bool,
) -> Result<(Vec<Loader>, Proc, Instant, BTreeSet<i32>)> {
    let mut extractor = None;
    if !form_first {
        let mut ex = spawn_extractor(pipeline)?;
        let _ = wait_for("the extractor to finish", RUN, || {
            ex.child.try_wait().ok().flatten()
        })?;
        extractor = Some(ex);
    }
    let mut loaders = (0..3)
        .map(|i| Loader::spawn(pipeline, url, &format!("loader-{i}"), instance_ids))
        .collect::<Result<Vec<_>>>()?;
    if form_first {
        let all: BTreeSet<i32> = (0..PARTITIONS).collect();
        wait_for(
            "three loaders sharing 6 partitions, each measuring them",
            RUN,
            || {
                let union: BTreeSet<i32> = loaders.iter().flat_map(Loader::held).collect();
                let measured = loaders.iter_mut().all(|l| {
                    l.scrape()
                        .is_some_and(|s| s.lag.len() == PARTITIONS as usize)
                });
                (union == all && measured).then_some(())
            },
        )
        .with_context(|| logs(&loaders))?;
        extractor = Some(spawn_extractor(pipeline)?);
    }
    let extractor = extractor.context("the extractor was started")?;
    // A third loaded, and a loader holding partitions with rows left to kill.
    let (ready, victim) = wait_for(
        "a third of the rows loaded and a loader holding partitions with rows left",
        RUN,
        || {
            let loaded = truth.stored_sum().filter(|loaded| *loaded >= N / 3)?;
            let remaining = truth.remaining().ok()?;
            let victim = loaders.iter().position(|l| {
                l.held()
                    .iter()
                    .any(|p| remaining.get(p).is_some_and(|r| *r > 0))
            })?;
            Some((loaded, victim))
        },
    )
    .with_context(|| logs(&loaders))?;
    let holdings: Vec<(String, BTreeSet<i32>)> =
        loaders.iter().map(|l| (l.name.clone(), l.held())).collect();
    eprintln!("before the kill the loaders hold {holdings:?}");
    let mut victim_loader = loaders.remove(victim);
    let held = victim_loader.held();
    victim_loader.proc.kill(); // SIGKILL: no LeaveGroup, the group keeps the member
    let killed = Instant::now();
    loaders.insert(0, victim_loader);
    // A loader keeping up with the extractor may have loaded its last row in the moment
    // between the choice and the kill. The rows published after the kill land on its
    // partitions too and stay there until the group hands them over (the session timeout):
    // wait a little for each of them to have rows left (the extractor may have finished,
    // as on Tansu; then the rows left are final).
    let mut remaining = truth.remaining()?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline
        && !held
            .iter()
            .all(|p| remaining.get(p).is_some_and(|r| *r > 0))
    {
        std::thread::sleep(Duration::from_millis(20));
        remaining = truth.remaining()?;
    }
    let behind: BTreeSet<i32> = held
        .iter()
        .copied()
        .filter(|p| remaining.get(p).is_some_and(|r| *r > 0))
        .collect();
    eprintln!(
        "killed {} holding {held:?} at {ready} of {N} rows loaded; its partitions' rows left: {:?}",
        loaders[0].name,
        held.iter()
            .map(|p| (p, remaining.get(p).copied().unwrap_or_default()))
            .collect::<Vec<_>>()
    );
    ensure!(
        !held.is_empty(),
        "the killed loader held no partitions:\n{}",
        logs(&loaders)
    );
    ensure!(
        !behind.is_empty(),
        "the killed loader's partitions {held:?} were all loaded before the kill"
    );
    Ok((loaders, extractor, killed, behind))
}

/// Waits for the extractor to exit 0.
fn extracted(pipeline: &Pipeline, mut extractor: Proc) -> Result<()> {
    let status = wait_for("the extractor to finish", RUN, || {
        extractor.child.try_wait().ok().flatten()
    })?;
    ensure!(
        status.success(),
        "the extractor failed: {}",
        tail(
            &std::fs::read_to_string(pipeline.dir.path().join("extractor.log"))?,
            20
        )
    );
    Ok(())
}

/// Every row once, with the stored offsets covering the topic.
fn every_row_once(truth: &mut Truth<'_>) -> Result<()> {
    let rows = truth
        .pg
        .query("SELECT count(*), count(DISTINCT id) FROM {schema}.communications_data")?;
    let (count, distinct): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    ensure!(count == N && distinct == N, "{count} rows, {distinct} ids");
    ensure!(truth.remaining()?.values().all(|r| *r == 0));
    Ok(())
}

/// SIGTERMs each loader still running: it exits 0 and its summary's `lag=` is the lag
/// left when it measured, between what was left before the signal and after the exit.
fn stop_and_check_lag_left(loaders: &mut [Loader], truth: &mut Truth<'_>) -> Result<()> {
    for loader in loaders.iter_mut() {
        if loader.proc.child.try_wait()?.is_some() {
            continue;
        }
        let before = N - truth.stored_sum().context("stored offsets")?;
        let (code, lag) = loader.terminate()?;
        let after = N - truth.stored_sum().context("stored offsets")?;
        let log = loader.log();
        ensure!(
            code == Some(0),
            "{} exited {code:?}: {}",
            loader.name,
            tail(&log, 20)
        );
        let lag = lag.with_context(|| format!("{}: no lag= in the summary", loader.name))? as i64;
        eprintln!(
            "{} stopped: summary lag={lag} (rows left before SIGTERM {before}, after exit {after})",
            loader.name
        );
        ensure!(
            after <= lag && lag <= before,
            "{}: lag={lag} outside [{after}, {before}]",
            loader.name
        );
        ensure!(
            (lag > 0) == log.contains("records left to load at exit"),
            "{}: lag={lag} and the exit log line disagree: {}",
            loader.name,
            tail(&log, 5)
        );
    }
    Ok(())
}

/// A loader of a group of its own into a fresh SQLite file, stopped with SIGTERM as soon
/// as it holds partitions: its summary reports exactly the rows it left.
fn a_stopped_loader_reports_the_lag_it_leaves(pipeline: &Pipeline) -> Result<()> {
    let db = pipeline.dir.path().join("early-stop.db");
    let url = format!("sqlite://{}", db.display());
    let mut loader = Loader::spawn_with(
        pipeline,
        &url,
        "early-stop",
        &["--group-id", "early-stop", "--batch-size", "50"],
    )?;
    wait_for("the early-stop loader to hold partitions", RUN, || {
        (!loader.held().is_empty()).then_some(())
    })
    .with_context(|| tail(&loader.log(), 20))?;
    let (code, lag) = loader.terminate()?;
    let log = loader.log();
    ensure!(code == Some(0), "exit {code:?}: {}", tail(&log, 20));
    let stored: i64 = if db.exists() {
        rusqlite::Connection::open(&db)?
            .query_row(
                "SELECT coalesce(sum(next_offset), 0) FROM _pipeline_offsets WHERE group_id = 'early-stop'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0)
    } else {
        0
    };
    let lag = lag.context("no lag= in the summary")? as i64;
    eprintln!("a loader stopped early: loaded {stored} of {N}, summary lag={lag}");
    ensure!(
        lag == N - stored,
        "lag={lag}, but {} rows are left",
        N - stored
    );
    ensure!(lag > 0, "it loaded everything before the SIGTERM");
    ensure!(
        log.contains("records left to load at exit"),
        "{}",
        tail(&log, 10)
    );
    Ok(())
}

/// Kafka: the killed loader's partitions go to a live loader within the session timeout
/// (plus a margin), the live loaders show their lag meanwhile, and every row loads.
fn kafka_hands_over(broker: &Broker, instance_ids: bool) -> Result<()> {
    let membership = if instance_ids { "static" } else { "dynamic" };
    let name = format!("e2e_stall_{membership}");
    let Some(mut pg) = PgSchema::create(&name)? else {
        return Ok(());
    };
    let api = DemoApi::start(N as u64, &[])?;
    let pipeline = pipeline_with_topic(broker, &api, &name, Some(KAFKA_SESSION_TIMEOUT))?;
    let topic = format!("{name}.communications_data");
    let url = pg.url.clone();
    let mut truth = Truth::new(broker, &mut pg, &topic)?;
    let (mut loaders, extractor, killed, behind) =
        three_loaders_then_a_kill(&pipeline, &mut truth, &url, instance_ids, true)?;

    // Until the live loaders hold the killed loader's partitions: each scrape of theirs
    // that shows lag > 0 for one of those partitions counts.
    let mut seen_lag: BTreeSet<i32> = BTreeSet::new();
    let mut warned = false;
    let reassigned = wait_for(
        "the killed loader's partitions to be reassigned",
        KAFKA_SESSION_TIMEOUT + MARGIN,
        || {
            for live in loaders[1..].iter_mut() {
                if let Some(scrape) = live.scrape() {
                    seen_lag.extend(
                        behind
                            .iter()
                            .filter(|p| scrape.lag.get(p).is_some_and(|lag| *lag > 0)),
                    );
                }
                warned |= live.log().contains(STALL_WARNING);
            }
            let union: BTreeSet<i32> = loaders[1..].iter().flat_map(Loader::held).collect();
            behind.is_subset(&union).then(|| killed.elapsed())
        },
    )
    .with_context(|| logs(&loaders))?;
    extracted(&pipeline, extractor)?;
    let loaded = wait_for("every row loaded", RUN, || {
        (truth.stored_sum()? == N).then(|| killed.elapsed())
    })
    .with_context(|| logs(&loaders))?;
    eprintln!(
        "Kafka, {membership} membership, session.timeout.ms={}: the killed loader's partitions \
         were reassigned {:.1} s after the kill, every row loaded after {:.1} s; a stall \
         warning was logged before the handover: {warned}",
        KAFKA_SESSION_TIMEOUT.as_millis(),
        reassigned.as_secs_f64(),
        loaded.as_secs_f64()
    );
    ensure!(
        seen_lag == behind,
        "the live loaders' /metrics showed lag > 0 only for {seen_lag:?} of the killed \
         loader's partitions {behind:?} before the handover"
    );
    every_row_once(&mut truth)?;
    // Once loaded, each live loader's gauges come down to 0, and nothing is stalled.
    for live in loaders[1..].iter_mut() {
        wait_for("lag 0 on every partition", RUN, || {
            let s = live.scrape()?;
            (s.lag.len() == PARTITIONS as usize
                && s.lag.values().all(|l| *l == 0)
                && s.stalled == Some(0)
                && s.assigned.is_some_and(|a| a > 0))
            .then_some(())
        })?;
    }
    stop_and_check_lag_left(&mut loaders[1..], &mut truth)?;
    a_stopped_loader_reports_the_lag_it_leaves(&pipeline)
}

/// What happened on Tansu after the kill and the join.
#[derive(Debug)]
enum Outcome {
    /// Every row loaded after this long.
    Loaded(Duration),
    /// After this long a live loader showed the stall: `(loader, unowned partitions with
    /// rows left, its stalled gauge)`.
    StallVisible(Duration, String, BTreeSet<i32>, i64),
}

/// Tansu, as the operator ran it: static membership, the default session timeout, one
/// loader killed, a fourth started.
fn tansu_kill_and_join(broker: &Broker) -> Result<()> {
    let name = "e2e_stall_tansu";
    let Some(mut pg) = PgSchema::create(name)? else {
        return Ok(());
    };
    let api = DemoApi::start(N as u64, &[])?;
    let pipeline = pipeline_with_topic(broker, &api, name, None)?;
    let topic = format!("{name}.communications_data");
    let url = pg.url.clone();
    let mut truth = Truth::new(broker, &mut pg, &topic)?;
    let (mut loaders, extractor, killed, behind) =
        three_loaders_then_a_kill(&pipeline, &mut truth, &url, true, false)?;
    loaders.push(Loader::spawn(&pipeline, &url, "loader-3", true)?);

    let outcome = wait_for(
        "every row loaded, or the stall visible",
        DEFAULT_SESSION_TIMEOUT + MARGIN,
        || {
            if truth.stored_sum()? == N {
                return Some(Outcome::Loaded(killed.elapsed()));
            }
            let remaining = truth.remaining().ok()?;
            let union: BTreeSet<i32> = loaders[1..].iter().flat_map(Loader::held).collect();
            let unowned: BTreeSet<i32> = (0..PARTITIONS)
                .filter(|p| !union.contains(p) && remaining.get(p).is_some_and(|r| *r > 0))
                .collect();
            if unowned.is_empty() {
                return None;
            }
            // The warnings must name the killed loader's partitions while they are unowned
            // (a stall of other partitions alone is not the one the kill caused).
            let named: BTreeSet<i32> = behind.intersection(&unowned).copied().collect();
            let named = if named.is_empty() { &unowned } else { &named };
            for live in loaders[1..].iter_mut() {
                let Some(scrape) = live.scrape() else {
                    continue;
                };
                let stalled = scrape.stalled.unwrap_or(0);
                let shown = unowned
                    .iter()
                    .all(|p| scrape.lag.get(p).is_some_and(|lag| *lag > 0));
                let warned = stall_warnings(&live.log());
                if stalled > 0 && shown && named.is_subset(&warned) {
                    return Some(Outcome::StallVisible(
                        killed.elapsed(),
                        live.name.clone(),
                        unowned,
                        stalled,
                    ));
                }
            }
            None
        },
    )
    .with_context(|| logs(&loaders))?;
    extracted(&pipeline, extractor)?;
    match &outcome {
        Outcome::Loaded(after) => eprintln!(
            "Tansu: every row loaded {:.1} s after the kill of a loader holding {behind:?} \
             (with rows left) and the join of a fourth",
            after.as_secs_f64()
        ),
        Outcome::StallVisible(after, loader, unowned, stalled) => {
            let warnings: Vec<String> = loaders[1..]
                .iter()
                .flat_map(|l| {
                    l.log()
                        .lines()
                        .filter(|line| line.contains(STALL_WARNING))
                        .map(|line| format!("{}: {line}", l.name))
                        .collect::<Vec<_>>()
                })
                .collect();
            let holdings: Vec<(String, BTreeSet<i32>, Option<i64>)> = loaders[1..]
                .iter_mut()
                .map(|l| {
                    let stalled = l.scrape().and_then(|s| s.stalled);
                    (l.name.clone(), l.held(), stalled)
                })
                .collect();
            eprintln!(
                "Tansu: stall visible {:.1} s after the kill of a loader holding {behind:?}: \
                 {loader} reports loader_stalled_partitions={stalled} and lag > 0 for the \
                 unowned partitions {unowned:?}; live loaders (held, stalled gauge): {holdings:?}; \
                 warnings:\n{}",
                after.as_secs_f64(),
                warnings.join("\n")
            );
            // Does the group recover later? Reported, not required.
            let later = wait_for("every row loaded after the stall", MARGIN, || {
                (truth.stored_sum()? == N).then(|| killed.elapsed())
            });
            match later {
                Ok(at) => eprintln!(
                    "Tansu: the stall ended; every row loaded {:.1} s after the kill",
                    at.as_secs_f64()
                ),
                Err(_) => eprintln!(
                    "Tansu: {} rows still unloaded {:.1} s after the kill",
                    N - truth.stored_sum().unwrap_or(0),
                    killed.elapsed().as_secs_f64()
                ),
            }
        }
    }
    if truth.stored_sum() == Some(N) {
        every_row_once(&mut truth)?;
    }
    stop_and_check_lag_left(&mut loaders[1..], &mut truth)?;
    a_stopped_loader_reports_the_lag_it_leaves(&pipeline)
}

#[test]
fn a_killed_loaders_partitions_are_handed_over_or_the_stall_is_visible() -> Result<()> {
    if PgSchema::create("e2e_stall_probe")?.is_none() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    match broker.kind {
        BrokerKind::Kafka => {
            kafka_hands_over(&broker, true)?;
            kafka_hands_over(&broker, false)
        }
        BrokerKind::Tansu => tansu_kill_and_join(&broker),
    }
}

#[test]
fn a_loaders_log_and_metrics_read_as_the_test_expects() {
    let log = "\
2026-01-01T00:00:00Z  INFO loader: partitions assigned partitions=p.t/0,p.t/3
2026-01-01T00:00:01Z  INFO loader: partitions revoked; writing the pending batch first partitions=p.t/0,p.t/3
";
    assert_eq!(held(log), BTreeSet::new());
    let log = format!(
        "{log}2026-01-01T00:00:02Z  INFO loader: partitions assigned partitions=p.t/1,p.t/4,p.t/5\n"
    );
    assert_eq!(held(&log), BTreeSet::from([1, 4, 5]));
    assert_eq!(
        held("x INFO loader: partitions assigned partitions=\n"),
        BTreeSet::new()
    );
    let warnings = "\
x WARN loader::lag: partition stalled: it is behind … topic=p.t partition=4 lag=10 behind_for_s=10
x INFO loader::lag: partition no longer stalled topic=p.t partition=4 lag=9 why=\"its stored offset moved\"
x WARN loader::lag: partition stalled, and this loader holds no partitions at all: … topic=p.t partition=0 lag=3
";
    assert_eq!(stall_warnings(warnings), BTreeSet::from([0, 4]));
    let scrape = Scrape::parse(
        "# TYPE loader_consumer_lag gauge\nloader_consumer_lag{partition=\"3\",topic=\"p.t\"} 42\nloader_assigned_partitions 2\nloader_stalled_partitions 1\n",
    );
    assert_eq!(scrape.lag, BTreeMap::from([(3, 42)]));
    assert_eq!((scrape.assigned, scrape.stalled), (Some(2), Some(1)));
}
