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
mod config_keys;
mod conversations;
mod dlt_types; // dlt's date, time and binary values as text
mod drift;
mod hostile_paging;
mod hostile_records;
mod http_keys;
mod incremental;
mod incremental_options;
mod paging;
pub mod record; // the record set, also used by the bench's Kafka Connect peer
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
        // A `status: 200` step lets requests through: a queue can interleave faults.
        if let FaultKind::Status(StatusCode::OK) = fault.kind {
            return None;
        }
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
        .merge(config_keys::router(state.clone()))
        .merge(incremental_options::router(state.clone()))
        .merge(http_keys::router(state.clone()))
        .merge(dlt_types::router())
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

/// A paged request's query: its params (or why they could not be read) and the `offset`
/// and `limit` it asked for, as the request log records them.
pub(crate) fn paged_query(
    query: Result<Query<Params>, QueryRejection>,
) -> (Result<Params, ApiError>, Option<u64>, Option<u64>) {
    let params = query.map(|Query(p)| p).map_err(|_| ApiError::BadQuery);
    let (offset, limit) = match &params {
        Ok(p) => (
            param(p, "offset", DEFAULT_OFFSET).ok(),
            param(p, "limit", DEFAULT_LIMIT).ok(),
        ),
        Err(_) => (None, None),
    };
    (params, offset, limit)
}

async fn get_resource(
    State(state): State<AppState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let (params, offset, limit) = paged_query(query);
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
mod tests;
