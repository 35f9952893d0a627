//! Every paginator and every auth scheme end to end: the demo API serves one record set
//! through each paging style and behind each auth scheme; the real extractor pages it into
//! Kafka (Tansu) and the real loader merges it into SQLite, which must then hold exactly the
//! API's records. Each test starts its own broker and demo API.

use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{API_KEY, Broker, DemoApi, Pipeline, figure, run, run_ok};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(120);
/// Records per test: 300 in pages of 40 is 8 pages (the last one short).
const RECORDS: u64 = 300;
const FAST_RETRY: &str = "{ initial_delay = 0.05, max_delay = 1.0, retry_after_max = 2.0 }";
const QUERY_KEY: &str = r#"{ type = "api_key", name = "api_key", api_key = { secret = "api_key" }, location = "query" }"#;
const CLIENT_ID: &str = "demo-client";

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
            api: DemoApi::start(RECORDS, &[])?,
            _dir: dir,
        })
    }

    /// A pipeline with `auth` as `client.auth` and one resource (table) per
    /// `(name, endpoint)`, each endpoint an inline TOML table.
    fn pipeline(&self, name: &str, auth: &str, resources: &[(&str, &str)]) -> Result<Pipeline> {
        let mut text = format!(
            "[client]\nbase_url = \"{}\"\nauth = {auth}\nretry = {FAST_RETRY}\n\n\
             [resource_defaults]\nprimary_key = \"id\"\nwrite_disposition = \"merge\"\n",
            self.api.url
        );
        for (resource, endpoint) in resources {
            text.push_str(&format!(
                "\n[[resources]]\nname = \"{resource}\"\ntopic = \"{name}.{resource}\"\nendpoint = {endpoint}\n"
            ));
        }
        Pipeline::with_config(&self.broker, name, &text)
    }

    fn stats(&self) -> Result<Value> {
        self.api.get("/admin/stats")
    }
}

/// The extractor's output of a run that succeeded (the loader's is checked in
/// `extract_and_load`).
struct Runs {
    extract: Output,
}

impl Runs {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.extract.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.extract.stderr).into_owned()
    }

    /// Pages the extractor fetched for `resource`.
    fn pages(&self, resource: &str) -> Option<f64> {
        figure(&self.stdout(), &format!("resource={resource} "), "pages")
    }

    /// Fails if any of `secrets` is in the extractor's output.
    fn assert_hides(&self, secrets: &[&str]) {
        let text = format!("{}{}", self.stdout(), self.stderr());
        for secret in secrets {
            assert!(!text.contains(secret), "a secret leaked into the output");
        }
    }
}

/// Runs the extractor (with `env` added) then the loader until it has caught up; both must
/// succeed and the loader must load every record of every resource.
fn extract_and_load(pipeline: &Pipeline, resources: usize, env: &[(&str, &str)]) -> Result<Runs> {
    let mut extractor = pipeline.extractor()?;
    for (k, v) in env {
        let _ = extractor.env(k, v);
    }
    let extract = run_ok(extractor, RUN)?;
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let load = run_ok(loader, RUN)?;
    let loaded = figure(&String::from_utf8_lossy(&load.stdout), "loaded", "records");
    ensure!(
        loaded == Some((RECORDS as usize * resources) as f64),
        "loaded {loaded:?}; the extractor said:\n{}\nthe loader said:\n{}",
        String::from_utf8_lossy(&extract.stdout),
        String::from_utf8_lossy(&load.stdout)
    );
    Ok(Runs { extract })
}

/// The destination table holds exactly the API's records: the same ids, and the same
/// channel, body, city, external_ref and campaign_id for each.
fn assert_table_equals_api(pipeline: &Pipeline, table: &str, api: &DemoApi) -> Result<()> {
    let records = api.records()?;
    ensure!(
        records.len() == RECORDS as usize,
        "the API has {}",
        records.len()
    );
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare(&format!(
        "SELECT id, channel, body, sender__address__city, external_ref, campaign_id \
         FROM \"{table}\" ORDER BY id"
    ))?;
    let rows: Vec<Value> = stmt
        .query_map([], |r| {
            Ok(json!([
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
            ]))
        })?
        .collect::<Result<_, _>>()?;
    let expected: Vec<Value> = records
        .iter()
        .map(|r| {
            json!([
                r["id"],
                r["channel"],
                r["body"],
                r["sender"]["address"]["city"],
                r["external_ref"],
                r["campaign_id"]
            ])
        })
        .collect();
    ensure!(
        rows.len() == expected.len(),
        "{table}: {} rows, {} records",
        rows.len(),
        expected.len()
    );
    for (row, want) in rows.iter().zip(&expected) {
        ensure!(row == want, "{table}: destination {row}\n  expected {want}");
    }
    Ok(())
}

