//! The wire formats and offsets checked by other people's code, on Apache Kafka:
//! - the Confluent wire format through a live schema registry (Apicurio, Confluent API),
//!   decoded by confluent-kafka's Python `AvroDeserializer` and loaded by the loader;
//! - Avro single-object encoding, decoded by Apache Avro's Java `BinaryMessageDecoder` with
//!   the schemas from the schema topic;
//! - the loader's offsets as Kafka's own consumer-groups tool and console consumer see them.
//!
//! Every record is compared field by field with the demo API's records. The tools are
//! installed on demand (`scripts/ensure-pytools.sh`, `ensure-avro.sh`, `ensure-kafka.sh`,
//! `ensure-registry.sh`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Utc};
use e2e::registry::Registry;
use e2e::tools::{classpath, ensure as ensure_tool};
use e2e::{Broker, BrokerKind, DemoApi, Pipeline, figure, repo_root, run_ok};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Map, Value, json};

const RUN: Duration = Duration::from_secs(180);
const RECORDS: u64 = 1000;
const FAST_RETRY: &str = "retry = { initial_delay = 0.05, max_delay = 1.0, retry_after_max = 2.0 }";

/// One message as it is on the topic.
struct Raw {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

fn consumer(bootstrap: &str) -> Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "interop-raw-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // A transactional partition ends with a commit marker, never delivered.
        .set("enable.partition.eof", "true")
        .create()?)
}

/// Each partition's high watermark (the next offset).
fn high_watermarks(bootstrap: &str, topic: &str) -> Result<BTreeMap<i32, i64>> {
    let consumer = consumer(bootstrap)?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .with_context(|| format!("no metadata for {topic}"))?
        .partitions();
    ensure!(!partitions.is_empty(), "{topic} has no partitions");
    partitions
        .iter()
        .map(|p| {
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            Ok((p.id(), high))
        })
        .collect()
}

