//! Records of hostile shapes, as real APIs send them, for the end-to-end tests of what the
//! pipeline does with each (`tests/tests/hostile_records.rs`): keys that normalise to one
//! column, integers beyond 64 bits, odd primary keys, an object repeating a key, blank and
//! dotted keys, a record 10,000 fields wide or nested 100 (or 200) levels deep, NaN written
//! as a string, leap seconds and year 0, NUL in text, names longer than PostgreSQL's 63
//! bytes.
//!
//! `GET /v1/hostile-records/{case}?offset=&limit=&api_key=` pages a case's records as
//! `/v1/resource` pages its set (`{"data": [...], "total": n}`, the key in the query). The
//! body is written as text, record by record, so it can say what `serde_json::Value` cannot
//! (the same key twice, digits beyond any integer type). Most cases start with three plain
//! records (`{"id": 1, "name": "ok 1", "amount": 1}`, ...) so that with `limit = 3` the
//! first page loads and the hostile record comes on the second.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::{
    ApiError, AppState, DEFAULT_LIMIT, DEFAULT_OFFSET, LogEntry, Params, answer, check_limit,
    param, require_query_key,
};

/// The routes of this module (merged into the app's router, which adds the state).
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/hostile-records/{case}", get(get_case))
}

/// Every case's name, in the order documented in docs/binaries.md.
pub const CASES: [&str; 28] = [
    "case-collision",
    "pk-collision",
    "unicode-collision",
    "equal-duplicates",
    "child-collision",
    "int-2p63",
    "int-2p64",
    "int-below-i64",
    "int-10p30",
    "inexact-double",
    "float-beyond-double",
    "missing-pk",
    "null-pk",
    "object-pk",
    "list-pk",
    "float-pk",
    "bool-pk",
    "same-key-twice",
    "duplicate-json-key",
    "blank-keys",
    "dotted-keys",
    "wide",
    "deep",
    "too-deep",
    "nan-strings",
    "odd-timestamps",
    "nul-text",
    "long-names",
];

/// Fields of the `wide` record besides `id`.
pub const WIDE_FIELDS: usize = 10_000;

