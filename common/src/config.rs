//! The pipeline config: the same dict as dlt's `rest_api_source({...})`, key for key, written
//! as TOML, JSON or YAML (`client`, `resource_defaults`, `resources[].endpoint.paginator`),
//! plus three sections of ours: `pipeline`, `kafka` and `schema_registry`.
//!
//! Two steps, both pure: parsing into the raw document (every key checked, errors naming the
//! file and the key path, e.g. `resources[0].endpoint.paginator.limitt: unknown field`), then
//! validation, which merges `resource_defaults` into each resource as dlt does and resolves
//! the defaults into a [`PipelineConfig`]. Secrets stay [`SecretRef`]s: resolving them is the
//! job of [`crate::secret::SecretResolver`], in the process that sends them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use url::Url;

use crate::retry::RetryPolicy;
use crate::schema::{ColumnHint, DataType};
use crate::secret::SecretRef;

/// `pipeline.name` when not set (dlt's `rest_api` source name).
pub const DEFAULT_PIPELINE_NAME: &str = "rest_api";
/// `client.timeout` when not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// `client.max_pages` by default: far above any real paging (10^8 records in pages of 100),
/// low enough that an API paged forever stops within hours rather than never.
pub const DEFAULT_MAX_PAGES: u64 = 1_000_000;
/// Kafka's limit on a topic name's length.
pub const MAX_TOPIC_LEN: usize = 249;

// ---------------------------------------------------------------------------------------------
// The resolved config: what the extractor and the loader use.
// ---------------------------------------------------------------------------------------------

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

/// dlt's `client.auth`, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    ApiKey(ApiKeyAuth),
    Bearer(BearerAuth),
    HttpBasic(HttpBasicAuth),
    OAuth2ClientCredentials(OAuth2ClientCredentialsAuth),
}

impl AuthConfig {
    /// The `type` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthConfig::ApiKey(_) => "api_key",
            AuthConfig::Bearer(_) => "bearer",
            AuthConfig::HttpBasic(_) => "http_basic",
            AuthConfig::OAuth2ClientCredentials(_) => "oauth2_client_credentials",
        }
    }
}

/// `{ type = "api_key", name = "api_key", api_key = { secret = "api_key" }, location = "query" }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// The header, query parameter or cookie that carries the key (dlt's default).
    #[serde(default = "default_api_key_name")]
    pub name: String,
    pub api_key: SecretRef,
    #[serde(default)]
    pub location: ApiKeyLocation,
}

fn default_api_key_name() -> String {
    "Authorization".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    #[default]
    Header,
    Query,
    Cookie,
}

/// `{ type = "bearer", token = { secret = "token" } }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    pub token: SecretRef,
}

/// `{ type = "http_basic", username = "u", password = { secret = "password" } }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBasicAuth {
    pub username: String,
    pub password: SecretRef,
}

/// dlt's `OAuth2ClientCredentials`: a token from `access_token_url` (a form POST with
/// `grant_type=client_credentials`, `client_id`, `client_secret` and
/// `access_token_request_data`), sent as `Authorization: Bearer <token>`.
///
/// `{ type = "oauth2_client_credentials", access_token_url = "https://auth/token",
///    client_id = { secret = "client_id" }, client_secret = { secret = "client_secret" } }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ClientCredentialsAuth {
    /// An absolute `http(s)` URL.
    pub access_token_url: String,
    pub client_id: SecretRef,
    pub client_secret: SecretRef,
    /// Extra form fields of the token request (`scope`, `audience`, ...).
    #[serde(default)]
    pub access_token_request_data: BTreeMap<String, String>,
    /// Seconds a token lives when the token response has no `expires_in`.
    #[serde(default = "default_token_expiration")]
    pub default_token_expiration: u64,
}

/// dlt's `default_token_expiration`.
pub const DEFAULT_TOKEN_EXPIRATION: u64 = 3600;

fn default_token_expiration() -> u64 {
    DEFAULT_TOKEN_EXPIRATION
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

/// A piece of an endpoint path or param value (see [`parse_template`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    /// `{resources.<resource>.<field>}`: the value of `field` (a dotted path) in the parent
    /// record the request is made for.
    Parent {
        resource: String,
        field: Vec<String>,
    },
}

/// Splits `text` at its `{resources.<resource>.<field>}` placeholders (dlt's dependent
/// resources; `field` may be a dotted path into the record). Other text, braces included,
/// is kept as text.
pub fn parse_template(text: &str) -> Result<Vec<TemplatePart>, String> {
    const START: &str = "{resources.";
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(START) {
        if at > 0 {
            parts.push(TemplatePart::Text(rest[..at].to_owned()));
        }
        let after = &rest[at + START.len()..];
        let Some(end) = after.find('}') else {
            return Err(format!(
                "`{text}`: a `{START}` placeholder has no closing `}}`"
            ));
        };
        let inner = &after[..end];
        let mut names = inner.split('.');
        let resource = names.next().unwrap_or_default().trim();
        let field: Vec<String> = names.map(|f| f.trim().to_owned()).collect();
        if resource.is_empty() {
            return Err(format!(
                "`{text}`: placeholder `{{resources.{inner}}}` names no resource"
            ));
        }
        if field.is_empty() || field.iter().any(String::is_empty) {
            return Err(format!(
                "`{text}`: placeholder `{{resources.{inner}}}` needs a field: \
                 `{{resources.{resource}.<field>}}`"
            ));
        }
        parts.push(TemplatePart::Parent {
            resource: resource.to_owned(),
            field,
        });
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// One resource's incremental cursor, as dlt's `incremental` config: the start value (the
/// last run's maximum of `cursor_path`, or `initial_value` on the first run) goes into
/// `start_param` and the `{incremental.start_value}` placeholders of `params`.
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
}

/// The placeholders a param string may hold, as dlt names them (`last_value` is dlt's older
/// name of `start_value`).
pub const INCREMENTAL_PLACEHOLDERS: [&str; 3] = [
    "{incremental.start_value}",
    "{incremental.last_value}",
    "{incremental.end_value}",
];

/// dlt's order of cursor values: as numbers when both are numbers, else as strings (ISO
/// timestamps in one format order correctly as strings).
pub fn cursor_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x.cmp(&y)
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x.cmp(&y)
            } else {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        }
        _ => cursor_text(a).cmp(&cursor_text(b)),
    }
}

/// A cursor value as it is sent in a query parameter.
pub fn cursor_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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

/// dlt's `paginator`, tagged by `type`. As in dlt, a type whose keys all have defaults may be
/// written as a bare string (`paginator = "json_link"`, `"auto"`, `"single_page"`).
/// Default (when neither the endpoint, `resource_defaults` nor `client` has one): single page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paginator {
    Offset(OffsetPaginator),
    PageNumber(PageNumberPaginator),
    JsonLink(JsonLinkPaginator),
    HeaderLink(HeaderLinkPaginator),
    /// `cursor`, also written `json_response_cursor`.
    Cursor(CursorPaginator),
    HeaderCursor(HeaderCursorPaginator),
    SinglePage,
    /// Detected from the first response, as dlt does when no paginator is given.
    Auto,
}

impl Paginator {
    /// The `type` as written in the config (the canonical name of an alias).
    pub fn kind(&self) -> &'static str {
        match self {
            Paginator::Offset(_) => "offset",
            Paginator::PageNumber(_) => "page_number",
            Paginator::JsonLink(_) => "json_link",
            Paginator::HeaderLink(_) => "header_link",
            Paginator::Cursor(_) => "cursor",
            Paginator::HeaderCursor(_) => "header_cursor",
            Paginator::SinglePage => "single_page",
            Paginator::Auto => "auto",
        }
    }
}

/// dlt's `PageNumberPaginator`: `?page=<n>`, then `n += 1`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageNumberPaginator {
    /// The number of the API's first page (0 or 1, usually).
    #[serde(default)]
    pub base_page: u64,
    /// The page to start at; default `base_page`.
    #[serde(default)]
    pub page: Option<u64>,
    #[serde(default = "default_page_param")]
    pub page_param: String,
    /// JSONPath to the number of pages in a response; stops when the next page would be
    /// past it. Default `total`; `null` or `""` turns it off.
    #[serde(default = "default_total_path", deserialize_with = "empty_as_none")]
    pub total_path: Option<String>,
    /// Stops before requesting this page number or a later one.
    #[serde(default)]
    pub maximum_page: Option<u64>,
    /// Stops at the first page with no records.
    #[serde(default = "default_true")]
    pub stop_after_empty_page: bool,
}

fn default_page_param() -> String {
    "page".to_owned()
}

/// dlt's `JSONLinkPaginator`: the next page's URL is in the response body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonLinkPaginator {
    /// JSONPath to the next URL (absolute, or relative to the request's URL); stops when it
    /// is missing, `null` or empty.
    #[serde(default = "default_next")]
    pub next_url_path: String,
}

/// dlt's `HeaderLinkPaginator`: the next page's URL is in the `Link` header (RFC 8288).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderLinkPaginator {
    /// The `rel` of the next page's link.
    #[serde(default = "default_next")]
    pub links_next_key: String,
}

fn default_next() -> String {
    "next".to_owned()
}

/// dlt's `JSONResponseCursorPaginator`: a cursor from the response body, sent back as a
/// query parameter or, for a POST, inside the JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorPaginator {
    /// JSONPath to the cursor in a response; stops when it is missing, `null` or empty.
    #[serde(default = "default_cursor_path")]
    pub cursor_path: String,
    /// The query parameter that carries the cursor; default `cursor` unless
    /// `cursor_body_path` is set.
    #[serde(default)]
    pub cursor_param: Option<String>,
    /// Dotted path in the JSON body that carries the cursor (`pagination.cursor`).
    #[serde(default)]
    pub cursor_body_path: Option<String>,
}

fn default_cursor_path() -> String {
    "cursors.next".to_owned()
}

/// dlt's `HeaderCursorPaginator`: a cursor from a response header, sent back as a query
/// parameter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderCursorPaginator {
    /// The response header that carries the cursor; stops when it is missing or empty.
    #[serde(default = "default_next")]
    pub cursor_key: String,
    #[serde(default = "default_cursor_param")]
    pub cursor_param: String,
}

fn default_cursor_param() -> String {
    "cursor".to_owned()
}

/// dlt's `OffsetPaginator`: `?offset=0&limit=100`, then `offset += limit`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetPaginator {
    /// Records per page; required, > 0.
    pub limit: u64,
    #[serde(default)]
    pub offset: u64,
    #[serde(default = "default_offset_param")]
    pub offset_param: String,
    #[serde(default = "default_limit_param")]
    pub limit_param: String,
    /// JSONPath to the total record count in a response; stops when `offset >= total`.
    /// Default `total`; `null` or `""` turns it off.
    #[serde(default = "default_total_path", deserialize_with = "empty_as_none")]
    pub total_path: Option<String>,
    /// Stops before requesting an offset at or past this.
    #[serde(default)]
    pub maximum_offset: Option<u64>,
    /// Stops at the first page with no records.
    #[serde(default = "default_true")]
    pub stop_after_empty_page: bool,
}

fn default_offset_param() -> String {
    "offset".to_owned()
}

fn default_limit_param() -> String {
    "limit".to_owned()
}

fn default_total_path() -> Option<String> {
    Some("total".to_owned())
}

fn default_true() -> bool {
    true
}

fn empty_as_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|s| !s.is_empty()))
}

/// A dlt JSONPath (`data`, `meta.total`, `$.data[*]`) as an RFC 9535 path: a path without
/// the leading `$` is taken relative to the root.
pub fn parse_json_path(expr: &str) -> Result<serde_json_path::JsonPath, String> {
    let expr = expr.trim();
    let normalized = if expr.starts_with('$') {
        expr.to_owned()
    } else if expr.starts_with('[') {
        format!("${expr}")
    } else {
        format!("$.{expr}")
    };
    serde_json_path::JsonPath::parse(&normalized)
        .map_err(|e| format!("`{expr}` is not a JSONPath: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One thing wrong with the config, at a key path like `resources[0].primary_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "config file {}: unknown format, expected a .toml, .json, .yaml or .yml file",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    /// Not the shape of a config: syntax, unknown key, wrong type, missing key.
    #[error("{origin}: {problem}")]
    Parse { origin: String, problem: Problem },
    /// The right shape but wrong values.
    #[error("{origin}: {}", list_problems(problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Every problem found, each with its key path.
    pub fn problems(&self) -> Vec<&Problem> {
        match self {
            ConfigError::Parse { problem, .. } => vec![problem],
            ConfigError::Invalid { problems, .. } => problems.iter().collect(),
            ConfigError::Read { .. } | ConfigError::UnknownFormat { .. } => Vec::new(),
        }
    }
}

fn list_problems(problems: &[Problem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let all: Vec<String> = many.iter().map(Problem::to_string).collect();
            format!("{} problems: {}", many.len(), all.join("; "))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// The config file's language, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
    Yaml,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Reads, parses and validates the config file at `path` (format from its extension).
pub fn load(path: &Path) -> Result<PipelineConfig, ConfigError> {
    let format = Format::from_path(path).ok_or_else(|| ConfigError::UnknownFormat {
        path: path.to_owned(),
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, format, &path.display().to_string())
}

/// Parses and validates a config document; `origin` (the file name) starts every error.
pub fn parse(text: &str, format: Format, origin: &str) -> Result<PipelineConfig, ConfigError> {
    let raw = parse_raw(text, format).map_err(|problem| ConfigError::Parse {
        origin: origin.to_owned(),
        problem,
    })?;
    resolve(raw).map_err(|problems| ConfigError::Invalid {
        origin: origin.to_owned(),
        problems,
    })
}

fn parse_raw(text: &str, format: Format) -> Result<RawDocument, Problem> {
    match format {
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| Problem {
                path: String::new(),
                message: crate::secret::toml_error_summary(text, &e),
            })?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let message = crate::secret::toml_error_summary(text, e.inner());
                problem_from(e.path(), &message)
            })
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let raw = serde_path_to_error::deserialize(&mut de)
                .map_err(|e| problem_from(e.path(), &e.inner().to_string()))?;
            de.end().map_err(|e| Problem {
                path: String::new(),
                message: e.to_string(),
            })?;
            Ok(raw)
        }
        Format::Yaml => {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de)
                .map_err(|e| problem_from(e.path(), &e.inner().to_string()))
        }
    }
}

/// Wraps the sub-path that a replayed map (see [`Tagged`]) adds to an error's message, for
/// [`problem_from`] to move into the path.
const SUBPATH_MARK: char = '\u{1}';

fn marked<E: de::Error>(sub_path: &str, error: impl fmt::Display) -> E {
    E::custom(format_args!(
        "{SUBPATH_MARK}{sub_path}{SUBPATH_MARK}{error}"
    ))
}

