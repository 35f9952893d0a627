//! Endpoints for the end-to-end tests of dlt's incremental options
//! (`tests/tests/incremental_options.rs`): a record set the test writes whole, served in
//! cursor order, so a test sees which records and pages the extractor took.
//!
//! - `POST /incopt/admin {"records": [...]}` replaces the record set (any JSON objects);
//!   `GET /incopt/log` lists the requests to `/incopt/events` since `POST /incopt/reset`,
//!   each `{"page", "order", "since"}` (`since` the `since` query parameter or `null`).
//! - `GET /incopt/events?page=N&order=asc|desc&since=S` (page from 1, `asc` by default):
//!   the records sorted by their `seq` (a number; records without one sort first), three a
//!   page, as `{"data": [...]}`; past the last page, an empty `data`. `since` is only logged:
//!   the client filters. The API key is required (`api_key` query parameter).

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::{ApiError, AppState, lock};

/// Records per page.
const PAGE: usize = 3;

#[derive(Clone, Debug)]
struct Options {
    app: AppState,
    inner: Arc<Mutex<OptionsState>>,
}

#[derive(Debug, Default)]
struct OptionsState {
    records: Vec<Value>,
    log: Vec<Value>,
}

/// The incremental-option endpoints, merged into the demo API's router.
pub fn router<S>(app: AppState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let options = Options {
        app,
        inner: Arc::default(),
    };
    Router::new()
        .route("/incopt/events", get(events))
        .route("/incopt/admin", post(admin))
        .route("/incopt/log", get(log))
        .route("/incopt/reset", post(reset))
        .with_state(options)
}

async fn events(
    State(options): State<Options>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if !get("api_key").is_some_and(|k| options.app.inner.api_key.matches(k)) {
        return Err(ApiError::InvalidApiKey);
    }
    let page: usize = get("page")
        .unwrap_or("1")
        .parse()
        .map_err(|_| ApiError::BadParam("page must be a number".into()))?;
    if page == 0 {
        return Err(ApiError::BadParam("page counts from 1".into()));
    }
    let order = get("order").unwrap_or("asc");
    if order != "asc" && order != "desc" {
        return Err(ApiError::BadParam("order is asc or desc".into()));
    }
    let mut state = lock(&options.inner);
    state
        .log
        .push(json!({"page": page, "order": order, "since": get("since")}));
    let mut records = state.records.clone();
    records.sort_by(|a, b| {
        let seq = |r: &Value| r.get("seq").and_then(Value::as_f64).unwrap_or(f64::MIN);
        seq(a).total_cmp(&seq(b))
    });
    if order == "desc" {
        records.reverse();
    }
    let data: Vec<Value> = records
        .into_iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// `{"records": [...]}`: the new record set.
async fn admin(
    State(options): State<Options>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let Some(records) = body.get("records").and_then(Value::as_array) else {
        return Err(ApiError::BadBody("expected {\"records\": [...]}".into()));
    };
    let mut state = lock(&options.inner);
    state.records.clone_from(records);
    Ok(Json(json!({"records": state.records.len()})))
}

async fn log(State(options): State<Options>) -> Json<Vec<Value>> {
    Json(lock(&options.inner).log.clone())
}

async fn reset(State(options): State<Options>) -> Json<Value> {
    lock(&options.inner).log.clear();
    Json(json!({"reset": true}))
}
