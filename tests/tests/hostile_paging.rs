//! APIs that page and answer the way misbehaving third-party APIs do (the demo API's
//! `/hostile/*` endpoints, `demo-api/src/hostile_paging.rs`), end to end: a real broker, the
//! demo API, the extractor and, where the outcome is a load, the loader into SQLite. Each
//! case asserts its outcome: an exact load (the API's ids and bodies, each once), or a
//! non-zero exit whose error names the place (paginator and offset, data_selector and the
//! keys the response has, the URL path), never a panic, never undecoded binary, nothing
//! already published lost; the demo API's request counts (`/hostile/stats`) prove the
//! bounds (an endless API stops after a bounded number of requests, a truncated body is
//! retried, credentials never reach a foreign host). The huge-total cases run the extractor
//! under a 256 MiB limit on its data segment and print its peak RSS.

use std::io::Read;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{API_KEY, Broker, DemoApi, Pipeline, figure, run, run_ok};
use serde_json::Value;

const RUN: Duration = Duration::from_secs(120);
/// The API's records: 250 in pages of 100 is 3 pages, the last one short.
const RECORDS: u64 = 250;
/// The seed's retry schedule (3 retries), scaled down for tests.
const FAST_RETRY: &str = "retry = { initial_delay = 0.05, max_delay = 0.5, retry_after_max = 1.0 }";
const QUERY_KEY: &str = r#"{ type = "api_key", name = "api_key", api_key = { secret = "api_key" }, location = "query" }"#;
const HEADER_KEY: &str = r#"{ type = "api_key", name = "X-API-Key", api_key = { secret = "api_key" }, location = "header" }"#;
/// The memory the huge-total runs may use: RLIMIT_DATA of the extractor process.
const MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
/// The extractor's default `--page-concurrency`.
const PAGE_CONCURRENCY: u64 = 8;

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

    /// A pipeline `name` with the query-string key and one resource, `items` (topic
    /// `<name>.items`), at `endpoint` (an inline TOML table); `extra_client` lines are added
    /// to `[client]`.
    fn pipeline(&self, name: &str, endpoint: &str, extra_client: &str) -> Result<Pipeline> {
        self.pipeline_with_auth(name, QUERY_KEY, endpoint, extra_client)
    }

    fn pipeline_with_auth(
        &self,
        name: &str,
        auth: &str,
        endpoint: &str,
        extra_client: &str,
    ) -> Result<Pipeline> {
        let text = format!(
            "[client]\nbase_url = \"{url}\"\nauth = {auth}\n{FAST_RETRY}\n{extra_client}\n\n\
             [resource_defaults]\nprimary_key = \"id\"\nwrite_disposition = \"merge\"\n\n\
             [[resources]]\nname = \"items\"\ntopic = \"{name}.items\"\nendpoint = {endpoint}\n",
            url = self.api.url,
        );
        Pipeline::with_config(&self.broker, name, &text)
    }

    fn stats(&self) -> Result<Value> {
        self.api.get("/hostile/stats")
    }

    /// Requests the hostile `endpoint` has answered (redirects and refusals included).
    fn requests(&self, endpoint: &str) -> Result<u64> {
        Ok(self.stats()?["requests"][endpoint].as_u64().unwrap_or(0))
    }

    /// Requests that arrived under the foreign host name: `(endpoint, key sent)`.
    fn foreign_visits(&self) -> Result<Vec<(String, bool)>> {
        let stats = self.stats()?;
        let visits = stats["foreign"].as_array().context("foreign")?;
        Ok(visits
            .iter()
            .map(|v| {
                (
                    v["path"].as_str().unwrap_or_default().to_owned(),
                    v["key_sent"].as_bool().unwrap_or(false),
                )
            })
            .collect())
    }
}

