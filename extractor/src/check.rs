//! `extractor --check`: everything a run would find wrong with the config before it
//! touches Kafka (shape, values, secrets, request plans), each problem with its key path;
//! with `--fetch`, the first page of each resource, its inferred schema and three records.
//! Nothing is published and no broker is needed.

use std::collections::HashMap;
use std::fmt::Write as _;

use common::config::{ConfigError, PipelineConfig};
use common::schema::SchemaBuilder;
use common::secret::SecretResolver;
use serde_json::Value;

use crate::client::{HttpClient, Request};
use crate::dependent;
use crate::from_config;
use crate::placeholders::{IncrementalValues, Values};

/// Records shown per resource with `--fetch`.
pub const SAMPLE_RECORDS: usize = 3;

/// Every problem a config file has, each a line naming its key path; empty when it loads.
pub fn load_problems(error: &ConfigError) -> Vec<String> {
    match error.problems().as_slice() {
        [] => vec![error.to_string()],
        problems => problems.iter().map(|p| p.to_string()).collect(),
    }
}

/// What stops a loaded config from running: secrets that do not resolve, request plans
/// that cannot be built (selectors, paginators, placeholders), the schema registry
/// settings. Each problem once, in config order.
pub fn problems(cfg: &PipelineConfig, secrets: &SecretResolver, names: &[String]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut add = |problem: String| {
        if !found.contains(&problem) {
            found.push(problem);
        }
    };
    if let Err(e) = from_config::http_clients(cfg, secrets) {
        add(e.to_string());
    }
    if let Err(e) = from_config::schema_registry(cfg, secrets) {
        add(e.to_string());
    }
    for (i, resource) in cfg.resources.iter().enumerate() {
        if let Err(e) = from_config::endpoint_plan(i, resource) {
            add(e.to_string());
        }
    }
    if let Err(e) = dependent::with_parents(cfg, names) {
        add(e.to_string());
    }
    found
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Build(#[from] from_config::BuildError),
    #[error(transparent)]
    Dependent(#[from] dependent::DependentError),
    // The causes are part of the messages, not `source()`s: printed once either way.
    #[error("resource `{resource}`: the first page: {error}")]
    Fetch {
        resource: String,
        error: crate::client::FetchError,
    },
    #[error("resource `{resource}`: the first page ({url})")]
    Select {
        resource: String,
        url: String,
        #[source]
        source: crate::jsonpath::SelectError,
    },
    #[error("resource `{resource}`: inferring the schema of the first page: {error}")]
    Schema {
        resource: String,
        error: common::schema::SchemaError,
    },
}

/// Fetches the first page of each selected resource and describes it: the schema
/// inferred from its records (field, type, nullable) and the first [`SAMPLE_RECORDS`]
/// records. A dependent resource's request is made for the first record of its parent's
/// first page (its `include_from_parent` columns added, as in a run).
pub async fn fetch_samples(
    cfg: &PipelineConfig,
    secrets: &SecretResolver,
    names: &[String],
) -> Result<String, CheckError> {
    let clients = from_config::http_clients(cfg, secrets)?;
    let mut out = String::new();
    // The first page's records of each resource fetched so far, for its children.
    let mut first_pages: HashMap<String, Vec<Value>> = HashMap::new();
    // Parents before their children, whatever the config's order.
    let mut resources = dependent::with_parents(cfg, names)?;
    resources.sort_by_key(|(r, _, _)| depth(cfg, r));
    for (i, (resource, plan, _)) in resources.into_iter().enumerate() {
        let mut include = Vec::new();
        let mut plan = plan;
        // A first run's incremental values: it starts at `initial_value`.
        let values = resource
            .endpoint
            .incremental
            .as_ref()
            .map(|inc| IncrementalValues::new(inc, inc.initial_value.as_ref()));
        if let Some(parent) = resource.parent.as_deref().and_then(|p| cfg.resource(p)) {
            let Some(record) = first_pages.get(&parent.name).and_then(|r| r.first()) else {
                let _ = writeln!(
                    out,
                    "resource `{}`: not fetched: its parent `{}` had no records on its first page\n",
                    resource.name, parent.name
                );
                continue;
            };
            let index = cfg
                .resources
                .iter()
                .position(|c| c.name == resource.name)
                .unwrap_or(i);
            let mut child = dependent::ChildPlan::new(index, resource, parent, plan)?;
            child.set_incremental(values);
            (plan, include) = child.for_parent(record)?;
            let _ = writeln!(
                out,
                "resource `{}`: for the `{}` record {}",
                resource.name,
                parent.name,
                child.parent_id(record)
            );
        } else {
            Values {
                incremental: values.as_ref(),
                parent: None,
            }
            .fill_plan(&mut plan)
            .map_err(|e| from_config::BuildError::Invalid {
                key: format!("resource `{}`: endpoint", resource.name),
                message: e.to_string(),
            })?;
        }
        let Some(step) = plan.paginator.first() else {
            let _ = writeln!(out, "resource `{}`: no first page\n", resource.name);
            continue;
        };
        let req = plan.request(step);
        let client = clients.for_resource(&resource.name);
        let shown = client.display_url(&req);
        let mut body = fetch(client, &req, &resource.name).await?;
        let mut records = match &plan.selector {
            Some(s) => s
                .take_page(&mut body)
                .map_err(|source| CheckError::Select {
                    resource: resource.name.clone(),
                    url: shown.clone(),
                    source,
                })?,
            None => crate::jsonpath::take_records_auto(&mut body),
        };
        for record in &mut records {
            if let Some(object) = record.as_object_mut() {
                for (column, value) in &include {
                    let _ = object.insert(column.clone(), value.clone());
                }
            }
        }
        let mut builder = SchemaBuilder::new(
            &resource.name,
            resource.primary_key.clone(),
            resource.columns.clone(),
        )
        .with_child_tables(resource.max_table_nesting);
        let _ = builder
            .add_page(&records)
            .map_err(|error| CheckError::Schema {
                resource: resource.name.clone(),
                error,
            })?;
        let _ = writeln!(
            out,
            "resource `{}` ({shown}): {} records on the first page",
            resource.name,
            records.len()
        );
        describe(&mut out, builder.schema(), &records);
        let _ = first_pages.insert(resource.name.clone(), records);
    }
    Ok(out)
}

/// How many ancestors `resource` has (0 for a top-level resource).
fn depth(cfg: &PipelineConfig, resource: &common::config::ResourceConfig) -> usize {
    let mut depth = 0;
    let mut parent = resource.parent.as_deref();
    // The config has no cycles; the bound keeps a broken one from looping here.
    while let Some(p) = parent
        && depth <= cfg.resources.len()
    {
        depth += 1;
        parent = cfg.resource(p).and_then(|r| r.parent.as_deref());
    }
    depth
}

async fn fetch(client: &HttpClient, req: &Request, resource: &str) -> Result<Value, CheckError> {
    client
        .fetch(req)
        .await
        .map(|r| r.body)
        .map_err(|error| CheckError::Fetch {
            resource: resource.to_owned(),
            error,
        })
}

/// The schema as a table, then the sample records as JSON lines.
fn describe(out: &mut String, schema: &common::schema::TableSchema, records: &[Value]) {
    let width = schema
        .fields
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out, "  {:width$}  {:9}  nullable", "field", "type");
    for field in &schema.fields {
        let key = if schema.primary_key.contains(&field.name) {
            "  (primary key)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {:width$}  {:9}  {}{key}",
            field.name,
            field.data_type.as_str(),
            if field.nullable { "yes" } else { "no" }
        );
    }
    let shown = records.len().min(SAMPLE_RECORDS);
    let _ = writeln!(out, "  first {shown} records:");
    for record in records.iter().take(SAMPLE_RECORDS) {
        let _ = writeln!(out, "  {record}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::{Format, parse};

    fn config(resources: &str) -> PipelineConfig {
        let text = format!(
            "[pipeline]\nname = \"p\"\n[kafka]\n\"bootstrap.servers\" = \"x:9092\"\n\
             [client]\nbase_url = \"http://127.0.0.1:1\"\n\
             auth = {{ type = \"bearer\", token = {{ secret = \"check_test_token_absent\" }} }}\n\
             {resources}"
        );
        parse(&text, Format::Toml, "t.toml").unwrap()
    }

    #[test]
    fn a_missing_secret_is_reported_with_its_name() {
        let cfg = config("[[resources]]\nname = \"a\"\nendpoint = { path = \"/a\" }\n");
        let found = problems(&cfg, &SecretResolver::new(None), &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("check_test_token_absent"), "{found:?}");
        let none = problems(&cfg, &SecretResolver::new(None), &["b".into()]);
        assert!(
            none.iter().any(|p| p.contains("--resource \"b\"")),
            "{none:?}"
        );
    }

    #[test]
    fn every_invalid_value_is_listed_with_its_key_path() {
        let text = "[pipeline]\nname = \"p\"\n[client]\nbase_url = \"http://x\"\n\
                    [[resources]]\nname = \"a\"\nendpoint = { path = \"/a\", data_selector = \"$[\" }\n\
                    [[resources]]\nname = \"b\"\nendpoint = { path = \"/b\", paginator = { type = \"offset\", limit = 0 } }\n";
        let error = parse(text, Format::Toml, "t.toml").unwrap_err();
        let found = load_problems(&error);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("resources[0].endpoint.data_selector: "),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("resources[1].endpoint.paginator.limit: "),
            "{found:?}"
        );
    }

    #[test]
    fn the_schema_table_names_type_nullability_and_key() {
        let records: Vec<Value> = vec![
            serde_json::json!({"id": 1, "name": "a", "score": null}),
            serde_json::json!({"id": 2, "name": "b", "score": 1.5}),
            serde_json::json!({"id": 3, "name": "c", "score": 2.5}),
            serde_json::json!({"id": 4, "name": "d", "score": 3.5}),
        ];
        let mut builder = SchemaBuilder::new("t", vec!["id".into()], Default::default());
        let _ = builder.add_page(&records).unwrap();
        let mut out = String::new();
        describe(&mut out, builder.schema(), &records);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["id", "bigint", "no", "(primary", "key)"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["name", "text", "yes"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["score", "double", "yes"]
        );
        assert_eq!(lines[4], "  first 3 records:");
        assert_eq!(lines.len(), 9, "{out}");
    }
}
