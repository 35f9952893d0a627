//! Rate limits both ways: the extractor halves its page concurrency when the API answers
//! 429 Too Many Requests (and still loads every record), keeps to `--max-rps`, pages
//! `page_number` endpoints in parallel once the first page gives the total, and runs at most
//! `--resource-concurrency` resources at a time.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use e2e::{Broker, DemoApi, Pipeline, figure, run_ok};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(180);
const QUERY_KEY: &str = r#"{ type = "api_key", name = "api_key", api_key = { secret = "api_key" }, location = "query" }"#;

/// `(id, channel, body, city, external_ref)` of every row of `table`, by id.
fn rows(pipeline: &Pipeline, table: &str) -> Result<Vec<Value>> {
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare(&format!(
        "SELECT id, channel, body, sender__address__city, external_ref FROM \"{table}\" ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(json!([
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ]))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The same fields of the API's records, by id.
fn api_rows(api: &DemoApi) -> Result<Vec<Value>> {
    let mut records: Vec<Value> = api
        .records()?
        .iter()
        .map(|r| {
            json!([
                r["id"],
                r["channel"],
                r["body"],
                r["sender"]["address"]["city"],
                r["external_ref"]
            ])
        })
        .collect();
    records.sort_by_key(|r| r[0].as_i64());
    Ok(records)
}

fn load(pipeline: &Pipeline) -> Result<()> {
    let mut load = pipeline.loader()?;
    let _ = load.arg("--until-caught-up");
    let _ = run_ok(load, RUN)?;
    Ok(())
}

/// A config with one resource per `(name, endpoint)` (inline TOML tables) and `client`
/// lines added to `[client]`.
fn pipeline(
    broker: &Broker,
    api: &DemoApi,
    name: &str,
    client: &str,
    resources: &[(&str, &str)],
) -> Result<Pipeline> {
    let mut text = format!(
        "[client]\nbase_url = \"{}\"\nauth = {QUERY_KEY}\n{client}\n\n\
         [resource_defaults]\nprimary_key = \"id\"\nwrite_disposition = \"merge\"\n",
        api.url
    );
    for (resource, endpoint) in resources {
        text.push_str(&format!(
            "\n[[resources]]\nname = \"{resource}\"\ntopic = \"{name}.{resource}\"\nendpoint = {endpoint}\n"
        ));
    }
    Pipeline::with_config(broker, name, &text)
}

const OFFSET_ENDPOINT: &str = r#"{ path = "/v1/resource", data_selector = "data", paginator = { type = "offset", limit = 100 } }"#;
const PAGED_ENDPOINT: &str = r#"{ path = "/v1/paged", params = { per_page = 100 }, data_selector = "data", paginator = { type = "page_number", base_page = 1, total_path = "total_pages" } }"#;

#[test]
fn a_429_over_three_in_flight_lowers_the_concurrency_and_every_record_lands() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(5000, &["--latency-ms", "100"])?;
    let throttle = api.post(
        "/admin/throttle",
        json!({"max_in_flight": 3, "retry_after": "0"}),
    )?;
    assert_eq!(throttle["max_in_flight"], 3);
    let _ = api.post("/admin/reset-stats", json!({}))?;

    let p = pipeline(
        &broker,
        &api,
        "e2e_429",
        "",
        &[("communications_data", OFFSET_ENDPOINT)],
    )?;
    let mut extract = p.extractor()?;
    let _ = extract.args(["--page-concurrency", "8"]);
    let out = run_ok(extract, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(figure(&stdout, "total", "pages"), Some(50.0), "{stdout}");
    assert_eq!(
        figure(&stdout, "total", "records"),
        Some(5000.0),
        "{stdout}"
    );

    // The API refused some requests, and the extractor saw each refusal and reacted.
    let throttled = api.get("/admin/throttle")?["throttled"]
        .as_u64()
        .unwrap_or_default();
    assert!(throttled > 0, "the API never answered 429:\n{stderr}");
    assert_eq!(
        figure(&stdout, "total", "throttled"),
        Some(throttled as f64),
        "the extractor counts every 429 the API sent\n{stdout}"
    );
    assert!(
        stderr.contains("lowering the page concurrency from 8 to 4"),
        "no log line says the concurrency was lowered:\n{stderr}"
    );
    // The retries of refused requests came after the limit dropped: far fewer 429s than
    // requests (5 of every 8 would be refused at a steady 8 in flight).
    let requests = api.get("/admin/stats")?["requests"]
        .as_u64()
        .unwrap_or_default();
    assert_eq!(
        requests,
        50 + throttled,
        "one success per page plus the refusals"
    );
    assert!(
        throttled * 4 < requests,
        "{throttled} of {requests} requests refused: the concurrency did not adapt"
    );
    // The summary table on stderr has the resource's row.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("communications_data") && l.contains("e2e_429.")),
        "no summary row:\n{stderr}"
    );

    load(&p)?;
    let expected = api_rows(&api)?;
    assert_eq!(expected.len(), 5000);
    let loaded = rows(&p, "communications_data")?;
    ensure!(loaded.len() == expected.len(), "{} rows", loaded.len());
    assert_eq!(loaded, expected);
    Ok(())
}