/// One extractor run, whatever its exit status.
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn from(out: &Output) -> Self {
        Self {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// What every run must hold: no panic, no key in the output, no undecoded binary.
    fn sane(&self) -> Result<()> {
        let text = format!("{}{}", self.stdout, self.stderr);
        ensure!(!text.contains("panicked"), "a panic:\n{}", self.stderr);
        ensure!(
            !text.contains(API_KEY),
            "the API key leaked into the output"
        );
        ensure!(
            !text.contains('\u{fffd}')
                && !text
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')),
            "binary in the output:\n{}",
            e2e::tail(&self.stderr, 5)
        );
        Ok(())
    }

    /// The run succeeded and published `records` records.
    fn loaded(&self, records: u64) -> Result<()> {
        self.sane()?;
        ensure!(
            self.status.success(),
            "exit {:?}\n{}",
            self.status.code(),
            e2e::tail(&self.stderr, 20)
        );
        let published = figure(&self.stdout, "total", "records");
        ensure!(
            published == Some(records as f64),
            "published {published:?}, expected {records}:\n{}",
            self.stdout
        );
        Ok(())
    }

    /// The run failed with an exit code (not a signal: no abort, no crash) and its error
    /// (the last line of stderr) says each of `needles`.
    fn failed_saying(&self, needles: &[&str]) -> Result<String> {
        self.sane()?;
        ensure!(
            !self.status.success() && self.status.code().is_some(),
            "the run must fail with an exit code, it ended with {:?}:\n{}",
            self.status,
            e2e::tail(&self.stderr, 20)
        );
        let error = self
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("extractor: error:"))
            .with_context(|| format!("no error line in:\n{}", e2e::tail(&self.stderr, 20)))?
            .to_owned();
        for needle in needles {
            ensure!(
                error.contains(needle),
                "the error lacks `{needle}`: {error}"
            );
        }
        // One line, the last: a body in the error cannot add lines of its own.
        ensure!(
            self.stderr.trim_end().ends_with(error.trim_end()),
            "lines after the error:\n{}",
            e2e::tail(&self.stderr, 5)
        );
        eprintln!("{error}");
        Ok(error)
    }
}

/// Runs the extractor of `pipeline` with `env` added.
fn extract(pipeline: &Pipeline, env: &[(&str, &str)]) -> Result<Outcome> {
    let mut cmd = pipeline.extractor()?;
    for (k, v) in env {
        let _ = cmd.env(k, v);
    }
    Ok(Outcome::from(&run(cmd, RUN)?))
}

