//! Each resource's last writer schema, read when a run starts so that the run's schema
//! builder starts from it ([`common::schema::SchemaBuilder::with_previous`]), as dlt starts
//! from its stored schema: without a registry from the compacted schema topic (the last
//! schema there named after the resource: the loader reads the same topic), with one from
//! the registry (the latest version of the subject `<topic>-value`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::avro::{TABLE_NAME_ATTRIBUTE, table_schema};
use common::broker::BrokerContext;
use common::config::ResourceConfig;
use common::schema::TableSchema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_subjects, get_schema_by_subject_and_version,
};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum LastSchemaError {
    #[error("reading the schema topic `{topic}` for the last writer schemas: {message}")]
    Topic { topic: String, message: String },
    #[error(
        "resource `{resource}`: its last writer schema ({place}) is not one the extractor \
         wrote: {message}"
    )]
    Invalid {
        resource: String,
        place: String,
        message: String,
    },
    #[error(
        "resource `{resource}`: reading its last writer schema from the schema registry (subject `{subject}`): {message}"
    )]
    Registry {
        resource: String,
        subject: String,
        message: String,
    },
}

/// The last schema of each table on the schema topic, by table name.
pub(crate) type TopicSchemas = HashMap<String, Found>;

/// A schema as found, and where (for messages).
pub(crate) struct Found {
    json: String,
    place: String,
}

/// The last writer schema of each of `resources` that has one, by resource name: from the
/// registry when `registry` is set, else from `on_topic`, what [`from_topic`] read from the
/// schema topic (none read counts as none there).
pub(crate) async fn read(
    registry: Option<&SrSettings>,
    on_topic: Option<TopicSchemas>,
    resources: &[&ResourceConfig],
) -> Result<HashMap<String, TableSchema>, LastSchemaError> {
    let found = match registry {
        Some(sr) => from_registry(sr, resources).await?,
        None => on_topic.unwrap_or_default(),
    };
    let mut out = HashMap::new();
    for r in resources {
        let Some(found) = found.get(&r.name) else {
            continue;
        };
        let invalid = |message: String| LastSchemaError::Invalid {
            resource: r.name.clone(),
            place: found.place.clone(),
            message,
        };
        let avro =
            apache_avro::Schema::parse_str(&found.json).map_err(|e| invalid(e.to_string()))?;
        let table = table_schema(&avro, &r.primary_key).map_err(|e| invalid(e.to_string()))?;
        tracing::debug!(resource = %r.name, place = %found.place, fields = table.fields.len(), "the run starts from the last writer schema");
        let _ = out.insert(r.name.clone(), table);
    }
    Ok(out)
}

/// The latest version of each resource's subject `<topic>-value`, if registered.
async fn from_registry(
    sr: &SrSettings,
    resources: &[&ResourceConfig],
) -> Result<HashMap<String, Found>, LastSchemaError> {
    let mut out = HashMap::new();
    let mut subjects: Option<Vec<String>> = None;
    for r in resources {
        let subject = format!("{}-value", r.topic);
        let error = |message: String| LastSchemaError::Registry {
            resource: r.name.clone(),
            subject: subject.clone(),
            message,
        };
        if subjects.is_none() {
            subjects = Some(
                get_all_subjects(sr)
                    .await
                    .map_err(|e| error(e.to_string()))?,
            );
        }
        if !subjects.as_ref().is_some_and(|s| s.contains(&subject)) {
            continue;
        }
        let registered = get_schema_by_subject_and_version(sr, &subject, None)
            .await
            .map_err(|e| error(e.to_string()))?;
        let place = format!(
            "schema registry subject `{subject}`, version {}",
            registered
                .version
                .map_or_else(|| "latest".to_owned(), |v| v.to_string())
        );
        let _ = out.insert(
            r.name.clone(),
            Found {
                json: registered.schema,
                place,
            },
        );
    }
    Ok(out)
}

/// Every table's last schema on the schema topic (partition 0, read to its high
/// watermark), by table name: the record's `x-table-name`, else its `name`. `consumer` is a
/// reader made by [`crate::state_topic::reader_config`]; it may have read another topic
/// before (the state topic's partition 0 included: an end of partition counts only once
/// the consumer's position on `topic` is at its end). Blocking: call it on a blocking thread.
pub(crate) fn from_topic(
    consumer: &BaseConsumer<BrokerContext>,
    topic: &str,
    timeout: Duration,
) -> Result<TopicSchemas, LastSchemaError> {
    read_with(consumer, topic, timeout).map_err(|message| LastSchemaError::Topic {
        topic: topic.to_owned(),
        message,
    })
}

/// What [`from_topic`] does with the consumer it made.
fn read_with(
    consumer: &BaseConsumer<BrokerContext>,
    topic: &str,
    timeout: Duration,
) -> Result<HashMap<String, Found>, String> {
    let deadline = Instant::now() + timeout;
    // A topic created a moment ago may not have a leader yet.
    let (low, high) = loop {
        match consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)) {
            Ok(w) => break w,
            Err(e) if Instant::now() < deadline && crate::state_topic::retriable(&e) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("fetching its watermarks: {e}")),
        }
    };
    let mut out = HashMap::new();
    if high <= low {
        return Ok(out);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(|e| e.to_string())?;
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    loop {
        if Instant::now() > deadline {
            return Err(format!("not at its end (offset {high}) after {timeout:?}"));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(_)) => {
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|tpl| tpl.find_partition(topic, 0).map(|p| p.offset()));
                // An end of the state topic, read before by the same consumer.
                if matches!(position, Some(Offset::Offset(at)) if at < high) {
                    continue;
                }
                return Ok(out);
            }
            Err(e) => return Err(e.to_string()),
        };
        if let Some(payload) = message.payload() {
            let name = serde_json::from_slice::<Value>(payload)
                .ok()
                .and_then(|schema| {
                    schema[TABLE_NAME_ATTRIBUTE]
                        .as_str()
                        .or(schema["name"].as_str())
                        .map(str::to_owned)
                });
            match name {
                Some(name) => {
                    let found = Found {
                        json: String::from_utf8_lossy(payload).into_owned(),
                        place: format!("schema topic `{topic}`, offset {}", message.offset()),
                    };
                    let _ = out.insert(name, found);
                }
                // Not a schema the extractor wrote: the loader says so if a record uses it.
                None => tracing::warn!(
                    topic,
                    offset = message.offset(),
                    "the schema topic holds a value that is not a named Avro record schema; skipped"
                ),
            }
        }
        if message.offset() + 1 >= high {
            return Ok(out);
        }
    }
}
