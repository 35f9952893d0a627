//! The demo API's unit tests: its routes served in-process (tower's `oneshot`).

use std::time::Instant;

use serde_json::Value;

use super::*;

const KEY: &str = "s3cret-key-xyz";

struct Server {
    base: String,
    client: reqwest::Client,
}

impl Server {
    async fn start(settings: Settings) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(KEY.parse().unwrap(), settings);
        drop(tokio::spawn(serve(listener, state, std::future::pending())));
        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
        }
    }

    async fn resource(&self, query: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .get(format!("{}/v1/resource", self.base))
            .query(query)
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, offset: u64, limit: u64) -> Value {
        let (o, l) = (offset.to_string(), limit.to_string());
        let r = self
            .resource(&[("api_key", KEY), ("offset", &o), ("limit", &l)])
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn stats(&self) -> Value {
        self.get_json("/admin/stats").await
    }
}

fn settings(records: u64) -> Settings {
    Settings {
        records,
        ..Settings::default()
    }
}

#[tokio::test]
async fn pages_cover_the_set_and_stop_past_the_end() {
    let server = Server::start(settings(250)).await;
    let mut ids = Vec::new();
    for (offset, len) in [(0, 100), (100, 100), (200, 50), (250, 0), (1_000_000, 0)] {
        let body = server.page(offset, 100).await;
        assert_eq!(body["total"], 250);
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), len, "offset {offset}");
        for (k, r) in data.iter().enumerate() {
            assert_eq!(*r, record(offset + k as u64, 0, 10, 250));
            ids.push(r["id"].as_u64().unwrap());
        }
    }
    assert_eq!(ids, (1..=250).collect::<Vec<_>>());

    // Defaults: offset 0, limit 100.
    let body: Value = server
        .resource(&[("api_key", KEY)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 100);
    assert_eq!(body["data"][0]["id"], 1);
    assert_eq!(
        server.page(0, 1000).await["data"].as_array().unwrap().len(),
        250
    );
    assert_eq!(server.page(10, 0).await["data"], json!([]));
}

#[tokio::test]
async fn wrong_or_missing_key_is_401_without_echo() {
    let server = Server::start(settings(10)).await;
    for query in [
        vec![("api_key", "wrong-key-abc")],
        vec![],
        vec![("api_key", "")],
        vec![("API_KEY", KEY)],
    ] {
        let r = server.resource(&query).await;
        assert_eq!(r.status(), 401, "{query:?}");
        let text = r.text().await.unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"error": "invalid api key"})
        );
        assert!(!text.contains("wrong-key-abc") && !text.contains(KEY));
    }
}