/// One resource through `endpoint` with the query-string key: all records arrive, in
/// `pages` pages.
fn paginator_case(name: &str, endpoint: &str, pages: f64) -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(name, QUERY_KEY, &[("messages", endpoint)])?;
    let runs = extract_and_load(&pipeline, 1, &[])?;
    assert_eq!(runs.pages("messages"), Some(pages), "{}", runs.stdout());
    assert_table_equals_api(&pipeline, "messages", &stand.api)?;
    runs.assert_hides(&[API_KEY]);
    Ok(())
}

#[test]
fn page_number_paginator() -> Result<()> {
    paginator_case(
        "e2e_page_number",
        r#"{ path = "/v1/paged", params = { per_page = 40 }, data_selector = "data", paginator = { type = "page_number", base_page = 1, total_path = "total_pages" } }"#,
        8.0,
    )
}

#[test]
fn json_link_paginator() -> Result<()> {
    paginator_case(
        "e2e_json_link",
        r#"{ path = "/v1/linked", params = { limit = 40 }, data_selector = "data", paginator = { type = "json_link", next_url_path = "next" } }"#,
        8.0,
    )
}

#[test]
fn header_link_paginator() -> Result<()> {
    paginator_case(
        "e2e_header_link",
        r#"{ path = "/v1/header-linked", params = { per_page = 40 }, data_selector = "data", paginator = { type = "header_link" } }"#,
        8.0,
    )
}

#[test]
fn cursor_paginator_in_the_query() -> Result<()> {
    paginator_case(
        "e2e_cursor_query",
        r#"{ path = "/v1/cursor", params = { limit = 40 }, data_selector = "data", paginator = { type = "cursor", cursor_path = "cursors.next", cursor_param = "cursor" } }"#,
        8.0,
    )
}

#[test]
fn cursor_paginator_in_a_post_body() -> Result<()> {
    paginator_case(
        "e2e_cursor_body",
        r#"{ path = "/v1/search", method = "POST", json = { page = { size = 40 } }, data_selector = "data", paginator = { type = "cursor", cursor_path = "cursors.next", cursor_body_path = "page.cursor" } }"#,
        8.0,
    )
}

#[test]
fn header_cursor_paginator() -> Result<()> {
    paginator_case(
        "e2e_header_cursor",
        r#"{ path = "/v1/header-cursor", params = { limit = 40 }, data_selector = "data", paginator = { type = "header_cursor", cursor_key = "next", cursor_param = "cursor" } }"#,
        8.0,
    )
}

#[test]
fn auto_detected_paginators() -> Result<()> {
    let stand = Stand::start()?;
    // Four endpoints in one run, each into its own table, with `paginator = "auto"` and no
    // data selector.
    let resources = [
        (
            "auto_paged",
            "page_number",
            r#"{ path = "/v1/paged", params = { per_page = 40 }, paginator = "auto" }"#,
        ),
        (
            "auto_linked",
            "json_link",
            r#"{ path = "/v1/linked", params = { limit = 40 }, paginator = "auto" }"#,
        ),
        (
            "auto_header_linked",
            "header_link",
            r#"{ path = "/v1/header-linked", params = { per_page = 40 }, paginator = "auto" }"#,
        ),
        (
            "auto_cursor",
            "cursor",
            r#"{ path = "/v1/cursor", params = { limit = 40 }, paginator = "auto" }"#,
        ),
    ];
    let pairs: Vec<(&str, &str)> = resources.iter().map(|(n, _, e)| (*n, *e)).collect();
    let pipeline = stand.pipeline("e2e_auto", QUERY_KEY, &pairs)?;
    let runs = extract_and_load(&pipeline, resources.len(), &[])?;
    let stderr = strip_ansi(&runs.stderr());
    for (name, kind, _) in resources {
        assert_eq!(runs.pages(name), Some(8.0), "{name}: {}", runs.stdout());
        let detected = stderr
            .lines()
            .find(|l| l.contains("paginator detected") && l.contains(&format!("resource={name}")))
            .with_context(|| format!("{name}: no detection logged:\n{stderr}"))?;
        assert!(
            detected.contains(&format!("paginator=\"{kind}\"")),
            "{name}: {detected}"
        );
        assert_table_equals_api(&pipeline, name, &stand.api)?;
    }
    Ok(())
}

/// `text` without ANSI colour sequences (the extractor's log is coloured).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('\x1b') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find('m').map_or(after.len(), |i| i + 1);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn a_next_link_that_never_changes_stops_with_no_progress() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_stuck",
        QUERY_KEY,
        &[(
            "messages",
            r#"{ path = "/v1/stuck", data_selector = "data", paginator = { type = "json_link", next_url_path = "next" } }"#,
        )],
    )?;
    let out = run(pipeline.extractor()?, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run must fail: {stderr}");
    assert!(
        stderr.contains("resource `messages`, page 2")
            && stderr.contains("json_link paginator made no progress")
            && stderr.contains("same next link"),
        "{stderr}"
    );
    // Two requests: the first page and the link once; it is not requested a third time.
    let stats = stand.stats()?;
    assert_eq!(stats["requests"], 2, "{stats}");
    assert!(!stderr.contains(API_KEY));
    Ok(())
}