fn join_path(parent: &str, child: &str) -> String {
    if parent.is_empty() || parent == "." {
        child.to_owned()
    } else if child.is_empty() || child == "." {
        parent.to_owned()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}

/// The problem at `path` (from `serde_path_to_error`) whose message may carry sub-paths
/// marked by [`marked`], and (from YAML) a copy of the path in front.
fn problem_from(path: &serde_path_to_error::Path, message: &str) -> Problem {
    let mut path = path.to_string();
    let mut rest = message;
    if let Some(start) = rest.find(SUBPATH_MARK) {
        rest = &rest[start..];
    } else if let Some((yaml_path, stripped)) = rest.split_once(": ") {
        // serde_yaml_ng puts its own path (ours, or its parent for a key error) in front.
        let is_ours = path
            .strip_prefix(yaml_path)
            .is_some_and(|tail| tail.is_empty() || tail.starts_with('.') || tail.starts_with('['));
        if is_ours && !yaml_path.is_empty() && !yaml_path.contains(' ') {
            rest = stripped;
        }
    }
    while let Some((sub, tail)) = rest
        .strip_prefix(SUBPATH_MARK)
        .and_then(|r| r.split_once(SUBPATH_MARK))
    {
        path = join_path(&path, sub);
        rest = tail;
    }
    if path == "." {
        path.clear();
    }
    Problem {
        path,
        message: rest.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The raw document, as written
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(default)]
    pipeline: Option<RawPipeline>,
    #[serde(default)]
    kafka: Option<BTreeMap<String, KafkaValue>>,
    #[serde(default)]
    schema_registry: Option<RawSchemaRegistry>,
    client: RawClient,
    #[serde(default)]
    resource_defaults: Option<RawResource>,
    resources: Vec<OrBare<RawResource>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: Option<String>,
    schema_topic: Option<String>,
    topic_prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchemaRegistry {
    url: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<SecretRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    base_url: String,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    auth: Option<AuthConfig>,
    #[serde(default)]
    paginator: Option<Paginator>,
    /// Seconds.
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    retry: Option<RawRetry>,
    #[serde(default)]
    max_requests_per_second: Option<f64>,
    #[serde(default)]
    max_pages: Option<u64>,
    #[serde(default)]
    trusted_hosts: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_retries: Option<usize>,
    backoff_factor: Option<f64>,
    initial_delay: Option<f64>,
    max_delay: Option<f64>,
    retry_after_max: Option<f64>,
    statuses: Option<Vec<u16>>,
    jitter: Option<bool>,
}

/// A resource as written, and `resource_defaults` (which must not have a `name`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: Option<String>,
    topic: Option<String>,
    table_name: Option<String>,
    primary_key: Option<PrimaryKey>,
    write_disposition: Option<OrBare<WriteDispositionObject>>,
    endpoint: Option<OrBare<RawEndpoint>>,
    columns: Option<BTreeMap<String, ColumnHint>>,
    schema_contract: Option<OrBare<SchemaContract>>,
    include_from_parent: Option<Vec<String>>,
    max_table_nesting: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    path: Option<String>,
    method: Option<Method>,
    params: Option<BTreeMap<String, ParamValue>>,
    json: Option<Value>,
    data_selector: Option<String>,
    paginator: Option<Paginator>,
    response_actions: Option<Vec<ResponseAction>>,
    incremental: Option<RawIncremental>,
    allow_null_data: Option<bool>,
}

/// `endpoint.incremental` as written (dlt's `IncrementalConfig`; `convert` is not supported).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncremental {
    start_param: Option<String>,
    end_param: Option<String>,
    cursor_path: String,
    initial_value: Option<Value>,
    end_value: Option<Value>,
}

/// A param written `{ type = "incremental", cursor_path = ..., initial_value = ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIncrementalParam {
    cursor_path: String,
    initial_value: Option<Value>,
    end_value: Option<Value>,
}

/// dlt's object form `write_disposition = { disposition = "merge" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteDispositionObject {
    disposition: WriteDisposition,
}

/// A type that may also be written as a bare string: a resource (its name), an endpoint
/// (its path), a write disposition.
trait FromBareString: Sized {
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
    const EXPECTING: &'static str =
        "\"append\", \"replace\", \"merge\" or `{ disposition = \"merge\" }`";
    fn from_bare(s: &str) -> Result<Self, String> {
        WriteDisposition::deserialize(de::value::StrDeserializer::<de::value::Error>::new(s))
            .map(|disposition| WriteDispositionObject { disposition })
            .map_err(|_| {
                format!("unknown write disposition `{s}`, expected `append`, `replace` or `merge`")
            })
    }
}

/// `T` from a map (keys checked by `T`'s derived `Deserialize`, paths kept), or from a bare
/// string.
#[derive(Debug, Clone)]
struct OrBare<T>(T);

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
struct PrimaryKey(Vec<String>);

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
struct KafkaValue(String);

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

/// A query parameter value: a string, number or boolean, or a table with a `type`:
/// dlt's `{ type = "resolve", ... }` or `{ type = "incremental", ... }`.
#[derive(Debug, Clone)]
enum ParamValue {
    Scalar(Value),
    /// dlt's `{ type = "resolve", resource = "...", field = "..." }`.
    Resolve(ResolveParam),
    Incremental(RawIncrementalParam),
}

/// The keys of a `resolve` param besides its `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveParam {
    resource: String,
    field: String,
}

const PARAM_TYPES: &[&str] = &["incremental", "resolve"];

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamVisitor;
        const EXPECTING: &str = "a string, number or boolean, or a table with a `type` \
                                 (`incremental` or `resolve`)";

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
struct Tagged {
    tag: String,
    entries: Vec<(String, Value)>,
}

impl Tagged {
    fn read<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        Self::read_with(map, None)
    }

    /// As [`Tagged::read`], with `default` as the tag when there is no `type` but the
    /// table has the key `when` (dlt's `auth = { token = ... }` is a bearer token).
    fn read_or<'de, A: MapAccess<'de>>(
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
    fn variant<'de, T: Deserialize<'de>, E: de::Error>(self) -> Result<T, E> {
        T::deserialize(de::value::MapAccessDeserializer::new(Replay::<E> {
            entries: self.entries.into_iter(),
            pending: None,
            error: PhantomData,
        }))
    }

    fn unknown<E: de::Error>(&self, what: &str, supported: &[&str]) -> E {
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

const AUTH_TYPES: &[&str] = &[
    "api_key",
    "bearer",
    "http_basic",
    "oauth2_client_credentials",
];
const PAGINATOR_TYPES: &[&str] = &[
    "offset",
    "page_number",
    "json_link",
    "header_link",
    "cursor",
    "json_response_cursor",
    "header_cursor",
    "single_page",
    "auto",
];

impl<'de> Deserialize<'de> for AuthConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AuthVisitor;

        impl<'de> Visitor<'de> for AuthVisitor {
            type Value = AuthConfig;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an auth table with a `type`")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AuthConfig, A::Error> {
                // As dlt: a table with a `token` and no `type` is a bearer token.
                let tagged = Tagged::read_or(map, "bearer", "token")?;
                match tagged.tag.as_str() {
                    "api_key" => tagged.variant().map(AuthConfig::ApiKey),
                    "bearer" => tagged.variant().map(AuthConfig::Bearer),
                    "http_basic" => tagged.variant().map(AuthConfig::HttpBasic),
                    "oauth2_client_credentials" => {
                        tagged.variant().map(AuthConfig::OAuth2ClientCredentials)
                    }
                    _ => Err(tagged.unknown("auth", AUTH_TYPES)),
                }
            }
        }

        deserializer.deserialize_any(AuthVisitor)
    }
}

/// `{ type = "single_page" }` and `{ type = "auto" }`: no other keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

impl Tagged {
    /// The paginator this tag names, from the other entries.
    fn paginator<E: de::Error>(self) -> Result<Paginator, E> {
        match self.tag.as_str() {
            "offset" => self.variant().map(Paginator::Offset),
            "page_number" => self.variant().map(Paginator::PageNumber),
            // `json_response`: dlt's deprecated name of `json_link`.
            "json_link" | "json_response" => self.variant().map(Paginator::JsonLink),
            "header_link" => self.variant().map(Paginator::HeaderLink),
            "cursor" | "json_response_cursor" => self.variant().map(Paginator::Cursor),
            "header_cursor" => self.variant().map(Paginator::HeaderCursor),
            "single_page" => self.variant::<NoFields, _>().map(|_| Paginator::SinglePage),
            "auto" => self.variant::<NoFields, _>().map(|_| Paginator::Auto),
            _ => Err(self.unknown("paginator", PAGINATOR_TYPES)),
        }
    }
}

impl<'de> Deserialize<'de> for Paginator {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PaginatorVisitor;

        impl<'de> Visitor<'de> for PaginatorVisitor {
            type Value = Paginator;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a paginator table with a `type`, or a paginator type such as \"auto\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Paginator, E> {
                match v {
                    "offset" => Err(E::custom(
                        "the offset paginator needs a `limit`: write \
                         `paginator = { type = \"offset\", limit = 100 }`",
                    )),
                    known if PAGINATOR_TYPES.contains(&known) => Tagged {
                        tag: known.to_owned(),
                        entries: Vec::new(),
                    }
                    .paginator(),
                    other => Err(E::custom(format!(
                        "unknown or unsupported paginator `{other}`, expected one of: {}",
                        PAGINATOR_TYPES.join(", ")
                    ))),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Paginator, A::Error> {
                Tagged::read(map)?.paginator()
            }
        }

        deserializer.deserialize_any(PaginatorVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Validation and resolution
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Why Kafka would reject `topic`, if it would.
fn topic_problem(topic: &str) -> Option<String> {
    if topic.is_empty() {
        Some("a topic name must not be empty".to_owned())
    } else if topic == "." || topic == ".." {
        Some(format!("`{topic}` is not a valid topic name"))
    } else if topic.len() > MAX_TOPIC_LEN {
        Some(format!(
            "topic name `{topic}` is longer than Kafka's limit of {MAX_TOPIC_LEN} characters"
        ))
    } else {
        topic.chars().find(|c| !is_topic_char(*c)).map(|c| {
            format!(
                "topic name `{topic}` contains {c:?}; Kafka allows only letters, digits, `.`, \
                 `_` and `-`"
            )
        })
    }
}

/// `name` with every character Kafka rejects in a topic name replaced by `_`.
pub fn topic_name_from(name: &str) -> String {
    name.chars()
        .map(|c| if is_topic_char(c) { c } else { '_' })
        .collect()
}

/// Seconds as written (`30`, `0.5`) to a duration; `None` if negative or not finite.
fn seconds(value: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(value).ok()
}

fn resolve(raw: RawDocument) -> Result<PipelineConfig, Vec<Problem>> {
    let mut problems = Problems::default();

    let pipeline = raw.pipeline.unwrap_or_default();
    let pipeline_name = pipeline
        .name
        .unwrap_or_else(|| DEFAULT_PIPELINE_NAME.to_owned());
    if pipeline_name.is_empty() || !pipeline_name.chars().all(is_topic_char) {
        problems.push(
            "pipeline.name",
            format!(
                "`{pipeline_name}`: a pipeline name must be non-empty and use only letters, \
                 digits, `.`, `_` and `-`"
            ),
        );
    }
    let topic_prefix = pipeline.topic_prefix.unwrap_or_default();
    if let Some(c) = topic_prefix.chars().find(|c| !is_topic_char(*c)) {
        problems.push(
            "pipeline.topic_prefix",
            format!("contains {c:?}; Kafka allows only letters, digits, `.`, `_` and `-`"),
        );
    }
    let schema_topic = pipeline
        .schema_topic
        .unwrap_or_else(|| format!("_{}_schemas", topic_name_from(&pipeline_name)));
    if let Some(problem) = topic_problem(&schema_topic) {
        problems.push("pipeline.schema_topic", problem);
    }

    let mut kafka = BTreeMap::new();
    for (key, KafkaValue(value)) in raw.kafka.unwrap_or_default() {
        if key.trim().is_empty() {
            problems.push("kafka", "a setting name must not be empty");
        }
        let _ = kafka.insert(key, value);
    }

    let schema_registry = raw
        .schema_registry
        .and_then(|r| resolve_schema_registry(r, &mut problems));

    let client_paginator = raw.client.paginator.clone();
    if let Some(p) = &client_paginator {
        check_paginator("client.paginator", p, &mut problems);
    }
    let client = resolve_client(raw.client, &mut problems);

    let defaults = raw.resource_defaults.unwrap_or_default();
    if defaults.name.is_some() {
        problems.push(
            "resource_defaults.name",
            "`name` cannot have a default: each resource has its own",
        );
    }
    if let Some(OrBare(endpoint)) = &defaults.endpoint {
        check_endpoint("resource_defaults.endpoint", endpoint, &mut problems);
    }

    if raw.resources.is_empty() {
        problems.push("resources", "at least one resource is required");
    }
    let mut resources = Vec::new();
    for (i, OrBare(resource)) in raw.resources.into_iter().enumerate() {
        let at = format!("resources[{i}]");
        if let Some(OrBare(endpoint)) = &resource.endpoint {
            check_endpoint(&format!("{at}.endpoint"), endpoint, &mut problems);
        }
        let merged = merge_resource(resource, &defaults);
        if let Some(resource) = resolve_resource(
            &at,
            merged,
            &topic_prefix,
            client_paginator.as_ref(),
            client.as_ref(),
            &mut problems,
        ) {
            resources.push((i, resource));
        }
    }
    check_unique(&resources, &schema_topic, &mut problems);
    check_dependencies(&resources, &mut problems);
    let resources = resources.into_iter().map(|(_, r)| r).collect();

    match client {
        Some(client) if problems.0.is_empty() => Ok(PipelineConfig {
            pipeline_name,
            kafka,
            schema_registry,
            schema_topic,
            client,
            resources,
        }),
        _ => Err(problems.0),
    }
}

fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("`{text}` is not an http:// or https:// URL"));
    }
    Ok(url)
}

fn resolve_schema_registry(
    raw: RawSchemaRegistry,
    problems: &mut Problems,
) -> Option<SchemaRegistryConfig> {
    let url = parse_http_url(&raw.url)
        .map_err(|e| problems.push("schema_registry.url", e))
        .ok();
    match (&raw.username, &raw.password) {
        (Some(_), None) => problems.push(
            "schema_registry.password",
            "missing: basic auth needs both `username` and `password`",
        ),
        (None, Some(_)) => problems.push(
            "schema_registry.username",
            "missing: basic auth needs both `username` and `password`",
        ),
        _ => {}
    }
    Some(SchemaRegistryConfig {
        url: url?,
        username: raw.username,
        password: raw.password,
    })
}