/// Runs the loader until it has caught up and returns the ids in the destination, in order
/// (none when nothing was ever published).
fn load(pipeline: &Pipeline) -> Result<Vec<i64>> {
    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;
    let conn = pipeline.sqlite()?;
    let exists: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'items'",
        [],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare("SELECT id FROM items ORDER BY id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// The destination holds exactly the API's first `n` records: the same ids, each once,
/// with the same bodies.
fn assert_loaded_exactly(pipeline: &Pipeline, api: &DemoApi, n: usize) -> Result<()> {
    let ids = load(pipeline)?;
    let records = api.records()?;
    let expected: Vec<i64> = records
        .iter()
        .take(n)
        .map(|r| r["id"].as_i64().context("id"))
        .collect::<Result<_>>()?;
    ensure!(
        ids == expected,
        "{} rows (ids {:?}..{:?}), expected {} (ids {:?}..{:?})",
        ids.len(),
        ids.first(),
        ids.last(),
        expected.len(),
        expected.first(),
        expected.last()
    );
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare("SELECT body FROM items WHERE id = ?1")?;
    for record in records.iter().take(n) {
        let id = record["id"].as_i64().context("id")?;
        let body: String = stmt.query_row([id], |r| r.get(0))?;
        ensure!(Some(body.as_str()) == record["body"].as_str(), "id {id}");
    }
    Ok(())
}

// --- Huge totals, under a memory limit ------------------------------------------------------

/// Runs `cmd` with its data segment limited to [`MEMORY_LIMIT`] (`prlimit --data`, which
/// execs the command in the same process) and returns its output and its peak RSS in KiB
/// (`VmHWM`, polled while it runs).
///
/// RLIMIT_DATA, not RLIMIT_AS: since Linux 4.7 RLIMIT_DATA counts the private writable
/// mappings (the heap, anonymous mmaps, thread stacks), which is what an oversized page plan
/// allocates. RLIMIT_AS also counts address space that is mapped but not used: the debug
/// binary itself (about 190 MiB, mapped from its file), librdkafka's thread stacks (8 MiB
/// each) and glibc's malloc arenas (64 MiB reserved each); under a 256 MiB RLIMIT_AS a
/// healthy run fails after 30 s with librdkafka's "Unable to create broker thread", even
/// with MALLOC_ARENA_MAX=2. Over RLIMIT_DATA an allocation fails and Rust aborts the
/// process: the extractor from before its page plan was bounded died of a signal on the
/// three huge-claim cases here (peak RSS 234-287 MiB). The peak RSS (VmHWM) includes the
/// binary's resident file pages.
fn run_limited(cmd: &Command, timeout: Duration) -> Result<(Output, u64)> {
    let mut limited = Command::new("prlimit");
    let _ = limited
        .arg(format!("--data={MEMORY_LIMIT}"))
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        let _ = match v {
            Some(v) => limited.env(k, v),
            None => limited.env_remove(k),
        };
    }
    let mut child = limited
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting prlimit (util-linux)")?;
    let pid = child.id();
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut peak_kib = 0;
    let mut limit_seen = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        // Only once prlimit has exec'd the extractor.
        let proc_status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if proc_status.lines().next() == Some("Name:\textractor") {
            if let Some(kib) = proc_status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
            let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
            limit_seen |= limits.lines().any(|l| {
                l.starts_with("Max data size")
                    && l.split_whitespace().nth(3) == Some(&MEMORY_LIMIT.to_string())
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the extractor did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    ensure!(
        limit_seen,
        "the extractor never ran under the limit (status {status}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out, peak_kib))
}

/// An API that claims `claimed` records (or pages) and has [`RECORDS`]: the run, under the
/// memory limit, loads exactly the real records and ends after a bounded number of
/// requests.
fn huge_claim(name: &str, endpoint_name: &str, endpoint: &str, claimed: &str) -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(name, endpoint, "")?;
    let started = Instant::now();
    let (out, peak_kib) = run_limited(&pipeline.extractor()?, RUN)?;
    let outcome = Outcome::from(&out);
    eprintln!(
        "{name}: claimed {claimed}: peak RSS {:.1} MiB ({peak_kib} KiB) under a {} MiB data limit, {:?}",
        peak_kib as f64 / 1024.0,
        MEMORY_LIMIT / 1024 / 1024,
        started.elapsed()
    );
    outcome.loaded(RECORDS)?;
    ensure!(
        peak_kib > 0 && peak_kib * 1024 < MEMORY_LIMIT,
        "peak {peak_kib} KiB"
    );
    // The first page, the two real pages after it, the empty page that ends the paging, and
    // at most the pages in flight behind it.
    let requests = stand.requests(endpoint_name)?;
    eprintln!("{name}: {requests} requests");
    ensure!(
        (4..=4 + 2 * PAGE_CONCURRENCY).contains(&requests),
        "{requests} requests"
    );
    ensure!(
        outcome.stderr.contains("total promised"),
        "the empty page before the claimed total is a warning:\n{}",
        e2e::tail(&outcome.stderr, 10)
    );
    assert_loaded_exactly(&pipeline, &stand.api, RECORDS as usize)
}

#[test]
fn an_offset_total_of_10_pow_12_loads_the_real_records_in_256_mib() -> Result<()> {
    huge_claim(
        "e2e_hp_total_1e12",
        "huge-total",
        r#"{ path = "/hostile/huge-total", params = { claimed_total = "1000000000000" }, data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "10^12",
    )
}

#[test]
fn an_offset_total_of_10_pow_9_loads_the_real_records_in_256_mib() -> Result<()> {
    huge_claim(
        "e2e_hp_total_1e9",
        "huge-total",
        r#"{ path = "/hostile/huge-total", params = { claimed_total = "1000000000" }, data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "10^9",
    )
}

#[test]
fn a_total_of_1e300_saturates_and_loads_the_real_records_in_256_mib() -> Result<()> {
    huge_claim(
        "e2e_hp_total_1e300",
        "huge-total",
        r#"{ path = "/hostile/huge-total", params = { claimed_total = "1e300" }, data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "1e300",
    )
}

#[test]
fn total_pages_of_10_pow_12_load_the_real_records_in_256_mib() -> Result<()> {
    huge_claim(
        "e2e_hp_pages_1e12",
        "huge-pages",
        r#"{ path = "/hostile/huge-pages", params = { page_size = 100, claimed_pages = "1000000000000" }, data_selector = "data", paginator = { type = "page_number", base_page = 1, page_param = "page", total_path = "total_pages" } }"#,
        "10^12 pages",
    )
}

#[test]
fn a_negative_total_fails_naming_total_path_and_the_value() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_total_negative",
        r#"{ path = "/hostile/huge-total", params = { claimed_total = "-5" }, data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`, page 1",
        "/hostile/huge-total",
        "total_path `total` found -5",
    ])?;
    ensure!(stand.requests("huge-total")? == 1);
    Ok(())
}

// --- APIs that ignore the paging parameter, or never end ------------------------------------

#[test]
fn an_api_ignoring_offset_without_a_total_stops_at_the_repeated_page() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_ignores_offset",
        r#"{ path = "/hostile/ignores-offset", data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`, page 2",
        "/hostile/ignores-offset",
        "the offset paginator made no progress",
        "the page at offset 100",
        "ignore `offset`",
    ])?;
    // The first page and its repetition, nothing more.
    ensure!(stand.requests("ignores-offset")? == 2);
    // The first page was published and stays: it loads, once.
    assert_loaded_exactly(&pipeline, &stand.api, 100)
}

