//! The compose stack, run without Docker. No Docker engine runs here, so this test reads
//! `docker-compose.yml`, interpolates it as compose does (`${VAR:-default}`,
//! `${VAR:?message}`, `$$`) from `.env.example` with test values, and runs each service of
//! ours (`demo-api`, `extractor`, `extractor-scheduled`, `loader`) as a local process: the
//! service's own `command` (its first word is the binary, `target/debug/<name>`) and
//! `environment` (nothing else: the environment is cleared), in the start order its
//! `depends_on` gives, waiting for `service_healthy` with the dependency's healthcheck. The
//! stand-ins for the other services:
//! - `kafka`: Apache Kafka 4.4.0 (KRaft, the tests' broker) with the service's `KAFKA_*`
//!   variables turned into `server.properties` lines the way the `apache/kafka` image does
//!   (`KAFKA_FOO_BAR` → `foo.bar`). `listeners`, `advertised.listeners`,
//!   `controller.quorum.voters` and `log.dirs` are rewritten to local ports and the test
//!   directory (the harness writes them); the test checks that the broker's effective
//!   settings are the file's with exactly that mapping.
//! - `schema-registry`: Apicurio Registry's Confluent-compatible API (`scripts/registry.sh`),
//!   so `http://schema-registry:8081` becomes `http://127.0.0.1:PORT/apis/ccompat/v7` (the
//!   one rewrite that adds a path).
//! - `postgres`: the local server (`TEST_POSTGRES_URL`, trust auth). What the image does
//!   with `POSTGRES_USER`/`POSTGRES_PASSWORD`/`POSTGRES_DB` on its first start is done with
//!   `CREATE ROLE … LOGIN PASSWORD` and `CREATE DATABASE … OWNER`; both are named
//!   `compose_<pid>` (set as `POSTGRES_USER` and `POSTGRES_DB`), so reruns do not collide,
//!   and dropped at the end. Trust auth accepts the password without checking it.
//!
//! Every `host:port` naming a service (`kafka:9092`, `postgres:5432`, `demo-api:8080`,
//! `schema-registry:8081`) in a command, an environment value or the mounted config
//! (`/config/pipeline.toml` is a copy of `deploy/pipeline.toml`) becomes the stand-in's
//! 127.0.0.1 address; each listen address `0.0.0.0:PORT` (`--listen`, `--metrics-addr`)
//! becomes a free 127.0.0.1 port per replica, which the healthchecks' `127.0.0.1:PORT`
//! follows. The test fails if a service hostname is left anywhere.
//!
//! What runs: `docker compose up --scale loader=3 kafka schema-registry postgres demo-api
//! loader`, `docker compose run --rm extractor` (exit 0), then the destination must equal the
//! API's records field by field, each row once; every loader's healthcheck passes and the
//! three share the six partitions; the records travelled in the Confluent wire format with
//! the schema in the registry; `--profile scheduled` starts `extractor-scheduled`, whose
//! healthcheck passes and which completes a run, then stops on SIGTERM with exit 0 within its
//! `stop_grace_period`; `docker compose down` (SIGTERM) stops the rest, each with exit 0
//! within its grace period; no secret appears in any log.
//!
//! What this cannot exercise:
//! - the images: the `Dockerfile` build (release build, slim runtime, curl, user 10001,
//!   WORKDIR /data); the binaries here are the workspace's debug builds;
//! - the `apache/kafka:4.4.0` image's start scripts (its env-to-properties rendering is
//!   re-implemented here, its `CLUSTER_ID` default and storage format are not run), and the
//!   settings the harness adds that the file does not have (`inter.broker.listener.name`,
//!   which the image defaults to the same `PLAINTEXT`, and
//!   `group.min.session.timeout.ms=1000`);
//! - the real `confluentinc/cp-schema-registry`: Apicurio stands in, so the registry's own
//!   settings (`SCHEMA_REGISTRY_HOST_NAME`, its Kafka-backed storage through
//!   `SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS`) are not used;
//! - the `postgres:17` image (the local server is another version) and password
//!   authentication;
//! - compose's networking and DNS (service names on a bridge network; here rewritten to
//!   127.0.0.1 and free ports), volumes (named volumes, `:ro` mounts), restart policies,
//!   SIGKILL after the grace period, user and file permissions, resource limits, `.env`
//!   loading and precedence, and the `docker compose` CLI itself;
//! - healthcheck commands run inside containers: they are interpreted here (`curl` → an HTTP
//!   GET, `/dev/tcp` → a TCP connect, `pg_isready` → a connection, `kafka-broker-api-versions.sh`
//!   → a metadata request); their interval × retries is the deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{Broker, BrokerKind, Proc, free_port, repo_root, tail, wait_for};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value as Json, json};
use serde_yaml_ng::Value;

/// The longest a run, a load or a start may take.
const RUN: Duration = Duration::from_secs(300);
/// The scale `docker compose up --scale loader=3` asks for.
const LOADERS: usize = 3;
/// The port the `postgres` image listens on (the file sets no other).
const POSTGRES_PORT: u16 = 5432;
/// Compose's default `stop_grace_period`.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The file as compose reads it.

/// Compose's interpolation of one string from `env`: `$$` is a literal `$`; `$VAR`,
/// `${VAR}`, `${VAR:-default}` / `${VAR-default}` (unset or empty / unset),
/// `${VAR:?message}` / `${VAR?message}` (an error), `${VAR:+other}` / `${VAR+other}`.
/// Defaults are taken literally (no nested interpolation; the file has none).
fn interpolate(text: &str, env: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .with_context(|| format!("unclosed `${{` in {text:?}"))?;
            out.push_str(&expand(&body[..end], env)?);
            rest = &body[end + 1..];
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if n == 0 {
                out.push('$');
            } else {
                out.push_str(env.get(&after[..n]).map_or("", String::as_str));
            }
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One `${...}` body.
fn expand(expr: &str, env: &BTreeMap<String, String>) -> Result<String> {
    let n = expr
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expr.len());
    let (name, op) = expr.split_at(n);
    ensure!(!name.is_empty(), "`${{{expr}}}` names no variable");
    let value = env.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let value = value.cloned().unwrap_or_default();
    Ok(match op {
        "" => value,
        _ if op.starts_with(":-") => {
            if non_empty {
                value
            } else {
                op[2..].to_owned()
            }
        }
        _ if op.starts_with(":?") => {
            ensure!(non_empty, "required variable {name}: {}", &op[2..]);
            value
        }
        _ if op.starts_with(":+") => {
            if non_empty {
                op[2..].to_owned()
            } else {
                String::new()
            }
        }
        _ if op.starts_with('-') => {
            if set {
                value
            } else {
                op[1..].to_owned()
            }
        }
        _ if op.starts_with('?') => {
            ensure!(set, "required variable {name}: {}", &op[1..]);
            value
        }
        _ if op.starts_with('+') => {
            if set {
                op[1..].to_owned()
            } else {
                String::new()
            }
        }
        _ => bail!("`${{{expr}}}`: unsupported interpolation"),
    })
}