fn resolve_client(raw: RawClient, problems: &mut Problems) -> Option<ClientConfig> {
    let base_url = parse_http_url(&raw.base_url)
        .map_err(|e| problems.push("client.base_url", e))
        .ok();

    let headers = raw.headers.unwrap_or_default();
    for (name, value) in &headers {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !valid_name {
            problems.push(
                format!("client.headers.{name}"),
                "not a valid HTTP header name",
            );
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            problems.push(
                format!("client.headers.{name}"),
                "a header value must not contain control characters",
            );
        }
    }

    match &raw.auth {
        Some(AuthConfig::ApiKey(a)) if a.name.trim().is_empty() => {
            problems.push("client.auth.name", "must not be empty");
        }
        Some(AuthConfig::HttpBasic(a)) if a.username.is_empty() => {
            problems.push("client.auth.username", "must not be empty");
        }
        Some(AuthConfig::OAuth2ClientCredentials(a)) => {
            if let Err(e) = parse_http_url(&a.access_token_url) {
                problems.push("client.auth.access_token_url", e);
            }
            if a.default_token_expiration == 0 {
                problems.push(
                    "client.auth.default_token_expiration",
                    "must be a positive number of seconds",
                );
            }
            for (name, _) in a.access_token_request_data.iter() {
                if name.is_empty() {
                    problems.push(
                        "client.auth.access_token_request_data",
                        "a field name must not be empty",
                    );
                } else if matches!(name.as_str(), "client_id" | "client_secret") {
                    problems.push(
                        format!("client.auth.access_token_request_data.{name}"),
                        format!("`{name}` comes from the key of the same name; remove it here"),
                    );
                }
            }
        }
        _ => {}
    }

    let timeout = match raw.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => match seconds(t).filter(|d| !d.is_zero()) {
            Some(d) => d,
            None => {
                problems.push(
                    "client.timeout",
                    format!("{t} is not a positive number of seconds"),
                );
                DEFAULT_TIMEOUT
            }
        },
    };

    let retry = resolve_retry(raw.retry, problems);

    let max_requests_per_second = raw.max_requests_per_second.filter(|&rps| {
        let problem = check_requests_per_second(rps);
        if let Some(problem) = &problem {
            problems.push("client.max_requests_per_second", problem);
        }
        problem.is_none()
    });

    let max_pages = match raw.max_pages {
        None => DEFAULT_MAX_PAGES,
        Some(0) => {
            problems.push("client.max_pages", "must be at least 1");
            DEFAULT_MAX_PAGES
        }
        Some(n) => n,
    };
    let mut trusted_hosts = Vec::new();
    for (i, host) in raw
        .trusted_hosts
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match url::Host::parse(&host) {
            Ok(_) if !host.is_empty() && !host.contains([':', '/']) => {
                trusted_hosts.push(host.to_ascii_lowercase());
            }
            _ => problems.push(
                format!("client.trusted_hosts[{i}]"),
                format!("`{host}` is not a host name (no scheme, port or path)"),
            ),
        }
    }

    Some(ClientConfig {
        base_url: base_url?,
        headers,
        auth: raw.auth,
        timeout,
        retry,
        max_requests_per_second,
        max_pages,
        trusted_hosts,
    })
}

/// The smallest `client.max_requests_per_second`: one request every 1000 seconds.
pub const MIN_REQUESTS_PER_SECOND: f64 = 0.001;

/// Why `rps` cannot be a requests-per-second limit (config key or `--max-rps`), if it cannot.
pub fn check_requests_per_second(rps: f64) -> Option<String> {
    if rps.is_finite() && rps >= MIN_REQUESTS_PER_SECOND {
        None
    } else {
        Some(format!(
            "{rps} is not a number of requests per second (at least {MIN_REQUESTS_PER_SECOND})"
        ))
    }
}

fn resolve_retry(raw: Option<RawRetry>, problems: &mut Problems) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    let Some(raw) = raw else {
        return policy;
    };
    if let Some(n) = raw.max_retries {
        policy.max_retries = n;
    }
    if let Some(factor) = raw.backoff_factor {
        if factor.is_finite() && (1.0..=1000.0).contains(&factor) {
            policy.backoff_factor = factor as f32;
        } else {
            problems.push(
                "client.retry.backoff_factor",
                format!("{factor}: must be a number from 1 to 1000"),
            );
        }
    }
    let mut delay = |key: &str, value: Option<f64>, target: &mut Duration| {
        if let Some(value) = value {
            match seconds(value) {
                Some(d) => *target = d,
                None => problems.push(
                    format!("client.retry.{key}"),
                    format!("{value} is not a number of seconds (0 or more)"),
                ),
            }
        }
    };
    delay(
        "initial_delay",
        raw.initial_delay,
        &mut policy.initial_delay,
    );
    delay("max_delay", raw.max_delay, &mut policy.max_delay);
    delay(
        "retry_after_max",
        raw.retry_after_max,
        &mut policy.retry_after_max,
    );
    if policy.initial_delay > policy.max_delay {
        problems.push(
            "client.retry.initial_delay",
            format!(
                "{:?} is longer than max_delay ({:?})",
                policy.initial_delay, policy.max_delay
            ),
        );
    }
    if let Some(statuses) = raw.statuses {
        for (i, s) in statuses.iter().enumerate() {
            if !(100..=599).contains(s) {
                problems.push(
                    format!("client.retry.statuses[{i}]"),
                    format!("{s} is not an HTTP status"),
                );
            }
        }
        policy.statuses = statuses;
    }
    if let Some(jitter) = raw.jitter {
        policy.jitter = jitter;
    }
    policy
}

/// Checks what an endpoint says where it is written (a resource or `resource_defaults`).
fn check_endpoint(at: &str, endpoint: &RawEndpoint, problems: &mut Problems) {
    if let Some(path) = &endpoint.path {
        check_path(&format!("{at}.path"), path, problems);
    }
    if let Some(selector) = &endpoint.data_selector
        && let Err(e) = parse_json_path(selector)
    {
        problems.push(format!("{at}.data_selector"), e);
    }
    if let Some(params) = &endpoint.params {
        for name in params.keys().filter(|k| k.is_empty()) {
            problems.push(
                format!("{at}.params.{name}"),
                "a parameter name must not be empty",
            );
        }
    }
    if let Some(paginator) = &endpoint.paginator {
        check_paginator(&format!("{at}.paginator"), paginator, problems);
    }
    for (i, action) in endpoint.response_actions.iter().flatten().enumerate() {
        let at = format!("{at}.response_actions[{i}]");
        if action.status_code.is_none() && action.content.is_none() {
            problems.push(
                &at,
                "needs `status_code`, `content` or both: they say which responses it matches",
            );
        }
        if let Some(status) = action.status_code
            && !(100..=599).contains(&status)
        {
            problems.push(
                format!("{at}.status_code"),
                format!("{status} is not an HTTP status (100-599)"),
            );
        }
        if action.content.as_deref() == Some("") {
            problems.push(
                format!("{at}.content"),
                "must not be empty (it would match every response)",
            );
        }
    }
}

fn check_path(at: &str, path: &str, problems: &mut Problems) {
    if path.trim().is_empty() {
        problems.push(at, "must not be empty");
    }
}

fn check_paginator(at: &str, paginator: &Paginator, problems: &mut Problems) {
    let non_empty = |key: &str, value: &str, problems: &mut Problems| {
        if value.trim().is_empty() {
            problems.push(format!("{at}.{key}"), "must not be empty");
        }
    };
    let json_path = |key: &str, value: &str, problems: &mut Problems| {
        if let Err(e) = parse_json_path(value) {
            problems.push(format!("{at}.{key}"), e);
        }
    };
    match paginator {
        Paginator::Offset(p) => {
            if p.limit == 0 {
                problems.push(format!("{at}.limit"), "must be greater than 0");
            }
            non_empty("offset_param", &p.offset_param, problems);
            non_empty("limit_param", &p.limit_param, problems);
            if p.offset_param == p.limit_param && !p.offset_param.is_empty() {
                problems.push(
                    format!("{at}.limit_param"),
                    format!("same as offset_param (`{}`)", p.offset_param),
                );
            }
            if let Some(total_path) = &p.total_path {
                json_path("total_path", total_path, problems);
            }
            if p.total_path.is_none() && p.maximum_offset.is_none() && !p.stop_after_empty_page {
                problems.push(
                    at,
                    "the paginator would never stop: set `total_path`, `maximum_offset` or \
                     `stop_after_empty_page = true`",
                );
            }
        }
        Paginator::PageNumber(p) => {
            non_empty("page_param", &p.page_param, problems);
            if let Some(total_path) = &p.total_path {
                json_path("total_path", total_path, problems);
            }
            if let Some(page) = p.page
                && page < p.base_page
            {
                problems.push(
                    format!("{at}.page"),
                    format!("{page} is before base_page ({})", p.base_page),
                );
            }
            if p.total_path.is_none() && p.maximum_page.is_none() && !p.stop_after_empty_page {
                problems.push(
                    at,
                    "the paginator would never stop: set `total_path`, `maximum_page` or \
                     `stop_after_empty_page = true`",
                );
            }
        }
        Paginator::JsonLink(p) => json_path("next_url_path", &p.next_url_path, problems),
        Paginator::HeaderLink(p) => non_empty("links_next_key", &p.links_next_key, problems),
        Paginator::Cursor(p) => {
            json_path("cursor_path", &p.cursor_path, problems);
            if let Some(param) = &p.cursor_param {
                non_empty("cursor_param", param, problems);
            }
            if let Some(body_path) = &p.cursor_body_path {
                if body_path.split('.').any(|part| part.trim().is_empty()) {
                    problems.push(
                        format!("{at}.cursor_body_path"),
                        format!("`{body_path}` is not a dotted path such as `page.cursor`"),
                    );
                }
                if p.cursor_param.is_some() {
                    problems.push(
                        format!("{at}.cursor_body_path"),
                        "set either `cursor_param` or `cursor_body_path`, not both",
                    );
                }
            }
        }
        Paginator::HeaderCursor(p) => {
            non_empty("cursor_key", &p.cursor_key, problems);
            non_empty("cursor_param", &p.cursor_param, problems);
        }
        Paginator::SinglePage | Paginator::Auto => {}
    }
}

/// dlt's merge of `resource_defaults` into a resource: the resource's value wins; `endpoint`
/// merges key by key, `params` by parameter and `columns` by column and hint key. A paginator
/// is taken whole.
fn merge_resource(resource: RawResource, defaults: &RawResource) -> RawResource {
    RawResource {
        name: resource.name,
        topic: resource.topic.or_else(|| defaults.topic.clone()),
        table_name: resource.table_name.or_else(|| defaults.table_name.clone()),
        primary_key: resource
            .primary_key
            .or_else(|| defaults.primary_key.clone()),
        write_disposition: resource
            .write_disposition
            .or_else(|| defaults.write_disposition.clone()),
        endpoint: match (resource.endpoint, &defaults.endpoint) {
            (Some(OrBare(own)), Some(OrBare(default))) => {
                Some(OrBare(merge_endpoint(own, default)))
            }
            (own, default) => own.or_else(|| default.clone()),
        },
        columns: match (resource.columns, &defaults.columns) {
            (Some(own), Some(default)) => Some(merge_columns(own, default)),
            (own, default) => own.or_else(|| default.clone()),
        },
        schema_contract: resource
            .schema_contract
            .or_else(|| defaults.schema_contract.clone()),
        include_from_parent: resource
            .include_from_parent
            .or_else(|| defaults.include_from_parent.clone()),
        max_table_nesting: resource.max_table_nesting.or(defaults.max_table_nesting),
    }
}

fn merge_endpoint(own: RawEndpoint, default: &RawEndpoint) -> RawEndpoint {
    RawEndpoint {
        path: own.path.or_else(|| default.path.clone()),
        method: own.method.or(default.method),
        params: match (own.params, &default.params) {
            (Some(own), Some(default)) => {
                let mut merged = default.clone();
                merged.extend(own);
                Some(merged)
            }
            (own, default) => own.or_else(|| default.clone()),
        },
        json: own.json.or_else(|| default.json.clone()),
        data_selector: own.data_selector.or_else(|| default.data_selector.clone()),
        paginator: own.paginator.or_else(|| default.paginator.clone()),
        response_actions: own
            .response_actions
            .or_else(|| default.response_actions.clone()),
        incremental: own.incremental.or_else(|| default.incremental.clone()),
        allow_null_data: own.allow_null_data.or(default.allow_null_data),
    }
}

fn merge_columns(
    own: BTreeMap<String, ColumnHint>,
    default: &BTreeMap<String, ColumnHint>,
) -> BTreeMap<String, ColumnHint> {
    let mut merged = default.clone();
    for (name, hint) in own {
        let entry = merged.entry(name).or_default();
        *entry = ColumnHint {
            data_type: hint.data_type.or(entry.data_type),
            nullable: hint.nullable.or(entry.nullable),
            precision: hint.precision.or(entry.precision),
            scale: hint.scale.or(entry.scale),
            hard_delete: hint.hard_delete.or(entry.hard_delete),
        };
    }
    merged
}

fn resolve_resource(
    at: &str,
    raw: RawResource,
    topic_prefix: &str,
    client_paginator: Option<&Paginator>,
    client: Option<&ClientConfig>,
    problems: &mut Problems,
) -> Option<ResourceConfig> {
    let Some(name) = raw.name.filter(|n| !n.trim().is_empty()) else {
        problems.push(format!("{at}.name"), "missing: every resource needs a name");
        return None;
    };

    let topic = match raw.topic {
        Some(topic) => {
            if let Some(problem) = topic_problem(&topic) {
                problems.push(format!("{at}.topic"), problem);
            }
            topic
        }
        None => {
            let topic = format!("{topic_prefix}{}", topic_name_from(&name));
            if let Some(problem) = topic_problem(&topic) {
                problems.push(
                    format!("{at}.topic"),
                    format!("{problem} (derived from the resource name; set `topic`)"),
                );
            }
            topic
        }
    };

    let table_name = raw.table_name.unwrap_or_else(|| name.clone());
    if table_name.trim().is_empty() {
        problems.push(format!("{at}.table_name"), "must not be empty");
    }

    let merges = matches!(
        raw.write_disposition,
        Some(OrBare(WriteDispositionObject {
            disposition: WriteDisposition::Merge
        }))
    );
    let primary_key = match raw.primary_key {
        // As in dlt, a key is optional unless the resource merges: without one, records
        // are published unkeyed (spread over the partitions) and appended.
        None if merges => {
            problems.push(
                format!("{at}.primary_key"),
                "missing: `write_disposition = \"merge\"` upserts by primary key; set \
                 `primary_key` on the resource or in `resource_defaults`",
            );
            Vec::new()
        }
        None => Vec::new(),
        Some(PrimaryKey(columns)) => {
            if columns.is_empty() {
                problems.push(format!("{at}.primary_key"), "must name at least one column");
            }
            for (j, column) in columns.iter().enumerate() {
                if column.trim().is_empty() {
                    problems.push(format!("{at}.primary_key[{j}]"), "must not be empty");
                } else if columns[..j].contains(column) {
                    problems.push(
                        format!("{at}.primary_key[{j}]"),
                        format!("`{column}` is listed twice"),
                    );
                }
            }
            columns
        }
    };

    let write_disposition = raw
        .write_disposition
        .map(|OrBare(w)| w.disposition)
        .unwrap_or_default();

    let raw_endpoint = raw.endpoint.map(|OrBare(e)| e).unwrap_or_default();
    let path = match raw_endpoint.path {
        Some(path) => path,
        None => {
            // dlt: a resource without an endpoint path calls the path named like it.
            check_path(&format!("{at}.name"), &name, problems);
            name.clone()
        }
    };
    let (params, incremental) = resolve_incremental(
        &format!("{at}.endpoint"),
        raw_endpoint.params.unwrap_or_default(),
        raw_endpoint.incremental,
        problems,
    );
    let (path, params, parent) = resolve_placeholders(at, path, params, problems);
    if raw_endpoint
        .json
        .as_ref()
        .is_some_and(|json| json.to_string().contains("{resources."))
    {
        problems.push(
            format!("{at}.endpoint.json"),
            "`{resources.<parent>.<field>}` placeholders are filled in the path and params, \
             not (yet) in the JSON body",
        );
    }
    if let Some(client) = client
        && let Err(e) = client.endpoint_url(&path)
    {
        problems.push(
            format!("{at}.endpoint.path"),
            format!("`{path}` does not make a URL with client.base_url: {e}"),
        );
    }
    let endpoint = EndpointConfig {
        path,
        method: raw_endpoint.method.unwrap_or_default(),
        params,
        incremental,
        json: raw_endpoint.json,
        data_selector: raw_endpoint.data_selector,
        paginator: raw_endpoint
            .paginator
            .or_else(|| client_paginator.cloned())
            .unwrap_or(Paginator::Auto),
        response_actions: raw_endpoint.response_actions.unwrap_or_default(),
        allow_null_data: raw_endpoint.allow_null_data.unwrap_or(false),
    };

    if let Paginator::Cursor(CursorPaginator {
        cursor_body_path: Some(_),
        ..
    }) = &endpoint.paginator
        && endpoint.method != Method::Post
    {
        problems.push(
            format!("{at}.endpoint.method"),
            "the paginator's `cursor_body_path` puts the cursor in a JSON body: set \
             `method = \"POST\"`",
        );
    }

    let columns = raw.columns.unwrap_or_default();
    for (column, hint) in &columns {
        check_column(&format!("{at}.columns.{column}"), column, hint, problems);
        if hint.nullable == Some(true) && primary_key.contains(column) {
            problems.push(
                format!("{at}.columns.{column}.nullable"),
                "a primary key column cannot be nullable",
            );
        }
    }

    let schema_contract = raw.schema_contract.map(|OrBare(c)| c).unwrap_or_default();

    Some(ResourceConfig {
        name,
        topic,
        table_name,
        primary_key,
        write_disposition,
        schema_contract,
        endpoint,
        columns,
        parent,
        include_from_parent: raw.include_from_parent.unwrap_or_default(),
        max_table_nesting: raw.max_table_nesting,
    })
}

