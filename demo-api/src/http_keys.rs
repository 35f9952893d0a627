//! Endpoints for the end-to-end tests of dlt's HTTP keys (`tests/tests/http_keys.rs`): the
//! paginators' `offset_body_path` / `limit_body_path` / `page_body_path`, an endpoint's own
//! `auth`, and OAuth2 `client_secret_basic`. Every request to `/http-keys/...` is logged in
//! `GET /http-keys/log` (`POST /http-keys/reset` empties it) without its credentials: the
//! query's parameter names, which credentials it carried (`api_key` in the query, the
//! `Authorization` scheme, `X-API-Key`, a cookie), a JSON body whole and a form body's field
//! names only.
//!
//! - `POST /http-keys/offset` (query `api_key`): `/v1/resource`'s records from the JSON
//!   body's `paging.offset`, `paging.limit` (both required numbers; an `offset` or `limit`
//!   query parameter is refused) → `{"data", "total"}`.
//! - `POST /http-keys/pages` (query `api_key`): pages of `page.size` (default 20) records,
//!   numbered from 1 at the body's `page.number` (required; a `page` query parameter is
//!   refused) → `{"data", "total_pages"}`.
//! - `GET /http-keys/protected/{scheme}`: `/v1/auth/{scheme}`, but a request with more than
//!   one credential is refused (400): it must carry only the one its endpoint's auth sends.
//! - `POST /http-keys/token`: an OAuth2 token endpoint for `client_secret_basic` only: the
//!   demo client id and the API key as secret in `Authorization: Basic`, the form with
//!   `grant_type=client_credentials` and no `client_secret` (RFC 6749 2.3: one method per
//!   request); its tokens are `/oauth/token`'s, good for `/v1/auth/oauth2`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::{KEY_COOKIE, KEY_HEADER, OAUTH_CLIENT_ID, base64};
use crate::{
    ApiError, AppState, LogEntry, Params, answer, check_limit, lock, records, require_query_key,
};

/// The largest request body logged and served.
const MAX_BODY: usize = 1024 * 1024;
/// `page.size` when the body has none.
const DEFAULT_PAGE_SIZE: u64 = 20;

#[derive(Clone, Debug)]
struct HttpKeys {
    app: AppState,
    log: Arc<Mutex<Vec<Logged>>>,
}

/// One request as it arrived, credentials left out.
#[derive(Clone, Debug, Serialize)]
struct Logged {
    method: String,
    path: String,
    /// The query's parameter names, in order.
    query: Vec<String>,
    /// The credentials it carried: `api_key` (query), `authorization <scheme>`,
    /// `x-api-key`, `cookie`.
    credentials: Vec<String>,
    /// A JSON body as sent; a form body's field names (`["grant_type", "scope"]`); else
    /// `null`.
    body: Value,
}

/// The HTTP-key endpoints, merged into the demo API's router.
pub fn router<S>(app: AppState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let keys = HttpKeys {
        app,
        log: Arc::default(),
    };
    Router::new()
        .route("/http-keys/offset", post(offset))
        .route("/http-keys/pages", post(pages))
        .route("/http-keys/protected/{scheme}", get(protected))
        .route("/http-keys/token", post(token))
        .route_layer(from_fn_with_state(keys.clone(), log_request))
        .route("/http-keys/log", get(log))
        .route("/http-keys/reset", post(reset))
        .with_state(keys)
}

/// The credentials `headers` and `query` carry (names only).
fn credentials(headers: &HeaderMap, query: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    if query.iter().any(|(k, _)| k == "api_key") {
        found.push("api_key".to_owned());
    }
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let scheme = auth.split(' ').next().unwrap_or_default();
        found.push(format!("authorization {}", scheme.to_ascii_lowercase()));
    }
    if headers.contains_key(KEY_HEADER) {
        found.push(KEY_HEADER.to_owned());
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|pair| pair.trim().starts_with(&format!("{KEY_COOKIE}=")));
    if cookie {
        found.push("cookie".to_owned());
    }
    found
}

/// Logs the request (without credentials), then passes it on.
async fn log_request(State(keys): State<HttpKeys>, request: Request, next: Next) -> Response {
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
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = if is_form {
        url::form_urlencoded::parse(&bytes)
            .map(|(k, _)| Value::String(k.into_owned()))
            .collect()
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    lock(&keys.log).push(Logged {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: query.iter().map(|(k, _)| k.clone()).collect(),
        credentials: credentials(&parts.headers, &query),
        body,
    });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn log(State(keys): State<HttpKeys>) -> Json<Vec<Logged>> {
    Json(lock(&keys.log).clone())
}

async fn reset(State(keys): State<HttpKeys>) -> Json<Value> {
    lock(&keys.log).clear();
    Json(json!({"reset": true}))
}

/// The non-negative integer at `pointer` of a JSON body.
fn body_number(body: &Value, pointer: &str) -> Result<u64, ApiError> {
    match body.pointer(pointer) {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| ApiError::BadBody(format!("`{pointer}` must be a number, not {v}"))),
        None => Err(ApiError::BadBody(format!("the body has no `{pointer}`"))),
    }
}

fn json_body(bytes: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadBody(e.to_string()))
}

