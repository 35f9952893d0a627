//! A stand-in for the third-party communications API: offset/limit paging over a deterministic
//! record set, API-key auth, latency, injected faults, and admin knobs for tests and benchmarks.
//!
//! The same record set is also served through every other paginator style (`paging`) and
//! behind every other auth scheme, OAuth2 client credentials included (`auth`).
//!
//! Injected fault status `0` drops the connection without an answer: the handler unwinds
//! (`std::panic::resume_unwind`, which skips the panic hook, so nothing is printed), which ends
//! the connection task and closes the socket. The client sees "connection closed before message
//! completed".

mod auth;
mod conversations;
mod drift;
mod hostile_paging;
mod hostile_records;
mod incremental;
mod paging;
mod record;
mod throttle;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;

pub use auth::{BASIC_USER, KEY_COOKIE, KEY_HEADER, OAUTH_CLIENT_ID};
pub use paging::encode_cursor;
pub use record::{is_changed, record};

/// Entries kept in the request log; older ones are dropped first.
pub const REQUEST_LOG_CAPACITY: usize = 100_000;
const DEFAULT_OFFSET: u64 = 0;
const DEFAULT_LIMIT: u64 = 100;
/// The size of the `body` of the record `huge_body_of` names: 10 MiB.
pub const HUGE_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Command line; every flag can also come from its environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "demo-api",
    version,
    about = "Demo communications API for tests and benchmarks"
)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "DEMO_API_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The API key clients must send as `api_key` (or as a bearer token, in the `X-API-Key`
    /// header or the `api_key` cookie, as the basic-auth password of user `demo`, or as the
    /// OAuth2 client secret of client `demo-client`, depending on the endpoint).
    #[arg(long, env = "DEMO_API_KEY", hide_env_values = true)]
    pub api_key: ApiKey,
    /// Number of records.
    #[arg(long, env = "DEMO_API_RECORDS", default_value_t = 10_000)]
    pub records: u64,
    /// Data revision; at revision > 0 the changed subset differs from revision 0.
    #[arg(long, env = "DEMO_API_REVISION", default_value_t = 0)]
    pub revision: u64,
    /// Percentage of records that change at revision > 0.
    #[arg(long, env = "DEMO_API_CHANGED_PERCENT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=100))]
    pub changed_percent: u64,
    /// Delay before answering each /v1/resource request, in milliseconds.
    #[arg(long, env = "DEMO_API_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Largest accepted `limit`.
    #[arg(long, env = "DEMO_API_MAX_LIMIT", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_limit: u64,
}

impl Args {
    pub fn settings(&self) -> Settings {
        Settings {
            records: self.records,
            revision: self.revision,
            changed_percent: self.changed_percent,
            latency_ms: self.latency_ms,
            max_limit: self.max_limit,
            drift_from: None,
            huge_body_of: None,
        }
    }
}

/// The API key; `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    fn matches(&self, candidate: &str) -> bool {
        self.0 == candidate
    }
}

impl FromStr for ApiKey {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            Err("the api key must not be empty")
        } else {
            Ok(Self(s.to_owned()))
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The knobs `POST /admin/state` turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub records: u64,
    pub revision: u64,
    pub changed_percent: u64,
    pub latency_ms: u64,
    pub max_limit: u64,
    /// From this record index on, records drift (see `drift`); `None`: no drift.
    pub drift_from: Option<u64>,
    /// The record index whose `body` is 10 MiB of text (a hostile record); `None`: none.
    pub huge_body_of: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            records: 10_000,
            revision: 0,
            changed_percent: 10,
            latency_ms: 0,
            max_limit: 1000,
            drift_from: None,
            huge_body_of: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    records: Option<u64>,
    revision: Option<u64>,
    changed_percent: Option<u64>,
    latency_ms: Option<u64>,
    max_limit: Option<u64>,
    drift_from: Option<u64>,
    huge_body_of: Option<u64>,
}

/// One step of the fault queue as posted to `/admin/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultStepSpec {
    status: u16,
    #[serde(default = "one")]
    count: u64,
    retry_after: Option<String>,
}

fn one() -> u64 {
    1
}

#[derive(Clone, Debug)]
enum FaultKind {
    /// Close the connection without answering.
    Drop,
    Status(StatusCode),
}

#[derive(Clone, Debug)]
struct Fault {
    kind: FaultKind,
    retry_after: Option<HeaderValue>,
}

#[derive(Debug)]
struct FaultStep {
    fault: Fault,
    remaining: u64,
}

#[derive(Clone, Debug, Serialize)]
struct LogEntry {
    /// The path, for every endpoint but `/v1/resource` (whose entries keep their old shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<&'static str>,
    offset: Option<u64>,
    limit: Option<u64>,
    /// `/v1/incremental`'s `updated_since`.
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    status: u16,
}

