//! From the raw document to the [`PipelineConfig`]: `resource_defaults` merged into each
//! resource as dlt merges them, every default applied, dlt's dependent-resource forms
//! resolved to `{resources.<parent>.<field>}` placeholders, the one incremental of a resource
//! taken out of its params. Every problem found on the way is collected with its key path
//! (the checks themselves are in [`super::validate`]); the result is a config only if there
//! is none.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::error::{Problem, Problems};
use super::raw::{
    KafkaValue, OrBare, ParamValue, PrimaryKey, RawClient, RawDocument, RawEndpoint,
    RawIncremental, RawResource, RawRetry, RawSchemaRegistry, WriteDispositionObject,
};
use super::validate::*;
use super::*;
use crate::retry::RetryPolicy;
use crate::schema::ColumnHint;
use crate::template::{
    IncrementalValue, Piece, TemplatePart, escape_braces, parse_template, path_escape,
    single_placeholder, split_fields,
};
use crate::topic::{is_topic_char, topic_name_from, topic_problem};

/// Seconds as written (`30`, `0.5`) to a duration; `None` if negative or not finite.
fn seconds(value: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(value).ok()
}

pub(super) fn resolve(raw: RawDocument) -> Result<PipelineConfig, Vec<Problem>> {
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
    check_headers(&headers, problems);
    check_auth("client.auth", raw.auth.as_ref(), problems);

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
    let max_response_bytes = match raw.max_response_bytes {
        None => DEFAULT_MAX_RESPONSE_BYTES,
        Some(0) => {
            problems.push("client.max_response_bytes", "must be at least 1");
            DEFAULT_MAX_RESPONSE_BYTES
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
        max_response_bytes,
        trusted_hosts,
    })
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

/// A resource's `write_disposition` (string or dlt's table form) and, with `merge`, its
/// strategy. dlt's `merge` without a primary key and without a merge key appends, and so
/// does this one; a merge key needs `delete-insert`. What is not supported is a problem
/// naming its key and what to write.
fn write_disposition(
    at: &str,
    raw: Option<WriteDispositionObject>,
    has_merge_key: bool,
    no_primary_key: bool,
    problems: &mut Problems,
) -> (WriteDisposition, Option<MergeStrategy>, Scd2Config) {
    let key = format!("{at}.write_disposition");
    let Some(mut raw) = raw else {
        if has_merge_key {
            problems.push(
                format!("{at}.merge_key"),
                "applies to `merge` with the `delete-insert` strategy only (this resource \
                 appends); remove it, or write `write_disposition = { disposition = \"merge\", \
                 strategy = \"delete-insert\" }`",
            );
        }
        return (WriteDisposition::default(), None, Scd2Config::default());
    };
    let scd2 =
        if raw.disposition == WriteDisposition::Merge && raw.strategy.as_deref() == Some("scd2") {
            scd2_options(&key, &mut raw, problems)
        } else {
            Scd2Config::default()
        };
    for option in raw.unsupported_options() {
        problems.push(
            format!("{key}.{option}"),
            format!(
                "not supported: dlt's `{option}` (an option of the `scd2`, `upsert` or \
                 `delete-insert` strategies) is not implemented; remove it"
            ),
        );
    }
    let strategy = match raw.strategy.as_deref() {
        None => MergeStrategy::DeleteInsert,
        Some(_) if raw.disposition != WriteDisposition::Merge => {
            problems.push(
                format!("{key}.strategy"),
                format!(
                    "a merge strategy applies to `disposition = \"merge\"` only (dlt ignores it \
                     with `{}`); remove it",
                    raw.disposition
                ),
            );
            MergeStrategy::DeleteInsert
        }
        Some("delete-insert") => MergeStrategy::DeleteInsert,
        Some("upsert") => MergeStrategy::Upsert,
        Some("scd2") => MergeStrategy::Scd2,
        Some(other @ ("insert-only" | "cdc")) => {
            problems.push(
                format!("{key}.strategy"),
                format!(
                    "dlt's `{other}` merge strategy is not supported; write `strategy = \
                     \"upsert\"` or `\"delete-insert\"` (one row per primary key, its latest \
                     version), or `disposition = \"append\"` to keep every version"
                ),
            );
            MergeStrategy::DeleteInsert
        }
        Some(other) => {
            problems.push(
                format!("{key}.strategy"),
                format!(
                    "unknown merge strategy `{other}`, expected `delete-insert`, `upsert`, \
                     `scd2`, `insert-only` or `cdc` (dlt's; this project supports \
                     `delete-insert`, `upsert` and `scd2`)"
                ),
            );
            MergeStrategy::DeleteInsert
        }
    };
    if has_merge_key
        && (raw.disposition != WriteDisposition::Merge
            || !matches!(strategy, MergeStrategy::DeleteInsert | MergeStrategy::Scd2))
    {
        let has = if raw.disposition == WriteDisposition::Merge {
            format!("`merge` with `{}`", strategy.as_str())
        } else {
            format!("`{}`", raw.disposition)
        };
        problems.push(
            format!("{at}.merge_key"),
            format!(
                "applies to `merge` with the `delete-insert` strategy only, or with `scd2` \
                 (this resource has {has}); remove it, or write `write_disposition = {{ disposition = \"merge\", \
                 strategy = \"delete-insert\" }}`"
            ),
        );
    }
    match raw.disposition {
        // dlt's merge with neither a primary key nor a merge key appends (with a warning).
        // dlt's scd2 needs no key: a row's identity is its content.
        WriteDisposition::Merge if strategy == MergeStrategy::Scd2 => {
            (WriteDisposition::Merge, Some(strategy), scd2)
        }
        WriteDisposition::Merge if no_primary_key && !has_merge_key => {
            (WriteDisposition::Append, None, scd2)
        }
        WriteDisposition::Merge => (WriteDisposition::Merge, Some(strategy), scd2),
        other => (other, None, scd2),
    }
}

/// dlt's `scd2` options, taken out of `raw` (so they are not refused as unsupported);
/// a value of the wrong shape is a problem naming its key.
fn scd2_options(
    key: &str,
    raw: &mut WriteDispositionObject,
    problems: &mut Problems,
) -> Scd2Config {
    let mut config = Scd2Config::default();
    let column = |value: &Value| -> Option<String> {
        let name = value.as_str().filter(|s| !s.is_empty())?;
        Some(crate::schema::normalize_path(name).unwrap_or_else(|| name.to_owned()))
    };
    if let Some(value) = raw.validity_column_names.take() {
        match value
            .as_array()
            .map(|a| a.iter().map(column).collect::<Option<Vec<_>>>())
        {
            Some(Some(names)) if names.len() == 2 && names[0] != names[1] => {
                config.valid_from = names[0].clone();
                config.valid_to = names[1].clone();
            }
            _ => problems.push(
                format!("{key}.validity_column_names"),
                "must be a list of two different column names, `valid from` then `valid to` \
                 (dlt's default: `[\"_dlt_valid_from\", \"_dlt_valid_to\"]`)",
            ),
        }
    }
    let timestamp = |name: &str, value: &Value, problems: &mut Problems| -> Option<i64> {
        let parsed = value.as_str().and_then(|text| {
            crate::schema::parse_timestamp_to_micros(text).or_else(|| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc().timestamp_micros())
            })
        });
        if parsed.is_none() {
            problems.push(
                format!("{key}.{name}"),
                "must be a timestamp with a zone (`2024-01-01T00:00:00Z`) or a date                  (`9999-12-31`, midnight UTC)",
            );
        }
        parsed
    };
    if let Some(value) = raw.active_record_timestamp.take() {
        // dlt's `None` (TOML has no null): the default, a null "valid to".
        config.active_record_timestamp = timestamp("active_record_timestamp", &value, problems);
    }
    if let Some(value) = raw.boundary_timestamp.take() {
        config.boundary_timestamp = timestamp("boundary_timestamp", &value, problems);
    }
    if let Some(value) = raw.row_version_column_name.take() {
        match column(&value) {
            Some(name) => config.row_version = Some(name),
            None => problems.push(
                format!("{key}.row_version_column_name"),
                "must be a column name",
            ),
        }
    }
    config
}

