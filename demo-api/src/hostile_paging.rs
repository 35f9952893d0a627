//! Endpoints that page and answer the way misbehaving third-party APIs do, for the
//! extractor's hostile-API tests (`tests/tests/hostile_paging.rs`). Each serves the demo
//! record set (`--records`), checks the API key (the `api_key` query parameter or the
//! `X-API-Key` header), and counts its requests in `GET /hostile/stats`.
//!
//! - `huge-total` (`offset`/`limit`) and `huge-pages` (`page`/`page_size`, from 1): the real
//!   records with a `total` / `total_pages` taken verbatim from `claimed_total` /
//!   `claimed_pages` (raw JSON, default 10^12).
//! - `ignores-offset`, `ignores-page`: always the first page; `with_total=1` adds the true
//!   total. `endless`: distinct records at every offset, never an end, no total.
//! - `wrong-selector` (records under `results`), `null-data` (`data: null` past the end, or
//!   on every page with `empty=1`).
//! - `compressed/{gzip,deflate,br,zstd}`: offset pages compressed with that encoding only
//!   (tower-http); the stats keep each request's `Accept-Encoding` and the
//!   `Content-Encoding` served. `binary`: a gzip body labelled plain JSON.
//! - `truncated` (`mode=length`: a Content-Length longer than the body sent; `mode=chunked`:
//!   no last chunk) and `drip` (the body sent over `drip_ms`): the first `fail` requests for
//!   the page at offset `at` (default 100) misbehave, later ones answer whole.
//! - `html`, `truncated-json`, `empty-body`, `bom` (a UTF-8 byte order mark before good
//!   JSON), `deep` (`depth` levels of nested lists in a record).
//! - `foreign-next`: `json_link` pages whose next link names the host `localhost` (the same
//!   server under another name); `redirect-away` redirects (307) to `redirect-target` on
//!   `localhost`; `redirect-loop` redirects to itself. Requests arriving under `localhost`
//!   are listed in the stats with whether they carried the key.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use tower_http::compression::CompressionLayer;

use crate::{ApiError, AppState, DEFAULT_LIMIT, KEY_HEADER, Params, lock, param, record, records};

/// The `total` the huge-total endpoints claim unless told otherwise: 10^12.
const CLAIMED: &str = "1000000000000";
/// The page a failing endpoint fails at unless told otherwise.
const DEFAULT_AT: u64 = 100;
/// A gzip stream of `{"data": [{"id": 1, ...}], "total": 1}`, served without
/// `Content-Encoding`.
const GZIP_BODY: [u8; 86] = [
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xab, 0x56, 0x4a, 0x49, 0x2c, 0x49,
    0x54, 0xb2, 0x52, 0x88, 0xae, 0x56, 0xca, 0x4c, 0x01, 0xd2, 0x86, 0x3a, 0x0a, 0x4a, 0x49, 0xf9,
    0x29, 0x95, 0x40, 0xa6, 0x52, 0x72, 0x7e, 0x6e, 0x41, 0x51, 0x6a, 0x71, 0x71, 0x6a, 0x8a, 0x42,
    0x52, 0x69, 0x89, 0x42, 0x5e, 0x7e, 0x89, 0x42, 0x4e, 0x62, 0x52, 0x6a, 0x4e, 0x4e, 0x6a, 0x8a,
    0x52, 0x6d, 0x2c, 0x50, 0x61, 0x49, 0x7e, 0x49, 0x62, 0x0e, 0x48, 0x53, 0x2d, 0x00, 0x48, 0x88,
    0x00, 0x84, 0x48, 0x00, 0x00, 0x00,
];
/// The host name links and redirects lead to: this server under another name.
const FOREIGN_HOST: &str = "localhost";

#[derive(Clone, Debug)]
struct Hostile {
    app: AppState,
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Requests per endpoint.
    requests: Mutex<BTreeMap<String, u64>>,
    /// Requests per (endpoint, offset), for the endpoints that fail the first few.
    attempts: Mutex<HashMap<(&'static str, u64), u64>>,
    /// Per compressed endpoint: each request's `Accept-Encoding` and the encoding served.
    encodings: Mutex<Vec<Encoding>>,
    /// Requests that arrived under [`FOREIGN_HOST`].
    foreign: Mutex<Vec<Visit>>,
}

#[derive(Clone, Debug, Serialize)]
struct Encoding {
    path: String,
    accept_encoding: String,
    content_encoding: String,
}

#[derive(Clone, Debug, Serialize)]
struct Visit {
    path: String,
    key_sent: bool,
}

impl Hostile {
    /// Counts a request to `endpoint`, notes it if it came under the foreign host name, and
    /// checks its key.
    fn begin(
        &self,
        endpoint: &'static str,
        query: Result<Query<Params>, QueryRejection>,
        headers: &HeaderMap,
    ) -> Result<Params, ApiError> {
        *lock(&self.inner.requests)
            .entry(endpoint.to_owned())
            .or_default() += 1;
        let params = query.map(|Query(p)| p).map_err(|_| ApiError::BadQuery)?;
        let key_sent = params
            .get("api_key")
            .is_some_and(|k| self.app.inner.api_key.matches(k))
            || headers
                .get(KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|k| self.app.inner.api_key.matches(k));
        if host_name(headers) == FOREIGN_HOST {
            lock(&self.inner.foreign).push(Visit {
                path: endpoint.to_owned(),
                key_sent,
            });
        }
        if key_sent {
            Ok(params)
        } else {
            Err(ApiError::InvalidApiKey)
        }
    }

