//! dlt's config keys end to end, against the demo API's `/keys/...` endpoints, which log
//! every request whole: what the extractor sends (placeholders filled as dlt fills them) and
//! what the loader ends up with. One broker and one demo API per test; each test runs its
//! pipeline twice where an incremental is involved.

use std::time::Duration;

use anyhow::{Context, Result};
use e2e::{Broker, DemoApi, Pipeline, run_ok};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(120);

/// A broker and a demo API for one test.
struct Stand {
    broker: Broker,
    api: DemoApi,
    _dir: tempfile::TempDir,
}

impl Stand {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Ok(Self {
            broker: Broker::start(dir.path())?,
            api: DemoApi::start(10, &[])?,
            _dir: dir,
        })
    }

    /// A pipeline with the demo API's client (`extra_client` lines added) and one resource
    /// per `(name, table body)` (the lines of its `[[resources]]` table after `name` and
    /// `topic`).
    fn pipeline(
        &self,
        name: &str,
        extra_client: &str,
        resources: &[(&str, &str)],
    ) -> Result<Pipeline> {
        let mut text = self.api.client_toml(extra_client);
        for (resource, body) in resources {
            text.push_str(&format!(
                "\n[[resources]]\nname = \"{resource}\"\ntopic = \"{name}.{resource}\"\n{body}\n"
            ));
        }
        Pipeline::with_config(&self.broker, name, &text)
    }

    /// The requests logged since the last call, `api_key` left out of the query.
    fn requests(&self) -> Result<Vec<Value>> {
        let log = self.api.get("/keys/log")?;
        let _ = self.api.post("/keys/reset", json!({}))?;
        let mut entries = log.as_array().context("log")?.clone();
        for e in &mut entries {
            if let Some(query) = e["query"].as_array_mut() {
                query.retain(|pair| pair[0] != "api_key");
            }
        }
        Ok(entries)
    }
}

/// Extracts, then loads until caught up; both must succeed.
fn extract_and_load(pipeline: &Pipeline) -> Result<()> {
    let _ = run_ok(pipeline.extractor()?, RUN)?;
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    Ok(())
}