/// dlt's merge of `resource_defaults` into a resource: the resource's value wins; `endpoint`
/// merges key by key, `params` by parameter, the `json` body by top-level key and `columns`
/// by column and hint key. A paginator is taken whole.
fn merge_resource(resource: RawResource, defaults: &RawResource) -> RawResource {
    RawResource {
        name: resource.name,
        topic: resource.topic.or_else(|| defaults.topic.clone()),
        table_name: resource.table_name.or_else(|| defaults.table_name.clone()),
        primary_key: resource
            .primary_key
            .or_else(|| defaults.primary_key.clone()),
        merge_key: resource.merge_key.or_else(|| defaults.merge_key.clone()),
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
        json: match (own.json, &default.json) {
            // dlt merges the bodies one level deep: the resource's keys win.
            (Some(Value::Object(own)), Some(Value::Object(default))) => {
                let mut merged = default.clone();
                merged.extend(own);
                Some(Value::Object(merged))
            }
            (own, default) => own.or_else(|| default.clone()),
        },
        // dlt takes the endpoint's headers whole, as every endpoint key but params and json.
        headers: own.headers.or_else(|| default.headers.clone()),
        data: own.data.or_else(|| default.data.clone()),
        data_selector: own.data_selector.or_else(|| default.data_selector.clone()),
        paginator: own.paginator.or_else(|| default.paginator.clone()),
        response_actions: own
            .response_actions
            .or_else(|| default.response_actions.clone()),
        incremental: own.incremental.or_else(|| default.incremental.clone()),
        allow_null_data: own.allow_null_data.or(default.allow_null_data),
        // Whole, as dlt: the resource's `auth` (also its `null`) over the default's.
        auth: own.auth.or_else(|| default.auth.clone()),
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
            timezone: hint.timezone.or(entry.timezone),
            partition: hint.partition.or(entry.partition),
            cluster: hint.cluster.or(entry.cluster),
            sort: hint.sort.or(entry.sort),
            description: hint.description.or_else(|| entry.description.clone()),
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

    // As in dlt, a key is optional: without one, records are published unkeyed (spread
    // over the partitions) and appended (`merge` too, see `write_disposition` below).
    let primary_key = key_columns(raw.primary_key, &format!("{at}.primary_key"), problems);
    let merge_key = key_columns(raw.merge_key, &format!("{at}.merge_key"), problems);
    let (write_disposition, merge_strategy, mut scd2) = write_disposition(
        at,
        raw.write_disposition.map(|OrBare(w)| w),
        !merge_key.is_empty(),
        primary_key.is_empty(),
        problems,
    );
    if merge_strategy == Some(MergeStrategy::Scd2) {
        scd2.merge_key = merge_key
            .iter()
            .map(|k| crate::schema::normalize_path(k).unwrap_or_else(|| k.clone()))
            .collect();
    }

    let raw_endpoint = raw.endpoint.map(|OrBare(e)| e).unwrap_or_default();
    let path = match raw_endpoint.path {
        Some(path) => path,
        None => {
            // dlt: a resource without an endpoint path calls the path named like it.
            check_path(&format!("{at}.name"), &name, problems);
            name.clone()
        }
    };
    // dlt's single-entity endpoint: a path whose last segment is a placeholder returns one
    // object, so unless the endpoint (or resource_defaults) says otherwise it is one page
    // and one record (dlt's `_setup_single_entity_endpoint`, before a client paginator).
    let single_entity = single_entity_path(&path);
    let data_selector = raw_endpoint
        .data_selector
        .or_else(|| single_entity.then(|| "$".to_owned()));
    let endpoint_paginator = raw_endpoint
        .paginator
        .or_else(|| single_entity.then_some(Paginator::SinglePage));
    let (params, incremental) = resolve_incremental(
        &format!("{at}.endpoint"),
        raw_endpoint.params.unwrap_or_default(),
        raw_endpoint.incremental,
        problems,
    );
    let headers = raw_endpoint.headers.unwrap_or_default();
    for (name, value) in &headers {
        check_endpoint_header(
            &format!("{at}.endpoint.headers.{name}"),
            name,
            value,
            problems,
        );
    }
    let (path, params, parent) = resolve_placeholders(
        at,
        path,
        params,
        Bodies {
            json: raw_endpoint.json.as_ref(),
            headers: &headers,
            data: raw_endpoint.data.as_ref(),
        },
        incremental.as_ref(),
        problems,
    );
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
        headers,
        data: raw_endpoint.data,
        data_selector,
        paginator: endpoint_paginator
            .or_else(|| client_paginator.cloned())
            .unwrap_or(Paginator::Auto),
        response_actions: raw_endpoint.response_actions.unwrap_or_default(),
        allow_null_data: raw_endpoint.allow_null_data.unwrap_or(false),
        auth: match raw_endpoint.auth {
            None => EndpointAuth::Client,
            Some(None) => EndpointAuth::NoAuth,
            Some(Some(auth)) => EndpointAuth::Own(auth),
        },
    };

    let body_path = match &endpoint.paginator {
        Paginator::Cursor(CursorPaginator {
            cursor_body_path: Some(_),
            ..
        }) => Some(("cursor_body_path", "cursor")),
        Paginator::Offset(p) if p.offset_body_path.is_some() => {
            Some(("offset_body_path", "offset"))
        }
        Paginator::Offset(p) if p.limit_body_path.is_some() => Some(("limit_body_path", "limit")),
        Paginator::PageNumber(p) if p.page_body_path.is_some() => {
            Some(("page_body_path", "page number"))
        }
        _ => None,
    };
    if let Some((key, what)) = body_path {
        if endpoint.method != Method::Post {
            problems.push(
                format!("{at}.endpoint.method"),
                format!(
                    "the paginator's `{key}` puts the {what} in a JSON body: set \
                     `method = \"POST\"`"
                ),
            );
        }
        if endpoint.data.is_some() {
            problems.push(
                format!("{at}.endpoint.data"),
                format!(
                    "the paginator's `{key}` puts the {what} in a JSON body, which a `data` \
                     body would replace: write the body as `json`"
                ),
            );
        }
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
        merge_strategy,
        scd2,
        merge_key,
        schema_contract,
        endpoint,
        columns,
        parent,
        include_from_parent: raw.include_from_parent.unwrap_or_default(),
        max_table_nesting: raw.max_table_nesting,
    })
}