/// Interpolates every string value of the document (not the keys), as compose does.
fn interpolate_doc(v: &mut Value, env: &BTreeMap<String, String>) -> Result<()> {
    match v {
        Value::String(s) => *s = interpolate(s, env)?,
        Value::Sequence(items) => {
            for item in items {
                interpolate_doc(item, env)?;
            }
        }
        Value::Mapping(map) => {
            for (_, item) in map.iter_mut() {
                interpolate_doc(item, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `KEY=VALUE` lines of a `.env` file (comments and blank lines skipped).
fn dotenv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// A compose duration: `60s`, `1m30s`, `500ms`, `2h`.
fn compose_duration(text: &str) -> Result<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    ensure!(!rest.is_empty(), "empty duration");
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .with_context(|| format!("{text:?}: a number without a unit"))?;
        let number: f64 = rest[..n]
            .parse()
            .with_context(|| format!("{text:?}: not a duration"))?;
        let unit_len = rest[n..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - n);
        let seconds = match &rest[n..n + unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            unit => bail!("{text:?}: unknown unit {unit:?}"),
        };
        total += Duration::from_secs_f64(seconds);
        rest = &rest[n + unit_len..];
    }
    Ok(total)
}

#[derive(Debug, Clone)]
struct Healthcheck {
    /// The command after `CMD` / `CMD-SHELL`, as one line.
    command: String,
    interval: Duration,
    retries: u32,
}

impl Healthcheck {
    /// How long compose waits before it calls the service unhealthy.
    fn deadline(&self) -> Duration {
        (self.interval * self.retries).max(Duration::from_secs(30))
    }
}

/// One service, interpolated.
#[derive(Debug, Clone)]
struct Spec {
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    depends_on: Vec<(String, String)>,
    volumes: Vec<String>,
    healthcheck: Option<Healthcheck>,
    stop_grace_period: Duration,
    profiles: Vec<String>,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(scalar).collect())
        .unwrap_or_default()
}

fn parse_services(doc: &Value) -> Result<BTreeMap<String, Spec>> {
    let mut out = BTreeMap::new();
    for (name, s) in doc["services"].as_mapping().context("services")? {
        let name = name.as_str().context("service name")?.to_owned();
        let mut environment = BTreeMap::new();
        match &s["environment"] {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().context("environment key")?.to_owned();
                    let v = scalar(v).with_context(|| format!("{name}: {k} has no value"))?;
                    let _ = environment.insert(k, v);
                }
            }
            Value::Sequence(items) => {
                for item in items.iter().filter_map(Value::as_str) {
                    let (k, v) = item.split_once('=').context("KEY=VALUE")?;
                    let _ = environment.insert(k.to_owned(), v.to_owned());
                }
            }
            Value::Null => {}
            other => bail!("{name}: environment is {other:?}"),
        }
        let depends_on = match &s["depends_on"] {
            Value::Mapping(m) => m
                .iter()
                .map(|(dep, how)| {
                    Ok((
                        dep.as_str().context("depends_on key")?.to_owned(),
                        how["condition"]
                            .as_str()
                            .unwrap_or("service_started")
                            .to_owned(),
                    ))
                })
                .collect::<Result<_>>()?,
            Value::Sequence(_) => strings(&s["depends_on"])
                .into_iter()
                .map(|d| (d, "service_started".to_owned()))
                .collect(),
            _ => Vec::new(),
        };
        let healthcheck = match &s["healthcheck"]["test"] {
            Value::Sequence(_) => {
                let test = strings(&s["healthcheck"]["test"]);
                ensure!(
                    matches!(test.first().map(String::as_str), Some("CMD" | "CMD-SHELL")),
                    "{name}: healthcheck test {test:?}"
                );
                Some(Healthcheck {
                    command: test[1..].join(" "),
                    interval: compose_duration(
                        s["healthcheck"]["interval"].as_str().unwrap_or("30s"),
                    )?,
                    retries: s["healthcheck"]["retries"].as_u64().unwrap_or(3) as u32,
                })
            }
            _ => None,
        };
        let stop_grace_period = match s["stop_grace_period"].as_str() {
            Some(d) => compose_duration(d)?,
            None => DEFAULT_GRACE,
        };
        let _ = out.insert(
            name,
            Spec {
                command: strings(&s["command"]),
                environment,
                depends_on,
                volumes: strings(&s["volumes"]),
                healthcheck,
                stop_grace_period,
                profiles: strings(&s["profiles"]),
            },
        );
    }
    Ok(out)
}