#[test]
fn an_api_ignoring_offset_with_a_true_total_stops_at_the_repeated_page() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_ignores_offset_total",
        r#"{ path = "/hostile/ignores-offset", params = { with_total = 1 }, data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`, page 2",
        "the offset paginator made no progress",
        "the page at offset 100",
        "ignore `offset`",
    ])?;
    // The total (250) plans two more pages, fetched concurrently: three requests at most.
    let requests = stand.requests("ignores-offset")?;
    ensure!((2..=3).contains(&requests), "{requests} requests");
    assert_loaded_exactly(&pipeline, &stand.api, 100)
}

#[test]
fn an_api_ignoring_page_stops_at_the_repeated_page() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_ignores_page",
        r#"{ path = "/hostile/ignores-page", params = { page_size = 100 }, data_selector = "data", paginator = { type = "page_number", base_page = 1, page_param = "page" } }"#,
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`, page 2",
        "/hostile/ignores-page",
        "the page_number paginator made no progress",
        "the page at page 2",
        "ignore `page`",
    ])?;
    ensure!(stand.requests("ignores-page")? == 2);
    assert_loaded_exactly(&pipeline, &stand.api, 100)
}

#[test]
fn an_endless_api_ends_at_maximum_offset_as_documented() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_endless_max_offset",
        r#"{ path = "/hostile/endless", data_selector = "data", paginator = { type = "offset", limit = 100, maximum_offset = 500 } }"#,
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    // dlt's rule: the paging ends when the next offset reaches maximum_offset; exit 0.
    outcome.loaded(500)?;
    ensure!(stand.requests("endless")? == 5);
    let ids = load(&pipeline)?;
    ensure!(ids == (1..=500).collect::<Vec<i64>>(), "{} rows", ids.len());
    Ok(())
}

#[test]
fn an_endless_api_stops_at_max_pages_with_an_error_and_keeps_what_was_published() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_endless_max_pages",
        r#"{ path = "/hostile/endless", data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "max_pages = 7",
    )?;
    let outcome = extract(&pipeline, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`, page 7",
        "/hostile/endless",
        "offset=600",
        "the offset paginator has not ended after 7 pages (client.max_pages)",
    ])?;
    // Seven pages were requested, the eighth never was.
    ensure!(stand.requests("endless")? == 7);
    let ids = load(&pipeline)?;
    ensure!(ids == (1..=700).collect::<Vec<i64>>(), "{} rows", ids.len());
    Ok(())
}

// --- What the records are under -------------------------------------------------------------

#[test]
fn a_data_selector_that_finds_nothing_names_the_keys_the_response_has() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_wrong_selector",
        r#"{ path = "/hostile/wrong-selector", data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`, page 1",
        "/hostile/wrong-selector",
        "data_selector `data` finds nothing in the response",
        "the response has the keys `results`, `count`",
    ])?;
    ensure!(stand.requests("wrong-selector")? == 1);
    ensure!(load(&pipeline)?.is_empty());
    Ok(())
}

