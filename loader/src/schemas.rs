//! Writer schemas, found from each value's leading bytes:
//! - `C3 01` + fingerprint: Avro single-object encoding; the schema is on the compacted
//!   schema topic, keyed by the fingerprint in hex. The topic is read to its end at start
//!   and again whenever an unknown fingerprint shows up.
//! - `00` + schema id: Confluent wire format; the schema comes from the registry and is
//!   cached by id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use common::avro::{Decoder, Framing, parse_framing};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_id};

#[derive(Debug, thiserror::Error)]
pub enum SchemaLookupError {
    #[error("{0}")]
    Framing(String),
    #[error(
        "no writer schema with fingerprint {fingerprint:016x} on the schema topic `{topic}` (read to offset {end})"
    )]
    UnknownFingerprint {
        fingerprint: u64,
        topic: String,
        end: i64,
    },
    #[error("reading the schema topic `{topic}`: {message}")]
    SchemaTopic { topic: String, message: String },
    #[error(
        "schema topic `{topic}` offset {offset} (key {key}): not a valid Avro schema: {message}"
    )]
    BadSchema {
        topic: String,
        offset: i64,
        key: String,
        message: String,
    },
    #[error(
        "schema id {id}: the value is in the Confluent wire format but no schema_registry.url is configured"
    )]
    NoRegistry { id: u32 },
    #[error("schema id {id} from the schema registry: {message}")]
    Registry { id: u32, message: String },
    #[error("writer schema: {0}")]
    Avro(String),
}

/// A decoder and the primary key it was made for.
type KeyedDecoder = (Vec<String>, Arc<Decoder>);

/// Resolves and caches writer schemas as decoders, per primary key (the decoder needs to
/// know which fields are the key).
pub struct SchemaStore {
    schema_topic: String,
    settings: BTreeMap<String, String>,
    registry: Option<SrSettings>,
    runtime: tokio::runtime::Handle,
    /// Schema JSON by fingerprint, as read from the schema topic.
    by_fingerprint: HashMap<u64, Schema>,
    /// Schemas by registry id.
    by_id: HashMap<u32, Schema>,
    /// Decoders per framing, each for the primary key it was made for (looked up without
    /// allocating: one record's key is usually the only one).
    decoders: HashMap<Framing, Vec<KeyedDecoder>, foldhash::fast::RandomState>,
    read_to: i64,
}

impl SchemaStore {
    pub fn new(
        schema_topic: &str,
        settings: &BTreeMap<String, String>,
        registry: Option<SrSettings>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            schema_topic: schema_topic.to_owned(),
            settings: settings.clone(),
            registry,
            runtime,
            by_fingerprint: HashMap::new(),
            by_id: HashMap::new(),
            decoders: HashMap::default(),
            read_to: 0,
        }
    }

    /// The decoder for `value`'s writer schema, and the Avro datum after the header.
    pub fn decoder<'v>(
        &mut self,
        value: &'v [u8],
        primary_key: &[String],
    ) -> Result<(Arc<Decoder>, &'v [u8]), SchemaLookupError> {
        let (framing, datum) =
            parse_framing(value).map_err(|e| SchemaLookupError::Framing(e.to_string()))?;
        let known = self.decoders.get(&framing).and_then(|decoders| {
            decoders
                .iter()
                .find(|(key, _)| key.as_slice() == primary_key)
        });
        if let Some((_, d)) = known {
            return Ok((Arc::clone(d), datum));
        }
        let schema = match framing {
            Framing::SingleObject { fingerprint } => self.schema_by_fingerprint(fingerprint)?,
            Framing::Confluent { schema_id } => self.schema_by_id(schema_id)?,
        };
        let decoder = Arc::new(
            Decoder::new(schema, primary_key)
                .map_err(|e| SchemaLookupError::Avro(e.to_string()))?,
        );
        self.decoders
            .entry(framing)
            .or_default()
            .push((primary_key.to_vec(), Arc::clone(&decoder)));
        Ok((decoder, datum))
    }

    fn schema_by_fingerprint(&mut self, fingerprint: u64) -> Result<Schema, SchemaLookupError> {
        if let Some(s) = self.by_fingerprint.get(&fingerprint) {
            return Ok(s.clone());
        }
        // The extractor publishes (and waits for) a schema before any record using it, so
        // one read to the current end finds it unless it is really missing.
        self.read_schema_topic()?;
        self.by_fingerprint
            .get(&fingerprint)
            .cloned()
            .ok_or_else(|| SchemaLookupError::UnknownFingerprint {
                fingerprint,
                topic: self.schema_topic.clone(),
                end: self.read_to,
            })
    }

    fn schema_by_id(&mut self, id: u32) -> Result<Schema, SchemaLookupError> {
        if let Some(s) = self.by_id.get(&id) {
            return Ok(s.clone());
        }
        let registry = self
            .registry
            .as_ref()
            .ok_or(SchemaLookupError::NoRegistry { id })?;
        let registered = self
            .runtime
            .block_on(get_schema_by_id(id, registry))
            .map_err(|e| SchemaLookupError::Registry {
                id,
                message: e.to_string(),
            })?;
        let schema =
            Schema::parse_str(&registered.schema).map_err(|e| SchemaLookupError::Registry {
                id,
                message: format!("not a valid Avro schema: {e}"),
            })?;
        let _ = self.by_id.insert(id, schema.clone());
        Ok(schema)
    }

    /// Reads the schema topic from where the last read stopped to its current end.
    fn read_schema_topic(&mut self) -> Result<(), SchemaLookupError> {
        let err = |message: String| SchemaLookupError::SchemaTopic {
            topic: self.schema_topic.clone(),
            message,
        };
        let consumer =
            crate::plain_client(&self.settings, &format!("{}.reader", self.schema_topic))
                .map_err(|e| err(e.to_string()))?;
        let timeout = Duration::from_secs(10);
        let (low, high) = consumer
            .fetch_watermarks(&self.schema_topic, 0, timeout)
            .map_err(|e| err(e.to_string()))?;
        let start = self.read_to.max(low);
        if start >= high {
            self.read_to = high;
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.schema_topic, 0, Offset::Offset(start))
            .map_err(|e| err(e.to_string()))?;
        consumer.assign(&tpl).map_err(|e| err(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut next = start;
        while next < high {
            if Instant::now() > deadline {
                return Err(err(format!("timed out at offset {next} of {high}")));
            }
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = msg.map_err(|e| err(e.to_string()))?;
            next = msg.offset() + 1;
            let key = msg
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let Some(payload) = msg.payload() else {
                continue;
            };
            let text = String::from_utf8_lossy(payload);
            let schema = Schema::parse_str(&text).map_err(|e| SchemaLookupError::BadSchema {
                topic: self.schema_topic.clone(),
                offset: msg.offset(),
                key: key.clone(),
                message: e.to_string(),
            })?;
            // Records written before the extractor computed the canonical form by the
            // specification carry apache-avro's fingerprint instead.
            let legacy = common::avro::legacy_fingerprint(&schema);
            let _ = self.by_fingerprint.insert(legacy, schema.clone());
            let fingerprint = common::avro::fingerprint(&schema);
            let _ = self.by_fingerprint.insert(fingerprint, schema);
        }
        self.read_to = high;
        tracing::debug!(topic = %self.schema_topic, schemas = self.by_fingerprint.len(), "read schema topic");
        Ok(())
    }
}