/// The services `targets` need, dependencies first (compose's start order).
fn start_order(specs: &BTreeMap<String, Spec>, targets: &[&str]) -> Result<Vec<String>> {
    fn visit(
        specs: &BTreeMap<String, Spec>,
        name: &str,
        seen: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> Result<()> {
        if seen.iter().any(|s| s == name) {
            return Ok(());
        }
        ensure!(
            !path.iter().any(|s| s == name),
            "depends_on cycle: {path:?} → {name}"
        );
        let spec = specs
            .get(name)
            .with_context(|| format!("no service {name}"))?;
        path.push(name.to_owned());
        for (dep, _) in &spec.depends_on {
            visit(specs, dep, seen, path)?;
        }
        let _ = path.pop();
        seen.push(name.to_owned());
        Ok(())
    }
    let mut seen = Vec::new();
    for target in targets {
        visit(specs, target, &mut seen, &mut Vec::new())?;
    }
    Ok(seen)
}

/// The `server.properties` name the `apache/kafka` image gives an environment variable:
/// `KAFKA_` dropped, lowercased, `_` → `.`, `__` → `_`, `___` → `-`; `None` for variables
/// the image keeps for itself (JVM and log4j options).
fn image_property(env_key: &str) -> Option<String> {
    const KEPT: [&str; 10] = [
        "KAFKA_VERSION",
        "KAFKA_HEAP_OPT",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
        "KAFKA_LOG4J_LOGGERS",
        "KAFKA_TOOLS_LOG4J_LOGLEVEL",
    ];
    let rest = env_key.strip_prefix("KAFKA_")?;
    if KEPT.contains(&env_key) || rest.is_empty() {
        return None;
    }
    let mut out = String::new();
    let mut underscores = 0;
    for c in rest.chars().chain(std::iter::once('\0')) {
        if c == '_' {
            underscores += 1;
            continue;
        }
        match underscores {
            0 => {}
            1 => out.push('.'),
            2 => out.push('_'),
            _ => out.push('-'),
        }
        underscores = 0;
        if c != '\0' {
            out.push(c.to_ascii_lowercase());
        }
    }
    Some(out)
}

/// A `.properties` file: the last value of each key wins, as in Java.
fn properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// `NAME://host:port` entries of a listener list, by name.
fn listener_ports(list: &str) -> Result<BTreeMap<String, u16>> {
    list.split(',')
        .map(|l| {
            let (name, addr) = l.split_once("://").with_context(|| format!("{l:?}"))?;
            let port = addr.rsplit(':').next().context("port")?.parse()?;
            Ok((name.to_owned(), port))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The stack, as local processes.

/// Where a service's `host:port` is reached here.
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    port: u16,
    /// Prepended to HTTP paths (the registry stand-in's Confluent API lives under one).
    path: String,
}

impl Endpoint {
    fn local(port: u16) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            path: String::new(),
        }
    }
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    fn url(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.path)
    }
}

struct Replica {
    proc: Proc,
    log: PathBuf,
    /// Container port → where this replica listens (its own `localhost:PORT`).
    own: BTreeMap<u16, Endpoint>,
}

/// The database and role the `postgres` image would create, dropped when this is dropped.
struct PgDatabase {
    admin: postgres::Client,
    name: String,
    role: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = self.admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ));
        let _ = self
            .admin
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{}\"", self.role));
    }
}

/// Fields drop in order: the processes before the broker, the registry and the database.
struct Stack {
    replicas: BTreeMap<String, Vec<Replica>>,
    broker: Option<Broker>,
    registry: Option<Proc>,
    pg: Option<PgDatabase>,
    pg_admin: Option<postgres::Client>,
    pg_server: Endpoint,
    specs: BTreeMap<String, Spec>,
    /// `(service, container port)` → where the other services reach it.
    endpoints: BTreeMap<(String, u16), Endpoint>,
    dir: PathBuf,
    http: reqwest::blocking::Client,
    /// Secrets (name, value) that must appear in no log.
    secrets: Vec<(&'static str, String)>,
}

impl Stack {
    fn spec(&self, service: &str) -> Result<&Spec> {
        self.specs
            .get(service)
            .with_context(|| format!("no service {service} in docker-compose.yml"))
    }

    /// `text` with every `service:port` (and `http://service:port`) replaced by its
    /// stand-in's address.
    fn map(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for ((service, port), ep) in &self.endpoints {
            text = text
                .replace(&format!("http://{service}:{port}"), &ep.url())
                .replace(&format!("{service}:{port}"), &ep.addr());
        }
        text
    }

