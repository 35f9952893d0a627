//! The config document as written: one struct per table, every key checked by serde
//! (`deny_unknown_fields`); the other forms dlt allows (a bare string for a resource, an
//! endpoint, a write disposition or a schema contract; a string or a list for a primary key;
//! a scalar or a typed table for a param); and the tagged maps (`auth`, `paginator`, typed
//! params), read whole and replayed into their variant's struct so that errors keep their key
//! path. Nothing here judges values: that is [`super::resolve`] and [`super::validate`].

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::load::{join_path, marked};
use super::{
    AuthConfig, ContractMode, Method, OnCursorValueMissing, Paginator, RangeBound, ResponseAction,
    RowOrder, SchemaContract, WriteDisposition,
};
use crate::schema::ColumnHint;
use crate::secret::SecretRef;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDocument {
    #[serde(default)]
    pub(super) pipeline: Option<RawPipeline>,
    #[serde(default)]
    pub(super) kafka: Option<BTreeMap<String, KafkaValue>>,
    #[serde(default)]
    pub(super) schema_registry: Option<RawSchemaRegistry>,
    pub(super) client: RawClient,
    #[serde(default)]
    pub(super) resource_defaults: Option<RawResource>,
    pub(super) resources: Vec<OrBare<RawResource>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    pub(super) name: Option<String>,
    pub(super) schema_topic: Option<String>,
    pub(super) topic_prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchemaRegistry {
    pub(super) url: String,
    #[serde(default)]
    pub(super) username: Option<String>,
    #[serde(default)]
    pub(super) password: Option<SecretRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) base_url: String,
    #[serde(default)]
    pub(super) headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) auth: Option<AuthConfig>,
    #[serde(default)]
    pub(super) paginator: Option<Paginator>,
    /// Seconds.
    #[serde(default)]
    pub(super) timeout: Option<f64>,
    #[serde(default)]
    pub(super) retry: Option<RawRetry>,
    #[serde(default)]
    pub(super) max_requests_per_second: Option<f64>,
    #[serde(default)]
    pub(super) max_pages: Option<u64>,
    #[serde(default)]
    pub(super) max_response_bytes: Option<u64>,
    #[serde(default)]
    pub(super) trusted_hosts: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub(super) max_retries: Option<usize>,
    pub(super) backoff_factor: Option<f64>,
    pub(super) initial_delay: Option<f64>,
    pub(super) max_delay: Option<f64>,
    pub(super) retry_after_max: Option<f64>,
    pub(super) statuses: Option<Vec<u16>>,
    pub(super) jitter: Option<bool>,
}

/// A resource as written, and `resource_defaults` (which must not have a `name`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    pub(super) name: Option<String>,
    pub(super) topic: Option<String>,
    pub(super) table_name: Option<String>,
    pub(super) primary_key: Option<PrimaryKey>,
    pub(super) merge_key: Option<PrimaryKey>,
    pub(super) write_disposition: Option<OrBare<WriteDispositionObject>>,
    pub(super) endpoint: Option<OrBare<RawEndpoint>>,
    pub(super) columns: Option<BTreeMap<String, ColumnHint>>,
    pub(super) schema_contract: Option<OrBare<SchemaContract>>,
    pub(super) include_from_parent: Option<Vec<String>>,
    pub(super) max_table_nesting: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub(super) path: Option<String>,
    pub(super) method: Option<Method>,
    pub(super) params: Option<BTreeMap<String, ParamValue>>,
    pub(super) json: Option<Value>,
    pub(super) headers: Option<BTreeMap<String, String>>,
    pub(super) data: Option<Value>,
    pub(super) data_selector: Option<String>,
    pub(super) paginator: Option<Paginator>,
    pub(super) response_actions: Option<Vec<ResponseAction>>,
    pub(super) incremental: Option<RawIncremental>,
    pub(super) allow_null_data: Option<bool>,
    /// dlt's endpoint `auth`: `Some(None)` is a `null` (JSON, YAML): no auth.
    #[serde(default, deserialize_with = "nullable")]
    pub(super) auth: Option<Option<AuthConfig>>,
}