/// `{"id": 1, "name": "ok 1", "amount": 1}` and the next two.
fn plain() -> Vec<String> {
    (1..=3)
        .map(|i| format!(r#"{{"id": {i}, "name": "ok {i}", "amount": {i}}}"#))
        .collect()
}

/// `plain()` then `hostile`.
fn after_plain(hostile: &[&str]) -> Vec<String> {
    let mut records = plain();
    records.extend(hostile.iter().map(|r| (*r).to_owned()));
    records
}

/// An object nested `depth` levels under `"a"`: `{"a": {"a": ... {"v": 1}}}`.
fn nested(depth: usize) -> String {
    let mut text = String::from(r#"{"v": 1}"#);
    for _ in 0..depth {
        text = format!(r#"{{"a": {text}}}"#);
    }
    text
}

/// The raw JSON text of each record of `case`, or `None` for an unknown case.
pub fn records(case: &str) -> Option<Vec<String>> {
    let records = match case {
        "case-collision" => after_plain(&[r#"{"id": 4, "Name": "A", "name": "b", "amount": 4}"#]),
        "pk-collision" => after_plain(&[r#"{"id": 4, "Id": 5, "name": "ok 4", "amount": 4}"#]),
        "unicode-collision" => after_plain(&[r#"{"id": 4, "名前": "Hanako", "😀": "smile"}"#]),
        // Nothing is lost: the same value twice, a null beside a value, a key repeated with
        // the same value.
        "equal-duplicates" => vec![
            r#"{"id": 1, "ID": 1, "Name": "same", "name": "same"}"#.to_owned(),
            r#"{"id": 2, "Name": null, "name": "kept"}"#.to_owned(),
            r#"{"id": 3, "name": "twice", "name": "twice"}"#.to_owned(),
        ],
        "child-collision" => after_plain(&[
            r#"{"id": 4, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "Qty": 2, "qty": 3}]}"#,
        ]),
        "int-2p63" => after_plain(&[r#"{"id": 4, "amount": 9223372036854775808}"#]),
        "int-2p64" => after_plain(&[r#"{"id": 4, "amount": 18446744073709551616}"#]),
        "int-below-i64" => after_plain(&[r#"{"id": 4, "amount": -9223372036854775809}"#]),
        "int-10p30" => after_plain(&[r#"{"id": 4, "amount": 1000000000000000000000000000000}"#]),
        "inexact-double" => vec![
            r#"{"id": 1, "ratio": 0.5}"#.to_owned(),
            r#"{"id": 2, "ratio": 1.25}"#.to_owned(),
            r#"{"id": 3, "ratio": 2.0}"#.to_owned(),
            // 2^53 + 1: no double holds it.
            r#"{"id": 4, "ratio": 9007199254740993}"#.to_owned(),
        ],
        "float-beyond-double" => after_plain(&[r#"{"id": 4, "ratio": 1e400}"#]),
        "missing-pk" => after_plain(&[r#"{"name": "no id", "amount": 4}"#]),
        "null-pk" => after_plain(&[r#"{"id": null, "name": "null id", "amount": 4}"#]),
        "object-pk" => after_plain(&[r#"{"id": {"tenant": 1, "n": 4}, "amount": 4}"#]),
        "list-pk" => after_plain(&[r#"{"id": [4, 5], "amount": 4}"#]),
        "float-pk" => vec![
            r#"{"id": 1.5, "name": "one and a half"}"#.to_owned(),
            r#"{"id": 2.25, "name": "two and a quarter"}"#.to_owned(),
        ],
        "bool-pk" => vec![
            r#"{"id": true, "name": "yes"}"#.to_owned(),
            r#"{"id": false, "name": "no"}"#.to_owned(),
        ],
        "same-key-twice" => vec![
            r#"{"id": 1, "name": "first version", "amount": 1}"#.to_owned(),
            r#"{"id": 2, "name": "other", "amount": 2}"#.to_owned(),
            r#"{"id": 1, "name": "second version", "amount": 3}"#.to_owned(),
        ],
        "duplicate-json-key" => {
            after_plain(&[r#"{"id": 4, "name": "ok 4", "amount": 4, "amount": 40}"#])
        }
        "blank-keys" => vec![
            r#"{"id": 1, "": "empty key"}"#.to_owned(),
            r#"{"id": 2, "  ": "blank key", "n": {"": "nested empty"}}"#.to_owned(),
        ],
        "dotted-keys" => {
            vec![r#"{"id": 1, "a.b": 1, "c__d": 2, "e": {"f.g": 3}, "h-i": 4}"#.to_owned()]
        }
        "wide" => {
            let mut text = String::from(r#"{"id": 1"#);
            for i in 0..WIDE_FIELDS {
                text.push_str(&format!(r#", "f{i}": {i}"#));
            }
            text.push('}');
            vec![text]
        }
        "deep" => vec![format!(r#"{{"id": 1, "a": {}}}"#, nested(99))],
        "too-deep" => after_plain(&[&format!(r#"{{"id": 4, "a": {}}}"#, nested(199))]),
        "nan-strings" => vec![
            r#"{"id": 1, "ratio": 1.5}"#.to_owned(),
            r#"{"id": 2, "ratio": "NaN"}"#.to_owned(),
            r#"{"id": 3, "ratio": "Infinity"}"#.to_owned(),
            r#"{"id": 4, "ratio": "-Infinity"}"#.to_owned(),
        ],
        "odd-timestamps" => vec![
            r#"{"id": 1, "at": "2024-01-01T00:00:00Z"}"#.to_owned(),
            r#"{"id": 2, "at": "2016-12-31T23:59:60Z"}"#.to_owned(),
            r#"{"id": 3, "at": "0000-01-01T00:00:00Z"}"#.to_owned(),
            r#"{"id": 4, "at": "2024-01-01T00:00:00.123456789Z"}"#.to_owned(),
        ],
        "nul-text" => vec![r#"{"id": 1, "text": "a\u0000b"}"#.to_owned()],
        // Two keys sharing their first 63 bytes (PostgreSQL's limit for a name), and a list
        // whose child table's name is longer than 63 bytes.
        "long-names" => {
            let head = "x".repeat(63);
            let list = "y".repeat(70);
            vec![format!(
                r#"{{"id": 1, "{head}_first": "one", "{head}_second": "two", "{list}": [{{"v": 1}}, {{"v": 2}}]}}"#
            )]
        }
        _ => return None,
    };
    Some(records)
}

async fn get_case(
    State(state): State<AppState>,
    Path(case): Path<String>,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let (params, offset, limit) = crate::paged_query(query);
    let entry = LogEntry {
        endpoint: Some("/v1/hostile-records"),
        offset,
        limit,
        since: None,
        status: 0,
    };
    answer(&state, entry, || {
        let params = params?;
        require_query_key(&state, &params)?;
        let offset = param(&params, "offset", DEFAULT_OFFSET)?;
        let limit = param(&params, "limit", DEFAULT_LIMIT)?;
        check_limit(&state.settings(), limit)?;
        let records = records(&case).ok_or_else(|| {
            ApiError::BadParam(format!(
                "unknown case {case:?}; cases: {}",
                CASES.join(", ")
            ))
        })?;
        Ok(page(&records, offset, limit).into_response())
    })
    .await
}

/// The page `offset..offset + limit` of `records` as the response: JSON text.
fn page(records: &[String], offset: u64, limit: u64) -> Response {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(records.len());
    let end = start
        .saturating_add(usize::try_from(limit).unwrap_or(usize::MAX))
        .min(records.len());
    let body = format!(
        r#"{{"data": [{}], "total": {}}}"#,
        records[start..end].join(", "),
        records.len()
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_has_records_and_pages_them() {
        for case in CASES {
            let records = records(case).unwrap_or_else(|| panic!("{case}"));
            assert!(!records.is_empty(), "{case}");
        }
        assert!(records("nope").is_none());
        let all = records("case-collision").unwrap();
        assert_eq!(all.len(), 4);
        assert!(all[3].contains(r#""Name": "A""#));
        // Every case but the repeated key is valid JSON even for a strict parser; the
        // repeated key is the same text serde_json reads with the last value winning.
        for case in CASES.iter().filter(|c| !["too-deep"].contains(c)) {
            for record in records(case).unwrap() {
                let parsed: serde_json::Value = serde_json::from_str(&record).unwrap();
                assert!(parsed.is_object(), "{case}: {record}");
            }
        }
        let wide: serde_json::Value = serde_json::from_str(&records("wide").unwrap()[0]).unwrap();
        assert_eq!(wide.as_object().unwrap().len(), WIDE_FIELDS + 1);
    }

    #[tokio::test]
    async fn pages_slice_the_records_and_say_the_total() {
        let all = records("same-key-twice").unwrap();
        let text = |response: Response| async move {
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };
        let parsed = text(page(&all, 1, 5)).await;
        assert_eq!(parsed["total"], 3);
        assert_eq!(parsed["data"].as_array().unwrap().len(), 2);
        assert_eq!(parsed["data"][0]["id"], 2);
        assert_eq!(parsed["data"][1]["name"], "second version");
        let parsed = text(page(&all, 10, 5)).await;
        assert_eq!(parsed["data"], serde_json::json!([]));
        let parsed = text(page(&all, 0, u64::MAX)).await;
        assert_eq!(parsed["data"].as_array().unwrap().len(), 3);
    }
}
