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

/// `client.auth` or an endpoint's `auth` (at `at`): what each kind needs besides its
/// secrets.
pub(super) fn check_auth(at: &str, auth: Option<&AuthConfig>, problems: &mut Problems) {
    match auth {
        Some(AuthConfig::ApiKey(a)) if a.name.trim().is_empty() => {
            problems.push(format!("{at}.name"), "must not be empty");
        }
        Some(AuthConfig::HttpBasic(a)) if a.username.is_empty() => {
            problems.push(format!("{at}.username"), "must not be empty");
        }
        Some(AuthConfig::OAuth2ClientCredentials(a)) => {
            if let Err(e) = parse_http_url(&a.access_token_url) {
                problems.push(format!("{at}.access_token_url"), e);
            }
            if a.default_token_expiration == 0 {
                problems.push(
                    format!("{at}.default_token_expiration"),
                    "must be a positive number of seconds",
                );
            }
            for (name, _) in a.access_token_request_data.iter() {
                if name.is_empty() {
                    problems.push(
                        format!("{at}.access_token_request_data"),
                        "a field name must not be empty",
                    );
                } else if matches!(name.as_str(), "client_id" | "client_secret") {
                    problems.push(
                        format!("{at}.access_token_request_data.{name}"),
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
    if let Some(Some(auth)) = &endpoint.auth {
        check_auth(&format!("{at}.auth"), Some(auth), problems);
    }
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
            if let Some(param) = &p.offset_param {
                non_empty("offset_param", param, problems);
            }
            if let Some(param) = &p.limit_param {
                non_empty("limit_param", param, problems);
            }
            check_body_path(at, "offset", &p.offset_param, &p.offset_body_path, problems);
            check_body_path(at, "limit", &p.limit_param, &p.limit_body_path, problems);
            match (p.offset_place(), p.limit_place()) {
                (PagePlace::Param(offset), PagePlace::Param(limit))
                    if offset == limit && !offset.is_empty() =>
                {
                    problems.push(
                        format!("{at}.limit_param"),
                        format!("same as offset_param (`{offset}`)"),
                    );
                }
                (PagePlace::Body(offset), PagePlace::Body(limit))
                    if body_paths_overlap(offset, limit) =>
                {
                    problems.push(
                        format!("{at}.limit_body_path"),
                        format!(
                            "`{limit}` overlaps offset_body_path `{offset}`: each needs its own \
                             place in the body"
                        ),
                    );
                }
                _ => {}
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
            if let Some(param) = &p.page_param {
                non_empty("page_param", param, problems);
            }
            check_body_path(at, "page", &p.page_param, &p.page_body_path, problems);
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

/// dlt's `<name>_body_path` beside `<name>_param`: a dotted path (`paging.offset`), and not
/// both.
fn check_body_path(
    at: &str,
    name: &str,
    param: &Option<String>,
    body_path: &Option<String>,
    problems: &mut Problems,
) {
    let Some(body_path) = body_path else {
        return;
    };
    if body_path.split('.').any(|part| part.trim().is_empty()) {
        problems.push(
            format!("{at}.{name}_body_path"),
            format!("`{body_path}` is not a dotted path such as `paging.{name}`"),
        );
    }
    if param.is_some() {
        problems.push(
            format!("{at}.{name}_body_path"),
            format!("set either `{name}_param` or `{name}_body_path`, not both"),
        );
    }
}

/// Whether setting one dotted path in a body would overwrite the other (`a.b` and `a.b`, or
/// `a` and `a.b`).
fn body_paths_overlap(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long == short || long.starts_with(&format!("{short}."))
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
    if let Some(lag) = inc.options.lag {
        if !lag.is_finite() {
            problems.push(format!("{at}.lag"), format!("{lag} is not a finite number"));
        } else if let (true, Some(initial)) = (initial_ok, &inc.initial_value)
            && let Err(e) = crate::cursor::apply_lag(initial, lag, None)
        {
            problems.push(
                format!("{at}.lag"),
                format!("does not apply to initial_value: {e}"),
            );
        }
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
    if hint.timezone == Some(false) {
        problems.push(
            format!("{at}.timezone"),
            "`timezone = false` (dlt's naive timestamps, `timestamp without time zone` on \
             PostgreSQL) is not supported: timestamps load as UTC instants (TIMESTAMPTZ on \
             PostgreSQL, UTC text on SQLite); remove the key",
        );
    }
}

/// What to write instead of a dlt column hint the loader does not apply (`unique`,
/// `dedup_sort`, ...), for the error that names it; `None` for any other key.
pub(super) fn column_hint_advice(key: &str) -> Option<&'static str> {
    Some(match key {
        "unique" => {
            "dlt's `unique` adds a UNIQUE constraint on PostgreSQL (none on SQLite); the \
             loader creates none: remove the key and add the constraint to the table yourself"
        }
        "dedup_sort" => {
            "dlt's `dedup_sort` keeps, of one load's records with the same primary key, the \
             first in this column's order; the loader keeps each key's last record in topic \
             order: remove the key (the loader's `--version-column <column>` keeps a row \
             unless a record's value in that column is at least the row's)"
        }
        "primary_key" => "write the resource's `primary_key = \"<column>\"` (or a list) instead",
        "row_key" | "parent_key" | "root_key" => {
            "dlt sets it on its own bookkeeping columns (`_dlt_id`, `_dlt_parent_id`, \
             `_dlt_root_id`), which the loader makes itself: remove the key"
        }
        "variant" => {
            "dlt sets it on the variant columns (`<column>__v_<type>`) it makes, as the \
             extractor does: remove the key"
        }
        "incremental" => "write `endpoint.incremental = { cursor_path = \"<column>\" }` instead",
        _ => return None,
    })
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
mod tests;
