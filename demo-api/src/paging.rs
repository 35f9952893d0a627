//! The record set of `/v1/resource` through each paginator style the extractor knows, so each
//! one can be tested end to end: page numbers, a next link in the body or in a `Link` header,
//! a cursor in the body (sent back as a query parameter or in a POST body), a cursor in a
//! response header, and an endpoint that never makes progress. All check the `api_key`
//! query parameter, as `/v1/resource` does.
//!
//! Cursors are opaque to clients (`c` and the offset in hex); a next link never carries the
//! API key.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::{
    ApiError, AppState, DEFAULT_LIMIT, LogEntry, Params, Settings, answer, check_limit, param,
    records, require_query_key,
};

/// The first page number of `/v1/paged` and `/v1/header-linked`.
const FIRST_PAGE: u64 = 1;

/// The opaque cursor for the page starting at `offset`.
pub fn encode_cursor(offset: u64) -> String {
    format!("c{offset:x}")
}

fn decode_cursor(cursor: &str) -> Result<u64, ApiError> {
    cursor
        .strip_prefix('c')
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or(ApiError::InvalidCursor)
}

/// `(offset, limit)` from `page` (1-based) and `per_page`.
fn page_window(params: &Params) -> Result<(u64, u64), ApiError> {
    let page = param(params, "page", FIRST_PAGE)?;
    let per_page = param(params, "per_page", DEFAULT_LIMIT)?;
    if page < FIRST_PAGE {
        return Err(ApiError::BadParam("page counts from 1".into()));
    }
    if per_page == 0 {
        return Err(ApiError::BadParam("per_page must be at least 1".into()));
    }
    Ok(((page - FIRST_PAGE).saturating_mul(per_page), per_page))
}

/// `(offset, limit)` from an optional `cursor` and `limit`.
fn cursor_window(cursor: Option<&str>, limit: u64) -> Result<(u64, u64), ApiError> {
    let offset = cursor.map(decode_cursor).transpose()?.unwrap_or(0);
    if limit == 0 {
        return Err(ApiError::BadParam("limit must be at least 1".into()));
    }
    Ok((offset, limit))
}

fn query_cursor_window(params: &Params) -> Result<(u64, u64), ApiError> {
    cursor_window(
        params.get("cursor").map(String::as_str),
        param(params, "limit", DEFAULT_LIMIT)?,
    )
}