/// Every message of `topic`, each partition read from its start to its high watermark.
fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<Raw>> {
    let ends = high_watermarks(bootstrap, topic)?;
    let consumer = consumer(bootstrap)?;
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Beginning);
    }
    consumer.assign(&tpl)?;
    let mut next: BTreeMap<i32, i64> = ends.keys().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while next.iter().any(|(p, n)| *n < ends[p]) {
        ensure!(
            std::time::Instant::now() < deadline,
            "reading {topic}: at {next:?} of {ends:?}"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = match msg {
            Ok(msg) => msg,
            // The end only once past the high watermark: the markers of a commit that just
            // returned may not be written yet, and a `read_committed` reader ends before them.
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                if let Some(end) = ends.get(&p)
                    && e2e::topics::past(&consumer, topic, p, *end)
                {
                    let _ = next.insert(p, *end);
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let _ = next.insert(msg.partition(), msg.offset() + 1);
        out.push(Raw {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            value: msg.payload().unwrap_or_default().to_vec(),
        });
    }
    Ok(out)
}

/// An API record as the pipeline flattens it: nested objects become `parent__child` fields;
/// lists stay whole (they travel as JSON text).
fn flatten(record: &Value) -> Result<BTreeMap<String, Value>> {
    fn walk(prefix: &str, value: &Map<String, Value>, out: &mut BTreeMap<String, Value>) {
        for (k, v) in value {
            let name = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}__{k}")
            };
            match v {
                Value::Object(inner) => walk(&name, inner, out),
                other => {
                    let _ = out.insert(name, other.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", record.as_object().context("an API record")?, &mut out);
    Ok(out)
}

fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a decoded (or stored) value is the API's `api` value, by the documented
/// mapping: timestamps as `timestamp-micros` (an integer) or any RFC 3339 text of the same
/// instant, lists as JSON text, booleans as 0/1 in SQLite, integers widened to double.
fn same(api: &Value, got: &Value) -> bool {
    if api == got {
        return true;
    }
    match (api, got) {
        (Value::String(a), Value::Number(n)) => {
            instant(a).is_some_and(|t| n.as_i64() == Some(t.timestamp_micros()))
        }
        (Value::String(a), Value::String(g)) => {
            matches!((instant(a), instant(g)), (Some(x), Some(y)) if x == y)
        }
        (Value::Array(_) | Value::Object(_), Value::String(g)) => {
            serde_json::from_str::<Value>(g).is_ok_and(|parsed| &parsed == api)
        }
        (Value::Bool(a), Value::Number(n)) => n.as_i64() == Some(i64::from(*a)),
        // Numbers keep their JSON text (serde_json's `arbitrary_precision`), so `0.0002`
        // and Java's `2.0E-4` differ as values: floats compare as the doubles they are.
        (Value::Number(a), Value::Number(g)) if !a.is_i64() && !a.is_u64() => {
            a.as_f64().is_some() && a.as_f64() == g.as_f64()
        }
        (Value::Number(a), Value::Number(g)) => {
            a.is_i64()
                && g.is_f64()
                && a.as_i64()
                    .is_some_and(|i| i.abs() < 1 << 53 && Some(i as f64) == g.as_f64())
        }
        _ => false,
    }
}

/// Compares a decoded record (field → value) with the API's record, every field: each API
/// field must be there with its value (or in exactly one of its variant fields, as
/// `customer_id__v_text`), and nothing else may carry a value. `skip` names API fields
/// checked elsewhere (child tables).
fn assert_matches(
    what: &str,
    api: &Value,
    decoded: &Map<String, Value>,
    skip: &[&str],
) -> Result<()> {
    let expected = flatten(api)?;
    let mut got: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (name, value) in decoded {
        let field = common::schema::variant_of(name).unwrap_or(name);
        got.entry(field.to_owned())
            .or_default()
            .push((name.clone(), value.clone()));
    }
    for (field, api_value) in &expected {
        if skip.contains(&field.as_str()) {
            continue;
        }
        let values: Vec<&(String, Value)> = got
            .get(field)
            .map(|v| v.iter().filter(|(_, v)| !v.is_null()).collect())
            .unwrap_or_default();
        let ok = match values.as_slice() {
            [] => api_value.is_null(),
            [(_, v)] => same(api_value, v),
            _ => false,
        };
        ensure!(
            ok,
            "{what}: field `{field}`: API {api_value}, decoded {:?}",
            got.get(field)
        );
    }
    for (field, values) in &got {
        ensure!(
            expected.contains_key(field) || values.iter().all(|(_, v)| v.is_null()),
            "{what}: decoded field `{field}` ({values:?}) is not in the API record"
        );
    }
    Ok(())
}

/// The API records by id.
fn by_id(records: &[Value]) -> Result<HashMap<i64, &Value>> {
    records
        .iter()
        .map(|r| Ok((r["id"].as_i64().context("id")?, r)))
        .collect()
}

/// Checks that the decoded records are the topic, once each, and each equals the API's
/// record: `before` for offsets below `marks` (the first run), `after` for the rest.
/// `decoded` maps (partition, offset) to the decoded value.
fn assert_topic_decodes(
    raw: &[Raw],
    decoded: &HashMap<(i32, i64), Map<String, Value>>,
    marks: &BTreeMap<i32, i64>,
    before: &[Value],
    after: &[Value],
) -> Result<()> {
    ensure!(
        decoded.len() == raw.len(),
        "{} decoded, {} on the topic",
        decoded.len(),
        raw.len()
    );
    let (before, after) = (by_id(before)?, by_id(after)?);
    let mut seen: BTreeMap<bool, BTreeSet<i64>> = BTreeMap::new();
    for m in raw {
        let what = format!("partition {} offset {}", m.partition, m.offset);
        let value = decoded
            .get(&(m.partition, m.offset))
            .with_context(|| format!("{what}: not decoded"))?;
        let id = value.get("id").and_then(Value::as_i64).context("id")?;
        let key = m.key.as_deref().map(String::from_utf8_lossy);
        ensure!(
            key.as_deref() == Some(id.to_string().as_str()),
            "{what}: key {key:?}, id {id}"
        );
        let first_run = m.offset < marks.get(&m.partition).copied().unwrap_or(0);
        let api = if first_run { &before } else { &after };
        let record = api
            .get(&id)
            .with_context(|| format!("{what}: id {id} not in the API"))?;
        assert_matches(&format!("{what} (id {id})"), record, value, &[])?;
        ensure!(
            seen.entry(first_run).or_default().insert(id),
            "{what}: id {id} twice in one run"
        );
    }
    for (first_run, ids) in &seen {
        let expected = if *first_run {
            before.len()
        } else {
            after.len()
        };
        ensure!(
            ids.len() == expected,
            "run {first_run}: {} ids, {expected} records",
            ids.len()
        );
    }
    Ok(())
}

/// Compares the SQLite destination with the API's records: every row field by field, and
/// the `tags` child table.
fn assert_destination_equals(pipeline: &Pipeline, records: &[Value]) -> Result<()> {
    use rusqlite::types::ValueRef;
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare("SELECT * FROM communications_data")?;
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let rows: Vec<Map<String, Value>> = stmt
        .query_map([], |r| {
            let mut row = Map::new();
            for (i, name) in columns.iter().enumerate() {
                let value = match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => json!(v),
                    ValueRef::Real(v) => json!(v),
                    ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                    ValueRef::Blob(_) => json!("<blob>"),
                };
                let _ = row.insert(name.clone(), value);
            }
            Ok(row)
        })?
        .collect::<Result<_, _>>()?;
    ensure!(
        rows.len() == records.len(),
        "{} rows, {} records",
        rows.len(),
        records.len()
    );
    let api = by_id(records)?;
    let mut tags_stmt = conn.prepare(
        "SELECT value FROM communications_data__tags WHERE _dlt_parent_id = ?1 ORDER BY _dlt_list_idx",
    )?;
    for row in &rows {
        let id = row.get("id").and_then(Value::as_i64).context("id")?;
        let record = api
            .get(&id)
            .with_context(|| format!("row {id} not in the API"))?;
        assert_matches(&format!("row {id}"), record, row, &["tags"])?;
        let tags: Vec<Value> = tags_stmt
            .query_map([id.to_string()], |r| r.get::<_, String>(0))?
            .map(|t| t.map(Value::String))
            .collect::<Result<_, _>>()?;
        ensure!(
            Value::Array(tags.clone()) == record["tags"],
            "row {id}: tags {tags:?}, API {}",
            record["tags"]
        );
    }
    Ok(())
}

fn java(classpath: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("java");
    let _ = cmd.arg("-cp").arg(classpath).args(args);
    cmd
}

/// Runs the loader into the pipeline's SQLite file until it has caught up; returns how
/// many records it loaded.
fn load(pipeline: &Pipeline, registry: Option<&Registry>) -> Result<f64> {
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    if let Some(registry) = registry {
        let _ = loader.env("SCHEMA_REGISTRY_URL", &registry.url);
    }
    let out = run_ok(loader, RUN)?;
    figure(&String::from_utf8_lossy(&out.stdout), "loaded", "records").context("loaded")
}

/// A record as confluent-kafka decoded it: the schema id of its framing, and its value.
type Confluent = (u32, Map<String, Value>);

/// Decodes `topic` with confluent-kafka's Consumer and AvroDeserializer
/// (`tests/interop/confluent_consume.py`): (partition, offset) → (schema id, value).
fn confluent_decode(
    broker: &Broker,
    registry: &Registry,
    topic: &str,
) -> Result<HashMap<(i32, i64), Confluent>> {
    let python = ensure_tool("ensure-pytools.sh")?;
    let mut cmd = Command::new(python);
    let _ = cmd
        .arg(repo_root().join("tests/interop/confluent_consume.py"))
        .args([&broker.bootstrap(), &registry.url, topic, "120"]);
    let out = run_ok(cmd, RUN)?;
    let mut decoded = HashMap::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let mut line: Value = serde_json::from_str(line).with_context(|| line.to_owned())?;
        let at = (
            line["partition"].as_i64().context("partition")? as i32,
            line["offset"].as_i64().context("offset")?,
        );
        let schema_id = line["schema_id"].as_u64().context("schema_id")? as u32;
        let Value::Object(value) = line["value"].take() else {
            bail!("{at:?}: not a record: {line}");
        };
        ensure!(
            line["key"].as_str() == value.get("id").map(Value::to_string).as_deref(),
            "{at:?}: key {} for id {:?}",
            line["key"],
            value.get("id")
        );
        ensure!(
            decoded.insert(at, (schema_id, value)).is_none(),
            "{at:?} twice"
        );
    }
    Ok(decoded)
}

/// The subject's registered versions and, for each, its schema id and field names.
fn subject_versions(registry: &Registry, subject: &str) -> Result<Vec<(u32, BTreeSet<String>)>> {
    let versions = registry.get(&format!("/subjects/{subject}/versions"))?;
    let versions = versions.as_array().context("versions")?;
    let mut out = Vec::new();
    for (i, version) in versions.iter().enumerate() {
        ensure!(
            version.as_u64() == Some(i as u64 + 1),
            "versions {versions:?}"
        );
        let v = registry.get(&format!("/subjects/{subject}/versions/{version}"))?;
        let id = v["id"].as_u64().context("id")? as u32;
        // The registry hands the same schema out by id (what the loader and the
        // deserializer ask for).
        let by_id = registry.get(&format!("/schemas/ids/{id}"))?;
        ensure!(
            by_id["schema"] == v["schema"],
            "schema {id}: {by_id} vs {v}"
        );
        let schema: Value = serde_json::from_str(v["schema"].as_str().context("schema")?)?;
        let fields = schema["fields"]
            .as_array()
            .context("fields")?
            .iter()
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect();
        out.push((id, fields));
    }
    Ok(out)
}

#[test]
fn confluent_framing_with_a_live_registry_decodes_with_confluent_kafka_and_loads() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start_kind(tmp.path(), BrokerKind::Kafka, &[])?;
    let registry = Registry::start(tmp.path())?;
    eprintln!("registry answered after {:?}", registry.started_in);
    // Confluent's registry checks new versions for BACKWARD compatibility by default;
    // Apicurio checks nothing unless told: make it check as Confluent's does.
    let config = registry.put("/config", &json!({"compatibility": "BACKWARD"}))?;
    ensure!(config["compatibility"] == "BACKWARD", "{config}");
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "interop_sr", FAST_RETRY)?;
    let topic = "interop_sr.communications_data";
    let subject = format!("{topic}-value");
    let extract = || -> Result<()> {
        let mut cmd = pipeline.extractor()?;
        let _ = cmd.args(["--schema-registry-url", &registry.url]);
        let _ = run_ok(cmd, RUN)?;
        Ok(())
    };

    extract()?;
    let before = api.records()?;
    let subjects = registry.get("/subjects")?;
    ensure!(subjects == json!([subject]), "subjects: {subjects}");
    let versions = subject_versions(&registry, &subject)?;
    ensure!(versions.len() == 1, "versions: {versions:?}");
    let id1 = versions[0].0;
    // Confluent framing: 0, the id the registry gave, the datum.
    let raw = read_topic(&broker.bootstrap(), topic)?;
    ensure!(raw.len() as u64 == RECORDS, "{} messages", raw.len());
    for m in &raw {
        ensure!(
            m.value.len() > 5 && m.value[0] == 0 && m.value[1..5] == id1.to_be_bytes(),
            "partition {} offset {}: starts {:02x?}, schema id {id1}",
            m.partition,
            m.offset,
            &m.value[..m.value.len().min(5)]
        );
    }
    let marks = high_watermarks(&broker.bootstrap(), topic)?;
    let decoded = confluent_decode(&broker, &registry, topic)?;
    ensure!(decoded.values().all(|(id, _)| *id == id1), "schema ids");
    let values = decoded.iter().map(|(k, (_, v))| (*k, v.clone())).collect();
    assert_topic_decodes(&raw, &values, &marks, &before, &before)?;
    ensure!(load(&pipeline, Some(&registry))? == RECORDS as f64);
    assert_destination_equals(&pipeline, &before)?;

    // The API drifts from the middle on (a new field, an int turning float, strings in an
    // int field): the extractor registers a second version.
    let _ = api.post("/admin/state", json!({"drift_from": RECORDS / 2}))?;
    let after = api.records()?;
    ensure!(after != before, "the demo API did not drift");
    extract()?;
    let versions = subject_versions(&registry, &subject)?;
    ensure!(versions.len() == 2, "versions: {versions:?}");
    let (id2, fields2) = &versions[1];
    ensure!(*id2 != id1, "version 2 has the id of version 1");
    ensure!(
        fields2.contains("priority") && !versions[0].1.contains("priority"),
        "version 2 adds `priority`: {versions:?}"
    );
    let raw = read_topic(&broker.bootstrap(), topic)?;
    ensure!(raw.len() as u64 == 2 * RECORDS, "{} messages", raw.len());
    let decoded = confluent_decode(&broker, &registry, topic)?;
    let second_run: BTreeSet<u32> = decoded
        .iter()
        .filter(|((p, o), _)| *o >= marks[p])
        .map(|(_, (id, _))| *id)
        .collect();
    ensure!(
        second_run.contains(id2) && second_run.iter().all(|id| *id == id1 || id == id2),
        "schema ids of the second run: {second_run:?}"
    );
    let values = decoded.iter().map(|(k, (_, v))| (*k, v.clone())).collect();
    assert_topic_decodes(&raw, &values, &marks, &before, &after)?;
    ensure!(load(&pipeline, Some(&registry))? == RECORDS as f64);
    assert_destination_equals(&pipeline, &after)?;
    Ok(())
}

/// Writes the schema topic's schemas (the newest value per key) and the data topic's raw
/// values for `DecodeSingleObject.java`; returns the schema topic's keys.
fn dump_for_java(dir: &Path, schemas: &[Raw], records: &[Raw]) -> Result<BTreeSet<String>> {
    let mut by_key = BTreeMap::new();
    for m in schemas {
        let key = String::from_utf8(m.key.clone().context("schema without a key")?)?;
        let _ = by_key.insert(key, String::from_utf8(m.value.clone())?);
    }
    let text: String = by_key.values().map(|s| format!("{s}\n")).collect();
    std::fs::write(dir.join("schemas.txt"), text)?;
    let text: String = records
        .iter()
        .map(|m| {
            let hex: String = m.value.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}\t{}\t{hex}\n", m.partition, m.offset)
        })
        .collect();
    std::fs::write(dir.join("records.txt"), text)?;
    Ok(by_key.into_keys().collect())
}

