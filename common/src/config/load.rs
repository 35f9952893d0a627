//! Loading a config: the format from the file's extension, the text parsed into the raw
//! document (TOML, JSON or YAML, each through `serde_path_to_error`), then resolved. A parse
//! error gets the key path it happened at, joined with the sub-path a replayed tagged map
//! (see [`super::raw`]) marks in its message.

use std::fmt;
use std::path::Path;

use serde::de;

use super::PipelineConfig;
use super::error::{ConfigError, Problem};
use super::raw::RawDocument;
use super::resolve::resolve;

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

/// Wraps the sub-path that a replayed map (see [`super::raw::Tagged`]) adds to an error's
/// message, for [`problem_from`] to move into the path.
pub(super) const SUBPATH_MARK: char = '\u{1}';

pub(super) fn marked<E: de::Error>(sub_path: &str, error: impl fmt::Display) -> E {
    E::custom(format_args!(
        "{SUBPATH_MARK}{sub_path}{SUBPATH_MARK}{error}"
    ))
}

pub(super) fn join_path(parent: &str, child: &str) -> String {
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
    let mut message = rest.to_owned();
    // dlt's column hints the loader does not apply say what to write instead.
    if let Some(key) = rest
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(key, _)| key)
        && let Some(parent) = path.strip_suffix(&format!(".{key}"))
        && parent
            .rsplit_once('.')
            .is_some_and(|(columns, _)| columns == "columns" || columns.ends_with(".columns"))
        && let Some(advice) = super::validate::column_hint_advice(key)
    {
        let at = rest.rfind(" (line ").map_or("", |i| &rest[i..]);
        message = format!("dlt's column hint `{key}` is not supported: {advice}{at}");
    }
    Problem { path, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::*;
    use crate::schema::DataType;

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
            merge_strategy: Some(MergeStrategy::DeleteInsert),
            scd2: Scd2Config::default(),
            merge_key: Vec::new(),
            schema_contract: SchemaContract::default(),
            endpoint: EndpointConfig {
                path: "/v1/resource".into(),
                method: Method::Get,
                params: BTreeMap::new(),
                json: None,
                headers: BTreeMap::new(),
                data: None,
                data_selector: Some("data".into()),
                incremental: None,
                paginator: Paginator::Offset(OffsetPaginator {
                    limit: 100,
                    offset: 0,
                    offset_param: None,
                    limit_param: None,
                    offset_body_path: None,
                    limit_body_path: None,
                    total_path: Some("total".into()),
                    maximum_offset: None,
                    stop_after_empty_page: true,
                    has_more_path: None,
                }),
                response_actions: Vec::new(),
                allow_null_data: false,
                auth: EndpointAuth::Client,
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
                        ..ColumnHint::default()
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

    /// Table-driven: (name, format, document, substrings the error must contain).

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
                "a dlt column hint the loader does not apply",
                Format::Toml,
                with("[resource_defaults.columns.email]\nunique = true"),
                vec![
                    "resource_defaults.columns.email.unique: dlt's column hint `unique` is not \
                     supported: dlt's `unique` adds a UNIQUE constraint on PostgreSQL",
                    "(line 5, column",
                ],
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
                "skip",
                Format::Toml,
                with("[resource_defaults]\nwrite_disposition = \"skip\""),
                vec![
                    "resource_defaults.write_disposition: `skip` is not supported",
                    "`extractor --resource <child>`",
                ],
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
                "param value that is a list of lists",
                Format::Toml,
                with_endpoint("{ params = { since = [[1], 2] } }"),
                vec![
                    "resources[0].endpoint.params.since: a list param holds strings, numbers or \
                     booleans, not [1]",
                ],
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
                    "{ incremental = { start_param = \"since\", cursor_path = \"u\", last_value_func = \"min\" } }",
                ),
                vec!["resources[0].endpoint.incremental.last_value_func: unknown field `last_value_func`"],
            ),
            (
                "incremental options with values dlt does not take",
                Format::Toml,
                with_endpoint(
                    "{ incremental = { start_param = \"since\", cursor_path = \"u\", initial_value = \"abc\", lag = 5, row_order = \"up\" } }",
                ),
                vec![
                    "resources[0].endpoint.incremental.row_order: unknown variant `up`, expected `asc` or `desc`",
                ],
            ),
            (
                "lag on an initial_value that is no datetime",
                Format::Toml,
                with_endpoint(
                    "{ incremental = { start_param = \"since\", cursor_path = \"u\", initial_value = \"abc\", lag = 5 } }",
                ),
                vec![
                    "resources[0].endpoint.incremental.lag: does not apply to initial_value: `abc` is not a datetime or date text lag applies to (RFC 3339 such as `2024-01-01T00:00:00Z`, `2024-01-01T00:00:00.5+02:00`, `2024-01-01T00:00:00`, or a date `2024-01-01`)",
                ],
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
}