    /// A compose service hostname followed by a port in `text`, if one is left.
    fn unmapped(&self, text: &str) -> Option<String> {
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

    /// Starts `service` without waiting for it: a stand-in for `kafka`, `schema-registry` and
    /// `postgres`, a local process per replica for the services of ours.
    fn start(&mut self, service: &str, scale: usize) -> Result<()> {
        let started = Instant::now();
        match service {
            "kafka" => self.start_kafka()?,
            "schema-registry" => self.start_registry()?,
            "postgres" => self.start_postgres()?,
            _ => {
                for i in 0..scale {
                    let (mut cmd, own, log) = self.command(service, i, scale == 1)?;
                    let out = File::create(&log)?;
                    let child = cmd
                        .stdout(out.try_clone()?)
                        .stderr(out)
                        .spawn()
                        .with_context(|| format!("starting {service}"))?;
                    let replica = Replica {
                        proc: Proc {
                            child,
                            name: format!("{service}-{i}"),
                        },
                        log,
                        own,
                    };
                    self.replicas
                        .entry(service.to_owned())
                        .or_default()
                        .push(replica);
                }
            }
        }
        eprintln!("started {service} ×{scale} in {:?}", started.elapsed());
        Ok(())
    }

    /// The local process for replica `i` of one of our services, its own endpoints and its
    /// log file. A service that runs once (`single`) is reachable by its name: the demo API
    /// as `demo-api:8080`.
    fn command(
        &mut self,
        service: &str,
        i: usize,
        single: bool,
    ) -> Result<(Command, BTreeMap<u16, Endpoint>, PathBuf)> {
        let spec = self.spec(service)?.clone();
        let binary = spec.command.first().context("command")?;
        let home = self.dir.join(format!("{service}-{i}"));
        std::fs::create_dir_all(&home)?;
        // Each file the service mounts, with the service hostnames in it mapped.
        let mut mounts = BTreeMap::new();
        for volume in &spec.volumes {
            let mut parts = volume.split(':');
            let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Some(local) = source.strip_prefix("./") else {
                continue; // a named volume
            };
            let text = std::fs::read_to_string(repo_root().join(local))
                .with_context(|| format!("{service} mounts {source}"))?;
            let text = self.map(&text);
            if let Some(left) = self.unmapped(&text) {
                bail!("{service}: {source} still names a service: {left}");
            }
            let copy = home.join("mounts").join(target.trim_start_matches('/'));
            std::fs::create_dir_all(copy.parent().context("mount path")?)?;
            std::fs::write(&copy, text)?;
            let _ = mounts.insert(target.to_owned(), copy);
        }
        let mut own = BTreeMap::new();
        let mut args = Vec::new();
        for arg in &spec.command[1..] {
            if let Some(port) = arg.strip_prefix("0.0.0.0:") {
                let local = free_port()?;
                let _ = own.insert(port.parse()?, Endpoint::local(local));
                args.push(format!("127.0.0.1:{local}"));
            } else if let Some(copy) = mounts.get(arg) {
                args.push(copy.display().to_string());
            } else {
                args.push(self.map(arg));
            }
        }
        if single {
            for (port, ep) in &own {
                let _ = self
                    .endpoints
                    .insert((service.to_owned(), *port), ep.clone());
            }
        }
        let env: BTreeMap<String, String> = spec
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), self.map(v)))
            .collect();
        for text in args.iter().chain(env.values()) {
            if let Some(left) = self.unmapped(text) {
                bail!("{service}: not mapped: {left}");
            }
        }
        let mut cmd = Command::new(e2e::bin(binary)?);
        let _ = cmd
            .args(&args)
            .env_clear()
            .envs(&env)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .current_dir(&home)
            .stdin(Stdio::null());
        Ok((cmd, own, self.dir.join(format!("{service}-{i}.log"))))
    }

    fn start_kafka(&mut self) -> Result<()> {
        let spec = self.spec("kafka")?.clone();
        let compose: BTreeMap<String, String> = spec
            .environment
            .iter()
            .filter_map(|(k, v)| Some((image_property(k)?, v.clone())))
            .collect();
        // Addresses and the data directory are the harness' (127.0.0.1, free ports, the
        // test directory); everything else is passed as the file has it.
        const REWRITTEN: [&str; 4] = [
            "listeners",
            "advertised.listeners",
            "controller.quorum.voters",
            "log.dirs",
        ];
        let extra: Vec<String> = compose
            .iter()
            .filter(|(k, _)| !REWRITTEN.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let dir = self.dir.join("kafka");
        std::fs::create_dir_all(&dir)?;
        let broker = Broker::start_kind(&dir, BrokerKind::Kafka, &extra)?;
        let effective = properties(&std::fs::read_to_string(
            dir.join("kafka/server.properties"),
        )?);

        // The mapping: each listener's container port → its local port, by listener name.
        let get = |map: &BTreeMap<String, String>, key: &str| -> Result<String> {
            map.get(key)
                .cloned()
                .with_context(|| format!("kafka: no {key}"))
        };
        let theirs = listener_ports(&get(&compose, "listeners")?)?;
        let ours = listener_ports(&get(&effective, "listeners")?)?;
        ensure!(
            theirs.keys().eq(ours.keys()),
            "listener names: file {theirs:?}, broker {ours:?}"
        );
        // Entry by entry (`NAME://host:port`, `id@host:port`): the host becomes 127.0.0.1
        // and the port the local port of the listener the file gives that port.
        let by_port: BTreeMap<u16, u16> = theirs
            .iter()
            .map(|(name, port)| (*port, ours[name]))
            .collect();
        let map = |value: &str| -> Result<String> {
            value
                .split(',')
                .map(|entry| {
                    let (head, port) = entry.rsplit_once(':').context("host:port")?;
                    let local = by_port
                        .get(&port.parse()?)
                        .with_context(|| format!("no listener on {entry}"))?;
                    let at = head.rfind(['/', '@']).map_or(0, |i| i + 1);
                    Ok(format!("{}127.0.0.1:{local}", &head[..at]))
                })
                .collect::<Result<Vec<_>>>()
                .map(|entries| entries.join(","))
        };
        for key in REWRITTEN {
            let want = match key {
                "log.dirs" => dir.join("kafka/data").display().to_string(),
                _ => map(&get(&compose, key)?)?,
            };
            let have = get(&effective, key)?;
            ensure!(
                have == want,
                "kafka {key}: the file's {:?} maps to {want:?}, the broker has {have:?}",
                compose[key]
            );
        }
        for (key, value) in compose
            .iter()
            .filter(|(k, _)| !REWRITTEN.contains(&k.as_str()))
        {
            ensure!(
                effective.get(key) == Some(value),
                "kafka {key}: the file has {value:?}, the broker {:?}",
                effective.get(key)
            );
        }
        // What the broker runs with that the file does not set: the image's default for the
        // inter-broker listener (the same value) and the harness' short session minimum.
        let added: BTreeSet<&str> = effective
            .keys()
            .filter(|k| !compose.contains_key(*k))
            .map(String::as_str)
            .collect();
        ensure!(
            added == BTreeSet::from(["group.min.session.timeout.ms", "inter.broker.listener.name"]),
            "the broker runs settings the compose file does not have: {added:?}"
        );
        ensure!(effective["inter.broker.listener.name"] == "PLAINTEXT");
        eprintln!(
            "kafka: {} settings from the file ({} passed as written, {REWRITTEN:?} mapped)",
            compose.len(),
            compose.len() - REWRITTEN.len()
        );

        // Clients reach the advertised listener(s).
        for (name, port) in listener_ports(&get(&compose, "advertised.listeners")?)? {
            let _ = self
                .endpoints
                .insert(("kafka".into(), port), Endpoint::local(ours[&name]));
        }
        self.broker = Some(broker);
        Ok(())
    }

    fn start_registry(&mut self) -> Result<()> {
        let spec = self.spec("schema-registry")?;
        let listen = spec
            .environment
            .get("SCHEMA_REGISTRY_LISTENERS")
            .context("SCHEMA_REGISTRY_LISTENERS")?;
        let port: u16 = listen
            .rsplit(':')
            .next()
            .context("listener port")?
            .parse()?;
        // Built first if need be (scripts/registry.sh would), so the healthcheck's deadline
        // covers only the start.
        let _ = e2e::run_ok(
            Command::new(repo_root().join("scripts/ensure-registry.sh")),
            RUN,
        )?;
        let local = free_port()?;
        let log = File::create(self.dir.join("schema-registry.log"))?;
        let child = Command::new(repo_root().join("scripts/registry.sh"))
            .arg(local.to_string())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting scripts/registry.sh")?;
        self.registry = Some(Proc {
            child,
            name: "schema-registry".into(),
        });
        let _ = self.endpoints.insert(
            ("schema-registry".into(), port),
            Endpoint {
                path: "/apis/ccompat/v7".into(),
                ..Endpoint::local(local)
            },
        );
        Ok(())
    }

    /// What the `postgres` image does on its first start: the role and the database.
    fn start_postgres(&mut self) -> Result<()> {
        let env = &self.spec("postgres")?.environment;
        let user = env.get("POSTGRES_USER").context("POSTGRES_USER")?.clone();
        let password = env
            .get("POSTGRES_PASSWORD")
            .context("POSTGRES_PASSWORD")?
            .clone();
        let db = env.get("POSTGRES_DB").context("POSTGRES_DB")?.clone();
        let mut admin = self.pg_admin.take().context("no PostgreSQL admin client")?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))?;
        admin.batch_execute(&format!("DROP ROLE IF EXISTS \"{user}\""))?;
        admin.batch_execute(&format!(
            "CREATE ROLE \"{user}\" LOGIN PASSWORD '{}'",
            password.replace('\'', "''")
        ))?;
        // From here on the guard drops the role (and the database) whatever happens.
        let mut pg = PgDatabase {
            admin,
            name: db.clone(),
            role: user.clone(),
        };
        pg.admin
            .batch_execute(&format!("CREATE DATABASE \"{db}\" OWNER \"{user}\""))?;
        self.pg = Some(pg);
        let _ = self
            .endpoints
            .insert(("postgres".into(), POSTGRES_PORT), self.pg_server.clone());
        Ok(())
    }

    /// Runs `service`'s healthcheck for replica `i`, as the container would: its own
    /// `localhost:PORT` is where it listens here.
    fn probe(&self, service: &str, i: usize) -> Result<bool> {
        let spec = self.spec(service)?;
        let check = spec
            .healthcheck
            .as_ref()
            .with_context(|| format!("{service} has no healthcheck"))?;
        let own: BTreeMap<u16, Endpoint> = match self.replicas.get(service) {
            Some(replicas) => replicas.get(i).context("replica")?.own.clone(),
            None => self
                .endpoints
                .iter()
                .filter(|((s, _), _)| s == service)
                .map(|((_, port), ep)| (*port, ep.clone()))
                .collect(),
        };
        let local = |host_port: &str| -> Result<Endpoint> {
            let (host, port) = host_port
                .rsplit_once([':', '/'])
                .with_context(|| format!("{service}: {host_port:?}"))?;
            ensure!(
                matches!(host, "localhost" | "127.0.0.1"),
                "{service}'s healthcheck asks {host_port}, not itself"
            );
            own.get(&port.parse()?)
                .cloned()
                .with_context(|| format!("{service}: nothing listens on {port}"))
        };
        let words: Vec<&str> = check.command.split_whitespace().collect();
        let after = |flag: &str| -> Result<String> {
            let at = words
                .iter()
                .position(|w| *w == flag)
                .with_context(|| format!("{service}: no {flag} in {:?}", check.command))?;
            let word = words.get(at + 1).context("flag value")?;
            // The container's shell expands the service's own variables.
            interpolate(word.trim_matches('"'), &spec.environment)
        };
        if check.command.contains("kafka-broker-api-versions") {
            let ep = local(&after("--bootstrap-server")?)?;
            let client: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", ep.addr())
                .create()?;
            Ok(client
                .fetch_metadata(None, Duration::from_secs(5))
                .is_ok_and(|m| !m.brokers().is_empty()))
        } else if check.command.contains("pg_isready") {
            let (user, db) = (after("-U")?, after("-d")?);
            let url = format!(
                "postgres://{user}@{}/{db}?connect_timeout=5",
                self.pg_server.addr()
            );
            Ok(postgres::Client::connect(&url, postgres::NoTls)
                .and_then(|mut c| c.simple_query("SELECT 1"))
                .is_ok())
        } else if let Some(at) = check.command.find("/dev/tcp/") {
            let target: String = check.command[at + "/dev/tcp/".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '/')
                .collect();
            let ep = local(&target)?;
            let addr = std::net::ToSocketAddrs::to_socket_addrs(&ep.addr())?
                .next()
                .context("address")?;
            Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
        } else if words.first() == Some(&"curl") || check.command.contains("curl ") {
            let url = words
                .iter()
                .find(|w| w.starts_with("http://"))
                .with_context(|| format!("{service}: no URL in {:?}", check.command))?;
            let rest = &url["http://".len()..];
            let (host_port, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let ep = local(host_port)?;
            let url = format!("{}{path}", ep.url());
            // curl -f: a status of 400 or more fails.
            Ok(self
                .http
                .get(&url)
                .send()
                .is_ok_and(|r| r.status().is_success()))
        } else {
            bail!(
                "{service}: no local equivalent of the healthcheck {:?}",
                check.command
            )
        }
    }

    fn replica_count(&self, service: &str) -> usize {
        self.replicas.get(service).map_or(1, Vec::len)
    }

    /// Waits until every replica of `service` passes its healthcheck.
    fn wait_healthy(&self, service: &str) -> Result<()> {
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
    fn wait_dependencies(&self, service: &str) -> Result<()> {
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
    fn up(&mut self, targets: &[&str], scale: &[(&str, usize)]) -> Result<()> {
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
    fn stop(&mut self, service: &str) -> Result<Vec<(ExitStatus, Duration)>> {
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

    /// The last lines of every log, for a failure message.
    fn logs(&self) -> String {
        let mut text = String::new();
        let mut paths: Vec<PathBuf> = self
            .replicas
            .values()
            .flatten()
            .map(|r| r.log.clone())
            .collect();
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
    fn endpoint(&self, service: &str) -> Result<&Endpoint> {
        let mut found = self.endpoints.iter().filter(|((s, _), _)| s == service);
        let (_, ep) = found
            .next()
            .with_context(|| format!("{service} is not running"))?;
        ensure!(found.next().is_none(), "{service} has several addresses");
        Ok(ep)
    }

    fn get(&self, url: &str) -> Result<reqwest::blocking::Response> {
        Ok(self.http.get(url).send()?.error_for_status()?)
    }

    /// The text `/metrics` serves on replica `i` of `service` (its `--metrics-addr`).
    fn metrics(&self, service: &str, i: usize, port: u16) -> Result<String> {
        let ep = self
            .replicas
            .get(service)
            .and_then(|r| r.get(i))
            .and_then(|r| r.own.get(&port))
            .with_context(|| format!("{service} #{i} listens on no {port}"))?;
        Ok(self.get(&format!("{}/metrics", ep.url()))?.text()?)
    }
}

/// The port after `--metrics-addr HOST:` in a command.
fn metrics_port(command: &[String]) -> Result<u16> {
    let at = command
        .iter()
        .position(|a| a == "--metrics-addr")
        .context("--metrics-addr")?;
    Ok(command
        .get(at + 1)
        .and_then(|a| a.rsplit(':').next())
        .context("--metrics-addr HOST:PORT")?
        .parse()?)
}

/// The value of the sample `name_and_labels` in Prometheus text.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The partitions of `topic` whose lag a loader reports (its assignment).
fn assigned(metrics: &str, topic: &str) -> BTreeSet<i32> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("loader_consumer_lag{") && l.contains(&format!("topic=\"{topic}\""))
        })
        .filter_map(|l| {
            let rest = &l[l.find("partition=\"")? + "partition=\"".len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

/// `2026-01-01T00:07:00Z` as the query below prints a `TIMESTAMPTZ`.
fn stored_timestamp(api: &Json) -> Result<Json> {
    let t = api.as_str().context("timestamp")?;
    Ok(json!(format!(
        "{}.000000Z",
        t.strip_suffix('Z').unwrap_or(t)
    )))
}

/// Compares every API record with its row, field by field with the column types, and its
/// tags with the child table; nothing else may be there.
fn assert_destination_equals(db: &mut postgres::Client, records: &[Json]) -> Result<()> {
    let ts =
        |c: &str| format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    let rows = db.query(
        &format!(
            "SELECT id, customer_id, channel, direction, status, body, {}, {}, sender__name, \
             sender__address__country, sender__address__city, cost, duration_seconds, sentiment, \
             is_read, external_ref, campaign_id FROM communications_data",
            ts("created_at"),
            ts("updated_at")
        ),
        &[],
    )?;
    let mut by_id = BTreeMap::new();
    for r in &rows {
        let row = json!({
            "id": r.try_get::<_, i64>(0)?,
            "customer_id": r.try_get::<_, i64>(1)?,
            "channel": r.try_get::<_, String>(2)?,
            "direction": r.try_get::<_, String>(3)?,
            "status": r.try_get::<_, String>(4)?,
            "body": r.try_get::<_, String>(5)?,
            "created_at": r.try_get::<_, String>(6)?,
            "updated_at": r.try_get::<_, String>(7)?,
            "sender__name": r.try_get::<_, String>(8)?,
            "sender__address__country": r.try_get::<_, String>(9)?,
            "sender__address__city": r.try_get::<_, String>(10)?,
            "cost": r.try_get::<_, f64>(11)?,
            "duration_seconds": r.try_get::<_, Option<i64>>(12)?,
            "sentiment": r.try_get::<_, f64>(13)?,
            "is_read": r.try_get::<_, bool>(14)?,
            "external_ref": r.try_get::<_, i64>(15)?,
            "campaign_id": r.try_get::<_, Option<String>>(16)?,
        });
        let id = r.try_get::<_, i64>(0)?;
        ensure!(by_id.insert(id, row).is_none(), "id {id} twice");
    }
    ensure!(
        by_id.len() == records.len(),
        "{} rows, {} records in the API",
        by_id.len(),
        records.len()
    );
    let mut tags = BTreeMap::<(String, i64), String>::new();
    for r in db.query(
        "SELECT _dlt_parent_id, _dlt_list_idx, value FROM communications_data__tags",
        &[],
    )? {
        let key = (r.try_get(0)?, r.try_get(1)?);
        ensure!(
            tags.insert(key.clone(), r.try_get(2)?).is_none(),
            "tag {key:?} twice"
        );
    }
    let mut expected_tags = BTreeMap::new();
    for rec in records {
        let id = rec["id"].as_i64().context("id")?;
        let want = json!({
            "id": rec["id"],
            "customer_id": rec["customer_id"],
            "channel": rec["channel"],
            "direction": rec["direction"],
            "status": rec["status"],
            "body": rec["body"],
            "created_at": stored_timestamp(&rec["created_at"])?,
            "updated_at": stored_timestamp(&rec["updated_at"])?,
            "sender__name": rec["sender"]["name"],
            "sender__address__country": rec["sender"]["address"]["country"],
            "sender__address__city": rec["sender"]["address"]["city"],
            "cost": rec["cost"].as_f64().context("cost")?,
            "duration_seconds": rec["duration_seconds"],
            "sentiment": rec["sentiment"].as_f64().context("sentiment")?,
            "is_read": rec["is_read"],
            "external_ref": rec["external_ref"],
            "campaign_id": rec["campaign_id"],
        });
        let have = by_id.get(&id).with_context(|| format!("id {id} missing"))?;
        ensure!(*have == want, "id {id}: destination {have}\n  API {want}");
        for (i, tag) in rec["tags"].as_array().context("tags")?.iter().enumerate() {
            let _ = expected_tags.insert(
                (id.to_string(), i as i64),
                tag.as_str().context("tag")?.to_owned(),
            );
        }
    }
    ensure!(
        tags == expected_tags,
        "communications_data__tags: {} rows, the API has {} tags (or they differ)",
        tags.len(),
        expected_tags.len()
    );
    Ok(())
}

/// `(rows, sum of the stored next offsets)` in the destination, once its tables exist.
fn loaded(db: &mut postgres::Client) -> Option<(i64, i64)> {
    let rows = db
        .query_one("SELECT count(*) FROM communications_data", &[])
        .ok()?;
    let offsets = db
        .query_one(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM _pipeline_offsets",
            &[],
        )
        .ok()?;
    Some((rows.get(0), offsets.get(0)))
}

#[test]
fn the_compose_stack_runs_as_local_processes() -> Result<()> {
    let t0 = Instant::now();
    let admin_url =
        std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| e2e::DEFAULT_POSTGRES_URL.into());
    let admin = match postgres::Client::connect(&admin_url, postgres::NoTls) {
        Ok(client) => client,
        Err(e) if !e2e::postgres_required() => {
            eprintln!("skipped: no PostgreSQL at TEST_POSTGRES_URL: {e}");
            return Ok(());
        }
        Err(e) => bail!("TEST_POSTGRES_REQUIRED or CI is set and PostgreSQL is unreachable: {e}"),
    };
    let server: postgres::Config = admin_url.parse()?;
    let pg_host = match server.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let pg_port = server.get_ports().first().copied().unwrap_or(POSTGRES_PORT);

    // `.env`: .env.example with test values for the secrets and a role and database of this
    // run's own for the PostgreSQL settings.
    let mut env = dotenv(&std::fs::read_to_string(repo_root().join(".env.example"))?);
    let unique = format!("compose_{}", std::process::id());
    let password = format!("pw-{}-9c1e", std::process::id());
    for (key, value) in [
        ("API_KEY", e2e::API_KEY),
        ("POSTGRES_PASSWORD", password.as_str()),
        ("POSTGRES_USER", unique.as_str()),
        ("POSTGRES_DB", unique.as_str()),
    ] {
        ensure!(env.contains_key(key), ".env.example has no {key}");
        let _ = env.insert(key.into(), value.into());
    }
    let mut doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(
        repo_root().join("docker-compose.yml"),
    )?)?;
    interpolate_doc(&mut doc, &env)?;
    let specs = parse_services(&doc)?;

    let tmp = tempfile::tempdir()?;
    let mut stack = Stack {
        replicas: BTreeMap::new(),
        broker: None,
        registry: None,
        pg: None,
        pg_admin: Some(admin),
        pg_server: Endpoint {
            host: pg_host,
            port: pg_port,
            path: String::new(),
        },
        specs,
        endpoints: BTreeMap::new(),
        dir: tmp.path().to_path_buf(),
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?,
        secrets: vec![
            ("API key", e2e::API_KEY.to_owned()),
            ("PostgreSQL password", password.clone()),
        ],
    };

    // docker compose up -d --scale loader=3 kafka schema-registry postgres demo-api loader
    stack.up(
        &["kafka", "schema-registry", "postgres", "demo-api", "loader"],
        &[("loader", LOADERS)],
    )?;
    ensure!(stack.replicas["loader"].len() == LOADERS);
    eprintln!("up after {:?}", t0.elapsed());

    // docker compose run --rm extractor
    stack.wait_dependencies("extractor")?;
    let (cmd, _, log) = stack.command("extractor", 0, true)?;
    let ran = Instant::now();
    let out = e2e::run(cmd, RUN)?;
    std::fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat())?;
    ensure!(
        out.status.success(),
        "the one-shot extractor exited {:?}:\n{}",
        out.status.code(),
        tail(&String::from_utf8_lossy(&out.stderr), 30)
    );
    eprintln!("extractor run: {:?}", ran.elapsed());

    // The API's records, as many as the service's --records asks.
    let api = stack.endpoint("demo-api")?.url();
    let records: Vec<Json> = stack.get(&format!("{api}/admin/records"))?.json()?;
    let api_command = &stack.spec("demo-api")?.command;
    let asked: usize = api_command
        .iter()
        .position(|a| a == "--records")
        .and_then(|at| api_command.get(at + 1))
        .context("--records")?
        .parse()?;
    ensure!(
        records.len() == asked && asked > 0,
        "{} records",
        records.len()
    );
    let n = records.len() as i64;
    let summary = String::from_utf8_lossy(&out.stdout);
    ensure!(
        e2e::figure(&summary, "total", "records") == Some(n as f64),
        "the extractor's summary: {summary}"
    );

    // The destination, as the loaders reach it: LOADER_DESTINATION, mapped.
    let destination = stack.map(
        stack
            .spec("loader")?
            .environment
            .get("LOADER_DESTINATION")
            .context("LOADER_DESTINATION")?,
    );
    ensure!(
        destination.contains(&format!("/{unique}")) && destination.contains(&password),
        "the destination is this run's database"
    );
    let mut db = postgres::Client::connect(&destination, postgres::NoTls)?;
    let waited = Instant::now();
    let _ = wait_for("every record in PostgreSQL", RUN, || {
        loaded(&mut db).filter(|(rows, offsets)| *rows == n && *offsets == n)
    })
    .with_context(|| stack.logs())?;
    eprintln!("loaded {n} rows {:?} after the extractor", waited.elapsed());
    assert_destination_equals(&mut db, &records)?;

    // Every loader passes its healthcheck, and the three share the partitions.
    stack.wait_healthy("loader")?;
    let port = metrics_port(&stack.spec("loader")?.command)?;
    let extractor_command = &stack.spec("extractor")?.command;
    let partitions: i32 = extractor_command
        .iter()
        .position(|a| a == "--partitions")
        .and_then(|at| extractor_command.get(at + 1))
        .context("--partitions")?
        .parse()?;
    let subjects: Vec<String> = stack
        .get(&format!(
            "{}/subjects",
            stack.endpoint("schema-registry")?.url()
        ))?
        .json()?;
    let subject = subjects
        .iter()
        .find(|s| s.ends_with("communications_data-value"))
        .with_context(|| format!("no subject for the topic in the registry: {subjects:?}"))?;
    let topic = subject.trim_end_matches("-value").to_owned();
    let shares = wait_for("the loaders to share the partitions", RUN, || {
        let shares: Vec<BTreeSet<i32>> = (0..LOADERS)
            .map(|i| {
                stack
                    .metrics("loader", i, port)
                    .ok()
                    .map(|m| assigned(&m, &topic))
            })
            .collect::<Option<_>>()?;
        let all: BTreeSet<i32> = shares.iter().flatten().copied().collect();
        let total: usize = shares.iter().map(BTreeSet::len).sum();
        (shares.iter().all(|s| !s.is_empty())
            && total == partitions as usize
            && all == (0..partitions).collect())
        .then_some(shares)
    })
    .with_context(|| stack.logs())?;
    eprintln!("partitions per loader: {shares:?}");

    // The Confluent wire format: magic byte 0, then the id of a schema the registry holds.
    let bootstrap = stack.endpoint("kafka")?.addr();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "compose-stack-check")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let payload = wait_for("a record on the topic", RUN, || {
        consumer
            .poll(Duration::from_millis(200))
            .and_then(Result::ok)
            .and_then(|m| m.payload().map(<[u8]>::to_vec))
    })?;
    ensure!(
        payload.len() > 5 && payload[0] == 0,
        "not the Confluent wire format: {:?}",
        &payload[..payload.len().min(8)]
    );
    let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    let schema: Json = stack
        .get(&format!(
            "{}/schemas/ids/{id}",
            stack.endpoint("schema-registry")?.url()
        ))?
        .json()?;
    ensure!(
        schema["schema"]
            .as_str()
            .is_some_and(|s| s.contains("communications_data")),
        "schema {id}: {schema}"
    );

    // docker compose --profile scheduled up -d
    let scheduled: Vec<String> = stack
        .specs
        .iter()
        .filter(|(_, s)| s.profiles.iter().any(|p| p == "scheduled"))
        .map(|(name, _)| name.clone())
        .collect();
    ensure!(scheduled == ["extractor-scheduled"], "{scheduled:?}");
    let scheduled_at = Instant::now();
    stack.up(&["extractor-scheduled"], &[])?;
    stack.wait_healthy("extractor-scheduled")?;
    let port = metrics_port(&stack.spec("extractor-scheduled")?.command)?;
    let _ = wait_for("a scheduled run to succeed", RUN, || {
        let m = stack.metrics("extractor-scheduled", 0, port).ok()?;
        sample(&m, "extractor_runs_total{outcome=\"success\"}").filter(|v| *v >= 1.0)
    })
    .with_context(|| stack.logs())?;
    eprintln!(
        "scheduled run succeeded {:?} after its start",
        scheduled_at.elapsed()
    );
    for (status, took) in stack.stop("extractor-scheduled")? {
        ensure!(status.success(), "extractor-scheduled on SIGTERM: {status}");
        eprintln!("extractor-scheduled stopped in {took:?}");
    }
    // Its run published every record again: merged, not added.
    let _ = wait_for("the scheduled run's records in PostgreSQL", RUN, || {
        loaded(&mut db).filter(|(_, offsets)| *offsets == 2 * n)
    })
    .with_context(|| stack.logs())?;
    ensure!(loaded(&mut db).map(|(rows, _)| rows) == Some(n));

    // docker compose down: SIGTERM, then each has its stop_grace_period.
    for service in ["loader", "demo-api"] {
        for (status, took) in stack.stop(service)? {
            ensure!(status.success(), "{service} on SIGTERM: {status}");
            eprintln!("{service} stopped in {took:?}");
        }
    }
    drop(db);

    // No secret in any log (the loader prints its destination with the password masked).
    let mut logs: Vec<PathBuf> = stack
        .replicas
        .values()
        .flatten()
        .map(|r| r.log.clone())
        .collect();
    logs.push(tmp.path().join("extractor-0.log"));
    for path in &logs {
        let log = std::fs::read_to_string(path)?;
        for (name, secret) in &stack.secrets {
            if let Some(line) = log.lines().find(|l| l.contains(secret.as_str())) {
                bail!(
                    "the {name} is in {}: {}",
                    path.display(),
                    line.replace(secret.as_str(), "<the secret>")
                );
            }
        }
    }
    eprintln!("the stack test took {:?}", t0.elapsed());
    Ok(())
}

#[test]
fn interpolation_follows_compose() -> Result<()> {
    let env: BTreeMap<String, String> = [("SET", "v"), ("EMPTY", "")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (text, want) in [
        ("${SET:-d}", "v"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("a$${SET}b", "a${SET}b"),
        ("$SET/${SET}", "v/v"),
        ("${SET:+x}${EMPTY:+y}", "x"),
        (
            "postgres://${UNSET:-u}:${SET:?no}@postgres:5432/",
            "postgres://u:v@postgres:5432/",
        ),
    ] {
        assert_eq!(interpolate(text, &env)?, want, "{text}");
    }
    let err = interpolate("${EMPTY:?set EMPTY in .env}", &env)
        .err()
        .context("an empty required variable is an error")?;
    assert!(err.to_string().contains("set EMPTY in .env"), "{err}");
    assert!(interpolate("${UNSET?x}", &env).is_err());
    assert!(interpolate("${EMPTY?x}", &env).is_ok());
    Ok(())
}

#[test]
fn kafka_variables_map_like_the_image() {
    for (var, property) in [
        ("KAFKA_NODE_ID", Some("node.id")),
        (
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
            Some("transaction.state.log.min.isr"),
        ),
        ("KAFKA_LISTENER_NAME_X__Y", Some("listener.name.x_y")),
        ("KAFKA_A___B_C", Some("a-b.c")),
        ("KAFKA_HEAP_OPT", None),
        ("OTHER_NODE_ID", None),
    ] {
        assert_eq!(image_property(var).as_deref(), property, "{var}");
    }
}

#[test]
fn durations_and_start_order_follow_compose() -> Result<()> {
    assert_eq!(compose_duration("60s")?, Duration::from_secs(60));
    assert_eq!(compose_duration("1m30s")?, Duration::from_secs(90));
    assert_eq!(compose_duration("500ms")?, Duration::from_millis(500));
    assert!(compose_duration("5").is_err());
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml"))?;
    let mut doc: Value = serde_yaml_ng::from_str(&text)?;
    let env = dotenv(&std::fs::read_to_string(repo_root().join(".env.example"))?);
    interpolate_doc(&mut doc, &env)?;
    let specs = parse_services(&doc)?;
    let order = start_order(&specs, &["extractor"])?;
    let at = |s: &str| order.iter().position(|o| o == s);
    assert!(at("kafka") < at("schema-registry") && at("schema-registry") < at("extractor"));
    assert!(
        at("demo-api") < at("extractor") && at("postgres").is_none(),
        "{order:?}"
    );
    Ok(())
}
