//! Records with dlt's `date`, `time` and `binary` values as an API sends them (text), for
//! the end-to-end test of those `columns` types (`tests/tests/column_types.rs`).
//!
//! `GET /v1/dlt-types?api_key=` answers `{"data": [...]}`: records 1..=6 `{"id": i, "day":
//! "2024-03-0<i>", "at": "2024-03-0<i>T23:30:00-02:00", "clock": "<HH:MM:SS.ffffff>",
//! "blob": "<base64>"}` (`blob` is the bytes `[i, 0, 255, i × 40 mod 256]` followed by `é`
//! i times in UTF-8; [`clock`] gives the time), then record 7 with all four null.

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::{AppState, LogEntry, Params, answer, require_query_key};

/// `blob` of records 1..=6, standard base64 (Python's `base64.b64encode`).
const BLOBS: [&str; 6] = [
    "AQD/KMOp",
    "AgD/UMOpw6k=",
    "AwD/eMOpw6nDqQ==",
    "BAD/oMOpw6nDqcOp",
    "BQD/yMOpw6nDqcOpw6k=",
    "BgD/8MOpw6nDqcOpw6nDqQ==",
];

/// The routes of this module (merged into the app's router, which adds the state).
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/dlt-types", get(get_types))
}

/// Record `i`'s `clock`: `HH:MM:SS.ffffff`.
pub fn clock(i: u64) -> String {
    format!(
        "{i:02}:{:02}:{:02}.{:06}",
        i * 7 % 60,
        i * 13 % 60,
        i * 111_111
    )
}

/// Every record, in order.
pub fn records() -> Vec<Value> {
    let mut out: Vec<Value> = (1..=6u64)
        .zip(BLOBS)
        .map(|(i, blob)| {
            json!({
                "id": i,
                "day": format!("2024-03-{i:02}"),
                "at": format!("2024-03-{i:02}T23:30:00-02:00"),
                "clock": clock(i),
                "blob": blob,
            })
        })
        .collect();
    out.push(json!({"id": 7, "day": null, "at": null, "clock": null, "blob": null}));
    out
}

async fn get_types(
    State(state): State<AppState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let (params, offset, limit) = crate::paged_query(query);
    let entry = LogEntry {
        endpoint: Some("/v1/dlt-types"),
        offset,
        limit,
        since: None,
        status: 0,
    };
    answer(&state, entry, || {
        let params = params?;
        require_query_key(&state, &params)?;
        Ok(Json(json!({ "data": records() })).into_response())
    })
    .await
}
