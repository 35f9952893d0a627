//! dlt's HTTP keys end to end, against the demo API's `/http-keys/...` endpoints, which log
//! every request without its credentials (parameter names, which credentials it carried,
//! the JSON body): the paginators' `offset_body_path` / `limit_body_path` / `page_body_path`
//! (POST search APIs), OAuth2's `client_secret_basic`, and an endpoint's own `auth`. One
//! broker and one demo API for all cases, run in turn.

use std::time::Duration;

use anyhow::{Context, Result};
use e2e::{API_KEY, Broker, DemoApi, Pipeline, run, run_ok};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(120);
/// Records of the demo API: three pages of 25 (offset) or of 20 (page number).
const RECORDS: u64 = 60;
/// The demo API's OAuth2 client id (its secret is the API key).
const CLIENT_ID: &str = "demo-client";

/// The `[resources.endpoint]` table of `/v1/resource`'s records at `path`, three pages of
/// 25, with `extra` lines.
fn offset_25(path: &str, extra: &str) -> String {
    format!(
        "[resources.endpoint]\npath = \"{path}\"\ndata_selector = \"data\"\n\
         paginator = {{ type = \"offset\", limit = 25, total_path = \"total\" }}\n{extra}"
    )
}

/// The broker and the demo API the cases share.
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
            api: DemoApi::start(RECORDS, &[])?,
            _dir: dir,
        })
    }

    /// A pipeline named `name` with `client` (the `[client]` and `[resource_defaults]`
    /// tables) and one resource per `(name, table body)` (the lines of its `[[resources]]`
    /// table after `name` and `topic`).
    fn pipeline(&self, name: &str, client: &str, resources: &[(&str, &str)]) -> Result<Pipeline> {
        let mut text = client.to_owned();
        for (resource, body) in resources {
            text.push_str(&format!(
                "\n[[resources]]\nname = \"{resource}\"\ntopic = \"{name}.{resource}\"\n{body}\n"
            ));
        }
        Pipeline::with_config(&self.broker, name, &text)
    }

    /// The requests logged since the last call.
    fn requests(&self) -> Result<Vec<Value>> {
        let log = self.api.get("/http-keys/log")?;
        let _ = self.api.post("/http-keys/reset", json!({}))?;
        Ok(log.as_array().context("log")?.clone())
    }

    /// The ids of the API's records, ascending.
    fn api_ids(&self) -> Result<Vec<i64>> {
        let mut ids: Vec<i64> = self
            .api
            .records()?
            .iter()
            .map(|r| r["id"].as_i64().context("id"))
            .collect::<Result<_>>()?;
        ids.sort_unstable();
        Ok(ids)
    }
}