#[test]
fn data_null_is_an_error_unless_allowed() -> Result<()> {
    let stand = Stand::start()?;
    // `data: null` past the last record, as a Go API sends an empty list.
    let endpoint = |allow: bool| {
        format!(
            r#"{{ path = "/hostile/null-data", data_selector = "data", allow_null_data = {allow}, paginator = {{ type = "offset", limit = 100 }} }}"#
        )
    };
    let strict = stand.pipeline("e2e_hp_null_strict", &endpoint(false), "")?;
    let outcome = extract(&strict, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`, page 4",
        "/hostile/null-data",
        "offset=300",
        "data_selector `data` finds null",
        "allow_null_data = true",
    ])?;
    // The three pages before were published and stay.
    assert_loaded_exactly(&strict, &stand.api, RECORDS as usize)?;

    let allowed = stand.pipeline("e2e_hp_null_allowed", &endpoint(true), "")?;
    let outcome = extract(&allowed, &[])?;
    outcome.loaded(RECORDS)?;
    assert_loaded_exactly(&allowed, &stand.api, RECORDS as usize)?;
    // Four pages each run: three of records and the null that ends them.
    ensure!(stand.requests("null-data")? == 8);
    Ok(())
}

// --- Compressed and binary bodies -----------------------------------------------------------

/// Pages compressed with `encoding` only load exactly; every request offered it and every
/// answer was served with it.
fn compressed(encoding: &str) -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        &format!("e2e_hp_{encoding}"),
        &format!(
            r#"{{ path = "/hostile/compressed/{encoding}", data_selector = "data", paginator = {{ type = "offset", limit = 100 }} }}"#
        ),
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    outcome.loaded(RECORDS)?;
    assert_loaded_exactly(&pipeline, &stand.api, RECORDS as usize)?;
    let stats = stand.stats()?;
    let seen = stats["encodings"].as_array().context("encodings")?;
    ensure!(seen.len() == 3, "{} requests: {stats}", seen.len());
    for request in seen {
        let offered = request["accept_encoding"].as_str().unwrap_or_default();
        ensure!(
            offered.split(',').any(|e| e.trim() == encoding),
            "Accept-Encoding `{offered}` lacks {encoding}"
        );
        ensure!(
            request["content_encoding"] == encoding,
            "served {}",
            request["content_encoding"]
        );
    }
    Ok(())
}

#[test]
fn gzip_pages_load_exactly() -> Result<()> {
    compressed("gzip")
}

/// `client.max_response_bytes` counts the body decompressed: a gzip page of about 4 kB that
/// inflates to about 45 kB fails under a 20 kB limit, once (not retried), naming the URL
/// and the key, without its api_key.
#[test]
fn a_page_over_max_response_bytes_once_decompressed_fails_naming_the_key() -> Result<()> {
    let stand = Stand::start()?;
    let endpoint = "/hostile/compressed/gzip";
    let pipeline = stand.pipeline(
        "e2e_hp_too_large",
        &format!(
            r#"{{ path = "{endpoint}", data_selector = "data", paginator = {{ type = "offset", limit = 100 }} }}"#
        ),
        "max_response_bytes = 20000",
    )?;
    let outcome = extract(&pipeline, &[])?;
    let error = outcome.failed_saying(&[
        &format!("GET {}{endpoint}?", stand.api.url),
        "the response body is larger than 20000 bytes (client.max_response_bytes",
    ])?;
    ensure!(!error.contains(API_KEY), "{error}");
    let served = stand.stats()?["encodings"]
        .as_array()
        .context("encodings")?
        .iter()
        .filter(|r| r["content_encoding"] == "gzip")
        .count();
    ensure!(
        served == 1,
        "{served} gzip answers served: the request was retried"
    );
    Ok(())
}

#[test]
fn deflate_pages_load_exactly() -> Result<()> {
    compressed("deflate")
}

#[test]
fn brotli_pages_load_exactly() -> Result<()> {
    compressed("br")
}

#[test]
fn zstd_pages_load_exactly() -> Result<()> {
    compressed("zstd")
}

#[test]
fn an_undeclared_gzip_body_fails_without_printing_binary() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_binary",
        r#"{ path = "/hostile/binary", data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    // `sane` (in failed_saying) already refuses control characters and U+FFFD.
    let _ = outcome.failed_saying(&[
        "resource `items`: GET",
        "/hostile/binary",
        "the response is not JSON",
        "content-type application/json, 86 bytes",
        "<86 bytes of binary>",
    ])?;
    Ok(())
}

// --- Bodies cut short, slow bodies ----------------------------------------------------------

/// The page at offset 100 is cut short (`mode`) `fail` times, then served whole.
fn truncated_endpoint(mode: &str, fail: u32) -> String {
    format!(
        r#"{{ path = "/hostile/truncated", params = {{ mode = "{mode}", at = 100, fail = {fail} }}, data_selector = "data", paginator = {{ type = "offset", limit = 100 }} }}"#
    )
}

/// A body cut short twice (within the 3 retries) is retried and loads exactly.
fn truncated_retried(mode: &str) -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        &format!("e2e_hp_truncated_{mode}"),
        &truncated_endpoint(mode, 2),
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    outcome.loaded(RECORDS)?;
    let retries = figure(&outcome.stdout, "total", "retries");
    ensure!(
        retries == Some(2.0),
        "retries {retries:?}:\n{}",
        outcome.stdout
    );
    // Three pages, the second three times.
    ensure!(stand.requests("truncated")? == 5);
    assert_loaded_exactly(&pipeline, &stand.api, RECORDS as usize)
}

#[test]
fn a_body_shorter_than_its_content_length_is_retried_and_loads_exactly() -> Result<()> {
    truncated_retried("length")
}

#[test]
fn a_chunked_body_without_its_last_chunk_is_retried_and_loads_exactly() -> Result<()> {
    truncated_retried("chunked")
}

#[test]
fn a_body_cut_short_more_often_than_the_retries_fails_clearly() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_truncated_always",
        &truncated_endpoint("length", 10),
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`: GET",
        "/hostile/truncated",
        "offset=100",
        "reading the response body",
        "after 4 attempt(s)",
    ])?;
    // The first page is published and stays; the third (fetched alongside) is not
    // published past the failed one.
    let ids = load(&pipeline)?;
    ensure!(ids == (1..=100).collect::<Vec<i64>>(), "{} rows", ids.len());
    Ok(())
}