/// A key whose `null` is a value of its own: `Some(None)`; a key left out stays `None`
/// (serde's `default`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `endpoint.incremental` as written (dlt's `IncrementalConfig`; `convert` is not supported).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncremental {
    pub(super) start_param: Option<String>,
    pub(super) end_param: Option<String>,
    pub(super) cursor_path: String,
    pub(super) initial_value: Option<Value>,
    pub(super) end_value: Option<Value>,
    pub(super) lag: Option<f64>,
    pub(super) range_start: Option<RangeBound>,
    pub(super) range_end: Option<RangeBound>,
    pub(super) row_order: Option<RowOrder>,
    pub(super) on_cursor_value_missing: Option<OnCursorValueMissing>,
}

/// A param written `{ type = "incremental", cursor_path = ..., initial_value = ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncrementalParam {
    pub(super) cursor_path: String,
    pub(super) initial_value: Option<Value>,
    pub(super) end_value: Option<Value>,
    pub(super) lag: Option<f64>,
    pub(super) range_start: Option<RangeBound>,
    pub(super) range_end: Option<RangeBound>,
    pub(super) row_order: Option<RowOrder>,
    pub(super) on_cursor_value_missing: Option<OnCursorValueMissing>,
}

/// dlt's object form `write_disposition = { disposition = "merge", strategy = "upsert" }`.
/// The options of the strategies not supported (scd2's, upsert's, the merge conditions) are
/// read only to be refused by name (see `resolve`), not with serde's "unknown field".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteDispositionObject {
    pub(super) disposition: WriteDisposition,
    /// dlt's merge strategy: `delete-insert` (its default), `upsert`, `scd2`, …
    pub(super) strategy: Option<String>,
    pub(super) validity_column_names: Option<Value>,
    pub(super) active_record_timestamp: Option<Value>,
    pub(super) boundary_timestamp: Option<Value>,
    pub(super) row_version_column_name: Option<Value>,
    pub(super) skip_unchanged_rows: Option<Value>,
    pub(super) source_filter: Option<Value>,
    pub(super) destination_scope: Option<Value>,
    pub(super) deduplicated: Option<Value>,
}

impl WriteDispositionObject {
    fn bare(disposition: WriteDisposition) -> Self {
        WriteDispositionObject {
            disposition,
            strategy: None,
            validity_column_names: None,
            active_record_timestamp: None,
            boundary_timestamp: None,
            row_version_column_name: None,
            skip_unchanged_rows: None,
            source_filter: None,
            destination_scope: None,
            deduplicated: None,
        }
    }

    /// The options set that this project does not support, by name.
    pub(super) fn unsupported_options(&self) -> Vec<&'static str> {
        [
            ("validity_column_names", &self.validity_column_names),
            ("active_record_timestamp", &self.active_record_timestamp),
            ("boundary_timestamp", &self.boundary_timestamp),
            ("row_version_column_name", &self.row_version_column_name),
            ("skip_unchanged_rows", &self.skip_unchanged_rows),
            ("source_filter", &self.source_filter),
            ("destination_scope", &self.destination_scope),
            ("deduplicated", &self.deduplicated),
        ]
        .into_iter()
        .filter(|(_, value)| value.is_some())
        .map(|(name, _)| name)
        .collect()
    }
}

/// A type that may also be written as a bare string: a resource (its name), an endpoint
/// (its path), a write disposition.
pub(super) trait FromBareString: Sized {
    const EXPECTING: &'static str;
    fn from_bare(s: &str) -> Result<Self, String>;
}

impl FromBareString for RawResource {
    const EXPECTING: &'static str = "a resource table or a resource name";
    fn from_bare(name: &str) -> Result<Self, String> {
        Ok(RawResource {
            name: Some(name.to_owned()),
            ..RawResource::default()
        })
    }
}

impl FromBareString for RawEndpoint {
    const EXPECTING: &'static str = "an endpoint table or an endpoint path";
    fn from_bare(path: &str) -> Result<Self, String> {
        Ok(RawEndpoint {
            path: Some(path.to_owned()),
            ..RawEndpoint::default()
        })
    }
}