/// dlt's dependent-resource forms, resolved to one: every `resolve` param and every path
/// placeholder `{<param>}` that names one becomes a `{resources.<parent>.<field>}`
/// placeholder (in the path, or as the param's value); a path placeholder naming a plain
/// param is filled with its value, which leaves the params, as dlt binds it. Returns the
/// path, the params and the parent the placeholders name.
fn resolve_placeholders(
    at: &str,
    path: String,
    raw_params: BTreeMap<String, ParamValue>,
    problems: &mut Problems,
) -> (String, BTreeMap<String, Value>, Option<String>) {
    let mut params = BTreeMap::new();
    for (name, value) in raw_params {
        let value = match value {
            ParamValue::Scalar(v) => v,
            // Taken out by `resolve_incremental` before.
            ParamValue::Incremental(_) => continue,
            ParamValue::Resolve(r) => {
                for (key, text) in [("resource", &r.resource), ("field", &r.field)] {
                    if text.trim().is_empty() {
                        problems.push(
                            format!("{at}.endpoint.params.{name}.{key}"),
                            "must not be empty",
                        );
                    }
                }
                Value::String(format!("{{resources.{}.{}}}", r.resource, r.field))
            }
        };
        let _ = params.insert(name, value);
    }

    // Path placeholders that name a param.
    let path_at = format!("{at}.endpoint.path");
    let mut bound = String::with_capacity(path.len());
    let mut rest = path.as_str();
    while let Some(open) = rest.find(['{', '}']) {
        bound.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}').filter(|_| rest[open..].starts_with('{')) else {
            problems.push(&path_at, format!("`{path}`: unbalanced `{{` or `}}`"));
            return (path.clone(), params, None);
        };
        let inner = &after[..close];
        if inner.starts_with("resources.") {
            bound.push('{');
            bound.push_str(inner);
            bound.push('}');
        } else {
            match params.remove(inner) {
                Some(Value::String(text)) if text.starts_with("{resources.") => {
                    bound.push_str(&text);
                }
                Some(Value::String(text)) => bound.push_str(&path_escape(&text)),
                Some(other) => bound.push_str(&path_escape(&other.to_string())),
                None => {
                    problems.push(
                        &path_at,
                        format!(
                            "`{path}`: placeholder `{{{inner}}}` is neither \
                             `{{resources.<parent>.<field>}}` nor a param of this endpoint"
                        ),
                    );
                    return (path.clone(), params, None);
                }
            }
        }
        rest = &after[close + 1..];
    }
    bound.push_str(rest);

    let mut parents: Vec<(String, String)> = Vec::new();
    let mut collect = |key: String, text: &str, problems: &mut Problems| match parse_template(text)
    {
        Ok(parts) => {
            for part in parts {
                if let TemplatePart::Parent { resource, .. } = part
                    && !parents.iter().any(|(p, _)| *p == resource)
                {
                    parents.push((resource, key.clone()));
                }
            }
        }
        Err(e) => problems.push(key, e),
    };
    collect(path_at.clone(), &bound, problems);
    for (name, value) in &params {
        if let Value::String(text) = value {
            collect(format!("{at}.endpoint.params.{name}"), text, problems);
        }
    }
    let parent = match parents.as_slice() {
        [] => None,
        [(one, _)] => Some(one.clone()),
        [(first, _), (second, key), ..] => {
            problems.push(
                key,
                format!(
                    "names the parent resource `{second}`, but another placeholder names \
                     `{first}`: a resource depends on one parent"
                ),
            );
            None
        }
    };
    (bound, params, parent)
}

/// `text` escaped for one URL path segment: everything but RFC 3986's unreserved
/// characters is percent-encoded (`/` included).
pub fn path_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every parent is another resource of the config, and no chain of parents loops.
/// `resources` are paired with their index in the document.
fn check_dependencies(resources: &[(usize, ResourceConfig)], problems: &mut Problems) {
    let names: Vec<&str> = resources.iter().map(|(_, r)| r.name.as_str()).collect();
    let parent_of = |name: &str| {
        resources
            .iter()
            .find(|(_, r)| r.name == name)
            .and_then(|(_, r)| r.parent.as_deref())
    };
    for (i, r) in resources {
        let at = format!("resources[{i}]");
        for (j, field) in r.include_from_parent.iter().enumerate() {
            if field.split('.').any(|f| f.trim().is_empty()) {
                problems.push(
                    format!("{at}.include_from_parent[{j}]"),
                    format!("`{field}` is not a field name or dotted path"),
                );
            }
        }
        let Some(parent) = r.parent.as_deref() else {
            if !r.include_from_parent.is_empty() {
                problems.push(
                    format!("{at}.include_from_parent"),
                    "the resource has no parent: use `{resources.<parent>.<field>}` in its \
                     path or params, or a `resolve` param",
                );
            }
            continue;
        };
        let key = placeholder_key(&at, r, parent);
        if parent == r.name {
            problems.push(
                key,
                format!("`{parent}` is this resource: a resource cannot depend on itself"),
            );
        } else if !names.contains(&parent) {
            problems.push(
                key,
                format!(
                    "no resource named `{parent}` to take values from (the config has: {})",
                    names.join(", ")
                ),
            );
        } else {
            // Follow the parents; at most one per resource, so a loop comes back here.
            let mut chain = vec![r.name.as_str()];
            let mut next = Some(parent);
            while let Some(name) = next {
                chain.push(name);
                if name == r.name {
                    problems.push(
                        key,
                        format!(
                            "dependent resources form a cycle: {}",
                            chain
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(" -> ")
                        ),
                    );
                    break;
                }
                if chain.len() > resources.len() {
                    // A loop further up, reported at its own resources.
                    break;
                }
                next = parent_of(name);
            }
        }
    }
}

/// The key path where `resource` names `parent` first: its path, else the first param.
fn placeholder_key(at: &str, resource: &ResourceConfig, parent: &str) -> String {
    let names_parent = |text: &str| {
        parse_template(text).is_ok_and(|parts| {
            parts
                .iter()
                .any(|p| matches!(p, TemplatePart::Parent { resource, .. } if resource == parent))
        })
    };
    if names_parent(&resource.endpoint.path) {
        return format!("{at}.endpoint.path");
    }
    resource
        .endpoint
        .params
        .iter()
        .find(|(_, v)| v.as_str().is_some_and(names_parent))
        .map_or_else(
            || format!("{at}.endpoint"),
            |(name, _)| format!("{at}.endpoint.params.{name}"),
        )
}

/// The endpoint's params with an incremental param taken out, and its one incremental
/// (`endpoint.incremental` or that param), checked: one per resource, `cursor_path` a
/// JSONPath, values strings or numbers, placeholders only with an incremental. `at` is the
/// endpoint's key path.
fn resolve_incremental(
    at: &str,
    raw_params: BTreeMap<String, ParamValue>,
    raw: Option<RawIncremental>,
    problems: &mut Problems,
) -> (BTreeMap<String, ParamValue>, Option<Incremental>) {
    let mut found: Vec<(String, Incremental)> = Vec::new();
    if let Some(r) = raw {
        found.push((
            format!("{at}.incremental"),
            Incremental {
                start_param: r.start_param,
                end_param: r.end_param,
                cursor_path: r.cursor_path,
                initial_value: r.initial_value.map(plain_datetime),
                end_value: r.end_value.map(plain_datetime),
            },
        ));
    }
    let mut params = BTreeMap::new();
    for (name, value) in raw_params {
        match value {
            other @ (ParamValue::Scalar(_) | ParamValue::Resolve(_)) => {
                let _ = params.insert(name, other);
            }
            ParamValue::Incremental(r) => found.push((
                format!("{at}.params.{name}"),
                Incremental {
                    start_param: Some(name),
                    end_param: None,
                    cursor_path: r.cursor_path,
                    initial_value: r.initial_value.map(plain_datetime),
                    end_value: r.end_value.map(plain_datetime),
                },
            )),
        }
    }
    if let Some((first, _)) = found.first() {
        for (key, _) in &found[1..] {
            problems.push(
                key.as_str(),
                format!("a resource has at most one incremental; it already has `{first}`"),
            );
        }
    }
    let incremental = found.into_iter().next().map(|(key, inc)| {
        check_incremental(&key, &inc, problems);
        inc
    });
    for (name, value) in &params {
        let ParamValue::Scalar(Value::String(text)) = value else {
            continue;
        };
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{incremental.") {
            let tail = &rest[start..];
            let end = tail.find('}').map_or(tail.len(), |i| i + 1);
            let placeholder = &tail[..end];
            if !INCREMENTAL_PLACEHOLDERS.contains(&placeholder) {
                problems.push(
                    format!("{at}.params.{name}"),
                    format!(
                        "unknown placeholder `{placeholder}`, expected one of: {}",
                        INCREMENTAL_PLACEHOLDERS.join(", ")
                    ),
                );
            } else if incremental.is_none() {
                problems.push(
                    format!("{at}.params.{name}"),
                    format!(
                        "`{placeholder}` needs an incremental: set `{at}.incremental = \
                         {{ cursor_path = ..., initial_value = ... }}`"
                    ),
                );
            }
            rest = &tail[end..];
        }
    }
    (params, incremental)
}

/// A TOML datetime written without quotes (`initial_value = 2024-01-01T00:00:00Z`) as its
/// text, which is what the API gets and what cursor values compare with.
fn plain_datetime(v: Value) -> Value {
    match v {
        Value::Object(map) if map.len() == 1 => match map.get("$__toml_private_datetime") {
            Some(Value::String(text)) => Value::String(text.clone()),
            _ => Value::Object(map),
        },
        other => other,
    }
}

fn check_incremental(at: &str, inc: &Incremental, problems: &mut Problems) {
    if inc.cursor_path.trim().is_empty() {
        problems.push(format!("{at}.cursor_path"), "must not be empty");
    } else if let Err(e) = parse_json_path(&inc.cursor_path) {
        problems.push(format!("{at}.cursor_path"), e);
    }
    for (key, param) in [
        ("start_param", &inc.start_param),
        ("end_param", &inc.end_param),
    ] {
        if param.as_deref().is_some_and(|p| p.trim().is_empty()) {
            problems.push(format!("{at}.{key}"), "must not be empty");
        }
    }
    let mut scalar = |key: &str, value: &Option<Value>| match value {
        None | Some(Value::String(_) | Value::Number(_)) => true,
        Some(other) => {
            problems.push(
                format!("{at}.{key}"),
                format!("{other} is not a string or a number"),
            );
            false
        }
    };
    let initial_ok = scalar("initial_value", &inc.initial_value);
    let end_ok = scalar("end_value", &inc.end_value);
    if let (true, true, Some(initial), Some(end)) =
        (initial_ok, end_ok, &inc.initial_value, &inc.end_value)
        && cursor_order(end, initial).is_lt()
    {
        problems.push(
            format!("{at}.end_value"),
            format!("{end} is before initial_value {initial}"),
        );
    }
    if inc.end_param.is_some() && inc.end_value.is_none() {
        problems.push(format!("{at}.end_param"), "needs an `end_value` to send");
    }
}

fn check_column(at: &str, column: &str, hint: &ColumnHint, problems: &mut Problems) {
    if column.trim().is_empty() {
        problems.push(at, "a column name must not be empty");
    }
    if hint.data_type == Some(DataType::Decimal) {
        let precision = hint.precision.unwrap_or(38);
        let scale = hint.scale.unwrap_or(9);
        if precision == 0 {
            problems.push(format!("{at}.precision"), "must be at least 1");
        } else if scale > precision {
            problems.push(
                format!("{at}.scale"),
                format!("{scale} is more than the precision ({precision})"),
            );
        }
    } else if hint.precision.is_some() || hint.scale.is_some() {
        problems.push(
            at,
            "`precision` and `scale` apply only to `data_type = \"decimal\"`",
        );
    }
}

