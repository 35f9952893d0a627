//! Healthchecks, run as the container would but from here: `curl` → an HTTP GET, `/dev/tcp`
//! → a TCP connect, `pg_isready` → a connection, `kafka-broker-api-versions.sh` → a metadata
//! request.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::interpolate;
use super::stack::{Endpoint, Stack};

impl Stack {
    /// Runs `service`'s healthcheck for replica `i`, as the container would: its own
    /// `localhost:PORT` is where it listens here.
    pub(super) fn probe(&self, service: &str, i: usize) -> Result<bool> {
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
}
