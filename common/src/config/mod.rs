//! The pipeline config: the same dict as dlt's `rest_api_source({...})`, key for key, written
//! as TOML, JSON or YAML (`client`, `resource_defaults`, `resources[].endpoint.paginator`),
//! plus three sections of ours: `pipeline`, `kafka` and `schema_registry`.
//!
//! Two steps, both pure: parsing into the raw document (every key checked, errors naming the
//! file and the key path, e.g. `resources[0].endpoint.paginator.limitt: unknown field`), then
//! validation, which merges `resource_defaults` into each resource as dlt does and resolves
//! the defaults into a [`PipelineConfig`]. Secrets stay [`SecretRef`]s: resolving them is the
//! job of [`crate::secret::SecretResolver`], in the process that sends them.
//!
//! This file holds the resolved types, what the extractor and the loader use; the rest is
//! one file per step:

mod auth; // dlt's `client.auth`: the four kinds, and how a table becomes one
mod error; // `Problem` (a key path and a message) and `ConfigError`
mod load; // formats, `load` and `parse`; the key path of a parse error
mod paginator; // dlt's paginators, and how a table or a bare string becomes one
mod raw; // the document as written: every key, checked by serde
mod resolve; // `resource_defaults` merge, placeholders, incremental, defaults applied
#[cfg(test)]
mod test_support; // seed documents and helpers for the tests beside each file
mod validate; // the `check_*` functions: every problem with its key path

pub use auth::{
    ApiKeyAuth, ApiKeyLocation, AuthConfig, BearerAuth, ClientAuthMethod, DEFAULT_TOKEN_EXPIRATION,
    HttpBasicAuth, OAuth2ClientCredentialsAuth,
};
pub use error::{ConfigError, Problem};
pub use load::{Format, load, parse};
pub use paginator::{
    CursorPaginator, DEFAULT_LIMIT_PARAM, DEFAULT_OFFSET_PARAM, DEFAULT_PAGE_PARAM,
    HeaderCursorPaginator, HeaderLinkPaginator, JsonLinkPaginator, OffsetPaginator,
    PageNumberPaginator, PagePlace, Paginator,
};
pub use validate::{MIN_REQUESTS_PER_SECOND, check_requests_per_second, parse_json_path};

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::retry::RetryPolicy;
use crate::schema::ColumnHint;
use crate::secret::SecretRef;

/// `pipeline.name` when not set (dlt's `rest_api` source name).
pub const DEFAULT_PIPELINE_NAME: &str = "rest_api";
/// `client.timeout` when not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// `client.max_pages` by default: far above any real paging (10^8 records in pages of 100),
/// low enough that an API paged forever stops within hours rather than never.
pub const DEFAULT_MAX_PAGES: u64 = 1_000_000;
/// `client.max_response_bytes` by default: 64 MiB of body (after decompression) for one
/// answer, some hundred times a page of 100 records of a typical API, small enough that
/// the extractor's memory stays bounded whatever an API sends.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// The whole config, validated, with every default applied. `Debug` hides the values of
/// librdkafka settings that hold credentials (see [`is_secret_setting`]).
#[derive(Clone, PartialEq)]
pub struct PipelineConfig {
    pub pipeline_name: String,
    /// librdkafka settings, passed through verbatim.
    pub kafka: BTreeMap<String, String>,
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// Where the extractor publishes each resource's schema; default `_<pipeline_name>_schemas`.
    pub schema_topic: String,
    pub client: ClientConfig,
    pub resources: Vec<ResourceConfig>,
}

/// Whether a librdkafka setting holds a credential (`sasl.password`,
/// `ssl.key.password`, `sasl.oauthbearer.client.secret`, `ssl.key.pem`, ...).
pub fn is_secret_setting(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "jaas", "key.pem", "keystore", "token"]
        .iter()
        .any(|word| name.contains(word))
}

impl fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kafka: BTreeMap<&str, &str> = self
            .kafka
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_setting(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("PipelineConfig")
            .field("pipeline_name", &self.pipeline_name)
            .field("kafka", &kafka)
            .field("schema_registry", &self.schema_registry)
            .field("schema_topic", &self.schema_topic)
            .field("client", &self.client)
            .field("resources", &self.resources)
            .finish()
    }
}

