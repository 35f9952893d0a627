//! The checks of a config's values, each problem pushed with its key path: endpoints,
//! paginators, incrementals, columns, dependent resources, unique names, topics and tables.
//! Called by [`super::resolve`] where it meets each value (a few checks that also build
//! the value, such as `client.timeout` or `client.trusted_hosts`, stay inline there).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use url::Url;

use super::error::Problems;
use super::raw::RawEndpoint;
use super::*;
use crate::cursor::cursor_order;
use crate::schema::{ColumnHint, DataType};
use crate::template::{TemplatePart, parse_template};

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

pub(super) fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("`{text}` is not an http:// or https:// URL"));
    }
    Ok(url)
}

/// `client.headers`: names HTTP allows, values without control characters.
pub(super) fn check_headers(headers: &BTreeMap<String, String>, problems: &mut Problems) {
    for (name, value) in headers {
        check_endpoint_header(&format!("client.headers.{name}"), name, value, problems);
    }
}

/// One header (of `client.headers` or an endpoint's `headers`, at `at`): a token for a
/// name, no control characters in the value.
pub(super) fn check_endpoint_header(at: &str, name: &str, value: &str, problems: &mut Problems) {
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !valid_name {
        problems.push(at, "not a valid HTTP header name");
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        problems.push(at, "a header value must not contain control characters");
    }
}