/// One resource of `/v1/resource`'s pages at `path`, behind `auth`.
fn auth_endpoint(path: &str) -> String {
    format!(
        r#"{{ path = "{path}", data_selector = "data", paginator = {{ type = "offset", limit = 100, total_path = "total" }} }}"#
    )
}

/// The `client.auth` table and endpoint path of each scheme, with the env vars holding its
/// secrets (`secret` stands for the value under test).
fn auth_cases(api: &DemoApi) -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("api_key_query", QUERY_KEY.to_owned(), "/v1/resource"),
        (
            "api_key_header",
            r#"{ type = "api_key", name = "X-API-Key", api_key = { secret = "api_key" }, location = "header" }"#.to_owned(),
            "/v1/auth/header",
        ),
        (
            "api_key_cookie",
            r#"{ type = "api_key", name = "api_key", api_key = { secret = "api_key" }, location = "cookie" }"#.to_owned(),
            "/v1/auth/cookie",
        ),
        (
            "bearer",
            r#"{ type = "bearer", token = { secret = "api_key" } }"#.to_owned(),
            "/v1/auth/bearer",
        ),
        (
            "http_basic",
            r#"{ type = "http_basic", username = "demo", password = { secret = "api_key" } }"#.to_owned(),
            "/v1/auth/basic",
        ),
        (
            "oauth2",
            format!(
                r#"{{ type = "oauth2_client_credentials", access_token_url = "{}/oauth/token", client_id = {{ secret = "client_id" }}, client_secret = {{ secret = "api_key" }}, access_token_request_data = {{ scope = "read" }} }}"#,
                api.url
            ),
            "/v1/auth/oauth2",
        ),
    ]
}

/// The scheme `name` end to end with the right credentials: 3 pages, every record.
fn auth_case(name: &str) -> Result<()> {
    let stand = Stand::start()?;
    let (_, auth, path) = auth_cases(&stand.api)
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .context("no such case")?;
    let pipeline = stand.pipeline(
        &format!("e2e_{name}"),
        &auth,
        &[("messages", &auth_endpoint(path))],
    )?;
    let runs = extract_and_load(&pipeline, 1, &[("CLIENT_ID", CLIENT_ID)])?;
    assert_eq!(runs.pages("messages"), Some(3.0), "{}", runs.stdout());
    assert_table_equals_api(&pipeline, "messages", &stand.api)?;
    runs.assert_hides(&[API_KEY]);
    // Every page went to the scheme's endpoint and was accepted.
    let stats = stand.stats()?;
    let log = stats["log"].as_array().context("log")?;
    assert_eq!(log.len(), 3, "{stats}");
    let endpoint = (path != "/v1/resource").then_some(path);
    assert!(
        log.iter()
            .all(|e| e["status"] == 200 && e["endpoint"].as_str() == endpoint),
        "{stats}"
    );
    Ok(())
}

#[test]
fn api_key_in_the_query() -> Result<()> {
    auth_case("api_key_query")
}

#[test]
fn api_key_in_a_header() -> Result<()> {
    auth_case("api_key_header")
}

#[test]
fn api_key_in_a_cookie() -> Result<()> {
    auth_case("api_key_cookie")
}

#[test]
fn bearer_token() -> Result<()> {
    auth_case("bearer")
}

#[test]
fn http_basic() -> Result<()> {
    auth_case("http_basic")
}

/// The token requests and refused API requests the demo API logged since the last
/// call; resets its stats.
fn oauth_counts(stand: &Stand) -> Result<(u64, usize)> {
    let stats = stand.stats()?;
    let _ = stand.api.post("/admin/reset-stats", json!(null))?;
    let tokens = stats["token_requests"].as_u64().context("token_requests")?;
    let refused = stats["log"]
        .as_array()
        .context("log")?
        .iter()
        .filter(|e| e["endpoint"] == "/v1/auth/oauth2" && e["status"] == 401)
        .count();
    Ok((tokens, refused))
}