#[derive(Debug, Serialize)]
struct Stats {
    requests: u64,
    faults_served: u64,
    in_flight: u64,
    peak_in_flight: u64,
    /// `POST /oauth/token` calls (not counted in `requests`).
    token_requests: u64,
    log: Vec<LogEntry>,
}

/// Shared server state; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    api_key: ApiKey,
    settings: Mutex<Settings>,
    faults: Mutex<VecDeque<FaultStep>>,
    requests: AtomicU64,
    faults_served: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    token_requests: AtomicU64,
    log: Mutex<VecDeque<LogEntry>>,
    oauth: Mutex<auth::OAuth>,
    incremental: Mutex<incremental::IncrementalSet>,
    throttle: throttle::Throttle,
}

/// Lock, ignoring poison: every critical section leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AppState {
    pub fn new(api_key: ApiKey, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                api_key,
                settings: Mutex::new(settings),
                faults: Mutex::new(VecDeque::new()),
                requests: AtomicU64::new(0),
                faults_served: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                peak_in_flight: AtomicU64::new(0),
                token_requests: AtomicU64::new(0),
                log: Mutex::new(VecDeque::new()),
                oauth: Mutex::new(auth::OAuth::default()),
                incremental: Mutex::default(),
                throttle: throttle::Throttle::default(),
            }),
        }
    }

    pub fn settings(&self) -> Settings {
        *lock(&self.inner.settings)
    }

    fn begin_request(&self) -> InFlight<'_> {
        let _ = self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.inner.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(&self.inner.in_flight, now)
    }

    /// Consumes one unit of the head fault step, if any.
    fn take_fault(&self) -> Option<Fault> {
        let mut queue = lock(&self.inner.faults);
        let head = queue.front_mut()?;
        let fault = head.fault.clone();
        head.remaining -= 1;
        if head.remaining == 0 {
            let _ = queue.pop_front();
        }
        drop(queue);
        let _ = self.inner.faults_served.fetch_add(1, Ordering::Relaxed);
        Some(fault)
    }

    fn log(&self, entry: LogEntry) {
        let mut log = lock(&self.inner.log);
        if log.len() >= REQUEST_LOG_CAPACITY {
            let _ = log.pop_front();
        }
        log.push_back(entry);
    }

    fn stats(&self) -> Stats {
        let log = lock(&self.inner.log).iter().cloned().collect();
        Stats {
            requests: self.inner.requests.load(Ordering::Relaxed),
            faults_served: self.inner.faults_served.load(Ordering::Relaxed),
            in_flight: self.inner.in_flight.load(Ordering::SeqCst),
            peak_in_flight: self.inner.peak_in_flight.load(Ordering::SeqCst),
            token_requests: self.inner.token_requests.load(Ordering::Relaxed),
            log,
        }
    }

    fn reset_stats(&self) {
        lock(&self.inner.log).clear();
        self.inner.requests.store(0, Ordering::Relaxed);
        self.inner.faults_served.store(0, Ordering::Relaxed);
        self.inner.token_requests.store(0, Ordering::Relaxed);
        let now = self.inner.in_flight.load(Ordering::SeqCst);
        self.inner.peak_in_flight.store(now, Ordering::SeqCst);
        self.inner.throttle.reset();
    }
}

