//! The stack as local processes: each service's replicas or stand-in, where the others
//! reach it ([`Endpoint`]), `up` in start order with the healthchecks `depends_on` asks for,
//! SIGTERM stops, and the logs. Starting the services is in `service.rs` (ours) and
//! `standins.rs` (Kafka, the registry, PostgreSQL); their healthchecks in `probe.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::standins::PgDatabase;
use super::{Spec, start_order};
use crate::{Broker, Proc, tail, wait_for};

/// Where a service's `host:port` is reached here.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Prepended to HTTP paths (the registry stand-in's Confluent API lives under one).
    pub path: String,
}

impl Endpoint {
    pub fn local(port: u16) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            path: String::new(),
        }
    }
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    pub fn url(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.path)
    }
}

/// One running process of a service of ours.
pub struct Replica {
    pub proc: Proc,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// Container port → where this replica listens (its own `localhost:PORT`).
    pub own: BTreeMap<u16, Endpoint>,
}

/// Fields drop in order: the processes before the broker, the registry and the database.
pub struct Stack {
    pub(super) replicas: BTreeMap<String, Vec<Replica>>,
    pub(super) broker: Option<Broker>,
    pub(super) registry: Option<Proc>,
    pub(super) pg: Option<PgDatabase>,
    pub(super) pg_admin: Option<postgres::Client>,
    pub(super) pg_server: Endpoint,
    pub(super) specs: BTreeMap<String, Spec>,
    /// `(service, container port)` → where the other services reach it.
    pub(super) endpoints: BTreeMap<(String, u16), Endpoint>,
    pub(super) dir: PathBuf,
    pub(super) http: reqwest::blocking::Client,
}