#[test]
fn single_object_records_decode_with_apache_avros_binary_message_decoder() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start_kind(tmp.path(), BrokerKind::Kafka, &[])?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "interop_so", FAST_RETRY)?;
    let topic = "interop_so.communications_data";
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let before = api.records()?;
    let marks = high_watermarks(&broker.bootstrap(), topic)?;
    // A second run after the API drifted: a second writer schema.
    let _ = api.post("/admin/state", json!({"drift_from": RECORDS / 2}))?;
    let after = api.records()?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;

    let schemas = read_topic(&broker.bootstrap(), "_interop_so_schemas")?;
    let raw = read_topic(&broker.bootstrap(), topic)?;
    ensure!(raw.len() as u64 == 2 * RECORDS, "{} messages", raw.len());
    let keys = dump_for_java(tmp.path(), &schemas, &raw)?;
    ensure!(keys.len() == 2, "schema topic keys: {keys:?}");
    // C3 01, then the fingerprint (little-endian) of a schema on the schema topic.
    for m in &raw {
        ensure!(
            m.value.len() > 10 && m.value[..2] == [0xc3, 0x01],
            "header {:02x?}",
            &m.value[..2]
        );
        let fp = u64::from_le_bytes(m.value[2..10].try_into()?);
        ensure!(
            keys.contains(&format!("{fp:016x}")),
            "fingerprint {fp:016x} not on the schema topic"
        );
    }

    let libs = ensure_tool("ensure-avro.sh")?;
    let program = repo_root().join("tests/interop/DecodeSingleObject.java");
    let out = run_ok(
        java(
            &classpath(&libs),
            &[
                &program.to_string_lossy(),
                &tmp.path().join("schemas.txt").to_string_lossy(),
                &tmp.path().join("records.txt").to_string_lossy(),
            ],
        ),
        RUN,
    )?;
    let mut java_fingerprints = BTreeSet::new();
    let mut decoded = HashMap::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let parts: Vec<&str> = line.splitn(4, '\t').collect();
        match parts.as_slice() {
            ["schema", fp] => {
                let _ = java_fingerprints.insert((*fp).to_owned());
            }
            ["record", p, o, value] => {
                let Value::Object(value) =
                    serde_json::from_str(value).with_context(|| line.to_owned())?
                else {
                    bail!("not a record: {line}");
                };
                let _ = decoded.insert((p.parse()?, o.parse()?), value);
            }
            _ => bail!("unexpected output line: {line}"),
        }
    }
    // Avro computes the same fingerprints (CRC-64-AVRO of the canonical form) as the
    // extractor keyed the schemas with.
    ensure!(
        java_fingerprints == keys,
        "Avro's fingerprints {java_fingerprints:?}, the topic's {keys:?}"
    );
    assert_topic_decodes(&raw, &decoded, &marks, &before, &after)
}