impl PipelineConfig {
    /// Every secret the config refers to, with the key path that refers to it.
    pub fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut refs = self.client.secret_refs();
        if let Some(password) = self
            .schema_registry
            .as_ref()
            .and_then(|r| r.password.as_ref())
        {
            refs.push(("schema_registry.password", password));
        }
        refs
    }

    pub fn resource(&self, name: &str) -> Option<&ResourceConfig> {
        self.resources.iter().find(|r| r.name == name)
    }
}

/// A Confluent-compatible schema registry (`[schema_registry]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRegistryConfig {
    pub url: Url,
    /// Basic auth: both or neither.
    pub username: Option<String>,
    pub password: Option<SecretRef>,
}

/// dlt's `client`: how to call the API.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub base_url: Url,
    pub headers: BTreeMap<String, String>,
    pub auth: Option<AuthConfig>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// `max_requests_per_second` (not a dlt key): at most this many requests a second, all
    /// resources together; `None` is unlimited.
    pub max_requests_per_second: Option<f64>,
    /// `max_pages` (not a dlt key): the most pages one paging of an endpoint may take (a
    /// resource's run, or one parent record's children) before it stops with an error.
    pub max_pages: u64,
    /// `max_response_bytes` (not a dlt key): the largest body one answer may have once
    /// decompressed; a larger one fails its request, naming the URL and this key.
    pub max_response_bytes: u64,
    /// `trusted_hosts` (not a dlt key): hosts besides `base_url`'s that a next link or a
    /// redirect may lead to with the credentials.
    pub trusted_hosts: Vec<String>,
}

impl ClientConfig {
    /// The URL of an endpoint: `path` joined to `base_url` as dlt does (one `/` between
    /// them), or `path` itself when it is an absolute `http(s)` URL.
    pub fn endpoint_url(&self, path: &str) -> Result<Url, url::ParseError> {
        if path.starts_with("http://") || path.starts_with("https://") {
            return Url::parse(path);
        }
        let base = self.base_url.as_str();
        let base = match base.find(['?', '#']) {
            Some(end) => &base[..end],
            None => base,
        };
        Url::parse(&format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        ))
    }

    /// The secrets `auth` refers to, with their key paths.
    pub fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        match &self.auth {
            None => Vec::new(),
            Some(AuthConfig::ApiKey(a)) => vec![("client.auth.api_key", &a.api_key)],
            Some(AuthConfig::Bearer(a)) => vec![("client.auth.token", &a.token)],
            Some(AuthConfig::HttpBasic(a)) => vec![("client.auth.password", &a.password)],
            Some(AuthConfig::OAuth2ClientCredentials(a)) => vec![
                ("client.auth.client_id", &a.client_id),
                ("client.auth.client_secret", &a.client_secret),
            ],
        }
    }
}

/// One resource: one endpoint, one topic, one table.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceConfig {
    pub name: String,
    /// Default: `pipeline.topic_prefix` + the name with characters Kafka rejects replaced by `_`.
    pub topic: String,
    /// Default: the name.
    pub table_name: String,
    pub primary_key: Vec<String>,
    pub write_disposition: WriteDisposition,
    /// With `merge`: how (dlt's `strategy`); `None` with `append` and `replace`.
    pub merge_strategy: Option<MergeStrategy>,
    /// dlt's `scd2` options (defaults unless the strategy is `scd2` and they are set).
    pub scd2: Scd2Config,
    /// dlt's `merge_key` (with the `delete-insert` strategy only): a run's records replace
    /// every row whose merge key one of them has. Empty: none.
    pub merge_key: Vec<String>,
    pub endpoint: EndpointConfig,
    pub columns: BTreeMap<String, ColumnHint>,
    /// dlt's `schema_contract`: what the loader does with a new table, a new column, or a
    /// value of another type (a variant column), each on its own. Default: evolve all.
    pub schema_contract: SchemaContract,
    /// The resource whose records this one's requests are made from (dlt's dependent
    /// resources): named by the `{resources.<parent>.<field>}` placeholders of its path and
    /// params (a `resolve` param becomes such a placeholder).
    pub parent: Option<String>,
    /// dlt's `include_from_parent`: parent fields (dotted paths) copied into each record as
    /// `_<parent>_<field>` (dots in the field become `_`).
    pub include_from_parent: Vec<String>,
    /// dlt's `max_table_nesting`: how deep lists become child tables (`0`: lists stay JSON
    /// columns). Default: unlimited. Applied by the loader.
    pub max_table_nesting: Option<usize>,
}

