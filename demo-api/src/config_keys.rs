//! Endpoints for the end-to-end tests of dlt's config keys (`tests/tests/config_keys.rs`):
//! every request to `/keys/...` is logged whole (method, path, query pairs, headers, body)
//! in `GET /keys/log` (`POST /keys/reset` empties it), so a test can see exactly what the
//! extractor sent. Each checks the API key (`api_key` query parameter or `X-API-Key`).
//!
//! - Items 1..=10 with `updated` = 10 × id (`POST /keys/admin {"add_item": U}` adds one):
//!   `POST /keys/search` takes a JSON body `{"filter": {"since": <number>}, "page":
//!   {"cursor": "<n>"}}` (since a number or absent, else 400) and answers `{"data": [items
//!   with updated >= since, from the cursor's index, two per page], "next": "<index>" or
//!   null}`; `GET /keys/since/{since}/items` answers the items with updated >= since.
//! - Parents 1..=3 (`GET /keys/parents`), each with children `100 × parent + k`, `updated`
//!   = 10 × k + parent for k in 1..=3 (`{"add_child": [parent, updated]}` adds one):
//!   `GET /keys/parents/{id}/children` answers all of them (whatever the query: the client
//!   filters), `POST /keys/children` takes `{"parent": <number>, "tag": "p-<parent>"}`.
//! - `GET /keys/has-more?page=N` (from 1): the items three a page with `{"meta":
//!   {"has_more": bool}, "total": 99}`; a page past the last repeats the last (only
//!   `has_more` tells the end). `GET /keys/cursor-empty?cursor=N`: the items four a page,
//!   then empty pages that still carry a `next` cursor, forever. `POST /keys/form` takes any
//!   body (a form, raw text) and answers every item.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState, KEY_HEADER, lock};

/// The largest request body logged and served.
const MAX_BODY: usize = 1024 * 1024;
/// Records per page of `/keys/search`.
const SEARCH_PAGE: usize = 2;

#[derive(Clone, Debug)]
struct Keys {
    app: AppState,
    inner: Arc<Mutex<KeysState>>,
}

#[derive(Debug)]
struct KeysState {
    log: Vec<Logged>,
    /// `updated` of each item; item id = index + 1.
    items: Vec<u64>,
    /// Per parent id: `(child id, updated)`.
    children: BTreeMap<u64, Vec<(u64, u64)>>,
}

impl Default for KeysState {
    fn default() -> Self {
        Self {
            log: Vec::new(),
            items: (1..=10).map(|id| id * 10).collect(),
            children: (1..=3)
                .map(|p| (p, (1..=3).map(|k| (100 * p + k, 10 * k + p)).collect()))
                .collect(),
        }
    }
}

/// One request as it arrived.
#[derive(Clone, Debug, Serialize)]
struct Logged {
    method: String,
    path: String,
    /// The query's pairs in order, repeated names kept.
    query: Vec<(String, String)>,
    /// Header names lowercased; a repeated header's values joined by `, `.
    headers: BTreeMap<String, String>,
    body: String,
}

/// The config-key endpoints, merged into the demo API's router.
pub fn router<S>(app: AppState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let keys = Keys {
        app,
        inner: Arc::default(),
    };
    Router::new()
        .route("/keys/search", post(search))
        .route("/keys/since/{since}/items", get(since_items))
        .route("/keys/parents", get(parents))
        .route("/keys/parents/{id}/children", get(children))
        .route("/keys/children", post(children_by_body))
        .route("/keys/has-more", get(has_more))
        .route("/keys/form", post(form))
        .route("/keys/cursor-empty", get(cursor_empty))
        .route_layer(from_fn_with_state(keys.clone(), log_and_check))
        .route("/keys/log", get(log))
        .route("/keys/reset", post(reset))
        .route("/keys/admin", post(admin))
        .with_state(keys)
}

