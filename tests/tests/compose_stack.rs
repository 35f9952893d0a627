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
//! follows. The test fails if a service hostname is left anywhere. Reading the file and
//! running the stack are the harness' `e2e::compose` (`tests/src/compose/`); this file is the
//! scenario and its checks.
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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::compose::{Endpoint, POSTGRES_PORT, Stack, dotenv, interpolate_doc, parse_services};
use e2e::{repo_root, tail, wait_for};
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

/// The sum of the high watermarks of `topic`'s partitions: its records, and the commit
/// markers of the extractor's transactions.
fn topic_end(stack: &Stack, topic: &str, partitions: i32) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack.endpoint("kafka")?.addr())
        .set("group.id", "compose-stack-check")
        .create()?;
    (0..partitions)
        .map(|p| {
            Ok(consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))?
                .1)
        })
        .sum()
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

/// A superuser's connection to the PostgreSQL server at `TEST_POSTGRES_URL` and where it
/// listens, or `None` (the test is skipped) when none answers and none is required.
fn pg_admin() -> Result<Option<(postgres::Client, Endpoint)>> {
    let admin_url =
        std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| e2e::DEFAULT_POSTGRES_URL.into());
    let admin = match postgres::Client::connect(&admin_url, postgres::NoTls) {
        Ok(client) => client,
        Err(e) if !e2e::postgres_required() => {
            eprintln!("skipped: no PostgreSQL at TEST_POSTGRES_URL: {e}");
            return Ok(None);
        }
        Err(e) => bail!("TEST_POSTGRES_REQUIRED or CI is set and PostgreSQL is unreachable: {e}"),
    };
    let server: postgres::Config = admin_url.parse()?;
    let pg_host = match server.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let pg_port = server.get_ports().first().copied().unwrap_or(POSTGRES_PORT);
    Ok(Some((
        admin,
        Endpoint {
            host: pg_host,
            port: pg_port,
            path: String::new(),
        },
    )))
}

/// `docker compose run --rm extractor`: must exit 0. Returns its output.
fn run_extractor(stack: &mut Stack) -> Result<Output> {
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
    Ok(out)
}

/// Every loader passes its healthcheck, and the three share the partitions of the topic the
/// registry has a subject for. Returns the topic and its partition count.
fn loaders_share_the_partitions(stack: &Stack) -> Result<(String, i32)> {
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
        let shares: Vec<f64> = (0..LOADERS)
            .map(|i| {
                let metrics = stack.metrics("loader", i, port).ok()?;
                sample(&metrics, "loader_assigned_partitions")
            })
            .collect::<Option<_>>()?;
        (shares.iter().all(|n| *n >= 1.0) && shares.iter().sum::<f64>() == f64::from(partitions))
            .then_some(shares)
    })
    .with_context(|| stack.logs())?;
    eprintln!("partitions per loader: {shares:?}");
    Ok((topic, partitions))
}

/// The Confluent wire format: magic byte 0, then the id of a schema the registry holds.
fn wire_format(stack: &Stack, topic: &str, partitions: i32) -> Result<()> {
    let bootstrap = stack.endpoint("kafka")?.addr();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "compose-stack-check")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
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
    Ok(())
}

/// `docker compose --profile scheduled up -d`: `extractor-scheduled` passes its healthcheck,
/// completes a run (its records merged, not added: the destination still has `n` rows), and
/// stops on SIGTERM with exit 0.
fn scheduled_profile(
    stack: &mut Stack,
    db: &mut postgres::Client,
    n: i64,
    (topic, partitions): (&str, i32),
) -> Result<()> {
    let scheduled: Vec<String> = stack
        .specs()
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
    let end = topic_end(stack, topic, partitions)?;
    let _ = wait_for("the scheduled run's records in PostgreSQL", RUN, || {
        loaded(db).filter(|(_, offsets)| *offsets == end)
    })
    .with_context(|| stack.logs())?;
    ensure!(loaded(db).map(|(rows, _)| rows) == Some(n));
    Ok(())
}

#[test]
fn the_compose_stack_runs_as_local_processes() -> Result<()> {
    let t0 = Instant::now();
    let Some((admin, pg_server)) = pg_admin()? else {
        return Ok(());
    };

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
    let mut stack = Stack::new(specs, tmp.path(), admin, pg_server)?;
    // Secrets (name, value) that must appear in no log.
    let secrets = [
        ("API key", e2e::API_KEY.to_owned()),
        ("PostgreSQL password", password.clone()),
    ];

    // docker compose up -d --scale loader=3 kafka schema-registry postgres demo-api loader
    stack.up(
        &["kafka", "schema-registry", "postgres", "demo-api", "loader"],
        &[("loader", LOADERS)],
    )?;
    ensure!(stack.replicas("loader").len() == LOADERS);
    eprintln!("up after {:?}", t0.elapsed());

    let out = run_extractor(&mut stack)?;

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
        loaded(&mut db).filter(|(rows, _)| *rows == n)
    })
    .with_context(|| stack.logs())?;
    eprintln!("loaded {n} rows {:?} after the extractor", waited.elapsed());
    assert_destination_equals(&mut db, &records)?;

    let (topic, partitions) = loaders_share_the_partitions(&stack)?;
    // The stored offsets cover the topic once.
    let end = topic_end(&stack, &topic, partitions)?;
    let _ = wait_for("the stored offsets at the topic's end", RUN, || {
        loaded(&mut db).filter(|(_, offsets)| *offsets == end)
    })
    .with_context(|| stack.logs())?;
    wire_format(&stack, &topic, partitions)?;
    scheduled_profile(&mut stack, &mut db, n, (&topic, partitions))?;

    // docker compose down: SIGTERM, then each has its stop_grace_period.
    for service in ["loader", "demo-api"] {
        for (status, took) in stack.stop(service)? {
            ensure!(status.success(), "{service} on SIGTERM: {status}");
            eprintln!("{service} stopped in {took:?}");
        }
    }
    drop(db);

    // No secret in any log (the loader prints its destination with the password masked).
    let mut logs: Vec<PathBuf> = stack.replica_logs();
    logs.push(tmp.path().join("extractor-0.log"));
    for path in &logs {
        let log = std::fs::read_to_string(path)?;
        for (name, secret) in &secrets {
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