/// Names, topics and tables must each be distinct (and no topic may be the schema topic).
/// `resources` are paired with their index in the document.
fn check_unique(
    resources: &[(usize, ResourceConfig)],
    schema_topic: &str,
    problems: &mut Problems,
) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut topics: HashMap<&str, usize> = HashMap::new();
    let mut tables: HashMap<&str, usize> = HashMap::new();
    for (i, r) in resources {
        let i = *i;
        if let Some(first) = names.insert(&r.name, i) {
            problems.push(
                format!("resources[{i}].name"),
                format!(
                    "duplicate resource name `{}` (also resources[{first}])",
                    r.name
                ),
            );
            continue;
        }
        if r.topic == schema_topic {
            problems.push(
                format!("resources[{i}].topic"),
                format!("`{}` is the schema topic", r.topic),
            );
        }
        if let Some(first) = topics.insert(&r.topic, i) {
            problems.push(
                format!("resources[{i}].topic"),
                format!(
                    "topic `{}` is also the topic of resources[{first}]",
                    r.topic
                ),
            );
        }
        if let Some(first) = tables.insert(&r.table_name, i) {
            problems.push(
                format!("resources[{i}].table_name"),
                format!(
                    "table `{}` is also the table of resources[{first}]",
                    r.table_name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEED_TOML: &str = r#"
[pipeline]
name = "communications"

[kafka]
"bootstrap.servers" = "127.0.0.1:9092"
"compression.type" = "zstd"
"linger.ms" = 5
"enable.idempotence" = true

[schema_registry]
url = "http://registry:8081"

[client]
base_url = "https://api.example.com"
auth = { type = "api_key", name = "api_key", api_key = { secret = "api_key" }, location = "query" }

[resource_defaults]
primary_key = "id"
write_disposition = "merge"

[[resources]]
name = "communications_data"
endpoint = { path = "/v1/resource", data_selector = "data", paginator = { type = "offset", limit = 100 } }
columns = { cost = { data_type = "decimal", precision = 12, scale = 4 }, id = { data_type = "bigint" } }
"#;

    const SEED_JSON: &str = r#"{
  "pipeline": {"name": "communications"},
  "kafka": {"bootstrap.servers": "127.0.0.1:9092", "compression.type": "zstd",
            "linger.ms": 5, "enable.idempotence": true},
  "schema_registry": {"url": "http://registry:8081"},
  "client": {
    "base_url": "https://api.example.com",
    "auth": {"type": "api_key", "name": "api_key", "api_key": {"secret": "api_key"},
             "location": "query"}
  },
  "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
  "resources": [{
    "name": "communications_data",
    "endpoint": {"path": "/v1/resource", "data_selector": "data",
                 "paginator": {"type": "offset", "limit": 100}},
    "columns": {"cost": {"data_type": "decimal", "precision": 12, "scale": 4},
                "id": {"data_type": "bigint"}}
  }]
}"#;

    const SEED_YAML: &str = r#"
pipeline:
  name: communications
kafka:
  bootstrap.servers: "127.0.0.1:9092"
  compression.type: zstd
  linger.ms: 5
  enable.idempotence: true
schema_registry:
  url: http://registry:8081
client:
  base_url: https://api.example.com
  auth:
    type: api_key
    name: api_key
    api_key:
      secret: api_key
    location: query
resource_defaults:
  primary_key: id
  write_disposition: merge
resources:
  - name: communications_data
    endpoint:
      path: /v1/resource
      data_selector: data
      paginator:
        type: offset
        limit: 100
    columns:
      cost: {data_type: decimal, precision: 12, scale: 4}
      id: {data_type: bigint}
"#;

    fn toml(text: &str) -> Result<PipelineConfig, ConfigError> {
        parse(text, Format::Toml, "pipeline.toml")
    }

    fn err(result: Result<PipelineConfig, ConfigError>) -> String {
        match result {
            Ok(config) => panic!("expected an error, got {config:#?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A minimal valid TOML config with `extra` appended (TOML tables after the top keys).
    fn with(extra: &str) -> String {
        format!(
            "[client]\nbase_url = \"https://api.example.com\"\n\n{extra}\n\n\
             [[resources]]\nname = \"r\"\nprimary_key = \"id\"\n"
        )
    }

    /// A valid config whose one resource's endpoint is `endpoint`.
    fn with_endpoint(endpoint: &str) -> String {
        format!(
            "[client]\nbase_url = \"https://api.example.com\"\n\n\
             [[resources]]\nname = \"r\"\nprimary_key = \"id\"\nendpoint = {endpoint}\n"
        )
    }

    #[test]
    fn seed_config_resolves() {
        let config = toml(SEED_TOML).unwrap();
        assert_eq!(config.pipeline_name, "communications");
        assert_eq!(config.schema_topic, "_communications_schemas");
        assert_eq!(config.kafka["bootstrap.servers"], "127.0.0.1:9092");
        assert_eq!(config.kafka["compression.type"], "zstd");
        assert_eq!(config.kafka["linger.ms"], "5");
        assert_eq!(config.kafka["enable.idempotence"], "true");
        let registry = config.schema_registry.as_ref().unwrap();
        assert_eq!(registry.url.as_str(), "http://registry:8081/");
        assert_eq!(registry.username, None);

        let client = &config.client;
        assert_eq!(client.base_url.as_str(), "https://api.example.com/");
        assert_eq!(
            client.auth,
            Some(AuthConfig::ApiKey(ApiKeyAuth {
                name: "api_key".into(),
                api_key: SecretRef::new("api_key"),
                location: ApiKeyLocation::Query,
            }))
        );
        assert_eq!(client.timeout, DEFAULT_TIMEOUT);
        assert_eq!(client.retry, RetryPolicy::default());
        assert_eq!(
            config.secret_refs(),
            vec![("client.auth.api_key", &SecretRef::new("api_key"))]
        );

        let expected = ResourceConfig {
            name: "communications_data".into(),
            topic: "communications_data".into(),
            table_name: "communications_data".into(),
            primary_key: vec!["id".into()],
            write_disposition: WriteDisposition::Merge,
            schema_contract: SchemaContract::default(),
            endpoint: EndpointConfig {
                path: "/v1/resource".into(),
                method: Method::Get,
                params: BTreeMap::new(),
                json: None,
                data_selector: Some("data".into()),
                incremental: None,
                paginator: Paginator::Offset(OffsetPaginator {
                    limit: 100,
                    offset: 0,
                    offset_param: "offset".into(),
                    limit_param: "limit".into(),
                    total_path: Some("total".into()),
                    maximum_offset: None,
                    stop_after_empty_page: true,
                }),
                response_actions: Vec::new(),
                allow_null_data: false,
            },
            parent: None,
            include_from_parent: Vec::new(),
            max_table_nesting: None,
            columns: BTreeMap::from([
                (
                    "cost".into(),
                    ColumnHint {
                        data_type: Some(DataType::Decimal),
                        nullable: None,
                        precision: Some(12),
                        scale: Some(4),
                        hard_delete: None,
                    },
                ),
                (
                    "id".into(),
                    ColumnHint {
                        data_type: Some(DataType::Bigint),
                        ..ColumnHint::default()
                    },
                ),
            ]),
        };
        assert_eq!(config.resources, vec![expected]);
        assert_eq!(
            client
                .endpoint_url(&config.resources[0].endpoint.path)
                .unwrap()
                .as_str(),
            "https://api.example.com/v1/resource"
        );
    }

    #[test]
    fn toml_json_yaml_agree() {
        let from_toml = toml(SEED_TOML).unwrap();
        let from_json = parse(SEED_JSON, Format::Json, "pipeline.json").unwrap();
        let from_yaml = parse(SEED_YAML, Format::Yaml, "pipeline.yaml").unwrap();
        assert_eq!(from_toml, from_json);
        assert_eq!(from_toml, from_yaml);
    }

    #[test]
    fn load_picks_format_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in [
            ("p.toml", SEED_TOML),
            ("p.json", SEED_JSON),
            ("p.yml", SEED_YAML),
        ] {
            let path = dir.path().join(file);
            std::fs::write(&path, text).unwrap();
            assert_eq!(load(&path).unwrap(), toml(SEED_TOML).unwrap(), "{file}");
        }
        let path = dir.path().join("p.ini");
        std::fs::write(&path, SEED_TOML).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("p.ini") && e.contains("unknown format"), "{e}");
        let e = load(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
    }

    #[test]
    fn defaults_when_minimal() {
        let config = toml(&with("")).unwrap();
        assert_eq!(config.pipeline_name, DEFAULT_PIPELINE_NAME);
        assert_eq!(config.schema_topic, "_rest_api_schemas");
        assert!(config.kafka.is_empty());
        assert_eq!(config.schema_registry, None);
        assert_eq!(config.client.auth, None);
        let r = &config.resources[0];
        assert_eq!(r.topic, "r");
        assert_eq!(r.table_name, "r");
        assert_eq!(r.write_disposition, WriteDisposition::Append);
        assert_eq!(r.endpoint.path, "r");
        assert_eq!(r.endpoint.method, Method::Get);
        assert_eq!(
            r.endpoint.paginator,
            Paginator::Auto,
            "detected, as dlt does"
        );
        assert_eq!(r.endpoint.data_selector, None);
    }

    /// Table-driven: (name, format, document, substrings the error must contain).
    #[test]
    fn max_table_nesting_is_per_resource_with_a_default() {
        let text = "[client]\nbase_url = \"https://a\"\n\n\
                    [resource_defaults]\nprimary_key = \"id\"\nmax_table_nesting = 1\n\n\
                    [[resources]]\nname = \"a\"\n\n\
                    [[resources]]\nname = \"b\"\nmax_table_nesting = 0\n";
        let config = parse(text, Format::Toml, "pipeline.toml").unwrap();
        let nesting: Vec<Option<usize>> = config
            .resources
            .iter()
            .map(|r| r.max_table_nesting)
            .collect();
        assert_eq!(nesting, [Some(1), Some(0)]);
        let config = parse(&with(""), Format::Toml, "pipeline.toml").unwrap();
        assert_eq!(config.resources[0].max_table_nesting, None);
    }

    #[test]
    fn parse_errors_name_file_and_path() {
        let cases: Vec<(&str, Format, String, Vec<&str>)> = vec![
            (
                "unknown top-level key",
                Format::Toml,
                with("[pipelines]\nname = \"x\""),
                vec!["pipeline.toml: ", "unknown field `pipelines`"],
            ),
            (
                "unknown key in client",
                Format::Toml,
                "[client]\nbase_url = \"https://a\"\nbase_ur = \"x\"\n".into(),
                vec!["pipeline.toml: client.base_ur: unknown field `base_ur`"],
            ),
            (
                "unknown key in paginator (TOML sorts it before `type`)",
                Format::Toml,
                with_endpoint("{ paginator = { type = \"offset\", limit = 10, limitt = 5 } }"),
                vec![
                    "pipeline.toml: resources[0].endpoint.paginator.limitt: unknown field `limitt`",
                ],
            ),
            (
                "unknown key in paginator (JSON)",
                Format::Json,
                r#"{"client": {"base_url": "https://a"}, "resources": [{"name": "r",
                    "primary_key": "id", "endpoint": {"paginator":
                    {"type": "offset", "limit": 1, "limitt": 5}}}]}"#
                    .into(),
                vec![
                    "pipeline.json: resources[0].endpoint.paginator.limitt: unknown field `limitt`",
                ],
            ),
            (
                "unknown key in paginator (YAML)",
                Format::Yaml,
                "client: {base_url: 'https://a'}\nresources:\n  - name: r\n    primary_key: id\n    \
                 endpoint:\n      paginator: {limitt: 5, type: offset, limit: 1}\n"
                    .into(),
                vec![
                    "pipeline.yaml: resources[0].endpoint.paginator.limitt: unknown field `limitt`",
                ],
            ),
            (
                "unknown key in endpoint (YAML)",
                Format::Yaml,
                "client: {base_url: 'https://a'}\nresources:\n  - name: r\n    \
                 endpoint:\n      pat: x\n"
                    .into(),
                vec![
                    "pipeline.yaml: resources[0].endpoint.pat: unknown field `pat`, expected one of",
                ],
            ),
            (
                "wrong type (YAML)",
                Format::Yaml,
                "client: {base_url: 'https://a'}\nresources:\n  - name: r\n    primary_key: 5\n"
                    .into(),
                vec!["pipeline.yaml: resources[0].primary_key: invalid type: integer `5`"],
            ),
            (
                "unknown key in endpoint",
                Format::Toml,
                with_endpoint("{ path = \"/x\", data_selecter = \"data\" }"),
                vec!["resources[0].endpoint.data_selecter: unknown field `data_selecter`"],
            ),
            (
                "unknown key in column hint",
                Format::Toml,
                with("[resource_defaults.columns.cost]\ndata_typ = \"decimal\""),
                vec!["resource_defaults.columns.cost.data_typ: unknown field `data_typ`"],
            ),
            (
                "unknown key in secret ref",
                Format::Toml,
                "[client]\nbase_url = \"https://a\"\n\
                 auth = { type = \"bearer\", token = { secrett = \"t\" } }\n"
                    .into(),
                vec!["client.auth.token.secrett: unknown field `secrett`"],
            ),
            (
                "wrong type of limit",
                Format::Toml,
                with_endpoint("{ paginator = { type = \"offset\", limit = \"x\" } }"),
                vec![
                    "resources[0].endpoint.paginator.limit: invalid type: string \"x\", expected u64",
                ],
            ),
            (
                "wrong type of limit (JSON)",
                Format::Json,
                r#"{"client": {"base_url": "https://a"}, "resources": [{"name": "r",
                    "endpoint": {"paginator": {"type": "offset", "limit": "x"}}}]}"#
                    .into(),
                vec![
                    "resources[0].endpoint.paginator.limit: invalid type: string \"x\", expected u64",
                ],
            ),
            (
                "max_table_nesting that is negative",
                Format::Toml,
                with("[resource_defaults]\nmax_table_nesting = -1"),
                vec!["resource_defaults.max_table_nesting: invalid value: integer `-1`"],
            ),
            (
                "max_table_nesting that is text",
                Format::Json,
                r#"{"client": {"base_url": "https://a"}, "resources": [{"name": "r",
                    "max_table_nesting": "2"}]}"#
                    .into(),
                vec!["resources[0].max_table_nesting: invalid type: string \"2\""],
            ),
            (
                "wrong type of a plain key",
                Format::Toml,
                "[client]\nbase_url = 5\n".into(),
                vec!["client.base_url: invalid type: integer `5`, expected a string"],
            ),
            (
                "missing limit",
                Format::Toml,
                with_endpoint("{ paginator = { type = \"offset\" } }"),
                vec!["resources[0].endpoint.paginator: missing field `limit`"],
            ),
            (
                "bare offset paginator",
                Format::Toml,
                with_endpoint("{ paginator = \"offset\" }"),
                vec!["resources[0].endpoint.paginator: the offset paginator needs a `limit`"],
            ),
            (
                "unknown paginator type",
                Format::Toml,
                with_endpoint("{ paginator = { type = \"graphql\", cursor_path = \"x\" } }"),
                vec!["resources[0].endpoint.paginator.type: unknown or unsupported paginator type `graphql`"],
            ),
            (
                "paginator without type",
                Format::Toml,
                with_endpoint("{ paginator = { limit = 10 } }"),
                vec!["resources[0].endpoint.paginator: missing field `type`"],
            ),
            (
                "literal api key",
                Format::Toml,
                "[client]\nbase_url = \"https://a\"\n\
                 auth = { type = \"api_key\", api_key = \"sk-literal\" }\n"
                    .into(),
                vec![
                    "pipeline.toml: client.auth.api_key: a secret value must not be written",
                    "{ secret = \"api_key\" }",
                ],
            ),
            (
                "literal api key (JSON, type last)",
                Format::Json,
                r#"{"client": {"base_url": "https://a",
                    "auth": {"api_key": "sk-literal", "type": "api_key"}}, "resources": []}"#
                    .into(),
                vec!["client.auth.api_key: a secret value must not be written"],
            ),
            (
                "unknown auth type",
                Format::Toml,
                "[client]\nbase_url = \"https://a\"\nauth = { type = \"oauth2\" }\n".into(),
                vec!["client.auth.type: unknown or unsupported auth type `oauth2`"],
            ),
            (
                "bad write disposition",
                Format::Toml,
                with("[resource_defaults]\nwrite_disposition = \"upsert\""),
                vec!["resource_defaults.write_disposition: unknown write disposition `upsert`"],
            ),
            (
                "bad schema contract mode",
                Format::Toml,
                with("[resource_defaults]\nschema_contract = \"relaxed\""),
                vec!["resource_defaults.schema_contract: unknown schema contract mode `relaxed`"],
            ),
            (
                "bad schema contract entity",
                Format::Toml,
                with("[resource_defaults]\nschema_contract = { columns = \"freeze\", types = \"evolve\" }"),
                vec!["resource_defaults.schema_contract", "unknown field `types`"],
            ),
            (
                "bad schema contract entity mode",
                Format::Toml,
                with("[resource_defaults]\nschema_contract = { data_type = \"drop\" }"),
                vec!["resource_defaults.schema_contract", "unknown variant `drop`"],
            ),
            (
                "param table of an unknown type",
                Format::Toml,
                with_endpoint("{ params = { since = { type = \"increment\" } } }"),
                vec![
                    "resources[0].endpoint.params.since.type: unknown or unsupported param type \
                     `increment`",
                ],
            ),
            (
                "resolve param without a field",
                Format::Toml,
                with_endpoint("{ params = { id = { type = \"resolve\", resource = \"p\" } } }"),
                vec!["resources[0].endpoint.params.id: missing field `field`"],
            ),
            (
                "resolve param with an unknown key",
                Format::Toml,
                with_endpoint(
                    "{ params = { id = { type = \"resolve\", resource = \"p\", field = \"id\", \
                     fields = 1 } } }",
                ),
                vec!["resources[0].endpoint.params.id.fields: unknown field `fields`"],
            ),
            (
                "response action of an unknown kind",
                Format::Toml,
                with_endpoint("{ response_actions = [{ status_code = 404, action = \"retry\" }] }"),
                vec!["resources[0].endpoint.response_actions[0].action: unknown variant `retry`"],
            ),
            (
                "response action with an unknown key",
                Format::Toml,
                with_endpoint("{ response_actions = [{ status = 404, action = \"ignore\" }] }"),
                vec!["resources[0].endpoint.response_actions[0].status: unknown field `status`"],
            ),
            (
                "param value that is a list",
                Format::Toml,
                with_endpoint("{ params = { since = [1, 2] } }"),
                vec!["resources[0].endpoint.params.since: invalid type: sequence"],
            ),
            (
                "incremental param without cursor_path",
                Format::Toml,
                with_endpoint("{ params = { since = { type = \"incremental\" } } }"),
                vec!["resources[0].endpoint.params.since: missing field `cursor_path`"],
            ),
            (
                "incremental param with an unknown key",
                Format::Toml,
                with_endpoint(
                    "{ params = { since = { type = \"incremental\", cursor_path = \"u\", convert = \"f\" } } }",
                ),
                vec!["resources[0].endpoint.params.since.convert: unknown field `convert`"],
            ),
            (
                "unknown param type",
                Format::Toml,
                with_endpoint("{ params = { since = { type = \"lookup\" } } }"),
                vec!["resources[0].endpoint.params.since.type: unknown or unsupported param type `lookup`"],
            ),
            (
                "endpoint.incremental with an unknown key",
                Format::Toml,
                with_endpoint(
                    "{ incremental = { start_param = \"since\", cursor_path = \"u\", lag = 5 } }",
                ),
                vec!["resources[0].endpoint.incremental.lag: unknown field `lag`"],
            ),
            (
                "endpoint.incremental without cursor_path",
                Format::Toml,
                with_endpoint("{ incremental = { start_param = \"since\" } }"),
                vec!["resources[0].endpoint.incremental: missing field `cursor_path`"],
            ),
            (
                "TOML syntax",
                Format::Toml,
                "[client\n".into(),
                vec!["pipeline.toml: ", "line 1"],
            ),
            (
                "JSON syntax",
                Format::Json,
                "{\"client\": ".into(),
                vec!["pipeline.json: ", "line 1"],
            ),
        ];
        for (name, format, text, needles) in cases {
            let origin = match format {
                Format::Toml => "pipeline.toml",
                Format::Json => "pipeline.json",
                Format::Yaml => "pipeline.yaml",
            };
            let e = err(parse(&text, format, origin));
            for needle in needles {
                assert!(e.contains(needle), "{name}: {needle:?} not in {e:?}");
            }
            assert!(!e.contains(SUBPATH_MARK), "{name}: mark left in {e:?}");
            assert!(!e.contains("sk-literal"), "{name}: secret echoed in {e:?}");
        }
    }

    #[test]
    fn incremental_forms_resolve() {
        let endpoint = |text: &str| {
            toml(&with_endpoint(text)).unwrap().resources[0]
                .endpoint
                .clone()
        };
        let e = endpoint(
            "{ incremental = { start_param = \"since\", end_param = \"until\", \
             cursor_path = \"updated_at\", initial_value = 2024-01-01T00:00:00Z, \
             end_value = \"2025-01-01T00:00:00Z\" } }",
        );
        assert_eq!(
            e.incremental,
            Some(Incremental {
                start_param: Some("since".into()),
                end_param: Some("until".into()),
                cursor_path: "updated_at".into(),
                initial_value: Some(json!("2024-01-01T00:00:00Z")),
                end_value: Some(json!("2025-01-01T00:00:00Z")),
            })
        );
        let e = endpoint(
            "{ params = { limit = 5, since = { type = \"incremental\", cursor_path = \"$.meta.seq\", \
             initial_value = 7 } } }",
        );
        assert_eq!(e.params, BTreeMap::from([("limit".to_owned(), json!(5))]));
        assert_eq!(
            e.incremental,
            Some(Incremental {
                start_param: Some("since".into()),
                end_param: None,
                cursor_path: "$.meta.seq".into(),
                initial_value: Some(json!(7)),
                end_value: None,
            })
        );
        let e = endpoint(
            "{ params = { q = \"updated>{incremental.start_value}\" }, \
             incremental = { cursor_path = \"updated_at\", initial_value = \"a\" } }",
        );
        assert_eq!(e.params["q"], json!("updated>{incremental.start_value}"));
        assert_eq!(e.incremental.unwrap().start_param, None);
        // An incremental in resource_defaults applies to every resource.
        let config = toml(
            "[client]\nbase_url = \"https://a\"\n[resource_defaults]\nprimary_key = \"id\"\n\
             endpoint = { incremental = { start_param = \"s\", cursor_path = \"u\" } }\n\
             [[resources]]\nname = \"r\"\n",
        )
        .unwrap();
        assert_eq!(
            config.resources[0]
                .endpoint
                .incremental
                .as_ref()
                .unwrap()
                .cursor_path,
            "u"
        );
    }

    #[test]
    fn cursor_values_order_as_numbers_or_strings() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        for (a, b, expected) in [
            (json!(9), json!(10), Less),
            (json!(9.5), json!(10), Less),
            (json!(u64::MAX), json!(1), Greater),
            (json!(-1), json!(u64::MAX), Less),
            (json!("9"), json!("10"), Greater),
            (
                json!("2024-01-02T00:00:00Z"),
                json!("2024-01-10T00:00:00Z"),
                Less,
            ),
            (json!("a"), json!("a"), Equal),
            (json!(10), json!("9"), Less),
        ] {
            assert_eq!(cursor_order(&a, &b), expected, "{a} vs {b}");
        }
    }

    /// Table-driven: (name, document, substrings the error must contain).
    #[test]
    fn validation_errors_name_path() {
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            (
                "merge without a primary key",
                "[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"r\"\n\
                 write_disposition = \"merge\"\n"
                    .into(),
                vec!["pipeline.toml: resources[0].primary_key: missing", "merge"],
            ),
            (
                "two incrementals",
                with_endpoint(
                    "{ incremental = { start_param = \"a\", cursor_path = \"u\" }, \
                     params = { since = { type = \"incremental\", cursor_path = \"u\" } } }",
                ),
                vec![
                    "resources[0].endpoint.params.since: a resource has at most one incremental; \
                     it already has `resources[0].endpoint.incremental`",
                ],
            ),
            (
                "two incremental params",
                with_endpoint(
                    "{ params = { a = { type = \"incremental\", cursor_path = \"u\" }, \
                     b = { type = \"incremental\", cursor_path = \"u\" } } }",
                ),
                vec!["resources[0].endpoint.params.b: a resource has at most one incremental"],
            ),
            (
                "incremental cursor_path not a JSONPath",
                with_endpoint("{ incremental = { start_param = \"s\", cursor_path = \"a[\" } }"),
                vec!["resources[0].endpoint.incremental.cursor_path: `a[` is not a JSONPath"],
            ),
            (
                "incremental param cursor_path empty",
                with_endpoint(
                    "{ params = { since = { type = \"incremental\", cursor_path = \" \" } } }",
                ),
                vec!["resources[0].endpoint.params.since.cursor_path: must not be empty"],
            ),
            (
                "incremental start_param empty",
                with_endpoint("{ incremental = { start_param = \"\", cursor_path = \"u\" } }"),
                vec!["resources[0].endpoint.incremental.start_param: must not be empty"],
            ),
            (
                "incremental end_param without end_value",
                with_endpoint(
                    "{ incremental = { start_param = \"s\", end_param = \"e\", cursor_path = \"u\" } }",
                ),
                vec!["resources[0].endpoint.incremental.end_param: needs an `end_value`"],
            ),
            (
                "incremental initial_value a table",
                with_endpoint(
                    "{ incremental = { start_param = \"s\", cursor_path = \"u\", initial_value = { a = 1 } } }",
                ),
                vec![
                    "resources[0].endpoint.incremental.initial_value: {\"a\":1} is not a string or a number",
                ],
            ),
            (
                "incremental end_value a list",
                with_endpoint(
                    "{ params = { since = { type = \"incremental\", cursor_path = \"u\", end_value = [1] } } }",
                ),
                vec![
                    "resources[0].endpoint.params.since.end_value: [1] is not a string or a number",
                ],
            ),
            (
                "incremental end before initial",
                with_endpoint(
                    "{ incremental = { start_param = \"s\", cursor_path = \"u\", initial_value = 10, end_value = 9 } }",
                ),
                vec!["resources[0].endpoint.incremental.end_value: 9 is before initial_value 10"],
            ),
            (
                "placeholder without incremental",
                with_endpoint("{ params = { since = \"{incremental.start_value}\" } }"),
                vec![
                    "resources[0].endpoint.params.since: `{incremental.start_value}` needs an incremental: \
                     set `resources[0].endpoint.incremental",
                ],
            ),
            (
                "unknown placeholder",
                with_endpoint(
                    "{ params = { since = \">{incremental.first_value}\" }, \
                     incremental = { cursor_path = \"u\" } }",
                ),
                vec![
                    "resources[0].endpoint.params.since: unknown placeholder `{incremental.first_value}`",
                ],
            ),
            (
                "limit 0",
                with_endpoint("{ paginator = { type = \"offset\", limit = 0 } }"),
                vec!["resources[0].endpoint.paginator.limit: must be greater than 0"],
            ),
            (
                "limit 0 in defaults",
                with("[resource_defaults.endpoint]\npaginator = { type = \"offset\", limit = 0 }"),
                vec!["resource_defaults.endpoint.paginator.limit: must be greater than 0"],
            ),
            (
                "never-stopping paginator",
                with_endpoint(
                    "{ paginator = { type = \"offset\", limit = 1, total_path = \"\", \
                     stop_after_empty_page = false } }",
                ),
                vec!["resources[0].endpoint.paginator: the paginator would never stop"],
            ),
            (
                "duplicate resource names",
                format!(
                    "{}\n[[resources]]\nname = \"r\"\nprimary_key = \"id\"\n",
                    with("")
                ),
                vec!["resources[1].name: duplicate resource name `r` (also resources[0])"],
            ),
            (
                "bad explicit topic",
                "[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"r\"\n\
                 primary_key = \"id\"\ntopic = \"has space\"\n"
                    .into(),
                vec!["resources[0].topic: topic name `has space` contains ' '"],
            ),
            (
                "too long derived topic",
                format!(
                    "[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"{}\"\n\
                     primary_key = \"id\"\n",
                    "n".repeat(250)
                ),
                vec![
                    "resources[0].topic: ",
                    "longer than Kafka's limit",
                    "set `topic`",
                ],
            ),
            (
                "two names, one topic",
                "[client]\nbase_url = \"https://a\"\n[resource_defaults]\nprimary_key = \"id\"\n\
                 [[resources]]\nname = \"a b\"\n[[resources]]\nname = \"a_b\"\n\
                 table_name = \"t2\"\n"
                    .into(),
                vec!["resources[1].topic: topic `a_b` is also the topic of resources[0]"],
            ),
            (
                "base_url not http",
                "[client]\nbase_url = \"ftp://a\"\n[[resources]]\nname = \"r\"\n\
                 primary_key = \"id\"\n"
                    .into(),
                vec!["client.base_url: `ftp://a` is not an http:// or https:// URL"],
            ),
            (
                "base_url not a URL",
                "[client]\nbase_url = \"api.example.com\"\n[[resources]]\nname = \"r\"\n\
                 primary_key = \"id\"\n"
                    .into(),
                vec!["client.base_url: `api.example.com` is not a URL"],
            ),
            (
                "name in resource_defaults",
                with("[resource_defaults]\nname = \"x\""),
                vec!["resource_defaults.name: "],
            ),
            (
                "no resources",
                "resources = []\n[client]\nbase_url = \"https://a\"\n".into(),
                vec!["resources: at least one resource is required"],
            ),
            (
                "bad retry",
                with("[client.retry]\nbackoff_factor = 0.5\ninitial_delay = -1.0"),
                vec![
                    "2 problems",
                    "client.retry.backoff_factor: 0.5",
                    "client.retry.initial_delay: -1",
                ],
            ),
            (
                "bad timeout",
                with("[pipeline]\nname = \"x\"\n[client.retry]\nmax_retries = 1")
                    .replace("base_url", "timeout = 0\nbase_url"),
                vec!["client.timeout: 0 is not a positive number of seconds"],
            ),
            (
                "registry password without username",
                with("[schema_registry]\nurl = \"http://r\"\npassword = { secret = \"p\" }"),
                vec!["schema_registry.username: missing"],
            ),
            (
                "scale over precision",
                with("[resource_defaults.columns.c]\ndata_type = \"decimal\"\nprecision = 3"),
                vec!["resources[0].columns.c.scale: 9 is more than the precision (3)"],
            ),
            (
                "nullable primary key",
                with("[resource_defaults.columns.id]\nnullable = true"),
                vec!["resources[0].columns.id.nullable: a primary key column cannot be nullable"],
            ),
            (
                "bad data_selector",
                with_endpoint("{ data_selector = \"data[\" }"),
                vec!["resources[0].endpoint.data_selector: `data[` is not a JSONPath"],
            ),
            (
                "path placeholder naming nothing",
                with_endpoint("\"/items/{id}\""),
                vec![
                    "resources[0].endpoint.path: `/items/{id}`: placeholder `{id}` is neither \
                     `{resources.<parent>.<field>}` nor a param of this endpoint",
                ],
            ),
            (
                "unbalanced path braces",
                with_endpoint("\"/items/{id\""),
                vec!["resources[0].endpoint.path: `/items/{id`: unbalanced `{` or `}`"],
            ),
            (
                "placeholder without a field",
                with_endpoint("\"/items/{resources.p}\""),
                vec![
                    "resources[0].endpoint.path: `/items/{resources.p}`: placeholder \
                     `{resources.p}` needs a field",
                ],
            ),
            (
                "placeholder with an empty field",
                with_endpoint("{ path = \"/x\", params = { a = \"{resources.p.}\" } }"),
                vec!["resources[0].endpoint.params.a: `{resources.p.}`: placeholder"],
            ),
            (
                "unknown parent",
                with_endpoint("\"/items/{resources.nope.id}/x\""),
                vec![
                    "resources[0].endpoint.path: no resource named `nope` to take values from \
                     (the config has: r)",
                ],
            ),
            (
                "unknown parent of a resolve param",
                with_endpoint(
                    "{ path = \"/i/{n}\", params = { n = { type = \"resolve\", resource = \"q\", \
                     field = \"id\" } } }",
                ),
                vec!["resources[0].endpoint.path: no resource named `q`"],
            ),
            (
                "unknown parent in a query param",
                with_endpoint("{ path = \"/x\", params = { c = \"{resources.q.id}\" } }"),
                vec!["resources[0].endpoint.params.c: no resource named `q`"],
            ),
            (
                "resource depending on itself",
                with_endpoint("\"/items/{resources.r.id}\""),
                vec!["resources[0].endpoint.path: `r` is this resource"],
            ),
            (
                "cycle of two",
                "[client]\nbase_url = \"https://a\"\n[resource_defaults]\nprimary_key = \"id\"\n\
                 [[resources]]\nname = \"a\"\nendpoint = \"/a/{resources.b.id}\"\n\
                 [[resources]]\nname = \"b\"\nendpoint = \"/b/{resources.a.id}\"\n"
                    .into(),
                vec![
                    "resources[0].endpoint.path: dependent resources form a cycle: `a` -> `b` -> `a`",
                    "resources[1].endpoint.path: dependent resources form a cycle: `b` -> `a` -> `b`",
                ],
            ),
            (
                "two parents",
                "[client]\nbase_url = \"https://a\"\n[resource_defaults]\nprimary_key = \"id\"\n\
                 [[resources]]\nname = \"a\"\n[[resources]]\nname = \"b\"\n\
                 [[resources]]\nname = \"c\"\n\
                 endpoint = { path = \"/c/{resources.a.id}\", params = { x = \"{resources.b.id}\" } }\n"
                    .into(),
                vec![
                    "resources[2].endpoint.params.x: names the parent resource `b`, but another \
                     placeholder names `a`",
                ],
            ),
            (
                "placeholder in the JSON body",
                format!(
                    "{}\n[[resources]]\nname = \"c\"\nprimary_key = \"id\"\n\
                     endpoint = {{ path = \"/c/{{resources.r.id}}\", method = \"POST\", \
                     json = {{ q = [\"{{resources.r.id}}\"] }} }}\n",
                    with("")
                ),
                vec!["resources[1].endpoint.json: `{resources.<parent>.<field>}` placeholders"],
            ),
            (
                "include_from_parent without a parent",
                format!("{}include_from_parent = [\"id\"]\n", with("")),
                vec!["resources[0].include_from_parent: the resource has no parent"],
            ),
            (
                "response action matching nothing said",
                with_endpoint("{ response_actions = [{ action = \"ignore\" }] }"),
                vec![
                    "resources[0].endpoint.response_actions[0]: needs `status_code`, `content` \
                     or both",
                ],
            ),
            (
                "response action with a bad status",
                with_endpoint(
                    "{ response_actions = [{ content = \"x\", action = \"ignore\" }, \
                     { status_code = 4040, action = \"ignore\" }] }",
                ),
                vec!["resources[0].endpoint.response_actions[1].status_code: 4040 is not an HTTP status"],
            ),
            (
                "response action with empty content",
                with("[resource_defaults.endpoint]\nresponse_actions = [{ content = \"\", action = \"ignore\" }]"),
                vec!["resource_defaults.endpoint.response_actions[0].content: must not be empty"],
            ),
        ];
        for (name, text, needles) in cases {
            let e = err(toml(&text));
            for needle in needles {
                assert!(e.contains(needle), "{name}: {needle:?} not in {e:?}");
            }
        }
    }

    #[test]
    fn max_requests_per_second_values() {
        let rps = |value: &str| {
            toml(&with("").replace(
                "base_url",
                &format!("max_requests_per_second = {value}\nbase_url"),
            ))
        };
        assert_eq!(
            toml(&with("")).unwrap().client.max_requests_per_second,
            None
        );
        for (value, expected) in [("20", 20.0), ("0.5", 0.5), ("0.001", 0.001), ("1e6", 1e6)] {
            assert_eq!(
                rps(value).unwrap().client.max_requests_per_second,
                Some(expected),
                "{value}"
            );
        }
        let cases: [(&str, &str); 6] = [
            (
                "0",
                "client.max_requests_per_second: 0 is not a number of requests per second",
            ),
            (
                "-5",
                "client.max_requests_per_second: -5 is not a number of requests per second",
            ),
            (
                "0.0001",
                "client.max_requests_per_second: 0.0001 is not a number",
            ),
            ("nan", "client.max_requests_per_second: NaN is not a number"),
            ("inf", "client.max_requests_per_second: inf is not a number"),
            ("\"fast\"", "client.max_requests_per_second"),
        ];
        for (value, needle) in cases {
            let e = err(rps(value));
            assert!(e.contains(needle), "{value}: {needle:?} not in {e:?}");
        }
        assert_eq!(check_requests_per_second(20.0), None);
        assert!(check_requests_per_second(0.0).is_some());
    }

    #[test]
    fn max_pages_trusted_hosts_and_null_data() {
        let client = |line: &str| toml(&with("").replace("base_url", &format!("{line}\nbase_url")));
        let default = toml(&with("")).unwrap();
        assert_eq!(default.client.max_pages, DEFAULT_MAX_PAGES);
        assert!(default.client.trusted_hosts.is_empty());
        assert!(!default.resources[0].endpoint.allow_null_data);
        assert_eq!(client("max_pages = 50").unwrap().client.max_pages, 50);
        assert!(err(client("max_pages = 0")).contains("client.max_pages: must be at least 1"));
        assert!(err(client("max_pages = -1")).contains("client.max_pages"));
        assert_eq!(
            client("trusted_hosts = [\"CDN.example.com\", \"10.0.0.7\"]")
                .unwrap()
                .client
                .trusted_hosts,
            ["cdn.example.com", "10.0.0.7"]
        );
        for bad in ["https://cdn.example.com", "cdn.example.com:8443", "", "a/b"] {
            let e = err(client(&format!(
                "trusted_hosts = [\"ok.example.com\", \"{bad}\"]"
            )));
            assert!(
                e.contains("client.trusted_hosts[1]") && e.contains("is not a host name"),
                "{bad}: {e}"
            );
        }
        let text = with_endpoint("{ data_selector = \"data\", allow_null_data = true }");
        assert!(toml(&text).unwrap().resources[0].endpoint.allow_null_data);
        // From resource_defaults, key by key.
        let text = format!(
            "[resource_defaults.endpoint]\nallow_null_data = true\n\n{}",
            with_endpoint("{ path = \"/x\" }")
        );
        assert!(toml(&text).unwrap().resources[0].endpoint.allow_null_data);
    }

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
    fn resource_defaults_merge() {
        let text = r#"
[client]
base_url = "https://api.example.com/api/"
paginator = { type = "offset", limit = 50 }

[resource_defaults]
primary_key = "id"
write_disposition = { disposition = "merge" }
endpoint = { data_selector = "data", params = { a = "1", b = 2, on = true } }
columns = { id = { data_type = "bigint" }, cost = { data_type = "decimal", precision = 12 } }
schema_contract = "freeze"

[[resources]]
name = "one"
endpoint = { path = "one", params = { b = 3, c = 1.5 }, paginator = "single_page" }
columns = { cost = { scale = 2 }, extra = { data_type = "text" } }

[[resources]]
name = "two"
primary_key = ["k1", "k2"]
write_disposition = "replace"
endpoint = { path = "/two", method = "POST", json = { q = "x" }, data_selector = "$.items[*]" }
schema_contract = { columns = "discard_value", data_type = "discard_row" }

[[resources]]
name = "three"
"#;
        let config = toml(text).unwrap();
        let [one, two, three] = &config.resources[..] else {
            panic!("three resources: {config:#?}");
        };

        assert_eq!(one.primary_key, ["id"]);
        assert_eq!(one.write_disposition, WriteDisposition::Merge);
        assert_eq!(one.endpoint.path, "one");
        assert_eq!(one.endpoint.data_selector.as_deref(), Some("data"));
        assert_eq!(
            one.endpoint.params,
            BTreeMap::from([
                ("a".to_owned(), Value::from("1")),
                ("b".to_owned(), Value::from(3)),
                ("c".to_owned(), Value::from(1.5)),
                ("on".to_owned(), Value::from(true)),
            ])
        );
        assert_eq!(one.endpoint.paginator, Paginator::SinglePage);
        assert_eq!(
            one.columns["cost"],
            ColumnHint {
                data_type: Some(DataType::Decimal),
                nullable: None,
                precision: Some(12),
                scale: Some(2),
                hard_delete: None,
            }
        );
        assert_eq!(one.columns["id"].data_type, Some(DataType::Bigint));
        assert_eq!(one.columns["extra"].data_type, Some(DataType::Text));

        let all = |mode| SchemaContract {
            tables: mode,
            columns: mode,
            data_type: mode,
        };
        assert_eq!(one.schema_contract, all(ContractMode::Freeze));
        assert_eq!(
            two.schema_contract,
            SchemaContract {
                tables: ContractMode::Evolve,
                columns: ContractMode::DiscardValue,
                data_type: ContractMode::DiscardRow,
            }
        );
        assert_eq!(three.schema_contract, all(ContractMode::Freeze));
        assert_eq!(two.primary_key, ["k1", "k2"]);
        assert_eq!(two.write_disposition, WriteDisposition::Replace);
        assert_eq!(two.endpoint.method, Method::Post);
        assert_eq!(two.endpoint.json, Some(serde_json::json!({"q": "x"})));
        assert_eq!(two.endpoint.data_selector.as_deref(), Some("$.items[*]"));
        assert_eq!(two.endpoint.params.len(), 3);
        let Paginator::Offset(p) = &two.endpoint.paginator else {
            panic!("client paginator: {two:#?}");
        };
        assert_eq!(p.limit, 50);
        assert_eq!(two.columns.len(), 2);
        assert_eq!(
            config
                .client
                .endpoint_url(&two.endpoint.path)
                .unwrap()
                .as_str(),
            "https://api.example.com/api/two"
        );

        assert_eq!(three.endpoint.path, "three");
        assert_eq!(three.primary_key, ["id"]);
    }

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

    #[test]
    fn paginator_forms() {
        let paginator = |p: &str| -> Paginator {
            toml(&with_endpoint(&format!("{{ paginator = {p} }}")))
                .unwrap()
                .resources[0]
                .endpoint
                .paginator
                .clone()
        };
        assert_eq!(paginator("\"single_page\""), Paginator::SinglePage);
        assert_eq!(
            paginator("{ type = \"single_page\" }"),
            Paginator::SinglePage
        );
        assert_eq!(
            paginator(
                "{ type = \"offset\", limit = 10, offset = 5, offset_param = \"skip\", \
                 limit_param = \"take\", total_path = \"meta.total\", maximum_offset = 1000, \
                 stop_after_empty_page = false }"
            ),
            Paginator::Offset(OffsetPaginator {
                limit: 10,
                offset: 5,
                offset_param: "skip".into(),
                limit_param: "take".into(),
                total_path: Some("meta.total".into()),
                maximum_offset: Some(1000),
                stop_after_empty_page: false,
            })
        );
        let Paginator::Offset(p) =
            paginator("{ type = \"offset\", limit = 10, total_path = \"\" }")
        else {
            panic!("offset")
        };
        assert_eq!(p.total_path, None);

        let json = r#"{"client": {"base_url": "https://a"}, "resources": [{"name": "r",
            "primary_key": "id",
            "endpoint": {"paginator": {"type": "offset", "limit": 3, "total_path": null}}}]}"#;
        let config = parse(json, Format::Json, "p.json").unwrap();
        let Paginator::Offset(p) = &config.resources[0].endpoint.paginator else {
            panic!("offset")
        };
        assert_eq!(p.total_path, None);
        assert_eq!(p.limit, 3);

        let e = err(toml(&with_endpoint(
            "{ paginator = { type = \"single_page\", limit = 1 } }",
        )));
        assert!(
            e.contains("resources[0].endpoint.paginator.limit: unknown field `limit`"),
            "{e}"
        );
    }

    #[test]
    fn more_paginator_forms() {
        let paginator = |p: &str| -> Paginator {
            toml(&with_endpoint(&format!(
                "{{ method = \"POST\", paginator = {p} }}"
            )))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .resources[0]
                .endpoint
                .paginator
                .clone()
        };
        let page_number_defaults = PageNumberPaginator {
            base_page: 0,
            page: None,
            page_param: "page".into(),
            total_path: Some("total".into()),
            maximum_page: None,
            stop_after_empty_page: true,
        };
        let cursor_defaults = CursorPaginator {
            cursor_path: "cursors.next".into(),
            cursor_param: None,
            cursor_body_path: None,
        };
        let cases: Vec<(&str, Paginator)> = vec![
            ("\"auto\"", Paginator::Auto),
            ("{ type = \"auto\" }", Paginator::Auto),
            (
                "\"page_number\"",
                Paginator::PageNumber(page_number_defaults.clone()),
            ),
            (
                "{ type = \"page_number\", base_page = 1, page = 2, page_param = \"p\", \
                 total_path = \"meta.pages\", maximum_page = 9, stop_after_empty_page = false }",
                Paginator::PageNumber(PageNumberPaginator {
                    base_page: 1,
                    page: Some(2),
                    page_param: "p".into(),
                    total_path: Some("meta.pages".into()),
                    maximum_page: Some(9),
                    stop_after_empty_page: false,
                }),
            ),
            (
                "{ type = \"page_number\", total_path = \"\" }",
                Paginator::PageNumber(PageNumberPaginator {
                    total_path: None,
                    ..page_number_defaults.clone()
                }),
            ),
            (
                "\"json_link\"",
                Paginator::JsonLink(JsonLinkPaginator {
                    next_url_path: "next".into(),
                }),
            ),
            (
                "{ type = \"json_response\", next_url_path = \"links.next\" }",
                Paginator::JsonLink(JsonLinkPaginator {
                    next_url_path: "links.next".into(),
                }),
            ),
            (
                "{ type = \"header_link\" }",
                Paginator::HeaderLink(HeaderLinkPaginator {
                    links_next_key: "next".into(),
                }),
            ),
            (
                "{ type = \"header_link\", links_next_key = \"nxt\" }",
                Paginator::HeaderLink(HeaderLinkPaginator {
                    links_next_key: "nxt".into(),
                }),
            ),
            ("\"cursor\"", Paginator::Cursor(cursor_defaults.clone())),
            (
                "{ type = \"json_response_cursor\", cursor_path = \"meta.next\", \
                 cursor_param = \"after\" }",
                Paginator::Cursor(CursorPaginator {
                    cursor_path: "meta.next".into(),
                    cursor_param: Some("after".into()),
                    cursor_body_path: None,
                }),
            ),
            (
                "{ type = \"cursor\", cursor_body_path = \"page.cursor\" }",
                Paginator::Cursor(CursorPaginator {
                    cursor_body_path: Some("page.cursor".into()),
                    ..cursor_defaults.clone()
                }),
            ),
            (
                "\"header_cursor\"",
                Paginator::HeaderCursor(HeaderCursorPaginator {
                    cursor_key: "next".into(),
                    cursor_param: "cursor".into(),
                }),
            ),
            (
                "{ type = \"header_cursor\", cursor_key = \"X-Next\", cursor_param = \"c\" }",
                Paginator::HeaderCursor(HeaderCursorPaginator {
                    cursor_key: "X-Next".into(),
                    cursor_param: "c".into(),
                }),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(paginator(text), expected, "{text}");
        }
        assert_eq!(paginator("\"json_response_cursor\"").kind(), "cursor");

        // The same in JSON and YAML.
        let json = r#"{"client": {"base_url": "https://a", "paginator": "auto"},
            "resources": [{"name": "r", "primary_key": "id",
            "endpoint": {"paginator": {"type": "header_cursor", "cursor_key": "X-Next"}}},
            {"name": "s", "primary_key": "id"}]}"#;
        let config = parse(json, Format::Json, "p.json").unwrap();
        assert_eq!(
            config.resources[0].endpoint.paginator.kind(),
            "header_cursor"
        );
        assert_eq!(config.resources[1].endpoint.paginator, Paginator::Auto);
        let yaml = "client: {base_url: 'https://a'}\nresources:\n  - name: r\n    \
                    primary_key: id\n    endpoint:\n      paginator:\n        \
                    type: json_link\n        next_url_path: links.next\n";
        let config = parse(yaml, Format::Yaml, "p.yaml").unwrap();
        assert_eq!(
            config.resources[0].endpoint.paginator,
            Paginator::JsonLink(JsonLinkPaginator {
                next_url_path: "links.next".into()
            })
        );
    }

    /// Table-driven: each bad paginator key fails with its key path.
    #[test]
    fn paginator_errors_name_the_key() {
        let at = "pipeline.toml: resources[0].endpoint.paginator";
        let cases: Vec<(&str, String)> = vec![
            (
                "{ type = \"page_number\", pages = 3 }",
                format!("{at}.pages: unknown field `pages`"),
            ),
            (
                "{ type = \"page_number\", base_page = -1 }",
                format!("{at}.base_page: "),
            ),
            (
                "{ type = \"page_number\", page_param = \"\" }",
                format!("{at}.page_param: must not be empty"),
            ),
            (
                "{ type = \"page_number\", base_page = 1, page = 0 }",
                format!("{at}.page: 0 is before base_page (1)"),
            ),
            (
                "{ type = \"page_number\", total_path = \"a[\" }",
                format!("{at}.total_path: `a[` is not a JSONPath"),
            ),
            (
                "{ type = \"page_number\", total_path = \"\", stop_after_empty_page = false }",
                format!("{at}: the paginator would never stop"),
            ),
            (
                "{ type = \"json_link\", next_url = \"x\" }",
                format!("{at}.next_url: unknown field `next_url`"),
            ),
            (
                "{ type = \"json_link\", next_url_path = \"[\" }",
                format!("{at}.next_url_path: `[` is not a JSONPath"),
            ),
            (
                "{ type = \"header_link\", links_next_key = \"\" }",
                format!("{at}.links_next_key: must not be empty"),
            ),
            (
                "{ type = \"header_link\", links_next_key = 5 }",
                format!("{at}.links_next_key: invalid type"),
            ),
            (
                "{ type = \"cursor\", cursor_param = \"c\", cursor_body_path = \"c\" }",
                format!("{at}.cursor_body_path: set either `cursor_param` or `cursor_body_path`"),
            ),
            (
                "{ type = \"cursor\", cursor_body_path = \"a..b\" }",
                format!("{at}.cursor_body_path: `a..b` is not a dotted path"),
            ),
            (
                "{ type = \"cursor\", cursor_path = \"\" }",
                format!("{at}.cursor_path: "),
            ),
            (
                "{ type = \"json_response_cursor\", cursor = \"x\" }",
                format!("{at}.cursor: unknown field `cursor`"),
            ),
            (
                "{ type = \"header_cursor\", cursor_key = \"\" }",
                format!("{at}.cursor_key: must not be empty"),
            ),
            (
                "{ type = \"header_cursor\", cursor_path = \"x\" }",
                format!("{at}.cursor_path: unknown field `cursor_path`"),
            ),
            (
                "{ type = \"auto\", limit = 1 }",
                format!("{at}.limit: unknown field `limit`"),
            ),
            (
                "{ type = \"autoo\" }",
                format!("{at}.type: unknown or unsupported paginator type `autoo`"),
            ),
            (
                "\"links\"",
                format!("{at}: unknown or unsupported paginator `links`"),
            ),
            (
                "\"offset\"",
                format!("{at}: the offset paginator needs a `limit`"),
            ),
        ];
        for (paginator, needle) in cases {
            let e = err(toml(&with_endpoint(&format!(
                "{{ method = \"POST\", paginator = {paginator} }}"
            ))));
            assert!(e.contains(&needle), "{paginator}: {needle:?} not in {e:?}");
        }
        let e = err(toml(&with_endpoint(
            "{ paginator = { type = \"cursor\", cursor_body_path = \"cursor\" } }",
        )));
        assert!(
            e.contains("resources[0].endpoint.method: the paginator's `cursor_body_path`"),
            "{e}"
        );
    }

    #[test]
    fn oauth2_client_credentials() {
        let auth = |a: &str| -> Result<PipelineConfig, ConfigError> {
            toml(&with("").replace("base_url", &format!("auth = {a}\nbase_url")))
        };
        let config = auth(
            "{ type = \"oauth2_client_credentials\", access_token_url = \"https://auth/token\", \
             client_id = { secret = \"cid\" }, client_secret = { secret = \"cs\" }, \
             access_token_request_data = { scope = \"read\" }, default_token_expiration = 60 }",
        )
        .unwrap();
        assert_eq!(
            config.client.auth,
            Some(AuthConfig::OAuth2ClientCredentials(
                OAuth2ClientCredentialsAuth {
                    access_token_url: "https://auth/token".into(),
                    client_id: SecretRef::new("cid"),
                    client_secret: SecretRef::new("cs"),
                    access_token_request_data: BTreeMap::from([(
                        "scope".to_owned(),
                        "read".to_owned()
                    )]),
                    default_token_expiration: 60,
                }
            ))
        );
        assert_eq!(
            config.secret_refs(),
            vec![
                ("client.auth.client_id", &SecretRef::new("cid")),
                ("client.auth.client_secret", &SecretRef::new("cs")),
            ]
        );
        let minimal = auth(
            "{ type = \"oauth2_client_credentials\", access_token_url = \"http://a/t\", \
             client_id = { secret = \"cid\" }, client_secret = { secret = \"cs\" } }",
        )
        .unwrap();
        let Some(AuthConfig::OAuth2ClientCredentials(a)) = &minimal.client.auth else {
            panic!("oauth2: {minimal:#?}")
        };
        assert_eq!(a.default_token_expiration, DEFAULT_TOKEN_EXPIRATION);
        assert!(a.access_token_request_data.is_empty());
        assert_eq!(
            minimal.client.auth.as_ref().map(AuthConfig::kind),
            Some("oauth2_client_credentials")
        );

        let o = "type = \"oauth2_client_credentials\", client_id = { secret = \"cid\" }";
        let cases: Vec<(String, &str)> = vec![
            (
                format!("{{ {o}, client_secret = {{ secret = \"cs\" }} }}"),
                "client.auth: missing field `access_token_url`",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", client_secret = \"literal\" }}"
                ),
                "client.auth.client_secret: a secret value must not be written",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"/token\", client_secret = {{ secret = \"cs\" }} }}"
                ),
                "client.auth.access_token_url: `/token` is not a URL",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", \
                     client_secret = {{ secret = \"cs\" }}, default_token_expiration = 0 }}"
                ),
                "client.auth.default_token_expiration: must be a positive number",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", \
                     client_secret = {{ secret = \"cs\" }}, token_url = \"x\" }}"
                ),
                "client.auth.token_url: unknown field `token_url`",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", \
                     client_secret = {{ secret = \"cs\" }}, \
                     access_token_request_data = {{ client_secret = \"x\" }} }}"
                ),
                "client.auth.access_token_request_data.client_secret: `client_secret` comes from",
            ),
            (
                format!(
                    "{{ {o}, access_token_url = \"http://a/t\", \
                     client_secret = {{ secret = \"cs\" }}, \
                     access_token_request_data = {{ scope = [1] }} }}"
                ),
                "client.auth.access_token_request_data.scope: invalid type",
            ),
            (
                "{ type = \"oauth2\" }".to_owned(),
                "client.auth.type: unknown or unsupported auth type `oauth2`, expected one of: \
                 api_key, bearer, http_basic, oauth2_client_credentials",
            ),
        ];
        for (text, needle) in cases {
            let e = err(auth(&text));
            assert!(e.contains(needle), "{text}: {needle:?} not in {e:?}");
        }
    }

    #[test]
    fn auth_forms() {
        let auth = |a: &str| -> AuthConfig {
            toml(&with("").replace("base_url", &format!("auth = {a}\nbase_url")))
                .unwrap()
                .client
                .auth
                .unwrap()
        };
        assert_eq!(
            auth("{ type = \"api_key\", api_key = { secret = \"k\" } }"),
            AuthConfig::ApiKey(ApiKeyAuth {
                name: "Authorization".into(),
                api_key: SecretRef::new("k"),
                location: ApiKeyLocation::Header,
            })
        );
        let bearer = auth("{ type = \"bearer\", token = { secret = \"t\" } }");
        assert_eq!(bearer.kind(), "bearer");
        let basic =
            auth("{ type = \"http_basic\", username = \"u\", password = { secret = \"p\" } }");
        assert_eq!(
            basic,
            AuthConfig::HttpBasic(HttpBasicAuth {
                username: "u".into(),
                password: SecretRef::new("p"),
            })
        );
    }

    #[test]
    fn our_extensions() {
        let text = with(
            "[pipeline]\nname = \"p\"\ntopic_prefix = \"dev.\"\nschema_topic = \"schemas\"\n\
             [schema_registry]\nurl = \"https://r\"\nusername = \"u\"\n\
             password = { secret = \"registry_password\" }",
        )
        .replace(
            "base_url",
            "timeout = 2.5\nheaders = { \"X-Foo\" = \"bar\" }\n\
             retry = { max_retries = 5, backoff_factor = 3, initial_delay = 0.5, max_delay = 10, \
             retry_after_max = 30, statuses = [429], jitter = false }\nbase_url",
        );
        let config = toml(&text).unwrap();
        assert_eq!(config.schema_topic, "schemas");
        assert_eq!(config.resources[0].topic, "dev.r");
        assert_eq!(config.client.timeout, Duration::from_millis(2500));
        assert_eq!(config.client.headers["X-Foo"], "bar");
        assert_eq!(
            config.client.retry,
            RetryPolicy {
                max_retries: 5,
                backoff_factor: 3.0,
                initial_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(10),
                retry_after_max: Duration::from_secs(30),
                statuses: vec![429],
                jitter: false,
            }
        );
        assert_eq!(
            config.secret_refs(),
            vec![(
                "schema_registry.password",
                &SecretRef::new("registry_password")
            )]
        );
    }

    #[test]
    fn json_paths() {
        for (expr, ok) in [
            ("data", true),
            ("$.data", true),
            ("meta.total", true),
            ("$.items[*]", true),
            ("[0]", true),
            ("data[", false),
        ] {
            assert_eq!(parse_json_path(expr).is_ok(), ok, "{expr}");
        }
        let path = parse_json_path("meta.total").unwrap();
        let value = serde_json::json!({"meta": {"total": 7}});
        assert_eq!(path.query(&value).exactly_one().unwrap(), &Value::from(7));
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
    fn dependent_resources_resolve_to_placeholders() {
        let text = r#"
[client]
base_url = "https://api.example.com"

[resource_defaults]
primary_key = "id"

[[resources]]
name = "conversations"
endpoint = "/v1/conversations"

[[resources]]
name = "messages"
include_from_parent = ["id", "meta.topic"]
endpoint = { path = "/v1/conversations/{resources.conversations.meta.id}/messages", params = { since = "{resources.conversations.created_at}", kind = "chat" }, response_actions = [{ status_code = 404, action = "ignore" }, { status_code = 200, content = "Not found", action = "ignore" }] }

[[resources]]
name = "comments"
[resources.endpoint]
path = "/issues/{issue_number}/comments/{lang}"
params = { issue_number = { type = "resolve", resource = "conversations", field = "number" }, lang = "de/ch", author = { type = "resolve", resource = "conversations", field = "author" } }
"#;
        let config = toml(text).unwrap();
        let conversations = config.resource("conversations").unwrap();
        assert_eq!(conversations.parent, None);
        assert!(conversations.endpoint.response_actions.is_empty());

        let messages = config.resource("messages").unwrap();
        assert_eq!(messages.parent.as_deref(), Some("conversations"));
        assert_eq!(messages.include_from_parent, vec!["id", "meta.topic"]);
        assert_eq!(
            messages.endpoint.path,
            "/v1/conversations/{resources.conversations.meta.id}/messages"
        );
        assert_eq!(
            messages.endpoint.params["since"],
            "{resources.conversations.created_at}"
        );
        assert_eq!(
            messages.endpoint.response_actions,
            vec![
                ResponseAction {
                    status_code: Some(404),
                    content: None,
                    action: ResponseActionKind::Ignore,
                },
                ResponseAction {
                    status_code: Some(200),
                    content: Some("Not found".into()),
                    action: ResponseActionKind::Ignore,
                },
            ]
        );

        // dlt's older form: the resolve param bound in the path leaves the params, so does
        // the plain param bound there (escaped); an unbound resolve param stays a param.
        let comments = config.resource("comments").unwrap();
        assert_eq!(comments.parent.as_deref(), Some("conversations"));
        assert_eq!(
            comments.endpoint.path,
            "/issues/{resources.conversations.number}/comments/de%2Fch"
        );
        assert_eq!(
            comments.endpoint.params,
            BTreeMap::from([(
                "author".to_owned(),
                Value::from("{resources.conversations.author}")
            )])
        );
    }

    #[test]
    fn templates_split_at_parent_placeholders() {
        let parent = |resource: &str, field: &[&str]| TemplatePart::Parent {
            resource: resource.into(),
            field: field.iter().map(|f| (*f).to_owned()).collect(),
        };
        let text = |t: &str| TemplatePart::Text(t.into());
        assert_eq!(
            parse_template("/a/{resources.p.meta.id}/b{resources.p.n}").unwrap(),
            vec![
                text("/a/"),
                parent("p", &["meta", "id"]),
                text("/b"),
                parent("p", &["n"])
            ]
        );
        assert_eq!(
            parse_template("{\"json\": 1}").unwrap(),
            vec![text("{\"json\": 1}")]
        );
        assert_eq!(parse_template("").unwrap(), vec![]);
        for bad in [
            "{resources.p",
            "{resources.p}",
            "{resources..id}",
            "{resources.p..x}",
        ] {
            assert!(parse_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_escape_leaves_only_unreserved_characters() {
        assert_eq!(path_escape("abc-1.2_~"), "abc-1.2_~");
        assert_eq!(path_escape("a/b c?d#e%f"), "a%2Fb%20c%3Fd%23e%25f");
        assert_eq!(path_escape("Zürich"), "Z%C3%BCrich");
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

/// docs/config.md names every key the parser accepts: a key added to a
/// config struct without documentation fails here.
#[cfg(test)]
mod reference {
    use super::*;

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
        let readme = include_str!("../../docs/config.md");
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