#[test]
fn max_rps_spaces_the_requests() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(6000, &[])?;
    let _ = api.post("/admin/throttle", json!({}))?;
    // The config allows 1000/s; the command line's 50/s wins.
    let p = pipeline(
        &broker,
        &api,
        "e2e_rps",
        "max_requests_per_second = 1000",
        &[("communications_data", OFFSET_ENDPOINT)],
    )?;
    let mut extract = p.extractor()?;
    let _ = extract.args(["--max-rps", "50", "--page-concurrency", "8"]);
    let started = Instant::now();
    let out = run_ok(extract, RUN)?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(figure(&stdout, "total", "pages"), Some(60.0), "{stdout}");

    let stats = api.get("/admin/throttle")?;
    assert_eq!(stats["arrivals"], 60, "{stats}");
    // One request every 20 ms: 59 gaps between the first and the last.
    let span_ms = stats["arrival_span_ms"].as_f64().unwrap_or_default();
    assert!(
        span_ms >= 1100.0,
        "60 requests at 50/s arrived within {span_ms} ms"
    );
    assert!(elapsed >= Duration::from_millis(1100), "{elapsed:?}");
    // No second holds more than the limit (plus one for where the window falls).
    let busiest = stats["max_arrivals_per_second"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        busiest <= 51,
        "{busiest} requests within one second at 50/s"
    );

    // A bad --max-rps is refused before anything runs.
    let mut bad = p.extractor()?;
    let _ = bad.args(["--max-rps", "0"]);
    let out = e2e::run(bad, RUN)?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--max-rps") && stderr.contains("not a number of requests per second"),
        "{stderr}"
    );
    Ok(())
}

/// Extracts `p` with `args` and loads it; returns the API's peak of requests in flight and
/// the `/v1/paged` pages requested, in order.
fn paged_run(api: &DemoApi, p: &Pipeline, args: &[&str]) -> Result<(u64, Vec<u64>)> {
    let _ = api.post("/admin/reset-stats", json!({}))?;
    let mut extract = p.extractor()?;
    let _ = extract.args(args);
    let out = run_ok(extract, RUN)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(figure(&stdout, "total", "pages"), Some(25.0), "{stdout}");
    assert_eq!(
        figure(&stdout, "total", "records"),
        Some(2500.0),
        "{stdout}"
    );
    let stats = api.get("/admin/stats")?;
    let mut offsets: Vec<u64> = stats["log"]
        .as_array()
        .map(|log| {
            log.iter()
                .filter(|e| e["endpoint"] == "/v1/paged")
                .filter_map(|e| e["offset"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    offsets.sort_unstable();
    load(p)?;
    Ok((
        stats["peak_in_flight"].as_u64().unwrap_or_default(),
        offsets,
    ))
}

#[test]
fn page_number_pages_in_parallel_within_the_bound() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(2500, &["--latency-ms", "20"])?;
    let every_page: Vec<u64> = (0..25).map(|p| p * 100).collect();

    let sequential = pipeline(
        &broker,
        &api,
        "e2e_pn_seq",
        "",
        &[("messages", PAGED_ENDPOINT)],
    )?;
    let (peak, pages) = paged_run(&api, &sequential, &["--page-concurrency", "1"])?;
    assert_eq!(peak, 1, "sequential paging has one request in flight");
    assert_eq!(pages, every_page);

    let parallel = pipeline(
        &broker,
        &api,
        "e2e_pn_par",
        "",
        &[("messages", PAGED_ENDPOINT)],
    )?;
    let (peak, pages) = paged_run(&api, &parallel, &["--page-concurrency", "4"])?;
    assert!(
        (2..=4).contains(&peak),
        "with --page-concurrency 4 the API saw a peak of {peak} requests in flight"
    );
    assert_eq!(pages, every_page, "each page requested once");

    let expected = rows(&sequential, "messages")?;
    assert_eq!(expected, api_rows(&api)?);
    assert_eq!(rows(&parallel, "messages")?, expected);
    Ok(())
}

#[test]
fn resource_concurrency_bounds_the_resources_in_flight() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(1000, &["--latency-ms", "40"])?;
    let resources = [
        ("r1", OFFSET_ENDPOINT),
        ("r2", OFFSET_ENDPOINT),
        ("r3", OFFSET_ENDPOINT),
    ];
    for (bound, peak_range) in [("1", 1..=1), ("2", 2..=2)] {
        let p = pipeline(&broker, &api, &format!("e2e_rc{bound}"), "", &resources)?;
        let _ = api.post("/admin/reset-stats", json!({}))?;
        let mut extract = p.extractor()?;
        let _ = extract.args(["--page-concurrency", "1", "--resource-concurrency", bound]);
        let out = run_ok(extract, RUN)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(figure(&stdout, "total", "pages"), Some(30.0), "{stdout}");
        // Reports come in config order whatever order the resources finished in.
        let order: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("resource="))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(order, ["r1", "r2", "r3"], "{stdout}");
        let peak = api.get("/admin/stats")?["peak_in_flight"]
            .as_u64()
            .unwrap_or_default();
        assert!(
            peak_range.contains(&peak),
            "--resource-concurrency {bound}: the API saw {peak} requests in flight"
        );
    }
    Ok(())
}