/// The requests to paths starting with `prefix`, each as `[method, path, query, body]` (the
/// body parsed when it is JSON), in the order they arrived, sorted when `sort`.
fn sent(requests: &[Value], prefix: &str, sort: bool) -> Vec<Value> {
    let mut out: Vec<Value> = requests
        .iter()
        .filter(|e| e["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
        .map(|e| {
            let body = e["body"].as_str().unwrap_or_default();
            let body = serde_json::from_str(body).unwrap_or_else(|_| json!(body));
            json!([e["method"], e["path"], e["query"], body])
        })
        .collect();
    if sort {
        out.sort_by_key(ToString::to_string);
    }
    out
}

/// The requests to paths starting with `prefix`, each as `[path, {header: value}]` for
/// the `headers` named, sorted.
fn sent_headers(requests: &[Value], prefix: &str, headers: &[&str]) -> Vec<Value> {
    let mut out: Vec<Value> = requests
        .iter()
        .filter(|e| e["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
        .map(|e| {
            let picked: serde_json::Map<String, Value> = headers
                .iter()
                .map(|h| ((*h).to_owned(), e["headers"][*h].clone()))
                .collect();
            json!([e["path"], picked])
        })
        .collect();
    out.sort_by_key(ToString::to_string);
    out
}

/// The ids in `table`, ascending.
fn ids(pipeline: &Pipeline, table: &str) -> Result<Vec<i64>> {
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare(&format!("SELECT id FROM \"{table}\" ORDER BY id"))?;
    let ids = stmt
        .query_map([], |r| r.get::<_, i64>(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// dlt fills `{incremental.…}` in a JSON body (keys and nested values too; a string that
/// is only a placeholder keeps the value's type) and in the path, `{resources.…}` in a JSON
/// body, `{{`/`}}` as literal braces; an incremental on a dependent resource is one cursor
/// for all its parent records (dlt 1.31.0 seen doing each of these).
#[test]
fn placeholders_in_body_and_path_and_a_dependent_incremental() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_keys_placeholders",
        "",
        &[
            (
                "search",
                r#"[resources.endpoint]
path = "/keys/search"
method = "POST"
json = { filter = { since = "{incremental.start_value}", label = "updated>{incremental.start_value}" }, query = "{{ items }}" }
data_selector = "data"
paginator = { type = "cursor", cursor_path = "next", cursor_body_path = "page.cursor" }
incremental = { cursor_path = "updated", initial_value = 35 }"#,
            ),
            (
                "since_path",
                r#"endpoint = { path = "/keys/since/{incremental.start_value}/items", paginator = "single_page", incremental = { cursor_path = "updated", initial_value = 75 } }"#,
            ),
            (
                "parents",
                r#"endpoint = { path = "/keys/parents", paginator = "single_page" }"#,
            ),
            (
                "children",
                r#"endpoint = { path = "/keys/parents/{resources.parents.id}/children", params = { since = "{incremental.start_value}" }, paginator = "single_page", incremental = { cursor_path = "updated", initial_value = 20 } }"#,
            ),
            (
                "children_search",
                r#"endpoint = { path = "/keys/children", method = "POST", json = { parent = "{resources.parents.id}", tag = "p-{resources.parents.id}" }, data_selector = "data", paginator = "single_page" }"#,
            ),
        ],
    )?;

    // Run 1: every start value is its initial_value.
    extract_and_load(&pipeline)?;
    let requests = stand.requests()?;
    let search_body = |since: u64, cursor: Option<&str>| {
        let mut body = json!({
            "filter": {"since": since, "label": format!("updated>{since}")},
            "query": "{ items }",
        });
        if let Some(c) = cursor {
            body["page"] = json!({"cursor": c});
        }
        json!(["POST", "/keys/search", [], body])
    };
    assert_eq!(
        sent(&requests, "/keys/search", false),
        vec![
            search_body(35, None),
            search_body(35, Some("2")),
            search_body(35, Some("4")),
            search_body(35, Some("6")),
        ]
    );
    assert_eq!(
        sent(&requests, "/keys/since/", false),
        vec![json!(["GET", "/keys/since/75/items", [], ""])]
    );
    let children_requests = |since: &str| -> Vec<Value> {
        (1..=3)
            .map(|p| {
                json!([
                    "GET",
                    format!("/keys/parents/{p}/children"),
                    [["since", since]],
                    ""
                ])
            })
            .collect()
    };
    assert_eq!(
        sent(&requests, "/keys/parents/", true),
        children_requests("20")
    );
    assert_eq!(
        sent(&requests, "/keys/children", true),
        (1..=3)
            .map(|p| json!(["POST", "/keys/children", [], {"parent": p, "tag": format!("p-{p}")}]))
            .collect::<Vec<_>>()
    );
    assert_eq!(ids(&pipeline, "search")?, (4..=10).collect::<Vec<_>>());
    assert_eq!(ids(&pipeline, "since_path")?, [8, 9, 10]);
    // The children at or above 20 of every parent: one range for all parents.
    assert_eq!(ids(&pipeline, "children")?, [102, 103, 202, 203, 302, 303]);
    assert_eq!(ids(&pipeline, "children_search")?.len(), 9);

    // The API changes: an item at 110, a child of parent 1 at 40 (above the children's
    // cursor, 33) and one of parent 2 at 15 (below it).
    let _ = stand.api.post("/keys/admin", json!({"add_item": 110}))?;
    let _ = stand
        .api
        .post("/keys/admin", json!({"add_child": [1, 40]}))?;
    let _ = stand
        .api
        .post("/keys/admin", json!({"add_child": [2, 15]}))?;

    // Run 2: each resource starts at the largest cursor value of run 1.
    extract_and_load(&pipeline)?;
    let requests = stand.requests()?;
    assert_eq!(
        sent(&requests, "/keys/search", false),
        vec![search_body(100, None)]
    );
    assert_eq!(
        sent(&requests, "/keys/since/", false),
        vec![json!(["GET", "/keys/since/100/items", [], ""])]
    );
    assert_eq!(
        sent(&requests, "/keys/parents/", true),
        children_requests("33")
    );
    assert_eq!(ids(&pipeline, "search")?, (4..=11).collect::<Vec<_>>());
    assert_eq!(ids(&pipeline, "since_path")?, [8, 9, 10, 11]);
    assert_eq!(
        ids(&pipeline, "children")?,
        [102, 103, 104, 202, 203, 302, 303]
    );
    assert_eq!(ids(&pipeline, "children_search")?.len(), 11);
    Ok(())
}

/// dlt's endpoint-level keys: `headers` (over the client's, with `{resources.…}` and
/// `{incremental.…}` placeholders), list-valued `params`, `data` (form and raw bodies); paginator keys: `has_more_path`
/// (page_number), `stop_after_empty_page` (cursor).
#[test]
fn endpoint_and_paginator_keys() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_keys_endpoint",
        r#"headers = { "X-Client" = "c", "X-Over" = "client" }"#,
        &[
            (
                "parents",
                r#"endpoint = { path = "/keys/parents", paginator = "single_page", headers = { "X-Over" = "endpoint" } }"#,
            ),
            (
                "children",
                r#"endpoint = { path = "/keys/parents/{resources.parents.id}/children", paginator = "single_page", headers = { "X-Parent" = "p{resources.parents.id}", "X-Since" = "{incremental.start_value}" }, incremental = { cursor_path = "updated", initial_value = 20 } }"#,
            ),
            (
                "has_more",
                r#"endpoint = { path = "/keys/has-more", data_selector = "data", paginator = { type = "page_number", base_page = 1, total_path = "total", has_more_path = "meta.has_more" } }"#,
            ),
            (
                "list_params",
                r#"endpoint = { path = "/keys/since/90/items", paginator = "single_page", params = { ids = [1, "x y", true], one = "z" } }"#,
            ),
            (
                "form_data",
                r#"endpoint = { path = "/keys/form", method = "POST", paginator = "single_page", data = { q = "a b&c", ids = [1, 2], on = true } }"#,
            ),
            (
                "raw_data",
                r#"endpoint = { path = "/keys/form", method = "POST", paginator = "single_page", data = "raw {{text}}" }"#,
            ),
            (
                "cursor_empty",
                r#"endpoint = { path = "/keys/cursor-empty", data_selector = "data", paginator = { type = "cursor", cursor_path = "next", cursor_param = "cursor", stop_after_empty_page = true } }"#,
            ),
        ],
    )?;
    extract_and_load(&pipeline)?;
    let requests = stand.requests()?;
    let names = ["x-client", "x-over", "x-parent", "x-since"];
    assert_eq!(
        sent_headers(&requests, "/keys/parents", &names),
        vec![
            json!(["/keys/parents", {"x-client": "c", "x-over": "endpoint", "x-parent": null, "x-since": null}]),
            json!(["/keys/parents/1/children", {"x-client": "c", "x-over": "client", "x-parent": "p1", "x-since": "20"}]),
            json!(["/keys/parents/2/children", {"x-client": "c", "x-over": "client", "x-parent": "p2", "x-since": "20"}]),
            json!(["/keys/parents/3/children", {"x-client": "c", "x-over": "client", "x-parent": "p3", "x-since": "20"}]),
        ]
    );
    assert_eq!(ids(&pipeline, "children")?, [102, 103, 202, 203, 302, 303]);
    // `has_more` false on page 4 ends the paging (the API would repeat page 4 forever,
    // and its `total` claims 99 pages).
    let pages: Vec<Value> = sent(&requests, "/keys/has-more", false)
        .iter()
        .map(|r| r[2].clone())
        .collect();
    assert_eq!(
        pages,
        (1..=4)
            .map(|p| json!([["page", p.to_string()]]))
            .collect::<Vec<_>>()
    );
    assert_eq!(ids(&pipeline, "has_more")?, (1..=10).collect::<Vec<_>>());
    // A list param is the param repeated, as dlt (`requests`) sends it.
    assert_eq!(
        sent(&requests, "/keys/since/", false),
        vec![json!([
            "GET",
            "/keys/since/90/items",
            [["ids", "1"], ["ids", "x y"], ["ids", "True"], ["one", "z"]],
            ""
        ])]
    );
    // `data`: a table is a form (a list repeats its key), a string the body as is.
    let forms: Vec<&Value> = requests
        .iter()
        .filter(|e| e["path"] == "/keys/form")
        .collect();
    assert_eq!(forms.len(), 2, "{forms:?}");
    let form = forms
        .iter()
        .find(|e| e["headers"]["content-type"] == "application/x-www-form-urlencoded")
        .context("the form request")?;
    let mut fields: Vec<(String, String)> =
        url::form_urlencoded::parse(form["body"].as_str().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("ids".to_owned(), "1".to_owned()),
            ("ids".to_owned(), "2".to_owned()),
            ("on".to_owned(), "True".to_owned()),
            ("q".to_owned(), "a b&c".to_owned()),
        ]
    );
    assert!(forms.iter().any(|e| e["body"] == "raw {text}"), "{forms:?}");
    assert_eq!(ids(&pipeline, "form_data")?.len(), 10);
    // The first empty page ends the cursor paging though it carries a cursor.
    assert_eq!(sent(&requests, "/keys/cursor-empty", false).len(), 4);
    assert_eq!(
        ids(&pipeline, "cursor_empty")?,
        (1..=10).collect::<Vec<_>>()
    );
    Ok(())
}
