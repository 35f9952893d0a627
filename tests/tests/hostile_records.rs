//! Hostile record shapes from the API (the demo API's `/v1/hostile-records/{case}`), each
//! with its asserted outcome: an exact load (SQLite and, where the destination matters,
//! PostgreSQL) or a failed run whose error names the record and the field, after which what
//! the broker acknowledged still loads exactly.
//!
//! - keys normalising to one column (`Name`/`name`, `id`/`Id`, `名前`/`😀`, inside a list
//!   element): an error naming record, field and both keys; the same value twice, or a
//!   null beside a value, loads;
//! - integers beyond 64 bits (2^63, 2^64, -2^63-1, 10^30): the same error for each; under a
//!   `text` or `decimal` hint they load digit for digit; an integer no double holds in a
//!   double field, and a float beyond a double's range, are errors; "NaN" and "Infinity"
//!   strings in a number field load as text in a variant column;
//! - primary keys: missing, null, an object or a list are errors; a float or a bool loads; the
//!   same key twice loads the later record;
//! - an object repeating a key with another value is an error naming key, line and column;
//!   blank keys load as `_empty`; dotted keys as `a_b`; a record 10,000 fields wide fails
//!   in the loader naming SQLite's limit; nested 100 levels loads, 200 levels is an error;
//!   leap seconds, year 0 and nanoseconds load as the text they were; NUL loads byte for
//!   byte into SQLite.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use e2e::{API_KEY, Broker, DemoApi, PgSchema, Pipeline, run, tail};
use rusqlite::types::ValueRef;
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(180);

