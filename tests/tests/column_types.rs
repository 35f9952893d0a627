//! dlt's `date`, `time` and `binary` column types, as `columns` hints, end to end: the demo
//! API's `/v1/dlt-types` sends them as text (a date, a timestamp with an offset hinted
//! `date`, a time of day, base64), and SQLite and PostgreSQL get the column types dlt 1.31
//! creates (SQLite `DATE`, `TIME`, `BLOB`; PostgreSQL `date`, `time without time zone`,
//! `bytea`) with the values dlt stores (`2024-03-01`, `01:07:13.111111`, the decoded bytes;
//! a timestamp hinted `date` is its UTC date). A value that is not one of them stops the
//! run naming the record and the field.

use std::time::Duration;

use anyhow::{Result, ensure};
use e2e::{Broker, DemoApi, PgSchema, Pipeline, run, run_ok};

const RUN: Duration = Duration::from_secs(180);

const HINTS: &str = r#"{ day = { data_type = "date" }, at = { data_type = "date" }, clock = { data_type = "time" }, blob = { data_type = "binary" } }"#;

fn pipeline(api: &DemoApi, broker: &Broker, name: &str, hints: &str) -> Result<Pipeline> {
    let rest = format!(
        r#"{client}
[[resources]]
name = "types"
topic = "{name}.types"
columns = {hints}
endpoint = {{ path = "/v1/dlt-types", data_selector = "data", paginator = "single_page" }}
"#,
        client = api.client_toml(""),
    );
    Pipeline::with_config(broker, name, &rest)
}

/// Record `i`'s expected values: day, at (its UTC date), clock, blob bytes.
fn expected(i: i64) -> (String, String, String, Vec<u8>) {
    let mut blob = vec![i as u8, 0, 255, (i * 40 % 256) as u8];
    blob.extend("é".repeat(i as usize).as_bytes());
    (
        format!("2024-03-{i:02}"),
        // 23:30 at -02:00 is 01:30 UTC the next day.
        format!("2024-03-{:02}", i + 1),
        format!(
            "{i:02}:{:02}:{:02}.{:06}",
            i * 7 % 60,
            i * 13 % 60,
            i * 111_111
        ),
        blob,
    )
}

#[test]
fn date_time_and_binary_hints_load_as_dlt_creates_them() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;
    let p = pipeline(&api, &broker, "dlt_types", HINTS)?;
    let _ = run_ok(p.extractor()?, RUN)?;
    let mut loader = p.loader()?;
    let _ = loader.arg("--until-caught-up");
    let _ = run_ok(loader, RUN)?;

    let conn = p.sqlite()?;
    let declared: Vec<(String, String)> = conn
        .prepare("SELECT name, type FROM pragma_table_info('types') WHERE name IN ('day', 'at', 'clock', 'blob') ORDER BY cid")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    ensure!(
        declared
            == [
                ("day".to_owned(), "DATE".to_owned()),
                ("at".to_owned(), "DATE".to_owned()),
                ("clock".to_owned(), "TIME".to_owned()),
                ("blob".to_owned(), "BLOB".to_owned()),
            ],
        "SQLite column types {declared:?}"
    );
    type Got = (
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Got> = conn
        .prepare("SELECT id, day, at, clock, blob FROM types ORDER BY id")?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    ensure!(rows.len() == 7, "{} rows", rows.len());
    for (id, day, at, clock, blob) in &rows {
        if *id == 7 {
            ensure!(day.is_none() && at.is_none() && clock.is_none() && blob.is_none());
            continue;
        }
        let (e_day, e_at, e_clock, e_blob) = expected(*id);
        ensure!(
            day.as_deref() == Some(e_day.as_str())
                && at.as_deref() == Some(e_at.as_str())
                && clock.as_deref() == Some(e_clock.as_str())
                && blob.as_deref() == Some(e_blob.as_slice()),
            "SQLite row {id}: {day:?} {at:?} {clock:?} {blob:?}"
        );
    }

    if let Some(mut pg) = PgSchema::create("e2e_dlt_types")? {
        let mut loader = p.loader_to(&pg.url)?;
        let _ = loader.arg("--until-caught-up");
        let _ = run_ok(loader, RUN)?;
        let sql = format!(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = '{}' AND table_name = 'types' \
             AND column_name IN ('day', 'at', 'clock', 'blob') ORDER BY ordinal_position",
            pg.schema
        );
        let types: Vec<(String, String)> = pg
            .query(&sql)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let want = [
            ("day", "date"),
            ("at", "date"),
            ("clock", "time without time zone"),
            ("blob", "bytea"),
        ];
        ensure!(
            types.iter().map(|(a, b)| (a.as_str(), b.as_str())).eq(want),
            "PostgreSQL column types {types:?}"
        );
        let rows = pg.query(
            "SELECT id, day::text, at::text, clock::text, blob FROM {schema}.types \
             WHERE day IS NOT NULL ORDER BY id",
        )?;
        ensure!(rows.len() == 6, "{} rows", rows.len());
        for row in rows {
            let id: i64 = row.get(0);
            let (e_day, e_at, e_clock, e_blob) = expected(id);
            let got: (String, String, String, Vec<u8>) =
                (row.get(1), row.get(2), row.get(3), row.get(4));
            // PostgreSQL prints a time without trailing zero digits.
            let e_clock = e_clock
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned();
            ensure!(
                got == (e_day, e_at, e_clock, e_blob),
                "PostgreSQL row {id}: {got:?}"
            );
        }
    }

    // Not base64: the run stops naming the record and the field.
    let bad = pipeline(
        &api,
        &broker,
        "dlt_types_bad",
        r#"{ day = { data_type = "binary" } }"#,
    )?;
    let out = run(bad.extractor()?, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "a date hinted binary loaded: {stderr}"
    );
    ensure!(
        stderr.contains("id=1") && stderr.contains("`day`") && stderr.contains("binary"),
        "{stderr}"
    );
    Ok(())
}