/// The page at offset 100 drips out over 3 s (`fail` times), against a 1 s timeout.
fn drip_endpoint(fail: u32) -> String {
    format!(
        r#"{{ path = "/hostile/drip", params = {{ at = 100, fail = {fail}, drip_ms = 3000 }}, data_selector = "data", paginator = {{ type = "offset", limit = 100 }} }}"#
    )
}

#[test]
fn a_body_slower_than_the_timeout_is_retried_and_loads_exactly() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline("e2e_hp_drip_once", &drip_endpoint(1), "timeout = 1")?;
    let outcome = extract(&pipeline, &[])?;
    outcome.loaded(RECORDS)?;
    ensure!(stand.requests("drip")? == 4);
    assert_loaded_exactly(&pipeline, &stand.api, RECORDS as usize)
}

#[test]
fn a_body_always_slower_than_the_timeout_fails_naming_the_timeout() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline("e2e_hp_drip_always", &drip_endpoint(10), "timeout = 1")?;
    let started = Instant::now();
    let outcome = extract(&pipeline, &[])?;
    let error = outcome.failed_saying(&[
        "resource `items`: GET",
        "/hostile/drip",
        "offset=100",
        "after 4 attempt(s)",
    ])?;
    ensure!(error.contains("timed out"), "{error}");
    // Four attempts of about a second each, not four drips of three.
    ensure!(started.elapsed() < Duration::from_secs(60));
    let ids = load(&pipeline)?;
    ensure!(ids == (1..=100).collect::<Vec<i64>>(), "{} rows", ids.len());
    Ok(())
}

// --- Bodies that are not the JSON they claim ------------------------------------------------

/// The endpoint `path` (hostile `name`) answers 200 with something that is not JSON: the
/// run fails naming the URL and saying each of `needles`, after one request.
fn not_json(name: &str, path: &str, needles: &[&str]) -> Result<String> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        &format!("e2e_hp_{}", name.replace('-', "_")),
        &format!(
            r#"{{ path = "{path}", data_selector = "data", paginator = {{ type = "offset", limit = 100 }} }}"#
        ),
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    let mut all = vec![
        "resource `items`: GET",
        path,
        "offset=0",
        "the response is not JSON",
    ];
    all.extend_from_slice(needles);
    let error = outcome.failed_saying(&all)?;
    // Not retried: the answer was whole, and another request would get the same.
    ensure!(stand.requests(name)? == 1);
    ensure!(load(&pipeline)?.is_empty());
    Ok(error)
}

#[test]
fn an_html_page_with_status_200_fails_showing_its_text() -> Result<()> {
    let _ = not_json(
        "html",
        "/hostile/html",
        &[
            "content-type text/html",
            "<!DOCTYPE html> <html><head><title>Service Unavailable</title>",
        ],
    )?;
    Ok(())
}

#[test]
fn json_cut_mid_record_fails_naming_where() -> Result<()> {
    let _ = not_json(
        "truncated-json",
        "/hostile/truncated-json",
        &["EOF while parsing", "content-type application/json"],
    )?;
    Ok(())
}

