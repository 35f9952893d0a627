//! Harness for the end-to-end tests: a real broker (Apache Kafka in KRaft mode, or Tansu on
//! SQLite storage: `TEST_BROKER`), the demo API, and the extractor and loader binaries, each
//! on a free port in a temp dir, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub mod compose;
pub mod late_broker;
pub mod registry;
pub mod tools;
pub mod topics;

/// The API key the demo API accepts in tests.
pub const API_KEY: &str = "demo-key-3f9a7c21d8e4";

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Two different free ports (a broker's and its controller's): both are held open while
/// the second is chosen, so the system cannot hand out the first one again.
pub fn two_free_ports() -> Result<(u16, u16)> {
    let first = TcpListener::bind("127.0.0.1:0")?;
    let second = TcpListener::bind("127.0.0.1:0")?;
    Ok((first.local_addr()?.port(), second.local_addr()?.port()))
}

/// The workspace's target directory holding the binaries (built by the test script).
pub fn bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-binary>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run `scripts/test.sh` (or `cargo build --workspace --bins`) first",
            path.display()
        );
    }
    Ok(path)
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which broker the end-to-end tests run on: `TEST_BROKER=kafka` (the default: Apache
/// Kafka, what users run) or `TEST_BROKER=tansu` (the demo's embedded broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Kafka,
    Tansu,
}

impl BrokerKind {
    pub fn from_env() -> Result<Self> {
        match std::env::var("TEST_BROKER").as_deref() {
            Err(_) | Ok("") | Ok("kafka") => Ok(Self::Kafka),
            Ok("tansu") => Ok(Self::Tansu),
            Ok(other) => bail!("TEST_BROKER={other}: expected `kafka` or `tansu`"),
        }
    }
}

/// The repository's root (scripts, docs, the compose file).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
        .to_path_buf()
}

/// A one-node broker in its own directory, on free ports, killed when dropped: Apache Kafka
/// in KRaft mode (`scripts/kafka-broker.sh`) or Tansu with SQLite storage, as
/// [`BrokerKind::from_env`] says.
pub struct Broker {
    pub port: u16,
    pub kind: BrokerKind,
    dir: PathBuf,
    controller_port: u16,
    extra: Vec<String>,
    proc: Option<Proc>,
    /// How long the last start took until the broker accepted connections.
    pub started_in: Duration,
}

impl Broker {
    /// The broker `TEST_BROKER` names.
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_kind(dir, BrokerKind::from_env()?, &[])
    }

    /// The broker `TEST_BROKER` names, with `extra` Kafka broker settings.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_kind(dir, BrokerKind::from_env()?, extra)
    }

    /// A broker of `kind`; for Kafka, `extra` `key=value` lines are added to its
    /// `server.properties` (ignored by Tansu, which has no such settings).
    pub fn start_kind(dir: &Path, kind: BrokerKind, extra: &[&str]) -> Result<Self> {
        let (port, controller_port) = two_free_ports()?;
        let mut broker = Self {
            port,
            kind,
            dir: dir.to_path_buf(),
            controller_port,
            // Tests that kill loaders shorten `session.timeout.ms` to 1.5 s so the group
            // drops them quickly; Kafka refuses sessions below 6 s unless told otherwise.
            extra: std::iter::once("group.min.session.timeout.ms=1000")
                .chain(extra.iter().copied())
                .map(str::to_owned)
                .collect(),
            proc: None,
            started_in: Duration::ZERO,
        };
        // Ports are chosen free, then bound by the broker a moment later: should another
        // process take one in between, the broker exits and gets fresh ones.
        for attempt in 1.. {
            match broker.launch() {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    eprintln!("broker start {attempt} failed, trying other ports: {e:#}");
                    (broker.port, broker.controller_port) = two_free_ports()?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(broker)
    }

    fn launch(&mut self) -> Result<()> {
        let started = Instant::now();
        let log_start = std::fs::metadata(self.dir.join("broker.log")).map_or(0, |m| m.len());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))?;
        let child = match self.kind {
            BrokerKind::Kafka => {
                let script = repo_root().join("scripts/kafka-broker.sh");
                Command::new(&script)
                    .arg(self.dir.join("kafka"))
                    .arg(self.port.to_string())
                    .arg(self.controller_port.to_string())
                    .args(&self.extra)
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
                    .with_context(|| format!("starting {}", script.display()))?
            }
            BrokerKind::Tansu => {
                let tansu = std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".into());
                let url = format!("tcp://127.0.0.1:{}", self.port);
                Command::new(&tansu)
                    // Tansu takes the SQLite path relative to its working directory.
                    .args(["broker", "--storage-engine", "sqlite://tansu.db"])
                    .current_dir(&self.dir)
                    .args(["--listener-url", &url, "--advertised-listener-url", &url])
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .with_context(|| {
                        format!("starting `{tansu}` (install it with scripts/ensure-tansu.sh)")
                    })?
            }
        };
        let mut proc = Proc {
            child,
            name: format!("{:?}", self.kind),
        };
        let port = self.port;
        let log_path = self.dir.join("broker.log");
        let kafka = matches!(self.kind, BrokerKind::Kafka);
        let up = wait_for("the broker's port", Duration::from_secs(120), || {
            if let Ok(Some(status)) = proc.child.try_wait() {
                return Some(Err(status));
            }
            let _ = TcpStream::connect(("127.0.0.1", port)).ok()?;
            // The port may answer for another process that took it between its choice and
            // the broker's bind (seen once: a demo API of a test running beside): Kafka
            // says in its log when it has started.
            if kafka && !read_from(&log_path, log_start).contains("Kafka Server started") {
                return None;
            }
            Some(Ok(()))
        })?;
        if let Err(status) = up {
            bail!(
                "the {:?} broker exited ({status}) before it listened; its log:\n{}",
                self.kind,
                tail(
                    &std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default(),
                    30
                )
            );
        }
        self.started_in = started.elapsed();
        self.proc = Some(proc);
        Ok(())
    }

    /// Kills the broker (SIGKILL) and starts it again on the same ports and data: for
    /// clients that must ride out a broker restart.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }

    /// Kills the broker (SIGKILL); its data stays for [`Broker::restart`].
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The bundled demo API.
pub struct DemoApi {
    pub url: String,
    proc: Proc,
    http: reqwest::blocking::Client,
}