#[test]
fn records_with_apache_avro_rusts_older_fingerprint_still_load() -> Result<()> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    // What an extractor wrote before it computed the canonical form by the specification:
    // the same records, headed and keyed by apache-avro's fingerprint, copied into a
    // pipeline of their own.
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start_kind(tmp.path(), BrokerKind::Kafka, &[])?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "interop_new", FAST_RETRY)?;
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let schemas = read_topic(&broker.bootstrap(), "_interop_new_schemas")?;
    let raw = read_topic(&broker.bootstrap(), "interop_new.communications_data")?;
    let mut legacy = HashMap::new();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()?;
    for m in &schemas {
        let text = String::from_utf8(m.value.clone())?;
        let schema = apache_avro::Schema::parse_str(&text)?;
        let (new, old) = (
            common::avro::fingerprint(&schema),
            common::avro::legacy_fingerprint(&schema),
        );
        ensure!(
            new != old,
            "the schema has a logical type: the fingerprints differ"
        );
        let _ = legacy.insert(new, old);
        let key = format!("{old:016x}");
        producer
            .send(
                BaseRecord::to("_interop_old_schemas")
                    .key(&key)
                    .payload(&text),
            )
            .map_err(|(e, _)| e)?;
    }
    for m in &raw {
        let new = u64::from_le_bytes(m.value[2..10].try_into()?);
        let old = legacy
            .get(&new)
            .context("a record's schema is not on the schema topic")?;
        let mut value = m.value.clone();
        value[2..10].copy_from_slice(&old.to_le_bytes());
        let key = m.key.clone().context("a record without a key")?;
        let record = BaseRecord::to("interop_old.communications_data")
            .key(&key)
            .payload(&value);
        producer.send(record).map_err(|(e, _)| e)?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30))?;

    let old = Pipeline::new(&broker, &api, "interop_old", FAST_RETRY)?;
    ensure!(load(&old, None)? == RECORDS as f64);
    assert_destination_equals(&old, &api.records()?)
}

