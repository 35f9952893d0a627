//! The checks' messages, each with its key path.

use super::*;
use crate::config::test_support::*;

/// Table-driven: (name, document, substrings the error must contain).
#[test]
fn validation_errors_name_path() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "merge_key without delete-insert",
            "[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"r\"\n\
             write_disposition = { disposition = \"merge\", strategy = \"upsert\" }\n\
             primary_key = \"id\"\nmerge_key = \"day\"\n"
                .into(),
            vec![
                "pipeline.toml: resources[0].merge_key: applies to `merge` with the \
                 `delete-insert` strategy only, or with `scd2` (this resource has `merge` with \
                 `upsert`)",
            ],
        ),
        (
            "insert-only",
            "[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"r\"\n\
             primary_key = \"id\"\n\
             write_disposition = { disposition = \"merge\", strategy = \"insert-only\" }\n"
                .into(),
            vec![
                "resources[0].write_disposition.strategy: dlt's `insert-only` merge strategy is \
                 not supported",
                "`disposition = \"append\"` to keep every version",
            ],
        ),
        (
            "scd2 option values",
            "[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"r\"\n\
             write_disposition = { disposition = \"merge\", strategy = \"scd2\", \
             validity_column_names = [\"from\"], active_record_timestamp = \"soon\" }\n"
                .into(),
            vec![
                "resources[0].write_disposition.validity_column_names: must be a list of two",
                "resources[0].write_disposition.active_record_timestamp: must be a timestamp",
            ],
        ),
        (
            "scd2 options",
            "[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"r\"\n\
             primary_key = \"id\"\n\
             write_disposition = { disposition = \"merge\", strategy = \"upsert\", \
             validity_column_names = [\"from\", \"to\"] }\n"
                .into(),
            vec![
                "resources[0].write_disposition.validity_column_names: not supported",
                "remove it",
            ],
        ),
        (
            "unknown merge strategy",
            "[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"r\"\n\
             primary_key = \"id\"\n\
             write_disposition = { disposition = \"merge\", strategy = \"upsrt\" }\n"
                .into(),
            vec!["resources[0].write_disposition.strategy: unknown merge strategy `upsrt`"],
        ),
        (
            "a strategy without merge",
            "[client]\nbase_url = \"https://a\"\n[[resources]]\nname = \"r\"\n\
             write_disposition = { disposition = \"append\", strategy = \"upsert\" }\n"
                .into(),
            vec![
                "resources[0].write_disposition.strategy: a merge strategy applies to \
                 `disposition = \"merge\"` only",
            ],
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
            with_endpoint("{ incremental = { cursor_path = \"u\", end_value = [1] } }"),
            vec!["resources[0].endpoint.incremental.end_value: [1] is not a string or a number"],
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
            with_endpoint("{ method = \"POST\", json = { query = \"users { id }\" } }"),
            vec![
                "resources[0].endpoint.json.query: `users { id }`: `{ id }` is not a \
                 placeholder",
                "write `{{` and `}}` for literal braces",
            ],
        ),
        (
            "incremental placeholder in the JSON body without an incremental",
            with_endpoint(
                "{ method = \"POST\", json = { f = { since = \"{incremental.start_value}\" } } }",
            ),
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
            vec![
                "resources[0].endpoint.response_actions[1].status_code: 4040 is not an HTTP status",
            ],
        ),
        (
            "response action with empty content",
            with(
                "[resource_defaults.endpoint]\nresponse_actions = [{ content = \"\", action = \"ignore\" }]",
            ),
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
        default.client.max_response_bytes,
        DEFAULT_MAX_RESPONSE_BYTES
    );
    assert_eq!(
        client("max_response_bytes = 1000")
            .unwrap()
            .client
            .max_response_bytes,
        1000
    );
    assert!(
        err(client("max_response_bytes = 0"))
            .contains("client.max_response_bytes: must be at least 1")
    );
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
