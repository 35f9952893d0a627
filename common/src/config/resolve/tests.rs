//! The resolution of whole documents: defaults, `resource_defaults` merged, incremental
//! forms, dependent resources, our own sections.

use super::*;
use crate::config::test_support::*;
use crate::schema::DataType;
use serde_json::json;

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
            options: IncrementalOptions::default(),
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
            options: IncrementalOptions::default(),
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
fn resource_defaults_merge() {
    let text = r#"
[client]
base_url = "https://api.example.com/api/"
paginator = { type = "offset", limit = 50 }

[resource_defaults]
primary_key = "id"
write_disposition = { disposition = "merge" }
endpoint = { data_selector = "data", params = { a = "1", b = 2, on = true }, json = { size = 10, q = "all" } }
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
            ..ColumnHint::default()
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
    // dlt merges the bodies by top-level key.
    assert_eq!(
        two.endpoint.json,
        Some(serde_json::json!({"size": 10, "q": "x"}))
    );
    assert_eq!(
        three.endpoint.json,
        Some(serde_json::json!({"size": 10, "q": "all"}))
    );
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
fn placeholders_in_the_json_body_and_path() {
    // dlt fills `{incremental.…}` and `{resources.…}` in the JSON body (keys too) and the
    // path; a string that is only a placeholder may go without a value (it becomes null).
    let text = r#"
[client]
base_url = "https://api.example.com"

[[resources]]
name = "parents"

[[resources]]
name = "search"
[resources.endpoint]
path = "/search/{incremental.start_value}/{resources.parents.id}"
method = "POST"
json = { since = "{incremental.start_value}", q = "updated>{incremental.last_value}", until = "{incremental.end_value}", ids = ["{resources.parents.id}"], literal = "{{not a placeholder}}" }
incremental = { cursor_path = "updated_at", initial_value = 5 }
"#;
    let config = toml(text).unwrap();
    let search = config.resource("search").unwrap();
    assert_eq!(search.parent.as_deref(), Some("parents"));
    assert_eq!(
        search.endpoint.path,
        "/search/{incremental.start_value}/{resources.parents.id}"
    );
    // The body stays as written: the extractor fills it for each request.
    assert_eq!(
        search.endpoint.json.as_ref().unwrap()["literal"],
        json!("{{not a placeholder}}")
    );
    // A path binding a plain param keeps the rest of the path's braces escaped.
    let e = toml(&with_endpoint(
        "{ path = \"/a/{{x}}/{kind}\", params = { kind = \"b c\" } }",
    ))
    .unwrap()
    .resources[0]
        .endpoint
        .clone();
    assert_eq!(e.path, "/a/{{x}}/b%20c");
    assert!(e.params.is_empty());
}

#[test]
fn a_single_entity_path_is_one_page_and_one_record() {
    // dlt: a path whose last segment is a placeholder returns one object: data_selector
    // `$` and a single page, unless the endpoint or resource_defaults set them; the
    // client's paginator does not count.
    let text = r#"
[client]
base_url = "https://api.example.com"
paginator = "json_link"

[resource_defaults]
primary_key = "id"

[[resources]]
name = "posts"

[[resources]]
name = "post"
endpoint = "/posts/{resources.posts.id}"

[[resources]]
name = "comments"
endpoint = "/posts/{resources.posts.id}/comments"

[[resources]]
name = "post_json"
endpoint = { path = "/posts/{resources.posts.id}.json", data_selector = "post", paginator = { type = "offset", limit = 5 } }

[[resources]]
name = "by_param"
endpoint = { path = "/things/{thing}", params = { thing = "x" } }
"#;
    let config = toml(text).unwrap();
    let endpoint = |name: &str| config.resource(name).unwrap().endpoint.clone();
    let post = endpoint("post");
    assert_eq!(post.data_selector.as_deref(), Some("$"));
    assert_eq!(post.paginator, Paginator::SinglePage);
    let comments = endpoint("comments");
    assert_eq!(comments.data_selector, None);
    assert_eq!(comments.paginator.kind(), "json_link");
    let post_json = endpoint("post_json");
    assert_eq!(post_json.data_selector.as_deref(), Some("post"));
    assert_eq!(post_json.paginator.kind(), "offset");
    // dlt looks at the path before it binds a plain param into it.
    let by_param = endpoint("by_param");
    assert_eq!(by_param.path, "/things/x");
    assert_eq!(by_param.paginator, Paginator::SinglePage);
    assert_eq!(endpoint("posts").paginator.kind(), "json_link");
}

#[test]
fn endpoint_headers() {
    // dlt's endpoint `headers`: taken whole from resource_defaults (as every endpoint key
    // but params and json), placeholders allowed; a `{resources.…}` there names the parent.
    let text = r#"
[client]
base_url = "https://api.example.com"
headers = { "X-Client" = "c" }

[resource_defaults]
primary_key = "id"
endpoint = { headers = { "X-Default" = "d" } }

[[resources]]
name = "parents"

[[resources]]
name = "children"
endpoint = { path = "/children", headers = { "X-Parent" = "{resources.parents.id}", "X-Since" = "{incremental.start_value}" }, incremental = { cursor_path = "u" } }
"#;
    let config = toml(text).unwrap();
    let parents = config.resource("parents").unwrap();
    assert_eq!(
        parents.endpoint.headers,
        BTreeMap::from([("X-Default".to_owned(), "d".to_owned())])
    );
    let children = config.resource("children").unwrap();
    assert_eq!(children.parent.as_deref(), Some("parents"));
    assert_eq!(children.endpoint.headers.len(), 2);
    assert_eq!(config.client.headers.len(), 1);

    let e = toml(&with_endpoint(
        "{ headers = { \"Bad Name\" = \"x\", ok = \"{id}\" } }",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("resources[0].endpoint.headers.Bad Name: not a valid HTTP header name")
            && e.contains("resources[0].endpoint.headers.ok: `{id}`: `{id}` is not a placeholder"),
        "{e}"
    );
}

#[test]
fn list_params() {
    // dlt passes a list param to `requests`, which repeats it: `ids=1&ids=2`.
    let e = toml(&with_endpoint(
        "{ params = { ids = [1, \"{incremental.start_value}\"] }, \
         incremental = { cursor_path = \"u\", initial_value = 1 } }",
    ))
    .unwrap()
    .resources[0]
        .endpoint
        .clone();
    assert_eq!(e.params["ids"], json!([1, "{incremental.start_value}"]));
    for (bad, needle) in [
        (
            "{ params = { ids = [[1]] } }",
            "resources[0].endpoint.params.ids: a list param holds strings, numbers or booleans",
        ),
        (
            "{ path = \"/x/{ids}\", params = { ids = [1] } }",
            "resources[0].endpoint.path: `/x/{ids}`: the list param `ids` cannot fill the path",
        ),
        (
            "{ params = { ids = [\"{id}\"] } }",
            "resources[0].endpoint.params.ids[0]: `{id}`: `{id}` is not a placeholder",
        ),
    ] {
        let e = toml(&with_endpoint(bad)).unwrap_err().to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn data_bodies() {
    // dlt's `data`: a form (table) or a raw body (string), not with `json`.
    let e = toml(&with_endpoint(
        "{ method = \"POST\", data = { q = \"{incremental.start_value}\", ids = [1, 2] }, \
         incremental = { cursor_path = \"u\" } }",
    ))
    .unwrap()
    .resources[0]
        .endpoint
        .clone();
    assert_eq!(
        e.data,
        Some(json!({"q": "{incremental.start_value}", "ids": [1, 2]}))
    );
    for (bad, needle) in [
        (
            "{ method = \"POST\", json = { a = 1 }, data = \"x\" }",
            "resources[0].endpoint.data: set either `json` or `data`",
        ),
        (
            "{ method = \"POST\", data = { a = { b = 1 } } }",
            "resources[0].endpoint.data.a: a form field is a string, number or boolean",
        ),
        (
            "{ method = \"POST\", data = \"since {incremental.start_value}\", \
             incremental = { cursor_path = \"u\" } }",
            "resources[0].endpoint.data: `{incremental.start_value}` has no value without",
        ),
    ] {
        let e = toml(&with_endpoint(bad)).unwrap_err().to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn write_disposition_forms_and_merge_strategies() {
    let text = r#"
[client]
base_url = "https://api.example.com/"

[resource_defaults]
primary_key = "id"

[[resources]]
name = "upsert"
write_disposition = { disposition = "merge", strategy = "upsert" }

[[resources]]
name = "delete_insert"
write_disposition = { disposition = "merge", strategy = "delete-insert" }

[[resources]]
name = "default_strategy"
write_disposition = { disposition = "merge" }

[[resources]]
name = "bare_merge"
write_disposition = "merge"

[[resources]]
name = "append"
write_disposition = { disposition = "append" }

[[resources]]
name = "replace"
write_disposition = { disposition = "replace" }
"#;
    let config = toml(text).unwrap();
    let got: Vec<(&str, WriteDisposition, Option<MergeStrategy>)> = config
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r.write_disposition, r.merge_strategy))
        .collect();
    use MergeStrategy::*;
    use WriteDisposition::*;
    assert_eq!(
        got,
        [
            ("upsert", Merge, Some(Upsert)),
            ("delete_insert", Merge, Some(DeleteInsert)),
            ("default_strategy", Merge, Some(DeleteInsert)),
            ("bare_merge", Merge, Some(DeleteInsert)),
            ("append", Append, None),
            ("replace", Replace, None),
        ]
    );
}

#[test]
fn merge_without_a_primary_key_appends_as_in_dlt() {
    let text = r#"
[client]
base_url = "https://api.example.com/"

[[resources]]
name = "events"
write_disposition = { disposition = "merge", strategy = "upsert" }
"#;
    let config = toml(text).unwrap();
    let r = &config.resources[0];
    assert!(r.primary_key.is_empty());
    assert_eq!(
        (r.write_disposition, r.merge_strategy),
        (WriteDisposition::Append, None)
    );
}

#[test]
fn a_merge_key_merges_by_delete_insert_with_or_without_a_primary_key() {
    let text = r#"
[client]
base_url = "https://api.example.com/"

[resource_defaults]
merge_key = "day"
write_disposition = { disposition = "merge" }

[[resources]]
name = "keyed"
primary_key = "id"

[[resources]]
name = "unkeyed"
merge_key = ["day", "region"]
"#;
    let config = toml(text).unwrap();
    let [keyed, unkeyed] = &config.resources[..] else {
        panic!("two resources: {config:#?}");
    };
    assert_eq!(keyed.merge_key, ["day"]);
    assert_eq!(unkeyed.merge_key, ["day", "region"]);
    for r in [keyed, unkeyed] {
        assert_eq!(
            (r.write_disposition, r.merge_strategy),
            (WriteDisposition::Merge, Some(MergeStrategy::DeleteInsert)),
            "{}: a merge key merges even without a primary key",
            r.name
        );
    }
}

#[test]
fn scd2_needs_no_key_and_reads_dlts_options() {
    let text = r#"
[client]
base_url = "https://api.example.com/"

[[resources]]
name = "plain"
write_disposition = { disposition = "merge", strategy = "scd2" }

[[resources]]
name = "options"
primary_key = "id"
merge_key = ["Day"]
write_disposition = { disposition = "merge", strategy = "scd2", validity_column_names = ["From", "to"], active_record_timestamp = "9999-12-31", boundary_timestamp = "2024-01-01T00:00:00+01:00", row_version_column_name = "Row Hash" }
"#;
    let config = toml(text).unwrap();
    let plain = &config.resources[0];
    assert_eq!(
        (plain.write_disposition, plain.merge_strategy),
        (WriteDisposition::Merge, Some(MergeStrategy::Scd2)),
        "scd2 without a primary key stays scd2 (dlt's identity is the row's content)"
    );
    assert_eq!(plain.scd2, Scd2Config::default());
    assert_eq!(
        config.resources[1].scd2,
        Scd2Config {
            valid_from: "from".into(),
            valid_to: "to".into(),
            active_record_timestamp: Some(253_402_214_400_000_000),
            boundary_timestamp: Some(1_704_063_600_000_000),
            row_version: Some("row_hash".into()),
            merge_key: vec!["day".into()],
        }
    );
}