#[tokio::test]
async fn bad_parameters_are_400() {
    let server = Server::start(settings(10)).await;
    for (name, value) in [
        ("offset", "abc"),
        ("offset", "-1"),
        ("offset", ""),
        ("limit", "-5"),
        ("limit", "1.5"),
        ("limit", "1001"),
        ("limit", "99999999999999999999999"),
    ] {
        let r = server.resource(&[("api_key", KEY), (name, value)]).await;
        assert_eq!(r.status(), 400, "{name}={value}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    assert_eq!(server.page(0, 1000).await["total"], 10);
}

#[tokio::test]
async fn faults_are_served_in_order_before_the_key_check() {
    let server = Server::start(settings(10)).await;
    let r = server
        .post(
            "/admin/faults",
            json!([{"status": 429, "count": 2, "retry_after": "1"},
                   {"status": 503, "count": 1},
                   {"status": 500, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"}]),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"pending": 4}));

    let expected = [
        (429, Some("1")),
        (429, Some("1")),
        (503, None),
        (500, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
    ];
    for (n, (status, retry_after)) in expected.into_iter().enumerate() {
        // The second request carries a wrong key: faults still come first.
        let key = if n == 1 { "wrong" } else { KEY };
        let r = server.resource(&[("api_key", key)]).await;
        assert_eq!(r.status(), status, "request {n}");
        let header = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header.as_deref(), retry_after, "request {n}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "injected fault"})
        );
    }
    assert_eq!(server.resource(&[("api_key", KEY)]).await.status(), 200);
    let stats = server.stats().await;
    assert_eq!(stats["faults_served"], 4);
    assert_eq!(stats["requests"], 5);
    let statuses: Vec<_> = stats["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].clone())
        .collect();
    assert_eq!(statuses, [429, 429, 503, 500, 200].map(Value::from));
}

#[tokio::test]
async fn invalid_fault_steps_are_rejected() {
    let server = Server::start(settings(10)).await;
    for body in [
        json!([{"status": 1000}]),
        json!([{"status": 500, "count": 0}]),
        json!([{"status": 500, "retry_after": "bad\nvalue"}]),
        json!([{"status": 500, "bogus": 1}]),
        json!({"status": 500}),
    ] {
        let r = server.post("/admin/faults", body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
    }
    assert_eq!(server.resource(&[("api_key", KEY)]).await.status(), 200);
}

#[tokio::test]
async fn status_zero_drops_the_connection() {
    let server = Server::start(settings(10)).await;
    let _ = server
        .post("/admin/faults", json!([{"status": 0, "count": 1}]))
        .await;
    let started = Instant::now();
    let url = format!("{}/v1/resource", server.base);
    let result = server
        .client
        .get(url)
        .query(&[("api_key", KEY)])
        .send()
        .await;
    assert!(
        result.is_err(),
        "expected a transport error, got {result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    assert_eq!(server.resource(&[("api_key", KEY)]).await.status(), 200);
    let stats = server.stats().await;
    assert_eq!(stats["faults_served"], 1);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(
        stats["log"][0],
        json!({"offset": 0, "limit": 100, "status": 0})
    );
}

#[tokio::test]
async fn revision_changes_exactly_the_changed_subset() {
    let server = Server::start(settings(1000)).await;
    let before = server.get_json("/admin/records").await;
    let r = server.post("/admin/state", json!({"revision": 3})).await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"records": 1000, "revision": 3, "changed_percent": 10, "latency_ms": 0, "max_limit": 1000, "drift_from": null, "huge_body_of": null})
    );
    let after = server.get_json("/admin/records").await;
    let (before, after) = (before.as_array().unwrap(), after.as_array().unwrap());
    assert_eq!((before.len(), after.len()), (1000, 1000));

    let differing: Vec<u64> = (0..1000)
        .filter(|&i| before[i as usize] != after[i as usize])
        .collect();
    let expected: Vec<u64> = (0..1000).filter(|&i| (i * 37) % 100 < 10).collect();
    assert_eq!(differing, expected);
    assert_eq!(differing.len(), 100);
    for &i in &differing {
        let (b, a) = (&before[i as usize], &after[i as usize]);
        assert_ne!(b["status"], a["status"]);
        assert_ne!(b["updated_at"], a["updated_at"]);
        assert_eq!(b["created_at"], a["created_at"]);
        assert!(a["body"].as_str().unwrap().ends_with(" (rev 3)"));
        assert_eq!(b["id"], a["id"]);
    }
    // Pages agree with the full set.
    assert_eq!(server.page(900, 100).await["data"], json!(after[900..]));
}

#[tokio::test]
async fn last_external_ref_is_i64_max_in_the_raw_text() {
    let server = Server::start(settings(500)).await;
    let r = server
        .resource(&[("api_key", KEY), ("offset", "498"), ("limit", "5")])
        .await;
    let text = r.text().await.unwrap();
    assert!(
        text.contains("\"external_ref\":9223372036854775807"),
        "{text}"
    );
    assert!(text.contains("\"external_ref\":9007199254741491"), "{text}");
    let raw = reqwest::get(format!("{}/admin/records", server.base))
        .await
        .unwrap();
    let raw = raw.text().await.unwrap();
    let all: Vec<serde_json::Value> = serde_json::from_str(&raw).unwrap();
    let last = all.last().unwrap();
    assert_eq!(last["id"], 500);
    assert_eq!(last["external_ref"].as_i64(), Some(i64::MAX));
    assert!(raw.contains("\"external_ref\":9223372036854775807"));
}

#[tokio::test]
async fn throttle_refuses_requests_over_the_in_flight_limit_at_once() {
    let server = Server::start(Settings {
        latency_ms: 1500,
        ..settings(100)
    })
    .await;
    let r = server
        .post("/admin/throttle", json!({"max_in_flight": 2}))
        .await;
    assert_eq!(r.status(), 200);
    let client = server.client.clone();
    let url = format!("{}/v1/resource", server.base);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let req = client.get(&url).query(&[("api_key", KEY)]);
            tokio::spawn(async move { req.send().await.map(|r| r.status()) })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().await["in_flight"] != 2 {
        assert!(Instant::now() < deadline, "2 requests never in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for path in ["/v1/resource", "/v1/paged", "/v1/resource"] {
        let started = Instant::now();
        let r = server
            .client
            .get(format!("{}{path}", server.base))
            .query(&[("api_key", KEY)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{path}");
        assert_eq!(r.headers()["retry-after"], "0");
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "a refusal skips the latency"
        );
    }
    for r in slow {
        assert_eq!(r.await.unwrap().unwrap(), 200);
    }
    let stats = server.get_json("/admin/throttle").await;
    assert_eq!(stats["max_in_flight"], 2);
    assert_eq!(stats["throttled"], 3);
    assert_eq!(stats["arrivals"], 5);
    let statuses: Vec<u64> = server.stats().await["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3);

    for bad in [
        json!({"max_in_flight": 0}),
        json!({"max_in_flight": 2, "bogus": 1}),
        json!({"retry_after": "a\nb"}),
    ] {
        let r = server.post("/admin/throttle", bad.clone()).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = server.post("/admin/throttle", json!({})).await;
    let cleared: Value = r.json().await.unwrap();
    assert_eq!(cleared["max_in_flight"], Value::Null);
    assert_eq!(cleared["arrivals"], 0);
}

#[tokio::test]
async fn stats_count_peak_concurrency_and_reset() {
    let server = Server::start(Settings {
        latency_ms: 1500,
        ..settings(100)
    })
    .await;
    let client = server.client.clone();
    let url = format!("{}/v1/resource", server.base);
    let requests: Vec<_> = (0..5)
        .map(|n| {
            let req = client
                .get(&url)
                .query(&[("api_key", KEY), ("offset", &(n * 10).to_string())]);
            tokio::spawn(async move { req.send().await.map(|r| r.status()) })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().await["in_flight"] != 5 {
        assert!(
            Instant::now() < deadline,
            "5 requests never in flight together"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in requests {
        assert_eq!(r.await.unwrap().unwrap(), 200);
    }
    let stats = server.stats().await;
    assert_eq!(stats["requests"], 5);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["peak_in_flight"], 5);
    let mut offsets: Vec<_> = stats["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, [0, 10, 20, 30, 40]);
    assert!(
        stats["log"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["limit"] == 100 && e["status"] == 200)
    );

    let r = server.post("/admin/reset-stats", json!(null)).await;
    assert_eq!(r.status(), 200);
    let stats = server.stats().await;
    assert_eq!(
        stats,
        json!({"requests": 0, "faults_served": 0, "in_flight": 0, "peak_in_flight": 0, "token_requests": 0, "log": []})
    );
}

#[tokio::test]
async fn latency_delays_each_answer() {
    let server = Server::start(Settings {
        latency_ms: 150,
        ..settings(10)
    })
    .await;
    let started = Instant::now();
    assert_eq!(server.resource(&[("api_key", KEY)]).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn admin_state_updates_a_subset_and_validates() {
    let server = Server::start(settings(10)).await;
    let r = server
        .post("/admin/state", json!({"records": 42, "latency_ms": 0}))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["records"], 42);
    assert_eq!(server.page(0, 100).await["total"], 42);
    for body in [
        json!({"changed_percent": 101}),
        json!({"recordz": 1}),
        json!({"records": -1}),
        json!([]),
    ] {
        assert_eq!(
            server.post("/admin/state", body.clone()).await.status(),
            400,
            "{body}"
        );
    }
    let r = server
        .client
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
}

/// Every page of `path` (GET, or POST with the cursor in the body), following the
/// style's own next-page signal; the records in order and the number of pages.
async fn walk(server: &Server, path: &str) -> (Vec<Value>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    let mut next: Option<String> = Some(format!("{}{path}", server.base));
    let mut cursor: Option<String> = None;
    while let Some(url) = next.take() {
        pages += 1;
        assert!(pages < 100, "{path} never ends");
        let req = if path == "/v1/search" {
            let body = json!({"page": {"cursor": cursor, "size": 40}});
            server.client.post(&url).json(&body)
        } else {
            server.client.get(&url)
        };
        let r = req.query(&[("api_key", KEY)]).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let link = r
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let header_cursor = r
            .headers()
            .get("next")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = r.json().await.unwrap();
        all.extend(body["data"].as_array().unwrap().iter().cloned());
        next = match path {
            p if p.starts_with("/v1/paged") => {
                let page = body["page"].as_u64().unwrap();
                (page < body["total_pages"].as_u64().unwrap())
                    .then(|| format!("{}/v1/paged?per_page=40&page={}", server.base, page + 1))
            }
            p if p.starts_with("/v1/linked") => {
                body["next"].as_str().map(|n| format!("{}{n}", server.base))
            }
            p if p.starts_with("/v1/header-linked") => link.and_then(|l| {
                l.split(", ")
                    .find(|part| part.ends_with("rel=\"next\""))
                    .map(|part| part[1..part.find('>').unwrap()].to_owned())
            }),
            p if p.starts_with("/v1/cursor") => body["cursors"]["next"]
                .as_str()
                .map(|c| format!("{}/v1/cursor?limit=40&cursor={c}", server.base)),
            "/v1/search" => {
                cursor = body["cursors"]["next"].as_str().map(str::to_owned);
                cursor.as_ref().map(|_| url.clone())
            }
            p if p.starts_with("/v1/header-cursor") => header_cursor
                .map(|c| format!("{}/v1/header-cursor?limit=40&cursor={c}", server.base)),
            other => panic!("no walker for {other}"),
        };
    }
    (all, pages)
}

#[tokio::test]
async fn every_paging_style_serves_the_same_set() {
    let server = Server::start(settings(250)).await;
    let truth = server.get_json("/admin/records").await;
    for path in [
        "/v1/paged?per_page=40",
        "/v1/linked?limit=40",
        "/v1/header-linked?per_page=40",
        "/v1/cursor?limit=40",
        "/v1/search",
        "/v1/header-cursor?limit=40",
    ] {
        let (records, pages) = walk(&server, path).await;
        assert_eq!(json!(records), truth, "{path}");
        assert_eq!(pages, 7, "{path}: 6 pages of 40 and one of 10");
    }
    let stats = server.stats().await;
    let endpoints: std::collections::BTreeSet<_> = stats["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(endpoints.len(), 6, "{endpoints:?}");
    assert_eq!(stats["requests"], 42);
}

#[tokio::test]
async fn paging_endpoints_check_the_key_and_their_parameters() {
    let server = Server::start(settings(50)).await;
    for path in [
        "/v1/paged",
        "/v1/linked",
        "/v1/header-linked",
        "/v1/cursor",
        "/v1/header-cursor",
        "/v1/stuck",
    ] {
        let url = format!("{}{path}", server.base);
        let r = server
            .client
            .get(&url)
            .query(&[("api_key", "wrong")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = server
        .client
        .post(format!("{}/v1/search", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for (path, query) in [
        ("/v1/paged", ("page", "0")),
        ("/v1/paged", ("per_page", "0")),
        ("/v1/paged", ("per_page", "1001")),
        ("/v1/cursor", ("cursor", "bogus")),
        ("/v1/linked", ("limit", "-1")),
    ] {
        let url = format!("{}{path}", server.base);
        let r = server
            .client
            .get(&url)
            .query(&[("api_key", KEY), query])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path} {query:?}");
    }
    let r = server
        .client
        .post(format!("{}/v1/search", server.base))
        .query(&[("api_key", KEY)])
        .json(&json!({"page": {"cursor": 5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn stuck_returns_the_same_next_link_forever() {
    let server = Server::start(settings(500)).await;
    let mut links = Vec::new();
    let mut url = format!("{}/v1/stuck", server.base);
    for _ in 0..3 {
        let r = server
            .client
            .get(&url)
            .query(&[("api_key", KEY)])
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), 100);
        let next = body["next"].as_str().unwrap().to_owned();
        url = format!("{}{next}", server.base);
        links.push(next);
    }
    assert_eq!(links, vec![links[0].clone(); 3]);
}

#[tokio::test]
async fn each_auth_scheme_takes_only_its_credential() {
    let server = Server::start(settings(30)).await;
    let get = |scheme: &str| {
        server
            .client
            .get(format!("{}/v1/auth/{scheme}", server.base))
    };
    let send = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(!text.contains(KEY) && !text.contains("wrong"), "{text}");
        status
    };
    let cases = [
        (
            "bearer",
            get("bearer").bearer_auth(KEY),
            get("bearer").bearer_auth("wrong"),
        ),
        (
            "header",
            get("header").header("X-API-Key", KEY),
            get("header").header("X-API-Key", "wrong"),
        ),
        (
            "cookie",
            get("cookie").header("Cookie", format!("a=b; api_key={KEY}")),
            get("cookie").header("Cookie", "api_key=wrong"),
        ),
        (
            "basic",
            get("basic").basic_auth(BASIC_USER, Some(KEY)),
            get("basic").basic_auth("wrong", Some(KEY)),
        ),
        (
            "oauth2",
            get("oauth2").bearer_auth("wrong"),
            get("oauth2").bearer_auth(KEY),
        ),
    ];
    for (scheme, good, bad) in cases {
        if scheme != "oauth2" {
            assert_eq!(send(good).await, 200, "{scheme}");
        }
        assert_eq!(send(bad).await, 401, "{scheme}");
        // The query-string key opens none of them.
        assert_eq!(
            send(get(scheme).query(&[("api_key", KEY)])).await,
            401,
            "{scheme}"
        );
    }
    assert_eq!(send(get("nope")).await, 404);
    let body: Value = get("basic")
        .basic_auth(BASIC_USER, Some(KEY))
        .query(&[("offset", "25")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["data"],
        json!([26, 27, 28, 29, 30].map(|i| record(i - 1, 0, 10, 30)))
    );
    let log = server.stats().await["log"].to_string();
    assert!(
        !log.contains(KEY) && log.contains("/v1/auth/cookie"),
        "{log}"
    );
}

#[tokio::test]
async fn oauth_tokens_are_counted_expire_and_can_be_revoked() {
    let server = Server::start(settings(30)).await;
    let token = |secret: &'static str| {
        let client = server.client.clone();
        let url = format!("{}/oauth/token", server.base);
        async move {
            let body = format!(
                "grant_type=client_credentials&client_id={OAUTH_CLIENT_ID}&client_secret={secret}&scope=read"
            );
            client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let call = |t: String| {
        let req = server
            .client
            .get(format!("{}/v1/auth/oauth2", server.base))
            .bearer_auth(t);
        async move { req.send().await.unwrap().status().as_u16() }
    };

    let r = token("wrong").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "invalid_client"})
    );
    let r: Value = token(KEY).await.json().await.unwrap();
    assert_eq!(r["expires_in"], 3600);
    assert_eq!(r["token_type"], "Bearer");
    let first = r["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call(first.clone()).await, 200);

    // Revoked after one more request: the second one is refused, a new token works.
    let _ = server
        .post("/admin/oauth", json!({"revoke_after_requests": 1}))
        .await;
    assert_eq!(call(first.clone()).await, 200);
    assert_eq!(call(first.clone()).await, 401);
    let second: Value = token(KEY).await.json().await.unwrap();
    let second = second["access_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(call(second.clone()).await, 200);

    // Lifetime 0: a token is dead on arrival; `expires_in` can be left out.
    let r = server
        .post(
            "/admin/oauth",
            json!({"token_lifetime_secs": 0, "omit_expires_in": true}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["token_lifetime_secs"], 0);
    let r: Value = token(KEY).await.json().await.unwrap();
    assert!(r.get("expires_in").is_none(), "{r}");
    assert_eq!(
        call(r["access_token"].as_str().unwrap().to_owned()).await,
        401
    );
    let _ = server
        .post("/admin/oauth", json!({"revoke_now": true}))
        .await;
    assert_eq!(call(second).await, 401);

    let stats = server.stats().await;
    assert_eq!(stats["token_requests"], 4);
    let text = stats.to_string();
    assert!(!text.contains(KEY) && !text.contains(&first), "{text}");
    assert_eq!(
        server
            .post("/admin/oauth", json!({"bogus": 1}))
            .await
            .status(),
        400
    );
}

#[test]
fn api_key_never_prints() {
    let key: ApiKey = KEY.parse().unwrap();
    assert_eq!(format!("{key} {key:?}"), "*** ApiKey(***)");
    assert!("".parse::<ApiKey>().is_err());
}

#[test]
fn cli_reads_flags_and_defaults() {
    let args = Args::try_parse_from([
        "demo-api",
        "--api-key",
        "k",
        "--listen",
        "127.0.0.1:0",
        "--records",
        "5",
    ])
    .unwrap();
    assert_eq!(args.listen, "127.0.0.1:0");
    assert_eq!(
        args.settings(),
        Settings {
            records: 5,
            ..Settings::default()
        }
    );
    assert!(
        Args::try_parse_from(["demo-api", "--api-key", "k", "--changed-percent", "101"]).is_err()
    );
}