/// The rows of a table Kafka's tools print (a header line naming the columns, then rows),
/// as column → value maps.
fn tool_table(text: &str, first_column: &str) -> Vec<BTreeMap<String, String>> {
    let mut header: Option<Vec<&str>> = None;
    let mut rows = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        if cells.first() == Some(&first_column) {
            header = Some(cells);
        } else if let Some(header) = &header
            && cells.len() == header.len()
        {
            rows.push(
                header
                    .iter()
                    .map(|h| (*h).to_owned())
                    .zip(cells.iter().map(|c| (*c).to_owned()))
                    .collect(),
            );
        }
    }
    rows
}

#[test]
fn kafka_consumer_groups_tool_and_console_consumer_agree_with_the_loader() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start_kind(tmp.path(), BrokerKind::Kafka, &[])?;
    let api = DemoApi::start(RECORDS, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "interop_tools", FAST_RETRY)?;
    let topic = "interop_tools.communications_data";
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    ensure!(load(&pipeline, None)? == RECORDS as f64);
    let records = api.records()?;
    assert_destination_equals(&pipeline, &records)?;
    let ends = high_watermarks(&broker.bootstrap(), topic)?;
    // The records, and after them the commit markers of the extractor's transactions.
    ensure!(
        ends.values().sum::<i64>() as u64 > RECORDS,
        "watermarks {ends:?}"
    );
    let stored: BTreeMap<i32, i64> = pipeline
        .sqlite()?
        .prepare("SELECT partition, next_offset FROM _pipeline_offsets WHERE group_id = ?1 AND topic = ?2")?
        .query_map([&pipeline.group, topic], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;

    let libs = classpath(&ensure_tool("ensure-kafka.sh")?);
    let bootstrap = broker.bootstrap();
    let out = run_ok(
        java(
            &libs,
            &[
                "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                "--bootstrap-server",
                &bootstrap,
                "--describe",
                "--group",
                &pipeline.group,
            ],
        ),
        RUN,
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rows = tool_table(&text, "GROUP");
    let mut described = BTreeMap::new();
    for row in rows.iter().filter(|r| r["TOPIC"] == topic) {
        ensure!(row["GROUP"] == pipeline.group, "{row:?}");
        let offset = |c: &str| {
            row[c]
                .parse::<i64>()
                .with_context(|| format!("{c} in {row:?}"))
        };
        let (current, end, lag) = (
            offset("CURRENT-OFFSET")?,
            offset("LOG-END-OFFSET")?,
            offset("LAG")?,
        );
        // At the end: past the commit marker of the extractor's last transaction too.
        ensure!(lag == 0 && current == end, "{row:?}");
        let _ = described.insert(offset("PARTITION")? as i32, end);
    }
    // Every partition, at its end, where the destination's offsets say.
    ensure!(
        described == ends,
        "the tool says {described:?}, the watermarks {ends:?}:\n{text}"
    );
    ensure!(
        described == stored,
        "the tool says {described:?}, the destination {stored:?}"
    );

    let out = run_ok(
        java(
            &libs,
            &[
                "org.apache.kafka.tools.consumer.ConsoleConsumer",
                "--bootstrap-server",
                &bootstrap,
                "--topic",
                topic,
                "--from-beginning",
                "--max-messages",
                &RECORDS.to_string(),
                "--timeout-ms",
                "60000",
                "--formatter-property",
                "print.key=true",
                "--formatter-property",
                "print.value=false",
            ],
        ),
        RUN,
    )?;
    let mut keys: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    let mut ids: Vec<String> = records.iter().map(|r| r["id"].to_string()).collect();
    ids.sort();
    ensure!(
        keys.len() == ids.len(),
        "{} keys printed, {} records",
        keys.len(),
        ids.len()
    );
    ensure!(
        keys == ids,
        "the printed keys are not the API's ids, each once"
    );
    Ok(())
}