impl FromBareString for WriteDispositionObject {
    const EXPECTING: &'static str = "\"append\", \"replace\", \"merge\" or `{ disposition = \"merge\", strategy = \"upsert\" }`";
    fn from_bare(s: &str) -> Result<Self, String> {
        if s == "skip" {
            return Err(
                "`skip` is not supported (dlt 1.31.0 accepts it, then its loader refuses \
                 the table: LoadClientUnsupportedWriteDisposition); to page a resource only to \
                 feed its children, run the children alone (`extractor --resource <child>`): \
                 the parent is paged and not published"
                    .to_owned(),
            );
        }
        WriteDisposition::deserialize(de::value::StrDeserializer::<de::value::Error>::new(s))
            .map(WriteDispositionObject::bare)
            .map_err(|_| {
                format!("unknown write disposition `{s}`, expected `append`, `replace` or `merge`")
            })
    }
}

impl FromBareString for SchemaContract {
    const EXPECTING: &'static str = "\"evolve\", \"freeze\", \"discard_row\", \"discard_value\" or \
         `{ tables = ..., columns = ..., data_type = ... }`";
    fn from_bare(s: &str) -> Result<Self, String> {
        let mode =
            ContractMode::deserialize(de::value::StrDeserializer::<de::value::Error>::new(s))
                .map_err(|_| {
                    format!(
                        "unknown schema contract mode `{s}`, expected `evolve`, `freeze`, \
                     `discard_row` or `discard_value`"
                    )
                })?;
        Ok(SchemaContract {
            tables: mode,
            columns: mode,
            data_type: mode,
        })
    }
}

/// `T` from a map (keys checked by `T`'s derived `Deserialize`, paths kept), or from a bare
/// string.
#[derive(Debug, Clone)]
pub(super) struct OrBare<T>(pub(super) T);

impl<'de, T: FromBareString + Deserialize<'de>> Deserialize<'de> for OrBare<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrBareVisitor<T>(PhantomData<T>);

        impl<'de, T: FromBareString + Deserialize<'de>> Visitor<'de> for OrBareVisitor<T> {
            type Value = OrBare<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<OrBare<T>, E> {
                T::from_bare(v).map(OrBare).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OrBare<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OrBare)
            }
        }

        deserializer.deserialize_any(OrBareVisitor(PhantomData))
    }
}

/// dlt's `primary_key`: a column name or a list of them.
#[derive(Debug, Clone)]
pub(super) struct PrimaryKey(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for PrimaryKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PrimaryKeyVisitor;

        impl<'de> Visitor<'de> for PrimaryKeyVisitor {
            type Value = PrimaryKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a column name or a list of column names")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PrimaryKey, E> {
                Ok(PrimaryKey(vec![v.to_owned()]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<PrimaryKey, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(PrimaryKey)
            }
        }

        deserializer.deserialize_any(PrimaryKeyVisitor)
    }
}

/// A librdkafka setting: a string, number or boolean, kept as text.
pub(super) struct KafkaValue(pub(super) String);

impl<'de> Deserialize<'de> for KafkaValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ScalarVisitor("a string, number or boolean"))
            .map(|value| {
                KafkaValue(match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
            })
    }
}

/// A query parameter value: a string, number or boolean, a list of them (the parameter
/// repeated, as `requests` sends a list), or a table with a `type`: dlt's
/// `{ type = "resolve", ... }` or `{ type = "incremental", ... }`.
#[derive(Debug, Clone)]
pub(super) enum ParamValue {
    /// A string, number or boolean, or a list of them (`Value::Array`).
    Scalar(Value),
    /// dlt's `{ type = "resolve", resource = "...", field = "..." }`.
    Resolve(ResolveParam),
    Incremental(RawIncrementalParam),
}

/// The keys of a `resolve` param besides its `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResolveParam {
    pub(super) resource: String,
    pub(super) field: String,
}