    /// The how-many-th request (1 first) this is for `offset` of `endpoint`.
    fn attempt(&self, endpoint: &'static str, offset: u64) -> u64 {
        let mut attempts = lock(&self.inner.attempts);
        let n = attempts.entry((endpoint, offset)).or_default();
        *n += 1;
        *n
    }
}

/// The request's `Host` without the port.
fn host_name(headers: &HeaderMap) -> &str {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// The request's port (from `Host`), for links back to this server.
fn port(headers: &HeaderMap) -> Result<u16, ApiError> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| ApiError::BadParam("no port in the Host header".into()))
}

/// The misbehaving endpoints, merged into the demo API's router.
pub fn router<S>(app: AppState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let hostile = Hostile {
        app,
        inner: Arc::default(),
    };
    let only = |encoding: &str| {
        CompressionLayer::new()
            .gzip(encoding == "gzip")
            .deflate(encoding == "deflate")
            .br(encoding == "br")
            .zstd(encoding == "zstd")
    };
    let mut router = Router::new()
        .route("/hostile/stats", get(stats))
        .route("/hostile/huge-total", get(huge_total))
        .route("/hostile/huge-pages", get(huge_pages))
        .route("/hostile/ignores-offset", get(ignores_offset))
        .route("/hostile/ignores-page", get(ignores_page))
        .route("/hostile/endless", get(endless))
        .route("/hostile/wrong-selector", get(wrong_selector))
        .route("/hostile/null-data", get(null_data))
        .route("/hostile/binary", get(binary))
        .route("/hostile/truncated", get(truncated))
        .route("/hostile/drip", get(drip))
        .route("/hostile/html", get(html))
        .route("/hostile/truncated-json", get(truncated_json))
        .route("/hostile/empty-body", get(empty_body))
        .route("/hostile/bom", get(bom))
        .route("/hostile/deep", get(deep))
        .route("/hostile/foreign-next", get(foreign_next))
        .route("/hostile/redirect-away", get(redirect_away))
        .route("/hostile/redirect-target", get(redirect_target))
        .route("/hostile/redirect-loop", get(redirect_loop));
    for encoding in ["gzip", "deflate", "br", "zstd"] {
        router = router.route(
            &format!("/hostile/compressed/{encoding}"),
            get(compressed)
                .layer(only(encoding))
                .layer(from_fn_with_state(hostile.clone(), note_encoding)),
        );
    }
    router.with_state(hostile)
}

type QueryParams = Result<Query<Params>, QueryRejection>;

async fn stats(State(h): State<Hostile>) -> Json<Value> {
    let requests = lock(&h.inner.requests).clone();
    let encodings = lock(&h.inner.encodings).clone();
    let foreign = lock(&h.inner.foreign).clone();
    Json(json!({ "requests": requests, "encodings": encodings, "foreign": foreign }))
}

/// `(offset, limit)` of an offset page.
fn window(params: &Params) -> Result<(u64, u64), ApiError> {
    Ok((
        param(params, "offset", 0)?,
        param(params, "limit", DEFAULT_LIMIT)?,
    ))
}

/// A query parameter read as raw JSON (`"-5"`, `"\"many\""`, `"1e300"`).
fn raw_json(params: &Params, name: &str, default: &str) -> Result<Value, ApiError> {
    let text = params.get(name).map_or(default, String::as_str);
    serde_json::from_str(text).map_err(|e| ApiError::BadParam(format!("{name}: {e}")))
}

/// One offset page of the real records with the true total.
fn offset_page(h: &Hostile, params: &Params) -> Result<Value, ApiError> {
    let (offset, limit) = window(params)?;
    let s = h.app.settings();
    Ok(json!({ "data": records(&s, offset, limit), "total": s.records }))
}

