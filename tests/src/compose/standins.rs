//! The stand-ins for the services that are images: `kafka` (Apache Kafka 4.4.0 in KRaft
//! mode configured from the service's `KAFKA_*` variables), `schema-registry` (Apicurio
//! Registry's Confluent-compatible API, so `http://schema-registry:8081` gains
//! `/apis/ccompat/v7`) and `postgres` (the local server, with the role and database the image
//! would create).

use std::fs::File;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::kafka;
use super::stack::{Endpoint, Stack};
use crate::{Broker, BrokerKind, Proc, free_port, repo_root};

/// The port the `postgres` image listens on (the file sets no other).
pub const POSTGRES_PORT: u16 = 5432;
/// The longest building the registry (`scripts/ensure-registry.sh`) may take.
const ENSURE_REGISTRY: Duration = Duration::from_secs(300);

/// The database and role the `postgres` image would create, dropped when this is dropped.
pub(super) struct PgDatabase {
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

impl Stack {
    /// Kafka with the file's settings, checked against what the broker runs.
    pub(super) fn start_kafka(&mut self) -> Result<()> {
        let compose = kafka::image_settings(&self.spec("kafka")?.environment);
        // Addresses and the data directory are the harness' (127.0.0.1, free ports, the
        // test directory); everything else is passed as the file has it.
        let extra = kafka::passed_settings(&compose);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let dir = self.dir.join("kafka");
        std::fs::create_dir_all(&dir)?;
        let broker = Broker::start_kind(&dir, BrokerKind::Kafka, &extra)?;
        let effective = kafka::properties(&std::fs::read_to_string(
            dir.join("kafka/server.properties"),
        )?);
        let ours = kafka::check_effective(&compose, &effective, &dir.join("kafka/data"))?;
        eprintln!(
            "kafka: {} settings from the file ({} passed as written, {:?} mapped)",
            compose.len(),
            compose.len() - kafka::REWRITTEN.len(),
            kafka::REWRITTEN
        );

        // Clients reach the advertised listener(s).
        let advertised = kafka::setting(&compose, "advertised.listeners")?;
        for (name, port) in kafka::listener_ports(&advertised)? {
            let _ = self
                .endpoints
                .insert(("kafka".into(), port), Endpoint::local(ours[&name]));
        }
        self.broker = Some(broker);
        Ok(())
    }

    pub(super) fn start_registry(&mut self) -> Result<()> {
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
        let _ = crate::run_ok(
            Command::new(repo_root().join("scripts/ensure-registry.sh")),
            ENSURE_REGISTRY,
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
    pub(super) fn start_postgres(&mut self) -> Result<()> {
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
}