impl Stack {
    /// A stack of `specs` with nothing started, its files in `dir`; `pg_admin` is a
    /// superuser's connection to the PostgreSQL server at `pg_server`, which stands in for
    /// the `postgres` service.
    pub fn new(
        specs: BTreeMap<String, Spec>,
        dir: &Path,
        pg_admin: postgres::Client,
        pg_server: Endpoint,
    ) -> Result<Self> {
        Ok(Self {
            replicas: BTreeMap::new(),
            broker: None,
            registry: None,
            pg: None,
            pg_admin: Some(pg_admin),
            pg_server,
            specs,
            endpoints: BTreeMap::new(),
            dir: dir.to_path_buf(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    /// The file's `service`.
    pub fn spec(&self, service: &str) -> Result<&Spec> {
        self.specs
            .get(service)
            .with_context(|| format!("no service {service} in docker-compose.yml"))
    }

    /// `text` with every `service:port` (and `http://service:port`) replaced by its
    /// stand-in's address.
    pub fn map(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for ((service, port), ep) in &self.endpoints {
            text = text
                .replace(&format!("http://{service}:{port}"), &ep.url())
                .replace(&format!("{service}:{port}"), &ep.addr());
        }
        text
    }

    /// A compose service hostname followed by a port in `text`, if one is left.
    pub(super) fn unmapped(&self, text: &str) -> Option<String> {
        for name in self.specs.keys() {
            let pattern = format!("{name}:");
            for (at, _) in text.match_indices(&pattern) {
                let before = text[..at].chars().next_back();
                let after = text[at + pattern.len()..].chars().next();
                let bounded = before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'));
                if bounded && after.is_some_and(|c| c.is_ascii_digit()) {
                    return Some(format!("{name} in {text:?}"));
                }
            }
        }
        None
    }

    /// Every service of the file.
    pub fn specs(&self) -> &BTreeMap<String, Spec> {
        &self.specs
    }

    /// The running replicas of `service` (none for a stand-in).
    pub fn replicas(&self, service: &str) -> &[Replica] {
        self.replicas.get(service).map_or(&[], Vec::as_slice)
    }

    /// Starts `service` without waiting for it: a stand-in for `kafka`, `schema-registry` and
    /// `postgres`, a local process per replica for the services of ours.
    fn start(&mut self, service: &str, scale: usize) -> Result<()> {
        let started = Instant::now();
        match service {
            "kafka" => self.start_kafka()?,
            "schema-registry" => self.start_registry()?,
            "postgres" => self.start_postgres()?,
            _ => self.start_ours(service, scale)?,
        }
        eprintln!("started {service} ×{scale} in {:?}", started.elapsed());
        Ok(())
    }

    fn replica_count(&self, service: &str) -> usize {
        self.replicas.get(service).map_or(1, Vec::len)
    }

    /// Waits until every replica of `service` passes its healthcheck.
    pub fn wait_healthy(&self, service: &str) -> Result<()> {
        let started = Instant::now();
        let deadline = self
            .spec(service)?
            .healthcheck
            .as_ref()
            .with_context(|| format!("{service} has no healthcheck"))?
            .deadline();
        for i in 0..self.replica_count(service) {
            // An error is a healthcheck with no local equivalent: no point waiting.
            let healthy = wait_for(
                &format!("{service} #{i} to be healthy"),
                deadline,
                || match self.probe(service, i) {
                    Ok(true) => Some(Ok(())),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                },
            )
            .with_context(|| self.logs())?;
            healthy?;
        }
        eprintln!("{service} healthy after {:?}", started.elapsed());
        Ok(())
    }

    /// Waits for what `service`'s `depends_on` asks of each dependency.
    pub fn wait_dependencies(&self, service: &str) -> Result<()> {
        for (dep, condition) in self.spec(service)?.depends_on.clone() {
            match condition.as_str() {
                "service_healthy" => self.wait_healthy(&dep)?,
                "service_started" => {}
                other => bail!("{service}: depends_on {dep} with condition {other}"),
            }
        }
        Ok(())
    }

    /// `docker compose up [--scale S=N] targets`: dependencies first, each once its own
    /// dependencies are as `depends_on` asks.
    pub fn up(&mut self, targets: &[&str], scale: &[(&str, usize)]) -> Result<()> {
        for service in start_order(&self.specs, targets)? {
            if self.replicas.contains_key(&service)
                || (service == "kafka" && self.broker.is_some())
                || (service == "schema-registry" && self.registry.is_some())
                || (service == "postgres" && self.pg.is_some())
            {
                continue;
            }
            self.wait_dependencies(&service)?;
            let n = scale
                .iter()
                .find(|(s, _)| *s == service)
                .map_or(1, |(_, n)| *n);
            self.start(&service, n)?;
        }
        Ok(())
    }

    /// SIGTERM to every replica of `service`; each must exit within the service's
    /// `stop_grace_period`. Returns each exit status and how long it took.
    pub fn stop(&mut self, service: &str) -> Result<Vec<(ExitStatus, Duration)>> {
        let grace = self.spec(service)?.stop_grace_period;
        let mut out = Vec::new();
        for replica in self.replicas.get_mut(service).into_iter().flatten() {
            let asked = Instant::now();
            let status = Command::new("kill")
                .args(["-TERM", &replica.proc.child.id().to_string()])
                .status()?;
            ensure!(status.success(), "kill -TERM {}", replica.proc.name);
            let exit = wait_for(
                &format!("{} to stop within {grace:?}", replica.proc.name),
                grace,
                || replica.proc.child.try_wait().ok().flatten(),
            )?;
            out.push((exit, asked.elapsed()));
        }
        Ok(out)
    }

    /// The log of every replica of every service of ours.
    pub fn replica_logs(&self) -> Vec<PathBuf> {
        self.replicas
            .values()
            .flatten()
            .map(|r| r.log.clone())
            .collect()
    }

    /// The last lines of every log, for a failure message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        let mut paths = self.replica_logs();
        paths.push(self.dir.join("schema-registry.log"));
        paths.push(self.dir.join("kafka/broker.log"));
        for path in paths {
            if let Ok(log) = std::fs::read_to_string(&path) {
                text.push_str(&format!("--- {}\n{}\n", path.display(), tail(&log, 15)));
            }
        }
        text
    }

    /// Where the others reach `service` (its one published address).
    pub fn endpoint(&self, service: &str) -> Result<&Endpoint> {
        let mut found = self.endpoints.iter().filter(|((s, _), _)| s == service);
        let (_, ep) = found
            .next()
            .with_context(|| format!("{service} is not running"))?;
        ensure!(found.next().is_none(), "{service} has several addresses");
        Ok(ep)
    }

    /// GETs `url`; a status of 400 or more is an error.
    pub fn get(&self, url: &str) -> Result<reqwest::blocking::Response> {
        Ok(self.http.get(url).send()?.error_for_status()?)
    }

    /// The text `/metrics` serves on replica `i` of `service` (its `--metrics-addr`).
    pub fn metrics(&self, service: &str, i: usize, port: u16) -> Result<String> {
        let ep = self
            .replicas
            .get(service)
            .and_then(|r| r.get(i))
            .and_then(|r| r.own.get(&port))
            .with_context(|| format!("{service} #{i} listens on no {port}"))?;
        Ok(self.get(&format!("{}/metrics", ep.url()))?.text()?)
    }
}