const PARAM_TYPES: &[&str] = &["incremental", "resolve"];

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamVisitor;
        const EXPECTING: &str = "a string, number or boolean, a list of them, or a table \
                                 with a `type` (`incremental` or `resolve`)";

        impl<'de> Visitor<'de> for ParamVisitor {
            type Value = ParamValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTING)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ParamValue, E> {
                ScalarVisitor(EXPECTING)
                    .visit_str(v)
                    .map(ParamValue::Scalar)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ParamValue, E> {
                ScalarVisitor(EXPECTING)
                    .visit_bool(v)
                    .map(ParamValue::Scalar)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ParamValue, E> {
                ScalarVisitor(EXPECTING)
                    .visit_i64(v)
                    .map(ParamValue::Scalar)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ParamValue, E> {
                ScalarVisitor(EXPECTING)
                    .visit_u64(v)
                    .map(ParamValue::Scalar)
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ParamValue, E> {
                ScalarVisitor(EXPECTING)
                    .visit_f64(v)
                    .map(ParamValue::Scalar)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ParamValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Value>()? {
                    match item {
                        Value::String(_) | Value::Number(_) | Value::Bool(_) => items.push(item),
                        other => {
                            return Err(de::Error::custom(format!(
                                "a list param holds strings, numbers or booleans, not {other}"
                            )));
                        }
                    }
                }
                Ok(ParamValue::Scalar(Value::Array(items)))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ParamValue, A::Error> {
                let tagged = Tagged::read(map)?;
                match tagged.tag.as_str() {
                    "incremental" => tagged.variant().map(ParamValue::Incremental),
                    "resolve" => tagged.variant().map(ParamValue::Resolve),
                    _ => Err(tagged.unknown("param", PARAM_TYPES)),
                }
            }
        }

        deserializer.deserialize_any(ParamVisitor)
    }
}

/// Accepts a string, number or boolean as a JSON value.
struct ScalarVisitor(&'static str);

impl Visitor<'_> for ScalarVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
    }
}

// ---------------------------------------------------------------------------------------------
// Tagged maps (`auth`, `paginator`): read whole, then replayed into the variant's struct
// ---------------------------------------------------------------------------------------------

/// A map with a `type` key, read to its end (the tag may come after the other keys: TOML
/// sorts them), its other entries kept for [`Tagged::variant`].
pub(super) struct Tagged {
    pub(super) tag: String,
    pub(super) entries: Vec<(String, Value)>,
}

impl Tagged {
    pub(super) fn read<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        Self::read_with(map, None)
    }

    /// As [`Tagged::read`], with `default` as the tag when there is no `type` but the
    /// table has the key `when` (dlt's `auth = { token = ... }` is a bearer token).
    pub(super) fn read_or<'de, A: MapAccess<'de>>(
        map: A,
        default: &str,
        when: &str,
    ) -> Result<Self, A::Error> {
        Self::read_with(map, Some((default, when)))
    }

    fn read_with<'de, A: MapAccess<'de>>(
        mut map: A,
        default: Option<(&str, &str)>,
    ) -> Result<Self, A::Error> {
        let mut tag = None;
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "type" {
                tag = Some(map.next_value::<String>()?);
            } else {
                let value = map.next_value::<Value>()?;
                entries.push((key, value));
            }
        }
        let tag = match (tag, default) {
            (Some(tag), _) => tag,
            (None, Some((default, when))) if entries.iter().any(|(k, _)| k == when) => {
                default.to_owned()
            }
            (None, _) => return Err(de::Error::missing_field("type")),
        };
        Ok(Tagged { tag, entries })
    }

    /// Deserializes the variant's struct from the other entries; errors keep their key path.
    pub(super) fn variant<'de, T: Deserialize<'de>, E: de::Error>(self) -> Result<T, E> {
        T::deserialize(de::value::MapAccessDeserializer::new(Replay::<E> {
            entries: self.entries.into_iter(),
            pending: None,
            error: PhantomData,
        }))
    }

    pub(super) fn unknown<E: de::Error>(&self, what: &str, supported: &[&str]) -> E {
        marked(
            "type",
            format_args!(
                "unknown or unsupported {what} type `{}`, expected one of: {}",
                self.tag,
                supported.join(", ")
            ),
        )
    }
}

struct Replay<E> {
    entries: std::vec::IntoIter<(String, Value)>,
    pending: Option<(String, Value)>,
    error: PhantomData<E>,
}