/// `client.auth`: what each kind needs besides its secrets.
pub(super) fn check_auth(auth: Option<&AuthConfig>, problems: &mut Problems) {
    match auth {
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

/// Checks what an endpoint says where it is written (a resource or `resource_defaults`).
pub(super) fn check_endpoint(at: &str, endpoint: &RawEndpoint, problems: &mut Problems) {
    if endpoint.json.is_some() && endpoint.data.is_some() {
        problems.push(
            format!("{at}.data"),
            "set either `json` or `data` (a form or raw body), not both",
        );
    }
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    match &endpoint.data {
        None | Some(Value::String(_)) => {}
        Some(Value::Object(fields)) => {
            for (name, value) in fields {
                let ok = match value {
                    Value::Array(items) => items.iter().all(scalar),
                    other => scalar(other),
                };
                if !ok {
                    problems.push(
                        format!("{at}.data.{name}"),
                        "a form field is a string, number or boolean, or a list of them",
                    );
                }
            }
        }
        Some(_) => problems.push(
            format!("{at}.data"),
            "a table (a form body) or a string (a raw body)",
        ),
    }
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

pub(super) fn check_path(at: &str, path: &str, problems: &mut Problems) {
    if path.trim().is_empty() {
        problems.push(at, "must not be empty");
    }
}

pub(super) fn check_paginator(at: &str, paginator: &Paginator, problems: &mut Problems) {
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
            if let Some(path) = &p.has_more_path {
                json_path("has_more_path", path, problems);
            }
            if p.total_path.is_none()
                && p.maximum_offset.is_none()
                && p.has_more_path.is_none()
                && !p.stop_after_empty_page
            {
                problems.push(
                    at,
                    "the paginator would never stop: set `total_path`, `maximum_offset`, `has_more_path` or \
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
            if let Some(path) = &p.has_more_path {
                json_path("has_more_path", path, problems);
            }
            if p.total_path.is_none()
                && p.maximum_page.is_none()
                && p.has_more_path.is_none()
                && !p.stop_after_empty_page
            {
                problems.push(
                    at,
                    "the paginator would never stop: set `total_path`, `maximum_page`, `has_more_path` or \
                     `stop_after_empty_page = true`",
                );
            }
        }
        Paginator::JsonLink(p) => json_path("next_url_path", &p.next_url_path, problems),
        Paginator::HeaderLink(p) => non_empty("links_next_key", &p.links_next_key, problems),
        Paginator::Cursor(p) => {
            json_path("cursor_path", &p.cursor_path, problems);
            if let Some(path) = &p.has_more_path {
                json_path("has_more_path", path, problems);
            }
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

/// Every parent is another resource of the config, and no chain of parents loops.
/// `resources` are paired with their index in the document.
pub(super) fn check_dependencies(resources: &[(usize, ResourceConfig)], problems: &mut Problems) {
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

/// The key path where `resource` names `parent` first: its path, else the first param, else
/// the first string of its JSON body.
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
    if let Some((name, _)) = resource
        .endpoint
        .params
        .iter()
        .find(|(_, v)| v.as_str().is_some_and(names_parent))
    {
        return format!("{at}.endpoint.params.{name}");
    }
    let mut texts = Vec::new();
    if let Some(json) = &resource.endpoint.json {
        super::resolve::json_texts(&format!("{at}.endpoint.json"), json, &mut texts);
    }
    texts
        .into_iter()
        .find(|(_, text, _)| names_parent(text))
        .map_or_else(|| format!("{at}.endpoint"), |(key, _, _)| key)
}

pub(super) fn check_incremental(at: &str, inc: &Incremental, problems: &mut Problems) {
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

pub(super) fn check_column(at: &str, column: &str, hint: &ColumnHint, problems: &mut Problems) {
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
pub(super) fn check_unique(
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
    use crate::config::test_support::*;

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
                    "{ incremental = { cursor_path = \"u\", end_value = [1] } }",
                ),
                vec![
                    "resources[0].endpoint.incremental.end_value: [1] is not a string or a number",
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
                    "resources[0].endpoint.params.since: `>{incremental.first_value}`: unknown \
                     placeholder `{incremental.first_value}`",
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
                     `{resources.<parent>.<field>}`, `{incremental.<value>}` nor a param of this \
                     endpoint",
                ],
            ),
            (
                "unbalanced path braces",
                with_endpoint("\"/items/{id\""),
                vec!["resources[0].endpoint.path: `/items/{id`: a `{` without its `}`"],
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
                "unknown parent in the JSON body",
                format!(
                    "{}\n[[resources]]\nname = \"c\"\nprimary_key = \"id\"\n\
                     endpoint = {{ path = \"/c\", method = \"POST\", \
                     json = {{ q = [\"x\", \"{{resources.nope.id}}\"] }} }}\n",
                    with("")
                ),
                vec!["resources[1].endpoint.json.q[1]: no resource named `nope`"],
            ),
            (
                "a single brace in the JSON body",
                with_endpoint(
                    "{ method = \"POST\", json = { query = \"users { id }\" } }",
                ),
                vec![
                    "resources[0].endpoint.json.query: `users { id }`: `{ id }` is not a \
                     placeholder",
                    "write `{{` and `}}` for literal braces",
                ],
            ),
            (
                "incremental placeholder in the JSON body without an incremental",
                with_endpoint("{ method = \"POST\", json = { f = { since = \"{incremental.start_value}\" } } }"),
                vec![
                    "resources[0].endpoint.json.f.since: `{incremental.start_value}` needs an \
                     incremental",
                ],
            ),
            (
                "start placeholder inside a JSON string without initial_value",
                with_endpoint(
                    "{ method = \"POST\", json = { q = \"updated>{incremental.start_value}\", \
                     since = \"{incremental.start_value}\" }, incremental = { cursor_path = \"u\" } }",
                ),
                vec![
                    "resources[0].endpoint.json.q: `{incremental.start_value}` has no value \
                     without the incremental's `initial_value`",
                ],
            ),
            (
                "end placeholder in the path without end_value",
                with_endpoint(
                    "{ path = \"/x/{incremental.end_value}\", incremental = { cursor_path = \"u\", \
                     initial_value = 1 } }",
                ),
                vec![
                    "resources[0].endpoint.path: `{incremental.end_value}` has no value without \
                     the incremental's `end_value`",
                ],
            ),
            (
                "end_value in an incremental param",
                with_endpoint(
                    "{ params = { since = { type = \"incremental\", cursor_path = \"u\", \
                     initial_value = 1, end_value = 5 } } }",
                ),
                vec![
                    "resources[0].endpoint.params.since.end_value: an incremental param takes \
                     only `cursor_path` and `initial_value` (as in dlt): for an end value write \
                     `resources[0].endpoint.incremental = { start_param = \"since\", end_param",
                ],
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

    /// Table-driven: (a line of `[client]`, the problem it must give).
    #[test]
    fn client_header_and_auth_problems_name_the_key() {
        let cases = [
            (
                r#"headers = { "Bad Name" = "x" }"#,
                "client.headers.Bad Name: not a valid HTTP header name",
            ),
            (
                r#"headers = { "X-A" = "a\u0001b" }"#,
                "client.headers.X-A: a header value must not contain control characters",
            ),
            (
                r#"auth = { type = "api_key", name = " ", api_key = { secret = "k" } }"#,
                "client.auth.name: must not be empty",
            ),
            (
                r#"auth = { type = "http_basic", username = "", password = { secret = "p" } }"#,
                "client.auth.username: must not be empty",
            ),
            (
                r#"auth = { type = "oauth2_client_credentials", access_token_url = "ftp://a/t", client_id = { secret = "i" }, client_secret = { secret = "s" } }"#,
                "client.auth.access_token_url: `ftp://a/t` is not an http:// or https:// URL",
            ),
            (
                r#"auth = { type = "oauth2_client_credentials", access_token_url = "https://a/t", client_id = { secret = "i" }, client_secret = { secret = "s" }, default_token_expiration = 0 }"#,
                "client.auth.default_token_expiration: must be a positive number of seconds",
            ),
        ];
        for (line, expected) in cases {
            let e = err(toml(
                &with("").replace("base_url", &format!("{line}\nbase_url")),
            ));
            assert_eq!(e, format!("pipeline.toml: {expected}"), "{line}");
        }
        let fine = "headers = { \"X-Api-Version\" = \"2\\tbeta\" }";
        assert!(toml(&with("").replace("base_url", &format!("{fine}\nbase_url"))).is_ok());
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
}