/// Whether dlt takes `path` for a single entity's: its last segment holds a `{name}`
/// (dlt's `single_entity_path`: `re.search(r"\{([a-zA-Z0-9\.\-_]+)\}", name)` on the
/// path's last segment, a trailing `/` ignored).
fn single_entity_path(path: &str) -> bool {
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let mut rest = last;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            return true;
        }
        rest = after;
    }
    false
}

/// dlt's dependent-resource forms, resolved to one: every `resolve` param and every path
/// placeholder `{<param>}` that names one becomes a `{resources.<parent>.<field>}`
/// placeholder (in the path, or as the param's value); a path placeholder naming a plain
/// param is filled with its value, which leaves the params, as dlt binds it. Then every
/// text of the path, the params and the JSON body (its keys too) is read as dlt reads it
/// ([`parse_template`]): its `{incremental.…}` placeholders checked against `incremental`,
/// its `{resources.…}` placeholders naming the parent. Returns the path, the params and the
/// parent.
fn resolve_placeholders(
    at: &str,
    path: String,
    raw_params: BTreeMap<String, ParamValue>,
    bodies: Bodies<'_>,
    incremental: Option<&Incremental>,
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
    let pieces = match split_fields(&path) {
        Ok(pieces) => pieces,
        Err(e) => {
            problems.push(&path_at, e);
            return (path, params, None);
        }
    };
    let mut bound = String::with_capacity(path.len());
    for piece in pieces {
        let inner = match piece {
            Piece::Literal(text) => {
                bound.push_str(&escape_braces(&text));
                continue;
            }
            Piece::Field(inner) => inner,
        };
        if inner.starts_with("resources.") || inner.starts_with("incremental.") {
            bound.push('{');
            bound.push_str(&inner);
            bound.push('}');
            continue;
        }
        match params.remove(&inner) {
            Some(Value::String(text)) if text.starts_with("{resources.") => {
                bound.push_str(&text);
            }
            Some(Value::String(text)) => bound.push_str(&path_escape(&text)),
            Some(Value::Array(_)) => {
                problems.push(
                    &path_at,
                    format!("`{path}`: the list param `{inner}` cannot fill the path"),
                );
                return (path.clone(), params, None);
            }
            Some(other) => bound.push_str(&path_escape(&other.to_string())),
            None => {
                problems.push(
                    &path_at,
                    format!(
                        "`{path}`: placeholder `{{{inner}}}` is neither \
                         `{{resources.<parent>.<field>}}`, `{{incremental.<value>}}` nor a param \
                         of this endpoint"
                    ),
                );
                return (path.clone(), params, None);
            }
        }
    }

    // Every text that may hold placeholders, with its key path and how a value fills it.
    let mut texts: Vec<(String, &str, Filled)> = vec![(path_at.clone(), &bound, Filled::Path)];
    for (name, value) in &params {
        match value {
            Value::String(text) => {
                texts.push((format!("{at}.endpoint.params.{name}"), text, Filled::Param));
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::String(text) = item {
                        texts.push((
                            format!("{at}.endpoint.params.{name}[{i}]"),
                            text,
                            Filled::Param,
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    for (name, value) in bodies.headers {
        texts.push((
            format!("{at}.endpoint.headers.{name}"),
            value,
            Filled::Param,
        ));
    }
    match bodies.data {
        // A raw body needs every value; a form field without one is not sent.
        Some(Value::String(text)) => {
            texts.push((format!("{at}.endpoint.data"), text, Filled::JsonKey));
        }
        Some(Value::Object(fields)) => {
            for (name, value) in fields {
                let key = format!("{at}.endpoint.data.{name}");
                texts.push((key.clone(), name, Filled::JsonKey));
                match value {
                    Value::String(text) => texts.push((key, text, Filled::Param)),
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if let Value::String(text) = item {
                                texts.push((format!("{key}[{i}]"), text, Filled::Param));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if let Some(json) = bodies.json {
        json_texts(&format!("{at}.endpoint.json"), json, &mut texts);
    }

    let mut parents: Vec<(String, String)> = Vec::new();
    for (key, text, filled) in &texts {
        let parts = match parse_template(text) {
            Ok(parts) => parts,
            Err(e) => {
                problems.push(key, e);
                continue;
            }
        };
        let whole = single_placeholder(&parts).is_some();
        for part in &parts {
            match part {
                TemplatePart::Parent { resource, .. } => {
                    if !parents.iter().any(|(p, _)| p == resource) {
                        parents.push((resource.clone(), key.clone()));
                    }
                }
                TemplatePart::Incremental(value) => {
                    check_incremental_placeholder(
                        at,
                        key,
                        *value,
                        *filled,
                        whole,
                        incremental,
                        problems,
                    );
                }
                TemplatePart::Text(_) => {}
            }
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

/// The parts of an endpoint besides its path and params that may hold placeholders.
struct Bodies<'a> {
    json: Option<&'a Value>,
    headers: &'a BTreeMap<String, String>,
    data: Option<&'a Value>,
}

/// Where a text with placeholders goes, which decides what a placeholder without a value
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Filled {
    /// The path: every placeholder needs a value.
    Path,
    /// A query param or a header: one whose placeholder has no value is not sent.
    Param,
    /// A string of the JSON body: a string that is only a placeholder takes the value
    /// itself (`null` without one, as in dlt); within a longer string it needs a value.
    Json,
    /// A key of the JSON body: it needs a value.
    JsonKey,
}

/// Every string and key of a JSON body, with its key path (`json.filter.since`,
/// `json.ids[0]`).
pub(super) fn json_texts<'a>(at: &str, json: &'a Value, out: &mut Vec<(String, &'a str, Filled)>) {
    match json {
        Value::String(text) => out.push((at.to_owned(), text, Filled::Json)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                json_texts(&format!("{at}[{i}]"), item, out);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                let key_at = format!("{at}.{key}");
                out.push((key_at.clone(), key, Filled::JsonKey));
                json_texts(&key_at, value, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// An `{incremental.…}` placeholder at `key` needs an incremental, and, where no value
/// cannot be sent (the path, a JSON key, within a longer JSON string), a value on every
/// run: `initial_value` for the start, `end_value` for the end. dlt would send the text
/// `None` there.
fn check_incremental_placeholder(
    at: &str,
    key: &str,
    value: IncrementalValue,
    filled: Filled,
    whole: bool,
    incremental: Option<&Incremental>,
    problems: &mut Problems,
) {
    let placeholder = value.placeholder();
    let Some(inc) = incremental else {
        problems.push(
            key,
            format!(
                "`{placeholder}` needs an incremental: set `{at}.endpoint.incremental = \
                 {{ cursor_path = ..., initial_value = ... }}`"
            ),
        );
        return;
    };
    let always = match filled {
        Filled::Param => false,
        Filled::Json => !whole,
        Filled::Path | Filled::JsonKey => true,
    };
    if !always {
        return;
    }
    let (needed, has) = match value {
        IncrementalValue::EndValue => ("end_value", inc.end_value.is_some()),
        IncrementalValue::StartValue
        | IncrementalValue::LastValue
        | IncrementalValue::InitialValue => ("initial_value", inc.initial_value.is_some()),
    };
    if !has {
        problems.push(
            key,
            format!(
                "`{placeholder}` has no value without the incremental's `{needed}` (dlt would \
                 send the text `None`): set `{needed}`"
            ),
        );
    }
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
                options: IncrementalOptions {
                    lag: r.lag,
                    range_start: r.range_start.unwrap_or(RangeBound::Closed),
                    range_end: r.range_end.unwrap_or(RangeBound::Open),
                    row_order: r.row_order,
                    on_cursor_value_missing: r.on_cursor_value_missing.unwrap_or_default(),
                },
            },
        ));
    }
    let mut params = BTreeMap::new();
    for (name, value) in raw_params {
        match value {
            other @ (ParamValue::Scalar(_) | ParamValue::Resolve(_)) => {
                let _ = params.insert(name, other);
            }
            ParamValue::Incremental(r) => {
                if r.end_value.is_some() {
                    // dlt refuses it: an incremental param only sets the start.
                    problems.push(
                        format!("{at}.params.{name}.end_value"),
                        format!(
                            "an incremental param takes only `cursor_path` and \
                             `initial_value` (as in dlt): for an end value write \
                             `{at}.incremental = {{ start_param = \"{name}\", \
                             end_param = ..., cursor_path = ..., initial_value = ..., \
                             end_value = ... }}`"
                        ),
                    );
                }
                found.push((
                    format!("{at}.params.{name}"),
                    Incremental {
                        start_param: Some(name),
                        end_param: None,
                        cursor_path: r.cursor_path,
                        initial_value: r.initial_value.map(plain_datetime),
                        end_value: r.end_value.map(plain_datetime),
                        options: IncrementalOptions {
                            lag: r.lag,
                            range_start: r.range_start.unwrap_or(RangeBound::Closed),
                            range_end: r.range_end.unwrap_or(RangeBound::Open),
                            row_order: r.row_order,
                            on_cursor_value_missing: r.on_cursor_value_missing.unwrap_or_default(),
                        },
                    },
                ));
            }
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

/// The columns of a `primary_key` or `merge_key` (at `at`): none when absent; each named
/// once, none empty, at least one when given.
fn key_columns(key: Option<PrimaryKey>, at: &str, problems: &mut Problems) -> Vec<String> {
    let Some(PrimaryKey(columns)) = key else {
        return Vec::new();
    };
    if columns.is_empty() {
        problems.push(at.to_owned(), "must name at least one column");
    }
    for (j, column) in columns.iter().enumerate() {
        if column.trim().is_empty() {
            problems.push(format!("{at}[{j}]"), "must not be empty");
        } else if columns[..j].contains(column) {
            problems.push(format!("{at}[{j}]"), format!("`{column}` is listed twice"));
        }
    }
    columns
}
#[cfg(test)]
mod tests;