#[test]
fn an_empty_body_fails_saying_it_is_empty() -> Result<()> {
    let _ = not_json(
        "empty-body",
        "/hostile/empty-body",
        &["the body is empty", "0 bytes"],
    )?;
    Ok(())
}

#[test]
fn nesting_deeper_than_the_parser_allows_fails_without_a_crash() -> Result<()> {
    let _ = not_json("deep", "/hostile/deep", &["recursion limit exceeded"])?;
    Ok(())
}

#[test]
fn a_byte_order_mark_before_the_json_loads_exactly() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_bom",
        r#"{ path = "/hostile/bom", data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    outcome.loaded(RECORDS)?;
    assert_loaded_exactly(&pipeline, &stand.api, RECORDS as usize)
}

// --- Links and redirects to another host ----------------------------------------------------

const FOREIGN_NEXT: &str = r#"{ path = "/hostile/foreign-next", params = { page_size = 100 }, data_selector = "data", paginator = { type = "json_link", next_url_path = "next" } }"#;

#[test]
fn a_next_link_to_another_host_stops_before_the_key_is_sent() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline("e2e_hp_foreign_next", FOREIGN_NEXT, "")?;
    let outcome = extract(&pipeline, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`, page 1",
        "leads to host `localhost`",
        "client.trusted_hosts",
    ])?;
    ensure!(stand.requests("foreign-next")? == 1);
    let visits = stand.foreign_visits()?;
    ensure!(visits.is_empty(), "requests under localhost: {visits:?}");
    assert_loaded_exactly(&pipeline, &stand.api, 100)
}

#[test]
fn a_next_link_to_a_trusted_host_loads_exactly() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_foreign_trusted",
        FOREIGN_NEXT,
        "trusted_hosts = [\"localhost\"]",
    )?;
    let outcome = extract(&pipeline, &[])?;
    outcome.loaded(RECORDS)?;
    // Pages 2 and 3 came from the trusted name, with the key.
    let visits = stand.foreign_visits()?;
    ensure!(
        visits == vec![("foreign-next".to_owned(), true); 2],
        "{visits:?}"
    );
    assert_loaded_exactly(&pipeline, &stand.api, RECORDS as usize)
}

const REDIRECT_AWAY: &str = r#"{ path = "/hostile/redirect-away", data_selector = "data", paginator = { type = "offset", limit = 100 } }"#;

#[test]
fn a_redirect_to_another_host_is_not_followed_with_the_key_header() -> Result<()> {
    let stand = Stand::start()?;
    // A key in a header of its own name: reqwest would keep it on a redirect to any host.
    let pipeline =
        stand.pipeline_with_auth("e2e_hp_redirect_away", HEADER_KEY, REDIRECT_AWAY, "")?;
    let outcome = extract(&pipeline, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`: GET",
        "/hostile/redirect-away",
        "redirected to host `localhost`",
        "client.trusted_hosts",
    ])?;
    let visits = stand.foreign_visits()?;
    ensure!(visits.is_empty(), "requests under localhost: {visits:?}");
    ensure!(stand.requests("redirect-target")? == 0);
    Ok(())
}

#[test]
fn a_redirect_to_a_trusted_host_loads_exactly() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline_with_auth(
        "e2e_hp_redirect_trusted",
        HEADER_KEY,
        REDIRECT_AWAY,
        "trusted_hosts = [\"localhost\"]",
    )?;
    let outcome = extract(&pipeline, &[])?;
    outcome.loaded(RECORDS)?;
    let visits = stand.foreign_visits()?;
    ensure!(
        visits == vec![("redirect-target".to_owned(), true); 3],
        "{visits:?}"
    );
    assert_loaded_exactly(&pipeline, &stand.api, RECORDS as usize)
}

#[test]
fn a_redirect_loop_stops_after_ten_redirects() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_hp_redirect_loop",
        r#"{ path = "/hostile/redirect-loop", data_selector = "data", paginator = { type = "offset", limit = 100 } }"#,
        "",
    )?;
    let outcome = extract(&pipeline, &[])?;
    let _ = outcome.failed_saying(&[
        "resource `items`: GET",
        "/hostile/redirect-loop",
        "more than 10 redirects",
    ])?;
    // The first request and ten redirects, for each attempt: bounded either way.
    let requests = stand.requests("redirect-loop")?;
    ensure!(requests == 11, "{requests} requests");
    Ok(())
}