/// dlt's schema contract modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractMode {
    /// Create the table or column and write the value.
    #[default]
    Evolve,
    /// Refuse the record: it goes to the dead-letter topic (or stops the loader with
    /// `--on-error stop`).
    Freeze,
    /// Skip the record (counted and logged).
    DiscardRow,
    /// Write the record without the value (no column is created or changed).
    DiscardValue,
}

impl ContractMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ContractMode::Evolve => "evolve",
            ContractMode::Freeze => "freeze",
            ContractMode::DiscardRow => "discard_row",
            ContractMode::DiscardValue => "discard_value",
        }
    }
}

/// dlt's `schema_contract`, resolved per entity: `"freeze"` sets all three; a table
/// `{ tables = "evolve", columns = "freeze", data_type = "discard_row" }` sets each (an
/// entity left out evolves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaContract {
    /// A table the destination does not have yet.
    #[serde(default)]
    pub tables: ContractMode,
    /// A field the destination table has no column for.
    #[serde(default)]
    pub columns: ContractMode,
    /// A value whose type does not fit its column: a variant field (`x__v_text`) or a
    /// widened type (`bigint` → `double`).
    #[serde(default)]
    pub data_type: ContractMode,
}

/// dlt's `write_disposition`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteDisposition {
    #[default]
    Append,
    Replace,
    Merge,
}

impl WriteDisposition {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteDisposition::Append => "append",
            WriteDisposition::Replace => "replace",
            WriteDisposition::Merge => "merge",
        }
    }
}

impl fmt::Display for WriteDisposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// dlt's merge strategies that the loader supports. Both keep one row per primary key, the
/// record's latest version (see docs/config.md, "Write dispositions", for what differs from
/// dlt's SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeStrategy {
    /// dlt's default: the rows whose primary key the load has are deleted and the load's rows
    /// inserted.
    DeleteInsert,
    /// `INSERT … ON CONFLICT (primary key) DO UPDATE`.
    Upsert,
    /// dlt's `scd2`: every version of a record is a row with `_dlt_valid_from` /
    /// `_dlt_valid_to`; a run's end retires the active rows its records no longer have.
    Scd2,
}

/// dlt's `scd2` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scd2Config {
    /// `validity_column_names`: the "valid from" and "valid to" columns (normalised).
    pub valid_from: String,
    pub valid_to: String,
    /// `active_record_timestamp`: the "valid to" of an active row (microseconds since 1970,
    /// UTC); `None`: null (dlt's default).
    pub active_record_timestamp: Option<i64>,
    /// `boundary_timestamp`: the time every run retires and inserts at, instead of the
    /// run's own (microseconds since 1970, UTC).
    pub boundary_timestamp: Option<i64>,
    /// `row_version_column_name`: the column (normalised) that tells versions apart,
    /// instead of every content column.
    pub row_version: Option<String>,
    /// The resource's `merge_key` (normalised), dlt's incremental scd2: a run retires only
    /// the active rows of merge key values its records have. Empty: none.
    pub merge_key: Vec<String>,
}

impl Default for Scd2Config {
    fn default() -> Self {
        Scd2Config {
            valid_from: "_dlt_valid_from".to_owned(),
            valid_to: "_dlt_valid_to".to_owned(),
            active_record_timestamp: None,
            boundary_timestamp: None,
            row_version: None,
            merge_key: Vec::new(),
        }
    }
}

impl MergeStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeStrategy::DeleteInsert => "delete-insert",
            MergeStrategy::Upsert => "upsert",
            MergeStrategy::Scd2 => "scd2",
        }
    }
}

