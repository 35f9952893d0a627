//! `/v1/incremental`: a record set that grows and changes between runs, for incremental
//! loading. Each record has an `updated_at` from a clock that moves one second per change;
//! `POST /admin/mutate {"append": N, "update": [ids]}` changes the set. A request filters by
//! `updated_since` (records with `updated_at >= updated_since`), sorts by `updated_at` then
//! `id`, and pages by `offset`/`limit` with the filtered `total`, as `/v1/resource` does.
//! The request log shows each request's `updated_since`.
//!
//! The records are those of `/v1/resource` (by index) with their own `updated_at`, and a
//! body that says how often the record was updated.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    ApiError, AppState, DEFAULT_LIMIT, DEFAULT_OFFSET, LogEntry, Params, answer, check_limit, lock,
    param, record, require_query_key,
};

/// 2026-06-01T00:00:00Z: the clock's zero.
const CLOCK_EPOCH_SECONDS: i64 = 1_780_272_000;

/// The mutable record set: per record (index = id - 1) its `updated_at` (clock seconds) and
/// how often it was updated.
#[derive(Debug, Default)]
pub(crate) struct IncrementalSet {
    updated: Vec<i64>,
    versions: Vec<u64>,
    clock: i64,
}

impl IncrementalSet {
    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    /// Updates `ids` (each bumps the clock), then appends `append` records.
    fn mutate(&mut self, append: u64, update: &[u64]) -> Result<(), ApiError> {
        if let Some(bad) = update
            .iter()
            .find(|id| **id == 0 || **id > self.updated.len() as u64)
        {
            return Err(ApiError::BadBody(format!(
                "no record with id {bad} (ids are 1..={})",
                self.updated.len()
            )));
        }
        for id in update {
            let i = (*id - 1) as usize;
            self.updated[i] = self.tick();
            self.versions[i] += 1;
        }
        for _ in 0..append {
            let t = self.tick();
            self.updated.push(t);
            self.versions.push(0);
        }
        Ok(())
    }

    fn record(&self, i: usize) -> Value {
        let mut rec = record(i as u64, 0, 0, u64::MAX);
        rec["updated_at"] = json!(timestamp(self.updated[i]));
        if self.versions[i] > 0 {
            rec["body"] = json!(format!(
                "{} (update {})",
                rec["body"].as_str().unwrap_or_default(),
                self.versions[i]
            ));
        }
        rec
    }

    /// The indexes of the records updated at or after `since` (clock seconds), by
    /// `updated_at` then id.
    fn since(&self, since: Option<i64>) -> Vec<usize> {
        let mut hits: Vec<usize> = (0..self.updated.len())
            .filter(|i| since.is_none_or(|s| self.updated[*i] >= s))
            .collect();
        hits.sort_by_key(|i| (self.updated[*i], *i));
        hits
    }
}

fn timestamp(clock: i64) -> String {
    let t = DateTime::from_timestamp(CLOCK_EPOCH_SECONDS, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
        + TimeDelta::seconds(clock);
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `since` as clock seconds (rounded up: a record at a whole second is at or after it).
fn clock_of(since: &str) -> Result<i64, ApiError> {
    let t = DateTime::parse_from_rfc3339(since).map_err(|e| {
        ApiError::BadParam(format!(
            "updated_since `{since}` is not an RFC 3339 time: {e}"
        ))
    })?;
    let nanos = t.timestamp_subsec_nanos();
    Ok(t.timestamp() - CLOCK_EPOCH_SECONDS + i64::from(nanos > 0))
}

/// `GET /v1/incremental?updated_since=T&offset=N&limit=M` → `{"data", "total"}`.
pub(crate) async fn get_incremental(
    State(state): State<AppState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let params = query.map(|Query(p)| p).map_err(|_| ApiError::BadQuery);
    let entry = LogEntry {
        endpoint: Some("/v1/incremental"),
        offset: params
            .as_ref()
            .ok()
            .and_then(|p| param(p, "offset", DEFAULT_OFFSET).ok()),
        limit: params
            .as_ref()
            .ok()
            .and_then(|p| param(p, "limit", DEFAULT_LIMIT).ok()),
        since: params
            .as_ref()
            .ok()
            .and_then(|p| p.get("updated_since").cloned()),
        status: 0,
    };
    answer(&state, entry, || {
        let params = params?;
        require_query_key(&state, &params)?;
        let offset = param(&params, "offset", DEFAULT_OFFSET)?;
        let limit = param(&params, "limit", DEFAULT_LIMIT)?;
        check_limit(&state.settings(), limit)?;
        let since = params
            .get("updated_since")
            .map(|s| clock_of(s))
            .transpose()?;
        let set = lock(&state.inner.incremental);
        let hits = set.since(since);
        let data: Vec<Value> = hits
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|i| set.record(*i))
            .collect();
        Ok(Json(json!({ "data": data, "total": hits.len() })).into_response())
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mutation {
    #[serde(default)]
    append: u64,
    #[serde(default)]
    update: Vec<u64>,
}

/// `POST /admin/mutate {"append": N, "update": [ids]}` → `{"records", "max_updated_at"}`.
pub(crate) async fn post_mutate(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let m: Mutation =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    let mut set = lock(&state.inner.incremental);
    set.mutate(m.append, &m.update)?;
    tracing::info!(
        append = m.append,
        updated = m.update.len(),
        "incremental set changed"
    );
    Ok(Json(json!({
        "records": set.updated.len(),
        "max_updated_at": set.updated.iter().max().map(|c| timestamp(*c)),
    })))
}

/// `GET /admin/incremental/records`: every record of the set, by id.
pub(crate) async fn get_records(State(state): State<AppState>) -> Json<Value> {
    let set = lock(&state.inner.incremental);
    Json(Value::Array(
        (0..set.updated.len()).map(|i| set.record(i)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_bump_the_clock_and_order_the_set() {
        let mut set = IncrementalSet::default();
        set.mutate(3, &[]).unwrap();
        assert_eq!(set.updated, [1, 2, 3]);
        set.mutate(1, &[1]).unwrap();
        assert_eq!(set.updated, [4, 2, 3, 5]);
        assert_eq!(set.versions, [1, 0, 0, 0]);
        assert_eq!(set.since(None), [1, 2, 0, 3]);
        assert_eq!(set.since(Some(4)), [0, 3]);
        assert!(set.mutate(0, &[9]).is_err());
        let rec = set.record(0);
        assert_eq!(rec["id"], 1);
        assert_eq!(rec["updated_at"], "2026-06-01T00:00:04Z");
        assert!(rec["body"].as_str().unwrap().ends_with("(update 1)"));
    }

    #[test]
    fn since_parses_rfc3339() {
        assert_eq!(clock_of("2026-06-01T00:00:04Z").unwrap(), 4);
        assert_eq!(clock_of("2026-06-01T02:00:04+02:00").unwrap(), 4);
        assert_eq!(clock_of("2026-06-01T00:00:03.5Z").unwrap(), 4);
        assert!(clock_of("yesterday").is_err());
        assert_eq!(timestamp(4), "2026-06-01T00:00:04Z");
    }
}