impl DemoApi {
    pub fn start(records: u64, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(bin("demo-api")?)
            .args(["--listen", "127.0.0.1:0", "--records", &records.to_string()])
            .args(extra)
            .env("DEMO_API_KEY", API_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("demo-api stdout")?;
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("demo-api printed {line:?}"))?
            .to_owned();
        Ok(Self {
            url,
            proc: Proc {
                child,
                name: "demo-api".into(),
            },
            http: reqwest::blocking::Client::new(),
        })
    }

    /// The `[client]` table for this API (the seed's query-string API key, `extra_client`
    /// lines added) and `[resource_defaults]` merging by `id`: what most test configs start
    /// with, before their `[[resources]]`.
    pub fn client_toml(&self, extra_client: &str) -> String {
        format!(
            r#"[client]
base_url = "{base}"
auth = {{ type = "api_key", name = "api_key", api_key = {{ secret = "api_key" }}, location = "query" }}
{extra_client}

[resource_defaults]
primary_key = "id"
write_disposition = "merge"
"#,
            base = self.url,
        )
    }

    /// `[client]` and `[resource_defaults]` ([`DemoApi::client_toml`]) and one resource,
    /// `events` (topic `<name>.events`): the API's `/v1/incremental` set paged by `limit`,
    /// its `updated_since` param incremental on `updated_at` from `initial`.
    pub fn incremental_toml(&self, name: &str, limit: u64, initial: &str) -> String {
        format!(
            r#"{client}
[[resources]]
name = "events"
topic = "{name}.events"

[resources.endpoint]
path = "/v1/incremental"
data_selector = "data"
paginator = {{ type = "offset", limit = {limit} }}
params = {{ updated_since = {{ type = "incremental", cursor_path = "updated_at", initial_value = "{initial}" }} }}
"#,
            client = self.client_toml(""),
        )
    }

    pub fn post(&self, path: &str, body: Value) -> Result<Value> {
        Ok(self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()?
            .error_for_status()?
            .json()?)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.url))
            .send()?
            .error_for_status()?
            .json()?)
    }

    /// The API's current records, the truth the destination is compared with.
    pub fn records(&self) -> Result<Vec<Value>> {
        match self.get("/admin/records")? {
            Value::Array(items) => Ok(items),
            other => bail!("/admin/records returned {other}"),
        }
    }

    pub fn stop(&mut self) {
        self.proc.kill();
    }
}

/// A temp dir with a pipeline config pointing at a broker and a demo API.
pub struct Pipeline {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
    pub group: String,
}

impl Pipeline {
    /// Writes the seed config (TOML) with `extra_client` lines added to `[client]`.
    pub fn new(broker: &Broker, api: &DemoApi, name: &str, extra_client: &str) -> Result<Self> {
        let rest = format!(
            r#"{client}
[[resources]]
name = "communications_data"
topic = "{name}.communications_data"
endpoint = {{ path = "/v1/resource", data_selector = "data", paginator = {{ type = "offset", limit = 100 }} }}
"#,
            client = api.client_toml(extra_client),
        );
        Self::with_config(broker, name, &rest)
    }

    /// Writes a config of `[pipeline] name = <name>`, `[kafka]` pointing at `broker`, and
    /// `rest` (the `[client]`, `[resource_defaults]` and `[[resources]]` tables, as TOML).
    pub fn with_config(broker: &Broker, name: &str, rest: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("pipeline.toml");
        let text = format!(
            "[pipeline]\nname = \"{name}\"\n\n[kafka]\n\"bootstrap.servers\" = \"{bootstrap}\"\n\n{rest}",
            bootstrap = broker.bootstrap(),
        );
        std::fs::write(&config, text)?;
        Ok(Self {
            db: dir.path().join("dest.db"),
            config,
            group: format!("{name}-loader"),
            dir,
        })
    }