/// A resource's `endpoint`, merged with `resource_defaults` and `client.paginator`.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// Relative to `client.base_url` (see [`ClientConfig::endpoint_url`]); default: the
    /// resource name.
    pub path: String,
    pub method: Method,
    /// Query parameters; each a JSON string, number or boolean.
    pub params: BTreeMap<String, Value>,
    /// The JSON body (for `POST`).
    pub json: Option<Value>,
    /// dlt's endpoint `headers`: sent with every request of the endpoint, over
    /// `client.headers` of the same name; values may hold placeholders.
    pub headers: BTreeMap<String, String>,
    /// dlt's `data`: a form body (a table: `application/x-www-form-urlencoded`, a list
    /// value repeating its key) or a raw body (a string), instead of `json`.
    pub data: Option<Value>,
    /// dlt's JSONPath to the records in a response (`data`, `$.data`, `results.items`); `None`:
    /// the response itself when it is a list. Parse with [`parse_json_path`].
    pub data_selector: Option<String>,
    pub paginator: Paginator,
    /// dlt's `response_actions`, in order: the first that matches a response decides.
    pub response_actions: Vec<ResponseAction>,
    /// `allow_null_data` (not a dlt key): a `null` at `data_selector` is an empty page;
    /// otherwise an error (dlt takes it for an empty page with a warning).
    pub allow_null_data: bool,
    /// dlt's incremental loading: `endpoint.incremental`, or a param written
    /// `{ type = "incremental", ... }` (then `start_param` is that param's name).
    pub incremental: Option<Incremental>,
    /// dlt's endpoint `auth`: the credentials of this endpoint's requests.
    pub auth: EndpointAuth,
}

/// Which credentials an endpoint's requests carry: dlt's
/// `endpoint.get("auth", client.get("auth"))`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EndpointAuth {
    /// `client.auth` (the endpoint has no `auth`).
    #[default]
    Client,
    /// None: the endpoint's `auth` is `null` (JSON or YAML; TOML has no null).
    NoAuth,
    /// The endpoint's own, instead of `client.auth`.
    Own(AuthConfig),
}

impl EndpointAuth {
    /// The auth the endpoint's requests carry, given `client.auth`.
    pub fn resolve<'a>(&'a self, client: Option<&'a AuthConfig>) -> Option<&'a AuthConfig> {
        match self {
            EndpointAuth::Client => client,
            EndpointAuth::NoAuth => None,
            EndpointAuth::Own(auth) => Some(auth),
        }
    }
}

/// One of dlt's `response_actions`: a response with this status and/or whose body contains
/// `content` gets `action`. At least one of the two is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseAction {
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub content: Option<String>,
    pub action: ResponseActionKind,
}

/// What a matching response action does. dlt also takes Python callables, which a config
/// file cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseActionKind {
    /// The response counts as an empty page that ends the paging.
    Ignore,
}

impl ResponseAction {
    /// dlt's rule: both keys must match when both are set.
    pub fn matches(&self, status: u16, body: &[u8]) -> bool {
        self.status_code.is_none_or(|s| s == status)
            && self
                .content
                .as_deref()
                .is_none_or(|c| String::from_utf8_lossy(body).contains(c))
    }
}

/// One resource's incremental cursor, as dlt's `incremental` config: the start value (the
/// last run's maximum of `cursor_path`, or `initial_value` on the first run) goes into
/// `start_param` and the `{incremental.start_value}` placeholders of the path, the params
/// and the JSON body (see [`crate::template`]). On a dependent resource it is one cursor
/// for all its records, as in dlt.
#[derive(Debug, Clone, PartialEq)]
pub struct Incremental {
    pub start_param: Option<String>,
    pub end_param: Option<String>,
    /// A dlt JSONPath into each record (parse with [`parse_json_path`]).
    pub cursor_path: String,
    /// A string or a number.
    pub initial_value: Option<Value>,
    /// A string or a number; records at or above it are dropped (dlt's open range end), and
    /// the cursor state is left as it was (a backfill, as in dlt).
    pub end_value: Option<Value>,
    /// dlt's `lag`, `range_start`, `range_end`, `row_order` and `on_cursor_value_missing`.
    pub options: IncrementalOptions,
}