/// The cursor of the page after `offset..offset + limit`, if there is one.
fn next_cursor(s: &Settings, offset: u64, limit: u64) -> Option<String> {
    let next = offset.saturating_add(limit);
    (next < s.records).then(|| encode_cursor(next))
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

type QueryResult = Result<Query<Params>, QueryRejection>;

fn params_of(query: QueryResult) -> Result<Params, ApiError> {
    query.map(|Query(p)| p).map_err(|_| ApiError::BadQuery)
}

/// Runs one paging endpoint: `window` reads `(offset, limit)` from the query, `body` builds
/// the response from the current settings and that window.
async fn serve_window(
    state: &AppState,
    endpoint: &'static str,
    query: QueryResult,
    window: fn(&Params) -> Result<(u64, u64), ApiError>,
    body: impl FnOnce(&Settings, u64, u64) -> Response,
) -> Response {
    let params = params_of(query);
    let logged = params.as_ref().ok().and_then(|p| window(p).ok());
    answer(state, entry(endpoint, logged), || {
        let params = params?;
        require_query_key(state, &params)?;
        let (offset, limit) = window(&params)?;
        let s = state.settings();
        check_limit(&s, limit)?;
        Ok(body(&s, offset, limit))
    })
    .await
}

/// `GET /v1/paged?page=N&per_page=M` → `{"data", "page", "total_pages"}`.
pub(crate) async fn paged(State(state): State<AppState>, query: QueryResult) -> Response {
    serve_window(
        &state,
        "/v1/paged",
        query,
        page_window,
        |s, offset, limit| {
            Json(json!({
                "data": records(s, offset, limit),
                "page": offset / limit + FIRST_PAGE,
                "total_pages": s.records.div_ceil(limit),
            }))
            .into_response()
        },
    )
    .await
}

/// `GET /v1/linked?cursor=C&limit=M` → `{"data", "next"}`, `next` a relative URL or `null`.
pub(crate) async fn linked(State(state): State<AppState>, query: QueryResult) -> Response {
    serve_window(
        &state,
        "/v1/linked",
        query,
        query_cursor_window,
        |s, offset, limit| {
            let next = next_cursor(s, offset, limit)
                .map(|c| format!("/v1/linked?cursor={c}&limit={limit}"));
            Json(json!({ "data": records(s, offset, limit), "next": next })).into_response()
        },
    )
    .await
}

/// `GET /v1/header-linked?page=N&per_page=M` → `{"data"}` with an RFC 8288 `Link` header
/// (absolute URLs, `rel="next"` while there is a next page, and `rel="last"`).
pub(crate) async fn header_linked(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: QueryResult,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    serve_window(
        &state,
        "/v1/header-linked",
        query,
        page_window,
        |s, offset, limit| {
            let page = offset / limit + FIRST_PAGE;
            let last = s.records.div_ceil(limit).max(FIRST_PAGE);
            let link = |n: u64, rel: &str| {
                format!("<http://{host}/v1/header-linked?page={n}&per_page={limit}>; rel=\"{rel}\"")
            };
            let mut links = Vec::new();
            if page < last {
                links.push(link(page + 1, "next"));
            }
            links.push(link(last, "last"));
            let mut response = Json(json!({ "data": records(s, offset, limit) })).into_response();
            if let Ok(value) = HeaderValue::from_str(&links.join(", ")) {
                let _ = response.headers_mut().insert(header::LINK, value);
            }
            response
        },
    )
    .await
}

/// `GET /v1/cursor?cursor=C&limit=M` → `{"data", "cursors": {"next"}}`.
pub(crate) async fn cursor(State(state): State<AppState>, query: QueryResult) -> Response {
    serve_window(
        &state,
        "/v1/cursor",
        query,
        query_cursor_window,
        cursor_page,
    )
    .await
}

fn cursor_page(s: &Settings, offset: u64, limit: u64) -> Response {
    Json(json!({
        "data": records(s, offset, limit),
        "cursors": { "next": next_cursor(s, offset, limit) },
    }))
    .into_response()
}

/// `GET /v1/header-cursor?cursor=C&limit=M` → `{"data"}` with the next cursor in the
/// response header `next` (absent on the last page).
pub(crate) async fn header_cursor(State(state): State<AppState>, query: QueryResult) -> Response {
    serve_window(
        &state,
        "/v1/header-cursor",
        query,
        query_cursor_window,
        |s, offset, limit| {
            let mut response = Json(json!({ "data": records(s, offset, limit) })).into_response();
            if let Some(next) = next_cursor(s, offset, limit)
                && let Ok(value) = HeaderValue::from_str(&next)
            {
                let _ = response.headers_mut().insert("next", value);
            }
            response
        },
    )
    .await
}

/// `GET /v1/stuck`: the first page, and the same next link, forever.
pub(crate) async fn stuck(State(state): State<AppState>, query: QueryResult) -> Response {
    serve_window(
        &state,
        "/v1/stuck",
        query,
        query_cursor_window,
        |s, _, limit| {
            let next = format!("/v1/stuck?cursor={}&limit={limit}", encode_cursor(limit));
            Json(json!({ "data": records(s, 0, limit), "next": next })).into_response()
        },
    )
    .await
}

/// The body of `POST /v1/search`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Search {
    #[serde(default)]
    page: SearchPage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchPage {
    cursor: Option<String>,
    size: Option<u64>,
}

/// `POST /v1/search` with `{"page": {"cursor": C, "size": M}}` (both optional) →
/// `{"data", "cursors": {"next"}}`.
pub(crate) async fn search(
    State(state): State<AppState>,
    query: QueryResult,
    body: axum::body::Bytes,
) -> Response {
    let search: Result<Search, ApiError> = if body.is_empty() {
        Ok(Search::default())
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))
    };
    let window = |s: &Search| {
        cursor_window(
            s.page.cursor.as_deref(),
            s.page.size.unwrap_or(DEFAULT_LIMIT),
        )
    };
    let logged = search.as_ref().ok().and_then(|s| window(s).ok());
    answer(&state, entry("/v1/search", logged), || {
        let params = params_of(query)?;
        require_query_key(&state, &params)?;
        let (offset, limit) = window(&search?)?;
        let s = state.settings();
        check_limit(&s, limit)?;
        Ok(cursor_page(&s, offset, limit))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for offset in [0, 1, 255, 1_000_000, u64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(offset)).unwrap(), offset);
        }
        for bad in ["", "c", "x10", "cxyz", "c-1"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_windows_count_from_one() {
        let params = |pairs: &[(&str, &str)]| -> Params {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(page_window(&params(&[])).unwrap(), (0, 100));
        assert_eq!(
            page_window(&params(&[("page", "3"), ("per_page", "40")])).unwrap(),
            (80, 40)
        );
        assert!(page_window(&params(&[("page", "0")])).is_err());
        assert!(page_window(&params(&[("per_page", "0")])).is_err());
        assert_eq!(
            next_cursor(
                &Settings {
                    records: 250,
                    ..Settings::default()
                },
                200,
                50
            ),
            None
        );
        assert_eq!(
            next_cursor(
                &Settings {
                    records: 250,
                    ..Settings::default()
                },
                100,
                50
            ),
            Some(encode_cursor(150))
        );
    }
}