impl<'de, E: de::Error> MapAccess<'de> for Replay<E> {
    type Error = E;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, E> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let key_de = de::value::StrDeserializer::<E>::new(&key);
        let parsed = seed.deserialize(key_de).map_err(|e| marked::<E>(&key, e))?;
        self.pending = Some((key, value));
        Ok(Some(parsed))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, E> {
        let Some((key, value)) = self.pending.take() else {
            return Err(E::custom("a map value was asked for before its key"));
        };
        let mut track = serde_path_to_error::Track::new();
        let result = seed.deserialize(serde_path_to_error::Deserializer::new(value, &mut track));
        result.map_err(|e| {
            let sub = join_path(&key, &track.path().to_string());
            marked::<E>(&sub, e)
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use crate::config::*;

    #[test]
    fn bare_string_resource_and_endpoint() {
        let text = r#"
resources = ["plain", { name = "ep", endpoint = "/v2/things" }]
[client]
base_url = "https://api.example.com"
[resource_defaults]
primary_key = "id"
"#;
        let config = toml(text).unwrap();
        assert_eq!(config.resources[0].name, "plain");
        assert_eq!(config.resources[0].endpoint.path, "plain");
        assert_eq!(config.resources[1].endpoint.path, "/v2/things");
        let json = r#"{"client": {"base_url": "https://api.example.com"},
            "resource_defaults": {"primary_key": "id"},
            "resources": ["plain", {"name": "ep", "endpoint": "/v2/things"}]}"#;
        assert_eq!(parse(json, Format::Json, "p.json").unwrap(), config);
    }
}

/// docs/config.md names every key the parser accepts: a key added to a
/// config struct without documentation fails here.
#[cfg(test)]
mod reference {
    use super::*;
    use crate::config::*;
    use crate::schema::ColumnHint;

    /// The field names `T`'s derived `Deserialize` accepts, recorded by a deserializer
    /// that only answers `deserialize_struct`.
    fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
        struct Recorder<'a>(&'a mut &'static [&'static str]);

        impl<'de> Deserializer<'de> for Recorder<'_> {
            type Error = de::value::Error;

            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not a struct"))
            }

            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                *self.0 = fields;
                Err(de::Error::custom("recorded"))
            }

            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
                enum identifier ignored_any
            }
        }

        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(Recorder(&mut fields));
        fields
    }

    #[test]
    fn the_config_reference_documents_every_config_key() {
        let readme = include_str!("../../../docs/config.md");
        let structs: Vec<(&str, &[&str])> = vec![
            ("document", field_names::<RawDocument>()),
            ("pipeline", field_names::<RawPipeline>()),
            ("schema_registry", field_names::<RawSchemaRegistry>()),
            ("client", field_names::<RawClient>()),
            ("client.retry", field_names::<RawRetry>()),
            ("resource", field_names::<RawResource>()),
            ("endpoint", field_names::<RawEndpoint>()),
            ("endpoint.incremental", field_names::<RawIncremental>()),
            ("incremental param", field_names::<RawIncrementalParam>()),
            ("resolve param", field_names::<ResolveParam>()),
            ("response_actions[]", field_names::<ResponseAction>()),
            ("schema_contract", field_names::<SchemaContract>()),
            ("write_disposition", field_names::<WriteDispositionObject>()),
            ("columns.*", field_names::<ColumnHint>()),
            ("auth api_key", field_names::<ApiKeyAuth>()),
            ("auth bearer", field_names::<BearerAuth>()),
            ("auth http_basic", field_names::<HttpBasicAuth>()),
            (
                "auth oauth2_client_credentials",
                field_names::<OAuth2ClientCredentialsAuth>(),
            ),
            ("paginator offset", field_names::<OffsetPaginator>()),
            (
                "paginator page_number",
                field_names::<PageNumberPaginator>(),
            ),
            ("paginator json_link", field_names::<JsonLinkPaginator>()),
            (
                "paginator header_link",
                field_names::<HeaderLinkPaginator>(),
            ),
            ("paginator cursor", field_names::<CursorPaginator>()),
            (
                "paginator header_cursor",
                field_names::<HeaderCursorPaginator>(),
            ),
        ];
        let mut missing = Vec::new();
        for (place, fields) in &structs {
            assert!(!fields.is_empty(), "{place}: no fields recorded");
            for field in *fields {
                if !readme.contains(&format!("`{field}`")) {
                    missing.push(format!("{place}.{field}"));
                }
            }
        }
        assert!(missing.is_empty(), "docs/config.md lacks: {missing:?}");
    }
}