/// dlt's incremental options beside the cursor and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct IncrementalOptions {
    /// dlt's `lag`: the start value is the saved cursor moved back by this much (seconds
    /// for a datetime text, days for a date text, the number itself for a number), never
    /// below `initial_value`; the saved cursor itself only moves forward.
    pub lag: Option<f64>,
    /// dlt's `range_start`: `Closed` (default) keeps records equal to the start value
    /// (those already loaded are de-duplicated), `Open` drops them.
    pub range_start: RangeBound,
    /// dlt's `range_end`: `Open` (default) drops records equal to `end_value`, `Closed`
    /// keeps them.
    pub range_end: RangeBound,
    /// dlt's `row_order`: the API returns records in this cursor order, so the paging stops
    /// after the first page with a record beyond the range (`asc`: at or past the end
    /// value; `desc`: below or at the start value).
    pub row_order: Option<RowOrder>,
    /// dlt's `on_cursor_value_missing`: what a record without a value (or with `null`) at
    /// `cursor_path` gets.
    pub on_cursor_value_missing: OnCursorValueMissing,
}

impl Incremental {
    /// dlt's de-duplication at the start value (`boundary_deduplication`): records equal to
    /// the start value that an earlier run loaded are skipped. Off with `lag`, an open
    /// `range_start` and an `end_value`, as in dlt.
    pub fn deduplicates(&self) -> bool {
        self.options.lag.is_none_or(|l| l == 0.0)
            && self.options.range_start == RangeBound::Closed
            && self.end_value.is_none()
    }
}

/// dlt's `range_start` / `range_end` (`TIncrementalRange`): whether the bound's own value
/// is in the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeBound {
    Open,
    Closed,
}

impl Default for IncrementalOptions {
    /// dlt's defaults: no lag, `range_start = "closed"`, `range_end = "open"`, no row
    /// order, `on_cursor_value_missing = "raise"`.
    fn default() -> Self {
        Self {
            lag: None,
            range_start: RangeBound::Closed,
            range_end: RangeBound::Open,
            row_order: None,
            on_cursor_value_missing: OnCursorValueMissing::Raise,
        }
    }
}

/// dlt's `row_order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOrder {
    Asc,
    Desc,
}

/// dlt's `on_cursor_value_missing`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCursorValueMissing {
    /// The run fails, naming the record (dlt's default).
    #[default]
    Raise,
    /// The record is kept; it does not move the cursor.
    Include,
    /// The record is dropped.
    Exclude,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Method {
    #[default]
    #[serde(rename = "GET", alias = "get")]
    Get,
    #[serde(rename = "POST", alias = "post")]
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn debug_hides_kafka_credentials() {
        let mut config =
            toml("[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"r\"\n").unwrap();
        let _ = config
            .kafka
            .insert("sasl.password".into(), "hunter2".into());
        let _ = config.kafka.insert("sasl.username".into(), "alice".into());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn endpoint_urls() {
        let config = toml(&with("")).unwrap();
        let client = &config.client;
        assert_eq!(
            client.endpoint_url("v1/x").unwrap().as_str(),
            "https://api.example.com/v1/x"
        );
        assert_eq!(
            client.endpoint_url("https://other/x").unwrap().as_str(),
            "https://other/x"
        );
    }

    #[test]
    fn response_actions_match_status_and_or_content() {
        let action = |status_code: Option<u16>, content: Option<&str>| ResponseAction {
            status_code,
            content: content.map(str::to_owned),
            action: ResponseActionKind::Ignore,
        };
        let cases = [
            (action(Some(404), None), 404, "", true),
            (action(Some(404), None), 400, "", false),
            (
                action(None, Some("Not found")),
                200,
                r#"{"e":"Not found"}"#,
                true,
            ),
            (
                action(None, Some("Not found")),
                404,
                r#"{"e":"not found"}"#,
                false,
            ),
            (action(Some(404), Some("gone")), 404, "it is gone", true),
            (action(Some(404), Some("gone")), 404, "missing", false),
            (action(Some(404), Some("gone")), 410, "gone", false),
        ];
        for (a, status, body, expected) in cases {
            assert_eq!(
                a.matches(status, body.as_bytes()),
                expected,
                "{a:?} {status} {body}"
            );
        }
    }
}