#[test]
fn oauth2_client_credentials_caches_and_refreshes_the_token() -> Result<()> {
    let stand = Stand::start()?;
    let (_, auth, path) = auth_cases(&stand.api)
        .into_iter()
        .find(|(n, _, _)| *n == "oauth2")
        .context("no oauth2 case")?;
    let pipeline = stand.pipeline("e2e_oauth2", &auth, &[("messages", &auth_endpoint(path))])?;
    // Sequential paging, so the counts below are exact: with pages in flight together,
    // each request holding the revoked token is refused (the new token is still fetched once).
    let env = [
        ("CLIENT_ID", CLIENT_ID),
        ("RUST_LOG", "trace"),
        ("EXTRACTOR_PAGE_CONCURRENCY", "1"),
    ];
    let token_in = |runs: &Runs| {
        let text = format!("{}{}", runs.stdout(), runs.stderr());
        text.contains("demo-token-") || text.contains(CLIENT_ID) || text.contains(API_KEY)
    };

    // One token serves all three pages.
    let runs = extract_and_load(&pipeline, 1, &env)?;
    assert_eq!(runs.pages("messages"), Some(3.0), "{}", runs.stdout());
    assert_eq!(
        oauth_counts(&stand)?,
        (1, 0),
        "one token request, no refusal"
    );
    assert!(
        !token_in(&runs),
        "a token or client secret leaked at trace level"
    );
    assert_table_equals_api(&pipeline, "messages", &stand.api)?;

    // The API revokes the token after one page: the second page is refused once, the
    // extractor fetches a new token and the retry succeeds.
    let _ = stand
        .api
        .post("/admin/oauth", json!({"revoke_after_requests": 1}))?;
    let runs = extract_and_load(&pipeline, 1, &env)?;
    assert_eq!(runs.pages("messages"), Some(3.0), "{}", runs.stdout());
    assert_eq!(oauth_counts(&stand)?, (2, 1), "one refusal, one new token");
    assert!(
        runs.stderr().contains("the API refused the OAuth2 token"),
        "{}",
        runs.stderr()
    );
    assert!(
        !token_in(&runs),
        "a token or client secret leaked at trace level"
    );
    assert_table_equals_api(&pipeline, "messages", &stand.api)?;

    // Without `expires_in` the config's default_token_expiration (1 s) applies: six pages
    // that take 250 ms each need a second token, fetched before the first one runs out
    // (the API would still accept it: nothing is refused).
    let _ = stand
        .api
        .post("/admin/oauth", json!({"omit_expires_in": true}))?;
    let _ = stand.api.post("/admin/state", json!({"latency_ms": 250}))?;
    let short = format!(
        "{}, default_token_expiration = 1 }}",
        auth.strip_suffix(" }").context("auth table")?
    );
    let short_lived = stand.pipeline(
        "e2e_oauth2_short",
        &short,
        &[(
            "messages",
            r#"{ path = "/v1/auth/oauth2", data_selector = "data", paginator = { type = "offset", limit = 50, total_path = "total" } }"#,
        )],
    )?;
    let runs = extract_and_load(&short_lived, 1, &env)?;
    assert_eq!(runs.pages("messages"), Some(6.0), "{}", runs.stdout());
    let (tokens, refused) = oauth_counts(&stand)?;
    assert!(
        tokens >= 2,
        "{tokens} token request(s) in a 1.5 s run of 1 s tokens"
    );
    assert_eq!(refused, 0);
    assert_table_equals_api(&short_lived, "messages", &stand.api)?;
    Ok(())
}

#[test]
fn wrong_credentials_fail_clearly_for_every_scheme_without_leaking() -> Result<()> {
    let stand = Stand::start()?;
    let wrong = "wrong-secret-5d0c93aa";
    for (name, auth, path) in auth_cases(&stand.api) {
        let pipeline = stand.pipeline(
            &format!("e2e_wrong_{name}"),
            &auth,
            &[("messages", &auth_endpoint(path))],
        )?;
        let mut cmd = pipeline.extractor()?;
        let _ = cmd
            .env("API_KEY", wrong)
            .env("CLIENT_ID", CLIENT_ID)
            .env("RUST_LOG", "debug");
        let out = run(cmd, RUN)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: the run must fail: {stderr}");
        let expected = if name == "oauth2" {
            "answered HTTP 401: {\"error\":\"invalid_client\"}"
        } else {
            "HTTP 401 after 1 attempt(s): {\"error\":\"invalid api key\"}"
        };
        let error = stderr
            .lines()
            .find(|l| l.starts_with("extractor: error:"))
            .with_context(|| format!("{name}: no error line:\n{stderr}"))?;
        assert!(
            error.contains("resource `messages`") && error.contains(expected),
            "{name}: {error}"
        );
        for text in [&stdout, &stderr] {
            assert!(!text.contains(wrong), "{name}: the wrong secret leaked");
            assert!(!text.contains(API_KEY), "{name}: the real key leaked");
        }
    }
    // No page was accepted and no token was issued.
    let stats = stand.stats()?;
    assert_eq!(stats["token_requests"], 1, "{stats}");
    assert!(
        stats["log"]
            .as_array()
            .context("log")?
            .iter()
            .all(|e| e["status"] == 401),
        "{stats}"
    );
    Ok(())
}