/// Decrements the in-flight gauge when the request ends, also when it unwinds; holds the
/// number in flight when the request began (itself included).
struct InFlight<'a>(&'a AtomicU64, u64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let _ = self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("invalid api key")]
    InvalidApiKey,
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("invalid_client")]
    InvalidClient,
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("{0}")]
    BadParam(String),
    #[error("invalid query string")]
    BadQuery,
    #[error("query parameter `{name}` must be a non-negative integer")]
    NotAnInteger { name: &'static str },
    #[error("limit {limit} exceeds the maximum of {max}")]
    LimitTooLarge { limit: u64, max: u64 },
    #[error("invalid request body: {0}")]
    BadBody(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidApiKey | Self::InvalidToken | Self::InvalidClient => {
                StatusCode::UNAUTHORIZED
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// All routes of the demo API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/resource", get(get_resource))
        .route("/v1/paged", get(paging::paged))
        .route("/v1/linked", get(paging::linked))
        .route("/v1/header-linked", get(paging::header_linked))
        .route("/v1/cursor", get(paging::cursor))
        .route("/v1/search", post(paging::search))
        .route("/v1/header-cursor", get(paging::header_cursor))
        .route("/v1/stuck", get(paging::stuck))
        .route("/v1/conversations", get(conversations::list))
        .route(
            "/v1/conversations/{conversation}/messages",
            get(conversations::messages),
        )
        .route("/admin/conversations", get(conversations::admin))
        .route("/v1/auth/{scheme}", get(auth::protected))
        .route("/oauth/token", post(auth::post_token))
        .route("/admin/oauth", post(auth::post_oauth))
        .route("/health", get(|| async { "ok" }))
        .route("/admin/state", post(post_state))
        .route("/admin/faults", post(post_faults).delete(delete_faults))
        .route("/admin/stats", get(get_stats))
        .route("/admin/reset-stats", post(reset_stats))
        .route("/admin/records", get(get_records))
        .route("/v1/incremental", get(incremental::get_incremental))
        .route("/admin/mutate", post(incremental::post_mutate))
        .route("/admin/incremental/records", get(incremental::get_records))
        .route(
            "/admin/throttle",
            get(throttle::get_throttle).post(throttle::post_throttle),
        )
        .merge(hostile_records::router())
        .merge(hostile_paging::router(state.clone()))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` completes.
pub async fn serve<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

type Params = HashMap<String, String>;

/// Parses an optional non-negative integer parameter.
fn param(params: &Params, name: &'static str, default: u64) -> Result<u64, ApiError> {
    params.get(name).map_or(Ok(default), |v| {
        v.parse().map_err(|_| ApiError::NotAnInteger { name })
    })
}

async fn get_resource(
    State(state): State<AppState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let params = query.map(|Query(p)| p).map_err(|_| ApiError::BadQuery);
    let (offset, limit) = match &params {
        Ok(p) => (
            param(p, "offset", DEFAULT_OFFSET).ok(),
            param(p, "limit", DEFAULT_LIMIT).ok(),
        ),
        Err(_) => (None, None),
    };
    let entry = LogEntry {
        endpoint: None,
        offset,
        limit,
        since: None,
        status: 0,
    };
    answer(&state, entry, || {
        let params = params?;
        require_query_key(&state, &params)?;
        offset_page(&state, &params)
    })
    .await
}

/// Answers one data request: counts it, serves a queued fault first (faults hit every
/// request, whatever its credentials or parameters), then refuses it at once with 429 if the
/// throttle (`/admin/throttle`) says too many are in flight, waits the configured latency,
/// then runs `handler` and logs the outcome as `entry` with its status.
async fn answer(
    state: &AppState,
    mut entry: LogEntry,
    handler: impl FnOnce() -> Result<Response, ApiError>,
) -> Response {
    let in_flight = state.begin_request();
    let fault = state.take_fault();
    let limited = fault.is_none().then_some(in_flight.1);
    if let Some(response) = state.inner.throttle.arrive(limited) {
        entry.status = response.status().as_u16();
        tracing::debug!(in_flight = in_flight.1, "throttled: 429");
        state.log(entry);
        return response;
    }
    let latency_ms = state.settings().latency_ms;
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let (endpoint, offset, limit) = (
        entry.endpoint.unwrap_or("/v1/resource"),
        entry.offset,
        entry.limit,
    );

    let response = match fault {
        Some(Fault {
            kind: FaultKind::Drop,
            ..
        }) => {
            state.log(entry);
            tracing::info!(
                endpoint,
                offset,
                limit,
                "injected fault: dropping the connection"
            );
            drop_connection()
        }
        Some(Fault {
            kind: FaultKind::Status(status),
            retry_after,
        }) => {
            tracing::info!(
                endpoint,
                offset,
                limit,
                status = status.as_u16(),
                "injected fault"
            );
            let mut response = (status, Json(json!({ "error": "injected fault" }))).into_response();
            if let Some(value) = retry_after {
                let _ = response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        None => handler().unwrap_or_else(IntoResponse::into_response),
    };
    entry.status = response.status().as_u16();
    tracing::debug!(endpoint, offset, limit, status = entry.status, "answered");
    state.log(entry);
    response
}

/// Ends the connection task without writing a response; see the crate docs.
fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("demo-api: injected fault drops the connection"))
}

#[derive(Serialize)]
struct Page {
    data: Vec<serde_json::Value>,
    total: u64,
}

/// Checks the `api_key` query parameter.
fn require_query_key(state: &AppState, params: &Params) -> Result<(), ApiError> {
    let key_ok = params
        .get("api_key")
        .is_some_and(|k| state.inner.api_key.matches(k));
    if key_ok {
        Ok(())
    } else {
        Err(ApiError::InvalidApiKey)
    }
}

/// One `offset`/`limit` page with the total, as `/v1/resource` serves it.
fn offset_page(state: &AppState, params: &Params) -> Result<Response, ApiError> {
    let offset = param(params, "offset", DEFAULT_OFFSET)?;
    let limit = param(params, "limit", DEFAULT_LIMIT)?;
    let s = state.settings();
    check_limit(&s, limit)?;
    Ok(Json(Page {
        data: records(&s, offset, limit),
        total: s.records,
    })
    .into_response())
}

fn check_limit(s: &Settings, limit: u64) -> Result<(), ApiError> {
    if limit > s.max_limit {
        Err(ApiError::LimitTooLarge {
            limit,
            max: s.max_limit,
        })
    } else {
        Ok(())
    }
}

/// Records `offset..offset + limit` of the current set (fewer at its end).
fn records(s: &Settings, offset: u64, limit: u64) -> Vec<serde_json::Value> {
    let start = offset.min(s.records);
    let end = offset.saturating_add(limit).min(s.records);
    (start..end).map(|i| current_record(s, i)).collect()
}

/// Record `i` as the API serves it now (revision, changes and drift applied).
fn current_record(s: &Settings, i: u64) -> serde_json::Value {
    let mut r = record(i, s.revision, s.changed_percent, s.records);
    if s.drift_from.is_some_and(|from| i >= from) {
        drift::apply(&mut r, i);
    }
    if s.huge_body_of == Some(i)
        && let Some(fields) = r.as_object_mut()
    {
        let _ = fields.insert("body".to_owned(), "x".repeat(HUGE_BODY_BYTES).into());
    }
    r
}

async fn post_state(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Settings>, ApiError> {
    let patch: SettingsPatch =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    if patch.changed_percent.is_some_and(|p| p > 100) {
        return Err(ApiError::BadBody(
            "changed_percent must be at most 100".into(),
        ));
    }
    if patch.max_limit == Some(0) {
        return Err(ApiError::BadBody("max_limit must be at least 1".into()));
    }
    let mut s = lock(&state.inner.settings);
    s.records = patch.records.unwrap_or(s.records);
    s.revision = patch.revision.unwrap_or(s.revision);
    s.changed_percent = patch.changed_percent.unwrap_or(s.changed_percent);
    s.latency_ms = patch.latency_ms.unwrap_or(s.latency_ms);
    s.max_limit = patch.max_limit.unwrap_or(s.max_limit);
    if patch.drift_from.is_some() {
        s.drift_from = patch.drift_from;
    }
    if patch.huge_body_of.is_some() {
        s.huge_body_of = patch.huge_body_of;
    }
    let settings = *s;
    drop(s);
    tracing::info!(?settings, "settings changed");
    Ok(Json(settings))
}

fn fault_step(spec: FaultStepSpec) -> Result<FaultStep, ApiError> {
    let kind = match spec.status {
        0 => FaultKind::Drop,
        code => FaultKind::Status(
            StatusCode::from_u16(code)
                .map_err(|_| ApiError::BadBody(format!("invalid fault status {code}")))?,
        ),
    };
    if spec.count == 0 {
        return Err(ApiError::BadBody("fault count must be at least 1".into()));
    }
    let retry_after = spec
        .retry_after
        .map(|v| {
            HeaderValue::from_str(&v)
                .map_err(|_| ApiError::BadBody(format!("invalid retry_after {v:?}")))
        })
        .transpose()?;
    Ok(FaultStep {
        fault: Fault { kind, retry_after },
        remaining: spec.count,
    })
}

async fn post_faults(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let specs: Vec<FaultStepSpec> =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let steps = specs
        .into_iter()
        .map(fault_step)
        .collect::<Result<Vec<_>, _>>()?;
    let mut queue = lock(&state.inner.faults);
    queue.extend(steps);
    let pending: u64 = queue.iter().map(|s| s.remaining).sum();
    drop(queue);
    tracing::info!(pending, "fault queue extended");
    Ok(Json(json!({ "pending": pending })))
}

async fn delete_faults(State(state): State<AppState>) -> Json<serde_json::Value> {
    lock(&state.inner.faults).clear();
    Json(json!({ "pending": 0 }))
}

async fn get_stats(State(state): State<AppState>) -> Json<Stats> {
    Json(state.stats())
}

async fn reset_stats(State(state): State<AppState>) -> Json<Stats> {
    state.reset_stats();
    Json(state.stats())
}

async fn get_records(State(state): State<AppState>) -> Result<Response, ApiError> {
    let s = state.settings();
    // Written record by record: the whole set as `Value`s would cost several times its text.
    let body = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, serde_json::Error> {
        let mut out = b"[".to_vec();
        for i in 0..s.records {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &current_record(&s, i))?;
        }
        out.push(b']');
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
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
            Args::try_parse_from(["demo-api", "--api-key", "k", "--changed-percent", "101"])
                .is_err()
        );
    }
}