    pub fn extractor(&self) -> Result<Command> {
        let mut cmd = Command::new(bin("extractor")?);
        let _ = cmd
            .arg("--config")
            .arg(&self.config)
            .env("API_KEY", API_KEY)
            .env("RUST_LOG", "info");
        Ok(cmd)
    }

    /// The loader into this pipeline's SQLite file.
    pub fn loader(&self) -> Result<Command> {
        self.loader_to(&format!("sqlite://{}", self.db.display()))
    }

    /// The loader into the destination `url`.
    pub fn loader_to(&self, url: &str) -> Result<Command> {
        let mut cmd = Command::new(bin("loader")?);
        let _ = cmd
            .arg("--config")
            .arg(&self.config)
            .arg("--destination")
            .arg(url)
            .args(["--group-id", &self.group])
            .env("RUST_LOG", "info");
        Ok(cmd)
    }

    /// Adds librdkafka settings to the config's `[kafka]` table.
    pub fn kafka_settings(&self, settings: &[(&str, &str)]) -> Result<()> {
        let text = std::fs::read_to_string(&self.config)?;
        let lines: String = settings
            .iter()
            .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
            .collect();
        let text = text.replacen("[kafka]\n", &format!("[kafka]\n{lines}"), 1);
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    /// Sets `resource_defaults.write_disposition` (`merge` in [`Pipeline::new`]'s config).
    pub fn write_disposition(&self, disposition: &str) -> Result<()> {
        let text = std::fs::read_to_string(&self.config)?;
        let text = text.replacen(
            "write_disposition = \"merge\"",
            &format!("write_disposition = \"{disposition}\""),
            1,
        );
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    pub fn sqlite(&self) -> Result<rusqlite::Connection> {
        Ok(rusqlite::Connection::open(&self.db)?)
    }
}

/// The text of `path` from byte `start` on (empty if it cannot be read).
fn read_from(path: &Path, start: u64) -> String {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| bytes.get(start as usize..).map(<[u8]>::to_vec))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Runs `cmd` to completion (killed after `timeout`) and returns its output. Both pipes
/// are drained while it runs, so a chatty process never blocks on a full pipe.
pub fn run(mut cmd: Command, timeout: Duration) -> Result<Output> {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout).is_err() {
            // Still running at the deadline.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            return true;
        }
        false
    });
    let out = child.wait_with_output()?;
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    if timed_out {
        bail!(
            "{cmd:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            tail(&String::from_utf8_lossy(&out.stderr), 50)
        );
    }
    Ok(out)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` and fails with its output unless it exits 0.
pub fn run_ok(cmd: Command, timeout: Duration) -> Result<Output> {
    let out = run(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            tail(&String::from_utf8_lossy(&out.stderr), 50)
        );
    }
    Ok(out)
}

/// The `name=value` figure from a summary line such as `records=2500`.
pub fn figure(text: &str, line_prefix: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(line_prefix))
        .flat_map(str::split_whitespace)
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// The server the PostgreSQL tests use unless `TEST_POSTGRES_URL` names another.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of its own on the test PostgreSQL server, dropped when this is dropped.
pub struct PgSchema {
    /// The destination URL for the loader: the server's URL with `schema=<name>`.
    pub url: String,
    pub schema: String,
    client: postgres::Client,
}

impl PgSchema {
    /// A fresh schema `name`, or `None` (after saying why on stderr) when no server answers
    /// at `TEST_POSTGRES_URL` and neither `CI` nor `TEST_POSTGRES_REQUIRED` is set (the test
    /// script sets the latter once it has started a server). With either set, an
    /// unreachable server is an error: the suite must not pass by skipping.
    pub fn create(name: &str) -> Result<Option<Self>> {
        let base =
            std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
        let mut client = match postgres::Client::connect(&base, postgres::NoTls) {
            Ok(client) => client,
            Err(e) if !postgres_required() => {
                eprintln!("skipped: no PostgreSQL at TEST_POSTGRES_URL: {e}");
                return Ok(None);
            }
            Err(e) => bail!(
                "CI or TEST_POSTGRES_REQUIRED is set and PostgreSQL (TEST_POSTGRES_URL) is unreachable: {e}"
            ),
        };
        let schema = format!("{name}_{}", std::process::id());
        client.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
        ))?;
        let separator = if base.contains('?') { '&' } else { '?' };
        Ok(Some(Self {
            url: format!("{base}{separator}schema={schema}"),
            schema,
            client,
        }))
    }

    /// Runs `sql` with `{schema}` replaced by the quoted schema name.
    pub fn query(&mut self, sql: &str) -> Result<Vec<postgres::Row>> {
        let sql = sql.replace("{schema}", &format!("\"{}\"", self.schema));
        Ok(self.client.query(&sql, &[])?)
    }
}

/// True when a PostgreSQL test must fail rather than skip without a server.
pub fn postgres_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("TEST_POSTGRES_REQUIRED").is_some()
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = self.client.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ));
    }
}