/// Extracts (with `env` added), then loads until caught up; both must succeed. Returns the
/// extractor's stdout and stderr together.
fn extract_and_load(pipeline: &Pipeline, env: &[(&str, &str)]) -> Result<String> {
    let mut extractor = pipeline.extractor()?;
    for (k, v) in env {
        let _ = extractor.env(k, v);
    }
    let out = run_ok(extractor, RUN)?;
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
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

/// The logged requests to `path`, each as `[method, query names, credentials, body]`,
/// sorted (pages fetched in parallel arrive in any order).
fn sent(requests: &[Value], path: &str) -> Vec<Value> {
    let mut out: Vec<Value> = requests
        .iter()
        .filter(|e| e["path"] == path)
        .map(|e| json!([e["method"], e["query"], e["credentials"], e["body"]]))
        .collect();
    out.sort_by_key(ToString::to_string);
    out
}

/// `[client]` with the demo API's query-string key, and `[resource_defaults]`.
fn query_key_client(api: &DemoApi) -> String {
    api.client_toml("")
}

/// dlt's `offset_body_path` / `limit_body_path` and `page_body_path`: the offset, the limit
/// and the page number go into the JSON body at those dotted paths (over what the
/// endpoint's `json` has there), the rest of the body and the query as configured. The
/// endpoints refuse paging values in the query and need them in the body.
fn body_paths(stand: &Stand) -> Result<()> {
    let pipeline = stand.pipeline(
        "e2e_http_body_paths",
        &query_key_client(&stand.api),
        &[
            (
                "offset_body",
                r#"[resources.endpoint]
path = "/http-keys/offset"
method = "POST"
json = { filter = "all", paging = { limit = 999 } }
data_selector = "data"
paginator = { type = "offset", limit = 25, offset_body_path = "paging.offset", limit_body_path = "paging.limit" }"#,
            ),
            (
                "pages_body",
                r#"[resources.endpoint]
path = "/http-keys/pages"
method = "POST"
json = { page = { size = 20 } }
data_selector = "data"
paginator = { type = "page_number", base_page = 1, page_body_path = "page.number", total_path = "total_pages" }"#,
            ),
        ],
    )?;
    let _ = extract_and_load(&pipeline, &[])?;
    let all = stand.api_ids()?;
    assert_eq!(all.len(), RECORDS as usize);
    assert_eq!(ids(&pipeline, "offset_body")?, all);
    assert_eq!(ids(&pipeline, "pages_body")?, all);

    let requests = stand.requests()?;
    let offset_request = |offset: u64| json!(["POST", ["api_key"], ["api_key"], {"filter": "all", "paging": {"offset": offset, "limit": 25}}]);
    let mut expected = vec![offset_request(0), offset_request(25), offset_request(50)];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(sent(&requests, "/http-keys/offset"), expected);
    let page_request = |page: u64| json!(["POST", ["api_key"], ["api_key"], {"page": {"size": 20, "number": page}}]);
    let mut expected = vec![page_request(1), page_request(2), page_request(3)];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(sent(&requests, "/http-keys/pages"), expected);
    Ok(())
}

/// `oauth2_client_credentials` with `client_auth_method` at `token_path`: the client id
/// and secret from the env vars `CLIENT_ID` and `API_KEY`.
fn oauth2(api: &DemoApi, token_path: &str, method: &str) -> String {
    format!(
        r#"{{ type = "oauth2_client_credentials", access_token_url = "{}{token_path}", client_id = {{ secret = "client_id" }}, client_secret = {{ secret = "api_key" }}, access_token_request_data = {{ scope = "read" }}{method} }}"#,
        api.url
    )
}

/// OAuth2 `client_secret_basic`: the token request carries the client id and secret in an
/// `Authorization: Basic` header and a form without them; the API's pages get the token.
/// The default, `client_secret_post`, is refused by this token endpoint. No secret and no
/// token reaches the output, at trace level either.
fn oauth2_client_secret_basic(stand: &Stand) -> Result<()> {
    let client = |method: &str| {
        format!(
            "[client]\nbase_url = \"{}\"\nauth = {}\n\n[resource_defaults]\nprimary_key = \"id\"\n\
             write_disposition = \"merge\"\n",
            stand.api.url,
            oauth2(&stand.api, "/http-keys/token", method)
        )
    };
    let resource = offset_25("/http-keys/protected/oauth2", "");
    let pipeline = stand.pipeline(
        "e2e_http_oauth2_basic",
        &client(", client_auth_method = \"client_secret_basic\""),
        &[("oauth_basic", &resource)],
    )?;
    let env = [("CLIENT_ID", CLIENT_ID), ("RUST_LOG", "trace")];
    let output = extract_and_load(&pipeline, &env)?;
    assert_eq!(ids(&pipeline, "oauth_basic")?, stand.api_ids()?);
    for secret in [API_KEY, CLIENT_ID, "demo-token-"] {
        assert!(
            !output.contains(secret),
            "a secret or token leaked into the output"
        );
    }
    let requests = stand.requests()?;
    assert_eq!(
        sent(&requests, "/http-keys/token"),
        vec![json!([
            "POST",
            [],
            ["authorization basic"],
            ["grant_type", "scope"]
        ])],
        "one token request, the client in the header"
    );
    let page = json!(["GET", ["offset", "limit"], ["authorization bearer"], null]);
    assert_eq!(
        sent(&requests, "/http-keys/protected/oauth2"),
        vec![page.clone(), page.clone(), page]
    );

    // The default method posts the secret in the form: this endpoint refuses it, and the
    // error names the token endpoint's answer without the secret.
    let post = stand.pipeline(
        "e2e_http_oauth2_post",
        &client(""),
        &[("oauth_post", &resource)],
    )?;
    let mut cmd = post.extractor()?;
    let _ = cmd.env("CLIENT_ID", CLIENT_ID);
    let out = run(cmd, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "client_secret_post must be refused: {stderr}"
    );
    assert!(
        stderr.contains("/http-keys/token answered HTTP 400"),
        "{stderr}"
    );
    assert!(!stderr.contains(API_KEY) && !stderr.contains(CLIENT_ID));
    let requests = stand.requests()?;
    assert_eq!(
        sent(&requests, "/http-keys/token")[0],
        json!([
            "POST",
            [],
            [],
            ["grant_type", "client_id", "client_secret", "scope"]
        ])
    );
    Ok(())
}

/// dlt's endpoint `auth`: a resource's own auth replaces `client.auth` for its requests
/// (the protected endpoints refuse a request with two credentials), resources with equal
/// auths share one OAuth2 token, the others keep the client's query key; `--check --fetch`
/// fetches each first page with its resource's auth. No secret reaches the output.
fn endpoint_auth(stand: &Stand) -> Result<()> {
    let oauth = oauth2(
        &stand.api,
        "/http-keys/token",
        ", client_auth_method = \"client_secret_basic\"",
    );
    let bearer = r#"{ type = "bearer", token = { secret = "api_key" } }"#;
    let pipeline = stand.pipeline(
        "e2e_http_endpoint_auth",
        &query_key_client(&stand.api),
        &[
            ("plain", &offset_25("/v1/resource", "")),
            (
                "bearer",
                &offset_25("/http-keys/protected/bearer", &format!("auth = {bearer}")),
            ),
            (
                "oauth_a",
                &offset_25("/http-keys/protected/oauth2", &format!("auth = {oauth}")),
            ),
            (
                "oauth_b",
                &offset_25("/http-keys/protected/oauth2", &format!("auth = {oauth}")),
            ),
        ],
    )?;
    let env = [("CLIENT_ID", CLIENT_ID), ("RUST_LOG", "debug")];

    let mut check = pipeline.extractor()?;
    let _ = check
        .args(["--check", "--fetch"])
        .env("CLIENT_ID", CLIENT_ID);
    let out = run_ok(check, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for resource in ["plain", "bearer", "oauth_a", "oauth_b"] {
        assert!(
            stdout.contains(&format!("resource `{resource}` (")),
            "{resource}: {stdout}"
        );
    }
    let _ = stand.requests()?;

    let output = extract_and_load(&pipeline, &env)?;
    let all = stand.api_ids()?;
    for table in ["plain", "bearer", "oauth_a", "oauth_b"] {
        assert_eq!(ids(&pipeline, table)?, all, "{table}");
    }
    for secret in [API_KEY, CLIENT_ID, "demo-token-"] {
        assert!(
            !output.contains(secret),
            "a secret or token leaked into the output"
        );
    }
    let requests = stand.requests()?;
    let page = |credential: &str| json!(["GET", ["offset", "limit"], [credential], null]);
    assert_eq!(
        sent(&requests, "/http-keys/protected/bearer"),
        vec![page("authorization bearer"); 3],
        "the endpoint's bearer token and not the client's query key"
    );
    assert_eq!(
        sent(&requests, "/http-keys/protected/oauth2"),
        vec![page("authorization bearer"); 6]
    );
    assert_eq!(
        sent(&requests, "/http-keys/token").len(),
        1,
        "the two resources with the same auth share its token"
    );
    Ok(())
}

/// Each case in turn, sharing the broker and the demo API.
#[test]
fn http_keys() -> Result<()> {
    let stand = Stand::start()?;
    body_paths(&stand).context("body paths")?;
    oauth2_client_secret_basic(&stand).context("oauth2 client_secret_basic")?;
    endpoint_auth(&stand).context("endpoint auth")?;
    Ok(())
}