/// Logs the request whole, then lets it through if it carries the API key.
async fn log_and_check(State(keys): State<Keys>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return ApiError::BadBody("unreadable or over 1 MiB".into()).into_response();
    };
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let key_sent = query
        .iter()
        .any(|(k, v)| k == "api_key" && keys.app.inner.api_key.matches(v))
        || parts
            .headers
            .get(KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|k| keys.app.inner.api_key.matches(k));
    lock(&keys.inner).log.push(Logged {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query,
        headers: header_map(&parts.headers),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    if !key_sent {
        return ApiError::InvalidApiKey.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let _ = map
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

async fn log(State(keys): State<Keys>) -> Json<Vec<Logged>> {
    Json(lock(&keys.inner).log.clone())
}

async fn reset(State(keys): State<Keys>) -> Json<Value> {
    lock(&keys.inner).log.clear();
    Json(json!({"reset": true}))
}

/// `{"add_item": updated}` and/or `{"add_child": [parent, updated]}`.
async fn admin(State(keys): State<Keys>, Json(body): Json<Value>) -> Result<Json<Value>, ApiError> {
    let mut state = lock(&keys.inner);
    if let Some(updated) = body.get("add_item") {
        let updated = updated
            .as_u64()
            .ok_or_else(|| ApiError::BadBody("add_item must be a number".into()))?;
        state.items.push(updated);
    }
    if let Some(child) = body.get("add_child") {
        let (Some(parent), Some(updated)) = (child[0].as_u64(), child[1].as_u64()) else {
            return Err(ApiError::BadBody(
                "add_child must be [parent, updated]".into(),
            ));
        };
        let children = state
            .children
            .get_mut(&parent)
            .ok_or_else(|| ApiError::BadBody(format!("no parent {parent}")))?;
        let id = 100 * parent + children.len() as u64 + 1;
        children.push((id, updated));
    }
    Ok(Json(json!({"items": state.items.len()})))
}

fn item(index: usize, updated: u64) -> Value {
    json!({"id": index + 1, "updated": updated, "name": format!("item {}", index + 1)})
}

/// The items with `updated >= since`, by `updated` then id.
fn items_since(state: &KeysState, since: Option<u64>) -> Vec<Value> {
    let mut hits: Vec<(u64, usize)> = state
        .items
        .iter()
        .enumerate()
        .filter(|(_, u)| since.is_none_or(|s| **u >= s))
        .map(|(i, u)| (*u, i))
        .collect();
    hits.sort_unstable();
    hits.into_iter().map(|(u, i)| item(i, u)).collect()
}

async fn search(State(keys): State<Keys>, body: Json<Value>) -> Result<Json<Value>, ApiError> {
    let Json(body) = body;
    let since =
        match body.pointer("/filter/since") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                ApiError::BadBody(format!("filter.since must be a number, not {v}"))
            })?),
        };
    let from = match body.pointer("/page/cursor") {
        None => 0,
        Some(c) => c
            .as_str()
            .and_then(|c| c.parse::<usize>().ok())
            .ok_or(ApiError::InvalidCursor)?,
    };
    let hits = items_since(&lock(&keys.inner), since);
    let end = (from + SEARCH_PAGE).min(hits.len());
    let next = (end < hits.len()).then(|| end.to_string());
    Ok(Json(json!({
        "data": hits.get(from..end).unwrap_or_default(),
        "next": next,
    })))
}

async fn since_items(
    State(keys): State<Keys>,
    Path(since): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let since: u64 = since
        .parse()
        .map_err(|_| ApiError::BadParam(format!("since `{since}` is not a number")))?;
    Ok(Json(json!(items_since(&lock(&keys.inner), Some(since)))))
}

/// The number in query parameter `name` (default `default`).
fn number(query: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, ApiError> {
    query.get(name).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| ApiError::BadParam(format!("{name} `{v}` is not a number")))
    })
}

async fn has_more(
    State(keys): State<Keys>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    const PER_PAGE: usize = 3;
    let hits = items_since(&lock(&keys.inner), None);
    let last = hits.len().div_ceil(PER_PAGE).max(1);
    let page = number(&query, "page", 1)?.clamp(1, last);
    let from = (page - 1) * PER_PAGE;
    let end = (from + PER_PAGE).min(hits.len());
    Ok(Json(json!({
        "data": hits.get(from..end).unwrap_or_default(),
        "meta": {"has_more": page < last},
        "total": 99,
    })))
}

async fn cursor_empty(
    State(keys): State<Keys>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    const PER_PAGE: usize = 4;
    let hits = items_since(&lock(&keys.inner), None);
    let cursor = number(&query, "cursor", 0)?;
    let from = (cursor * PER_PAGE).min(hits.len());
    let end = (from + PER_PAGE).min(hits.len());
    Ok(Json(json!({
        "data": hits.get(from..end).unwrap_or_default(),
        "next": (cursor + 1).to_string(),
    })))
}

/// Any body (a form, raw text): answers every item.
async fn form(State(keys): State<Keys>) -> Json<Value> {
    Json(json!(items_since(&lock(&keys.inner), None)))
}

async fn parents(State(keys): State<Keys>) -> Json<Value> {
    let ids: Vec<Value> = lock(&keys.inner)
        .children
        .keys()
        .map(|id| json!({"id": id}))
        .collect();
    Json(Value::Array(ids))
}

fn children_of(keys: &Keys, parent: u64) -> Result<Value, ApiError> {
    let state = lock(&keys.inner);
    let children = state
        .children
        .get(&parent)
        .ok_or_else(|| ApiError::BadParam(format!("no parent {parent}")))?;
    Ok(children
        .iter()
        .map(|(id, updated)| json!({"id": id, "parent": parent, "updated": updated}))
        .collect())
}

async fn children(State(keys): State<Keys>, Path(id): Path<u64>) -> Result<Json<Value>, ApiError> {
    children_of(&keys, id).map(Json)
}

async fn children_by_body(
    State(keys): State<Keys>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let parent = body["parent"]
        .as_u64()
        .ok_or_else(|| ApiError::BadBody(format!("parent must be a number: {body}")))?;
    let tag = format!("p-{parent}");
    if body["tag"] != json!(tag) {
        return Err(ApiError::BadBody(format!("tag must be `{tag}`: {body}")));
    }
    children_of(&keys, parent).map(|children| Json(json!({"data": children})))
}