/// A pipeline `name` on `broker` whose one resource, `records`, pages `case` `limit` records
/// at a time; `extra` adds lines to the resource (hints, `max_table_nesting`).
fn pipeline(
    broker: &Broker,
    api: &DemoApi,
    name: &str,
    case: &str,
    limit: u64,
    extra: &str,
) -> Result<Pipeline> {
    let rest = format!(
        r#"{client}
[[resources]]
name = "records"
topic = "{name}.records"
endpoint = {{ path = "/v1/hostile-records/{case}", data_selector = "data", paginator = {{ type = "offset", limit = {limit} }} }}
{extra}
"#,
        client = api.client_toml(""),
    );
    Pipeline::with_config(broker, name, &rest)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the extractor (one page at a time, so the pages before a bad one are published
/// first) and returns its output, whatever its exit.
fn extract(pipeline: &Pipeline) -> Result<Output> {
    let mut cmd = pipeline.extractor()?;
    let _ = cmd.env("EXTRACTOR_PAGE_CONCURRENCY", "1");
    run(cmd, RUN)
}

/// The extractor must fail, its error naming every one of `needles`, without the API key.
fn extract_fails(pipeline: &Pipeline, needles: &[&str]) -> Result<String> {
    let out = extract(pipeline)?;
    let err = stderr(&out);
    ensure!(
        !out.status.success(),
        "the run must fail: {}",
        tail(&err, 20)
    );
    ensure!(
        out.status.code().is_some(),
        "killed by a signal: {}",
        tail(&err, 20)
    );
    ensure!(!err.contains("panicked"), "{}", tail(&err, 20));
    for needle in needles {
        ensure!(
            err.contains(needle),
            "the error names {needle:?}: {}",
            tail(&err, 10)
        );
    }
    ensure!(!err.contains(API_KEY));
    eprintln!("{}", tail(&err, 2));
    Ok(err)
}

fn extract_ok(pipeline: &Pipeline) -> Result<()> {
    let out = extract(pipeline)?;
    ensure!(
        out.status.success(),
        "extractor failed: {}",
        tail(&stderr(&out), 20)
    );
    Ok(())
}

/// Loads the topic into SQLite, or into `url`, until caught up.
fn load(pipeline: &Pipeline, url: Option<&str>) -> Result<Output> {
    let mut cmd = match url {
        Some(url) => pipeline.loader_to(url)?,
        None => pipeline.loader()?,
    };
    let _ = cmd.arg("--until-caught-up");
    run(cmd, RUN)
}

fn load_ok(pipeline: &Pipeline, url: Option<&str>) -> Result<()> {
    let out = load(pipeline, url)?;
    ensure!(
        out.status.success(),
        "loader failed: {}",
        tail(&stderr(&out), 20)
    );
    Ok(())
}

/// Every row of `table` in SQLite, ordered by `order`, as column → JSON value (integers
/// and reals as numbers, text as strings); `_dlt` columns left out.
fn sqlite_rows(
    pipeline: &Pipeline,
    table: &str,
    order: &str,
) -> Result<Vec<BTreeMap<String, Value>>> {
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY {order}"))?;
    let names: Vec<String> = stmt
        .column_names()
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    let rows = stmt.query_map([], |r| {
        let mut row = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            if name.starts_with("_dlt") {
                continue;
            }
            let value = match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => json!(v),
                ValueRef::Real(v) => json!(v),
                ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                ValueRef::Blob(b) => json!(format!("<blob {} bytes>", b.len())),
            };
            let _ = row.insert(name.clone(), value);
        }
        Ok(row)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every row of `table` in PostgreSQL as `row_to_json` gives it (numerics digit for digit).
fn pg_rows(pg: &mut PgSchema, table: &str, order: &str) -> Result<Vec<BTreeMap<String, Value>>> {
    let rows = pg.query(&format!(
        "SELECT row_to_json(t)::text FROM {{schema}}.\"{table}\" t ORDER BY {order}"
    ))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let text: String = row.get(0);
        let Value::Object(map) = common::json::from_str(&text)? else {
            bail!("row_to_json gave {text}");
        };
        out.push(
            map.into_iter()
                .filter(|(k, _)| !k.starts_with("_dlt"))
                .collect(),
        );
    }
    Ok(out)
}

/// `rows` as compact JSON text with keys in order, for comparing with [`canon`].
fn text(rows: &[BTreeMap<String, Value>]) -> String {
    Value::Array(
        rows.iter()
            .map(|r| Value::Object(r.clone().into_iter().collect()))
            .collect(),
    )
    .to_string()
}

/// An expectation written as a JSON list of rows, as [`text`] prints rows.
fn canon(expected: &Value) -> String {
    let rows: Vec<BTreeMap<String, Value>> = expected
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_object())
        .map(|r| r.clone().into_iter().collect())
        .collect();
    text(&rows)
}

/// The plain records 1..=3 of the cases that start with them, as loaded.
fn plain_rows() -> String {
    canon(&json!([
        {"id": 1, "name": "ok 1", "amount": 1},
        {"id": 2, "name": "ok 2", "amount": 2},
        {"id": 3, "name": "ok 3", "amount": 3},
    ]))
}

fn postgres(name: &str) -> Result<Option<PgSchema>> {
    PgSchema::create(name)
}

#[test]
fn keys_normalising_to_one_column_fail_the_run_naming_record_field_and_keys() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;

    // `Name` and `name` with different values: dlt keeps "b" and drops "A" without a word.
    let p = pipeline(&broker, &api, "e2e_hr_case", "case-collision", 3, "")?;
    let _ = extract_fails(
        &p,
        &[
            "page 2",
            "id=4",
            r#"keys "Name" and "name""#,
            "field `name`",
        ],
    )?;
    // What was published before the bad page loads, exactly, and nothing of record 4.
    load_ok(&p, None)?;
    let rows = sqlite_rows(&p, "records", "id")?;
    ensure!(text(&rows) == plain_rows(), "{}", text(&rows));

    // `Id` would have overwritten the primary key (dlt publishes the record under 5 and
    // record 4 is gone).
    let p = pipeline(&broker, &api, "e2e_hr_pk", "pk-collision", 3, "")?;
    let _ = extract_fails(&p, &["id=4", r#"keys "id" and "Id""#, "field `id`"])?;

    // Both become `x`.
    let p = pipeline(&broker, &api, "e2e_hr_unicode", "unicode-collision", 3, "")?;
    let _ = extract_fails(&p, &["id=4", r#"keys "名前" and "😀""#, "field `x`"])?;

    // Inside a list element (a child-table row): refused before publishing, naming the
    // root record; with max_table_nesting = 0 the list stays JSON text and loads as sent.
    let p = pipeline(&broker, &api, "e2e_hr_child", "child-collision", 3, "")?;
    let _ = extract_fails(
        &p,
        &[
            "id=4",
            r#"keys "items"[1]."Qty" and "items"[1]."qty""#,
            "field `items[].qty`",
        ],
    )?;
    let p = pipeline(
        &broker,
        &api,
        "e2e_hr_child_json",
        "child-collision",
        3,
        "max_table_nesting = 0",
    )?;
    extract_ok(&p)?;
    load_ok(&p, None)?;
    let rows = sqlite_rows(&p, "records", "id")?;
    ensure!(rows.len() == 4, "{}", text(&rows));
    ensure!(
        rows[3]["items"] == json!(r#"[{"sku":"a","qty":1},{"sku":"b","Qty":2,"qty":3}]"#),
        "{}",
        text(&rows)
    );
    Ok(())
}

#[test]
fn keys_that_lose_nothing_load_exactly_on_sqlite_and_postgres() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;
    let cases = [
        // The same value under two keys, a null beside a value, a key repeated with the
        // same value: nothing to lose.
        (
            "equal-duplicates",
            json!([
                {"id": 1, "name": "same"},
                {"id": 2, "name": "kept"},
                {"id": 3, "name": "twice"},
            ]),
        ),
        // Blank keys are dlt's `_empty`.
        (
            "blank-keys",
            json!([
                {"id": 1, "_empty": "empty key", "n___empty": null},
                {"id": 2, "_empty": "blank key", "n___empty": "nested empty"},
            ]),
        ),
        // Dots, `__` and dashes inside one key become one `_` (the path separator `__`
        // only ever comes from nesting).
        (
            "dotted-keys",
            json!([{"id": 1, "a_b": 1, "c_d": 2, "e__f_g": 3, "h_i": 4}]),
        ),
    ];
    for (case, expected) in cases {
        let name = format!("e2e_hr_{}", case.replace('-', "_"));
        let p = pipeline(&broker, &api, &name, case, 100, "")?;
        extract_ok(&p)?;
        load_ok(&p, None)?;
        let rows = sqlite_rows(&p, "records", "id")?;
        ensure!(
            text(&rows) == canon(&expected),
            "{case} sqlite: {}",
            text(&rows)
        );
        if let Some(mut pg) = postgres(&name)? {
            load_ok(&p, Some(&pg.url))?;
            let rows = pg_rows(&mut pg, "records", "id")?;
            ensure!(
                text(&rows) == canon(&expected),
                "{case} postgres: {}",
                text(&rows)
            );
        }
    }
    Ok(())
}

/// The `amount` of each row, as text (a JSON string's content, or a number's digits).
fn amounts(rows: &[BTreeMap<String, Value>]) -> Vec<String> {
    rows.iter()
        .map(|r| match &r["amount"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn integers_beyond_64_bits_fail_alike_or_load_digit_for_digit_under_a_hint() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;

    // 2^63 was refused, 2^64 landed as the REAL 1.8446744073709552e19 and -2^63-1 as -2^63:
    // now every integer no i64 holds is the same error, naming record, field and digits.
    for (case, digits) in [
        ("int-2p63", "9223372036854775808"),
        ("int-2p64", "18446744073709551616"),
        ("int-below-i64", "-9223372036854775809"),
        ("int-10p30", "1000000000000000000000000000000"),
    ] {
        let name = format!("e2e_hr_{}", case.replace('-', "_"));
        let p = pipeline(&broker, &api, &name, case, 3, "")?;
        let _ = extract_fails(
            &p,
            &[
                "id=4",
                "field `amount`",
                &format!("integer {digits} does not fit a 64-bit signed integer"),
                "hint the column as double, decimal or text",
            ],
        )?;
        load_ok(&p, None)?;
        let rows = sqlite_rows(&p, "records", "id")?;
        ensure!(text(&rows) == plain_rows(), "{case}: {}", text(&rows));
    }

    // Under a `text` or a `decimal` hint the digits survive, on SQLite and PostgreSQL.
    for (case, hint, last) in [
        (
            "int-2p64",
            r#"columns = { amount = { data_type = "text" } }"#,
            "18446744073709551616",
        ),
        (
            "int-below-i64",
            r#"columns = { amount = { data_type = "decimal", precision = 38, scale = 0 } }"#,
            "-9223372036854775809",
        ),
        (
            "int-10p30",
            r#"columns = { amount = { data_type = "decimal", precision = 38, scale = 0 } }"#,
            "1000000000000000000000000000000",
        ),
    ] {
        let name = format!("e2e_hr_hinted_{}", case.replace('-', "_"));
        let p = pipeline(&broker, &api, &name, case, 3, hint)?;
        extract_ok(&p)?;
        load_ok(&p, None)?;
        let expected = ["1", "2", "3", last];
        let rows = sqlite_rows(&p, "records", "id")?;
        ensure!(amounts(&rows) == expected, "{case} sqlite: {}", text(&rows));
        if let Some(mut pg) = postgres(&name)? {
            load_ok(&p, Some(&pg.url))?;
            let rows = pg_rows(&mut pg, "records", "id")?;
            ensure!(
                amounts(&rows) == expected,
                "{case} postgres: {}",
                text(&rows)
            );
        }
    }

    // A double field takes only numbers a double holds exactly.
    let p = pipeline(&broker, &api, "e2e_hr_inexact", "inexact-double", 3, "")?;
    let _ = extract_fails(
        &p,
        &[
            "id=4",
            "field `ratio`",
            "integer 9007199254740993 cannot be stored exactly as a double",
        ],
    )?;
    let p = pipeline(
        &broker,
        &api,
        "e2e_hr_huge_float",
        "float-beyond-double",
        3,
        "",
    )?;
    let _ = extract_fails(
        &p,
        &["id=4", "field `ratio`", "is beyond the range of a double"],
    )?;

    // NaN and infinities written as strings stay the strings they were, in a variant
    // column beside the doubles (dlt would coerce "NaN" into the double column).
    let p = pipeline(&broker, &api, "e2e_hr_nan", "nan-strings", 100, "")?;
    extract_ok(&p)?;
    let expected = canon(&json!([
        {"id": 1, "ratio": 1.5, "ratio__v_text": null},
        {"id": 2, "ratio": null, "ratio__v_text": "NaN"},
        {"id": 3, "ratio": null, "ratio__v_text": "Infinity"},
        {"id": 4, "ratio": null, "ratio__v_text": "-Infinity"},
    ]));
    load_ok(&p, None)?;
    let rows = sqlite_rows(&p, "records", "id")?;
    ensure!(text(&rows) == expected, "sqlite: {}", text(&rows));
    if let Some(mut pg) = postgres("e2e_hr_nan")? {
        load_ok(&p, Some(&pg.url))?;
        let rows = pg_rows(&mut pg, "records", "id")?;
        ensure!(text(&rows) == expected, "postgres: {}", text(&rows));
    }
    Ok(())
}

#[test]
fn odd_primary_keys_fail_clearly_or_load_exactly() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;

    // No key, a null key, an object or a list as the key: the run fails on the record's
    // position and the key field (dlt refuses all four too), after page 1 was published.
    for (case, needles) in [
        (
            "missing-pk",
            &[
                "page 2",
                "record #0 of the page has no value for primary key field `id`",
            ][..],
        ),
        (
            "null-pk",
            &[
                "page 2",
                "record #0 of the page has no value for primary key field `id`",
            ][..],
        ),
        (
            "object-pk",
            &[
                "page 2",
                "record #0 of the page: primary key field `id` holds an object",
            ][..],
        ),
        (
            "list-pk",
            &[
                "page 2",
                "record #0 of the page: primary key field `id` holds a list",
            ][..],
        ),
    ] {
        let name = format!("e2e_hr_{}", case.replace('-', "_"));
        let p = pipeline(&broker, &api, &name, case, 3, "")?;
        let _ = extract_fails(&p, needles)?;
        load_ok(&p, None)?;
        let rows = sqlite_rows(&p, "records", "id")?;
        ensure!(text(&rows) == plain_rows(), "{case}: {}", text(&rows));
    }

    // A float or a bool is a key like any other (as in dlt).
    for (case, expected) in [
        (
            "float-pk",
            json!([
                {"id": 1.5, "name": "one and a half"},
                {"id": 2.25, "name": "two and a quarter"},
            ]),
        ),
        (
            "bool-pk",
            json!([{"id": false, "name": "no"}, {"id": true, "name": "yes"}]),
        ),
    ] {
        let name = format!("e2e_hr_{}", case.replace('-', "_"));
        let p = pipeline(&broker, &api, &name, case, 100, "")?;
        extract_ok(&p)?;
        load_ok(&p, None)?;
        let mut rows = sqlite_rows(&p, "records", "id")?;
        if case == "bool-pk" {
            // SQLite has no bool: 0 and 1.
            for row in &mut rows {
                let id = row["id"].as_i64() == Some(1);
                let _ = row.insert("id".into(), json!(id));
            }
        }
        ensure!(
            text(&rows) == canon(&expected),
            "{case} sqlite: {}",
            text(&rows)
        );
        if let Some(mut pg) = postgres(&name)? {
            load_ok(&p, Some(&pg.url))?;
            let rows = pg_rows(&mut pg, "records", "id")?;
            ensure!(
                text(&rows) == canon(&expected),
                "{case} postgres: {}",
                text(&rows)
            );
        }
    }

    // The same key twice on one page: both are published, the later one is the row (dlt's
    // merge kept the first in our run on duckdb; its docs leave the choice open without
    // `dedup_sort`).
    let p = pipeline(&broker, &api, "e2e_hr_same_key", "same-key-twice", 100, "")?;
    extract_ok(&p)?;
    let expected = canon(&json!([
        {"id": 1, "name": "second version", "amount": 3},
        {"id": 2, "name": "other", "amount": 2},
    ]));
    load_ok(&p, None)?;
    let rows = sqlite_rows(&p, "records", "id")?;
    ensure!(text(&rows) == expected, "sqlite: {}", text(&rows));
    if let Some(mut pg) = postgres("e2e_hr_same_key")? {
        load_ok(&p, Some(&pg.url))?;
        let rows = pg_rows(&mut pg, "records", "id")?;
        ensure!(text(&rows) == expected, "postgres: {}", text(&rows));
    }
    Ok(())
}

#[test]
fn odd_shapes_fail_clearly_or_load_exactly() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;

    // An object repeating a key with another value: serde_json (and Python's json, so dlt)
    // keep the last value; the run fails naming the key and where it is.
    let p = pipeline(&broker, &api, "e2e_hr_dup_key", "duplicate-json-key", 3, "")?;
    let _ = extract_fails(
        &p,
        &[
            "offset=3",
            r#"object key "amount" appears twice with different values"#,
            "line 1 column 62",
        ],
    )?;
    load_ok(&p, None)?;
    let rows = sqlite_rows(&p, "records", "id")?;
    ensure!(text(&rows) == plain_rows(), "{}", text(&rows));

    // Nested 200 levels: beyond serde_json's recursion limit (128), an error with the
    // position; nested 100 levels loads as one long flattened column.
    let p = pipeline(&broker, &api, "e2e_hr_too_deep", "too-deep", 3, "")?;
    let _ = extract_fails(&p, &["offset=3", "recursion limit exceeded at line 1"])?;
    let p = pipeline(&broker, &api, "e2e_hr_deep", "deep", 3, "")?;
    extract_ok(&p)?;
    load_ok(&p, None)?;
    let column = format!("{}v", "a__".repeat(100));
    let expected = canon(&json!([{"id": 1, column.as_str(): 1}]));
    let rows = sqlite_rows(&p, "records", "id")?;
    ensure!(text(&rows) == expected, "sqlite: {}", text(&rows));
    if let Some(mut pg) = postgres("e2e_hr_deep")? {
        // PostgreSQL cuts names at 63 bytes: the column's name there is not asserted, only
        // that the one value arrived.
        load_ok(&p, Some(&pg.url))?;
        let rows = pg_rows(&mut pg, "records", "id")?;
        let values: Vec<&Value> = rows[0]
            .iter()
            .filter(|(k, _)| *k != "id")
            .map(|(_, v)| v)
            .collect();
        ensure!(
            rows.len() == 1 && values == [&json!(1)],
            "postgres: {}",
            text(&rows)
        );
    }

    // 10,000 fields: published (one 144 KiB record), refused by the destination when the
    // loader creates the table (SQLite allows 2,000 columns, PostgreSQL 1,600): the loader
    // fails naming the table, and the record stays in the topic.
    let p = pipeline(&broker, &api, "e2e_hr_wide", "wide", 3, "")?;
    extract_ok(&p)?;
    let out = load(&p, None)?;
    let err = stderr(&out);
    ensure!(
        !out.status.success()
            && err.contains(r#"creating table "records""#)
            && err.contains("too many columns"),
        "{}",
        tail(&err, 5)
    );
    if let Some(pg) = postgres("e2e_hr_wide")? {
        let out = load(&p, Some(&pg.url))?;
        let err = stderr(&out);
        ensure!(
            !out.status.success() && err.contains(r#"creating table "records""#),
            "{}",
            tail(&err, 5)
        );
    }

    // Timestamps that are not exact instants (a leap second, year 0 — which dlt's detection
    // refuses too — and nanoseconds) make the column text, each value as it was sent.
    let p = pipeline(
        &broker,
        &api,
        "e2e_hr_timestamps",
        "odd-timestamps",
        100,
        "",
    )?;
    extract_ok(&p)?;
    let expected = canon(&json!([
        {"id": 1, "at": "2024-01-01T00:00:00Z"},
        {"id": 2, "at": "2016-12-31T23:59:60Z"},
        {"id": 3, "at": "0000-01-01T00:00:00Z"},
        {"id": 4, "at": "2024-01-01T00:00:00.123456789Z"},
    ]));
    load_ok(&p, None)?;
    let rows = sqlite_rows(&p, "records", "id")?;
    ensure!(text(&rows) == expected, "sqlite: {}", text(&rows));
    if let Some(mut pg) = postgres("e2e_hr_timestamps")? {
        load_ok(&p, Some(&pg.url))?;
        let rows = pg_rows(&mut pg, "records", "id")?;
        ensure!(text(&rows) == expected, "postgres: {}", text(&rows));
    }

    // NUL in text passes the extractor byte for byte and loads so into SQLite (PostgreSQL
    // cannot store it: its side is tested with the destination errors).
    let p = pipeline(&broker, &api, "e2e_hr_nul", "nul-text", 100, "")?;
    extract_ok(&p)?;
    load_ok(&p, None)?;
    let conn = p.sqlite()?;
    let bytes: Vec<u8> = conn.query_row(
        "SELECT CAST(text AS BLOB) FROM records WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    ensure!(bytes == b"a\0b", "{bytes:?}");
    Ok(())
}