async fn huge_total(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("huge-total", query, &headers)?;
        let (offset, limit) = window(&params)?;
        let total = raw_json(&params, "claimed_total", CLAIMED)?;
        let data = records(&h.app.settings(), offset, limit);
        Ok(Json(json!({ "data": data, "total": total })).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn huge_pages(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("huge-pages", query, &headers)?;
        let page = param(&params, "page", 1)?.max(1);
        let size = param(&params, "page_size", DEFAULT_LIMIT)?;
        let pages = raw_json(&params, "claimed_pages", CLAIMED)?;
        let data = records(&h.app.settings(), (page - 1).saturating_mul(size), size);
        Ok(Json(json!({ "data": data, "total_pages": pages })).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn ignores_offset(
    State(h): State<Hostile>,
    query: QueryParams,
    headers: HeaderMap,
) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("ignores-offset", query, &headers)?;
        let (_, limit) = window(&params)?;
        let s = h.app.settings();
        let mut body = json!({ "data": records(&s, 0, limit) });
        if params.contains_key("with_total") {
            body["total"] = json!(s.records);
        }
        Ok(Json(body).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn ignores_page(
    State(h): State<Hostile>,
    query: QueryParams,
    headers: HeaderMap,
) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("ignores-page", query, &headers)?;
        let size = param(&params, "page_size", DEFAULT_LIMIT)?;
        Ok(Json(json!({ "data": records(&h.app.settings(), 0, size) })).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn endless(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("endless", query, &headers)?;
        let (offset, limit) = window(&params)?;
        let data: Vec<Value> = (offset..offset.saturating_add(limit))
            .map(|i| record(i, 0, 0, u64::MAX))
            .collect();
        Ok(Json(json!({ "data": data })).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn wrong_selector(
    State(h): State<Hostile>,
    query: QueryParams,
    headers: HeaderMap,
) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("wrong-selector", query, &headers)?;
        let (offset, limit) = window(&params)?;
        let s = h.app.settings();
        let data = records(&s, offset, limit);
        Ok(Json(json!({ "results": data, "count": s.records })).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn null_data(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("null-data", query, &headers)?;
        let (offset, limit) = window(&params)?;
        let s = h.app.settings();
        let data = records(&s, offset, limit);
        // As a Go API serializes an empty (nil) slice.
        let data = if data.is_empty() || params.contains_key("empty") {
            Value::Null
        } else {
            Value::from(data)
        };
        Ok(Json(json!({ "data": data })).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn compressed(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("compressed", query, &headers)?;
        Ok(Json(offset_page(&h, &params)?).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

/// Notes what a compressed endpoint was asked for and what it served.
async fn note_encoding(State(h): State<Hostile>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let accept_encoding = text(request.headers(), header::ACCEPT_ENCODING);
    let response = next.run(request).await;
    let content_encoding = text(response.headers(), header::CONTENT_ENCODING);
    lock(&h.inner.encodings).push(Encoding {
        path,
        accept_encoding,
        content_encoding,
    });
    response
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn binary(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    match h.begin("binary", query, &headers) {
        Ok(_) => (
            [(header::CONTENT_TYPE, "application/json")],
            GZIP_BODY.to_vec(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Whether this request is one of the first `fail` for the page at offset `at`.
fn misbehaves(h: &Hostile, endpoint: &'static str, params: &Params) -> Result<bool, ApiError> {
    let (offset, _) = window(params)?;
    let at = param(params, "at", DEFAULT_AT)?;
    let fail = param(params, "fail", 0)?;
    Ok(offset == at && h.attempt(endpoint, offset) <= fail)
}

async fn truncated(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("truncated", query, &headers)?;
        let body = serde_json::to_vec(&offset_page(&h, &params)?)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        if !misbehaves(&h, "truncated", &params)? {
            return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
        }
        // Half the body, a pause (so the headers and that half go out), then the connection
        // ends: hyper closes it when the body stream fails.
        let half = Bytes::from(body[..body.len() / 2].to_vec());
        let stream = futures::stream::unfold(Some(half), |half| async move {
            match half {
                Some(half) => Some((Ok(half), None)),
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Err(std::io::Error::other("cut short on purpose")), None))
                }
            }
        });
        let mut response = Response::new(Body::from_stream(stream));
        let headers = response.headers_mut();
        let _ = headers.insert(
            header::CONTENT_TYPE,
            "application/json".parse().map_err(bad)?,
        );
        if params.get("mode").map(String::as_str) != Some("chunked") {
            let _ = headers.insert(header::CONTENT_LENGTH, body.len().into());
        }
        Ok(response)
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

async fn drip(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("drip", query, &headers)?;
        let body = serde_json::to_vec(&offset_page(&h, &params)?).map_err(bad)?;
        if !misbehaves(&h, "drip", &params)? {
            return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
        }
        // Ten pieces, each after a tenth of `drip_ms`.
        let pause = Duration::from_millis(param(&params, "drip_ms", 3000)? / 10);
        let piece = body.len().div_ceil(10).max(1);
        let pieces: Vec<Bytes> = body.chunks(piece).map(Bytes::copy_from_slice).collect();
        let stream = futures::stream::unfold(pieces.into_iter(), move |mut rest| async move {
            let next = rest.next()?;
            tokio::time::sleep(pause).await;
            Some((Ok::<_, std::io::Error>(next), rest))
        });
        Ok((
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn html(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    match h.begin("html", query, &headers) {
        Ok(_) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n\
             <body><h1>We'll be back soon</h1><p>Scheduled maintenance.</p></body></html>\n",
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn truncated_json(
    State(h): State<Hostile>,
    query: QueryParams,
    headers: HeaderMap,
) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("truncated-json", query, &headers)?;
        let body = serde_json::to_vec(&offset_page(&h, &params)?).map_err(bad)?;
        // A whole HTTP answer whose JSON stops mid-record (as a proxy's buffer limit cuts).
        let cut = body[..body.len() * 2 / 3].to_vec();
        Ok(([(header::CONTENT_TYPE, "application/json")], cut).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn empty_body(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    match h.begin("empty-body", query, &headers) {
        Ok(_) => ([(header::CONTENT_TYPE, "application/json")], "").into_response(),
        Err(e) => e.into_response(),
    }
}

async fn bom(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("bom", query, &headers)?;
        let mut body = "\u{feff}".as_bytes().to_vec();
        body.extend(serde_json::to_vec(&offset_page(&h, &params)?).map_err(bad)?);
        Ok((
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body,
        )
            .into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn deep(State(h): State<Hostile>, query: QueryParams, headers: HeaderMap) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("deep", query, &headers)?;
        let depth = usize::try_from(param(&params, "depth", 100_000)?).map_err(bad)?;
        // Written as text: a `Value` this deep would overflow the stack being dropped.
        let text = format!(
            r#"{{"data": [{{"id": 1, "nested": {}1{}}}], "total": 1}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn foreign_next(
    State(h): State<Hostile>,
    query: QueryParams,
    headers: HeaderMap,
) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("foreign-next", query, &headers)?;
        let page = param(&params, "page", 1)?.max(1);
        let size = param(&params, "page_size", DEFAULT_LIMIT)?.max(1);
        let s = h.app.settings();
        let data = records(&s, (page - 1).saturating_mul(size), size);
        let next = (page.saturating_mul(size) < s.records).then(|| {
            format!(
                "http://{FOREIGN_HOST}:{}/hostile/foreign-next?page={}&page_size={size}",
                port(&headers).unwrap_or_default(),
                page + 1
            )
        });
        Ok(Json(json!({ "data": data, "next": next })).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn redirect_away(
    State(h): State<Hostile>,
    query: QueryParams,
    headers: HeaderMap,
) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("redirect-away", query, &headers)?;
        let (offset, limit) = window(&params)?;
        let to = format!(
            "http://{FOREIGN_HOST}:{}/hostile/redirect-target?offset={offset}&limit={limit}",
            port(&headers)?
        );
        Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, to)],
            "moved",
        )
            .into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

async fn redirect_target(
    State(h): State<Hostile>,
    query: QueryParams,
    headers: HeaderMap,
) -> Response {
    let answer = || -> Result<Response, ApiError> {
        let params = h.begin("redirect-target", query, &headers)?;
        Ok(Json(offset_page(&h, &params)?).into_response())
    };
    answer().unwrap_or_else(IntoResponse::into_response)
}

/// Redirects to itself with one more `hop`, forever (no key needed: it serves no data).
async fn redirect_loop(State(h): State<Hostile>, query: QueryParams) -> Response {
    *lock(&h.inner.requests)
        .entry("redirect-loop".to_owned())
        .or_default() += 1;
    let hop = query
        .ok()
        .and_then(|Query(p)| p.get("hop").and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    let to = format!("/hostile/redirect-loop?hop={}", hop + 1);
    (StatusCode::FOUND, [(header::LOCATION, to)], "").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gzip_constant_is_a_gzip_stream() {
        assert_eq!(&GZIP_BODY[..3], &[0x1f, 0x8b, 0x08]);
        assert!(String::from_utf8(GZIP_BODY.to_vec()).is_err());
    }

    #[test]
    fn host_names_and_ports() {
        let mut headers = HeaderMap::new();
        let _ = headers.insert(header::HOST, "localhost:8080".parse().unwrap());
        assert_eq!(host_name(&headers), "localhost");
        assert_eq!(port(&headers).unwrap(), 8080);
        let _ = headers.insert(header::HOST, "127.0.0.1".parse().unwrap());
        assert_eq!(host_name(&headers), "127.0.0.1");
        assert!(port(&headers).is_err());
    }
}