/// Refuses paging values in the query: they belong in the body.
fn none_in_query(params: &Params, names: &[&str]) -> Result<(), ApiError> {
    match names.iter().find(|n| params.contains_key(**n)) {
        Some(name) => Err(ApiError::BadParam(format!(
            "`{name}` belongs in the JSON body, not the query"
        ))),
        None => Ok(()),
    }
}

fn params_of(query: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    query.map(|Query(p)| p).map_err(|_| ApiError::BadQuery)
}

fn entry(endpoint: &'static str, window: Option<(u64, u64)>) -> LogEntry {
    LogEntry {
        endpoint: Some(endpoint),
        offset: window.map(|w| w.0),
        limit: window.map(|w| w.1),
        since: None,
        status: 0,
    }
}

/// `POST /http-keys/offset`: the window at the body's `paging.offset` / `paging.limit`.
async fn offset(
    State(keys): State<HttpKeys>,
    query: Result<Query<Params>, QueryRejection>,
    bytes: Bytes,
) -> Response {
    let state = &keys.app;
    let window = json_body(&bytes).and_then(|body| {
        Ok((
            body_number(&body, "/paging/offset")?,
            body_number(&body, "/paging/limit")?,
        ))
    });
    let logged = window.as_ref().ok().copied();
    answer(state, entry("/http-keys/offset", logged), || {
        let params = params_of(query)?;
        require_query_key(state, &params)?;
        none_in_query(&params, &["offset", "limit"])?;
        let (offset, limit) = window?;
        let s = state.settings();
        check_limit(&s, limit)?;
        Ok(Json(json!({"data": records(&s, offset, limit), "total": s.records})).into_response())
    })
    .await
}

/// `POST /http-keys/pages`: page `page.number` (from 1) of `page.size` records.
async fn pages(
    State(keys): State<HttpKeys>,
    query: Result<Query<Params>, QueryRejection>,
    bytes: Bytes,
) -> Response {
    let state = &keys.app;
    let window = json_body(&bytes).and_then(|body| {
        let number = body_number(&body, "/page/number")?;
        let size = match body.pointer("/page/size") {
            None => DEFAULT_PAGE_SIZE,
            Some(_) => body_number(&body, "/page/size")?,
        };
        if number == 0 || size == 0 {
            return Err(ApiError::BadBody(
                "page.number and page.size count from 1".into(),
            ));
        }
        Ok(((number - 1).saturating_mul(size), size))
    });
    let logged = window.as_ref().ok().copied();
    answer(state, entry("/http-keys/pages", logged), || {
        let params = params_of(query)?;
        require_query_key(state, &params)?;
        none_in_query(&params, &["page"])?;
        let (offset, size) = window?;
        let s = state.settings();
        check_limit(&s, size)?;
        Ok(Json(json!({
            "data": records(&s, offset, size),
            "total_pages": s.records.div_ceil(size),
        }))
        .into_response())
    })
    .await
}

/// `GET /http-keys/protected/{scheme}`: `/v1/auth/{scheme}` for a request with exactly
/// the one credential.
async fn protected(
    Path(scheme): Path<String>,
    State(keys): State<HttpKeys>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let pairs: Vec<(String, String)> = match &query {
        Ok(Query(p)) => p.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Err(_) => Vec::new(),
    };
    let sent = credentials(&headers, &pairs);
    if sent.len() > 1 {
        return ApiError::BadParam(format!(
            "more than one credential ({}): send only the endpoint's",
            sent.join(", ")
        ))
        .into_response();
    }
    crate::auth::protected(Path(scheme), State(keys.app.clone()), headers, query).await
}

/// `POST /http-keys/token`: client credentials by `client_secret_basic` only.
async fn token(
    State(keys): State<HttpKeys>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let issued = (|| -> Result<Value, ApiError> {
        let Form(form) = form.map_err(|e| ApiError::BadBody(e.body_text()))?;
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return Err(ApiError::UnsupportedGrantType);
        }
        if form.contains_key("client_secret") {
            return Err(ApiError::BadBody(
                "the client secret goes in the Authorization header (client_secret_basic), \
                 not in the form"
                    .into(),
            ));
        }
        let expected = base64(format!("{OAUTH_CLIENT_ID}:{}", keys.app.inner.api_key.0).as_bytes());
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(scheme, creds)| {
                scheme.eq_ignore_ascii_case("basic") && creds.trim() == expected
            });
        if !basic {
            return Err(ApiError::InvalidClient);
        }
        let (token, lifetime) = lock(&keys.app.inner.oauth).issue(Instant::now());
        Ok(json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime}))
    })();
    match issued {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}
