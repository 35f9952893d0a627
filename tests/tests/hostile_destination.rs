//! What the destination refuses, end to end: the loader's error or dead letter carries the
//! destination's own reason, and nothing acknowledged is lost.
//!
//! - PostgreSQL: two keys sharing their first 63 bytes load into two columns, shortened as
//!   dlt shortens them (a list with a long name makes a child table shortened the same
//!   way); NUL in text is removed, as dlt's PostgreSQL destination does, with a warning
//!   naming the column; a run whose every record the server refuses exits 3 (not 0), each
//!   dead letter carrying PostgreSQL's message and constraint, and `--dead-letters-ok`
//!   keeps exit 0.
//! - SQLite on a full file system (a 1 MiB tmpfs) fails saying what the operating system
//!   said, each cause once; with room made, the same topic loads exactly. On a read-only
//!   file system the error says so, not only SQLite's `attempt to write a readonly
//!   database`. These two mount a tmpfs: they need root (CAP_SYS_ADMIN); without it they
//!   skip, saying so, except under `CI` where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use e2e::{Broker, DemoApi, PgSchema, Pipeline, run, tail};

const RUN: Duration = Duration::from_secs(180);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A pipeline whose one resource, `records`, pages the demo API's hostile-records `case`.
fn case_pipeline(broker: &Broker, api: &DemoApi, name: &str, case: &str) -> Result<Pipeline> {
    let rest = format!(
        r#"{client}
[[resources]]
name = "records"
topic = "{name}.records"
endpoint = {{ path = "/v1/hostile-records/{case}", data_selector = "data", paginator = {{ type = "offset", limit = 100 }} }}
"#,
        client = api.client_toml(""),
    );
    Pipeline::with_config(broker, name, &rest)
}

fn extract_ok(pipeline: &Pipeline) -> Result<()> {
    let out = run(pipeline.extractor()?, RUN)?;
    ensure!(
        out.status.success(),
        "extractor failed: {}",
        tail(&stderr(&out), 20)
    );
    Ok(())
}

fn load(mut cmd: Command, args: &[&str]) -> Result<Output> {
    let _ = cmd.arg("--until-caught-up").args(args);
    run(cmd, RUN)
}

fn load_ok(cmd: Command) -> Result<Output> {
    let out = load(cmd, &[])?;
    ensure!(
        out.status.success(),
        "loader failed: {}",
        tail(&stderr(&out), 20)
    );
    Ok(out)
}

fn pg(name: &str) -> Result<Option<PgSchema>> {
    PgSchema::create(name)
}

/// The columns of `table` in the schema, in order.
fn pg_columns(pg: &mut PgSchema, table: &str) -> Result<Vec<String>> {
    let rows = pg.query(&format!(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = '{}' AND table_name = '{table}' ORDER BY ordinal_position",
        pg.schema
    ))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

#[test]
fn names_sharing_63_bytes_stay_apart_on_postgres_and_whole_on_sqlite() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;
    let p = case_pipeline(&broker, &api, "e2e_hd_long", "long-names")?;
    extract_ok(&p)?;
    let head = "x".repeat(63);
    let list = "y".repeat(70);

    // SQLite has no name limit: the names as normalised, in full.
    let _ = load_ok(p.loader()?)?;
    let conn = p.sqlite()?;
    let (first, second): (String, String) = conn.query_row(
        &format!("SELECT \"{head}_first\", \"{head}_second\" FROM records WHERE id = 1"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ensure!((first.as_str(), second.as_str()) == ("one", "two"));
    let children: i64 = conn.query_row(
        &format!("SELECT count(*) FROM \"records__{list}\""),
        [],
        |r| r.get(0),
    )?;
    ensure!(children == 2, "{children} child rows");

    let Some(mut pg) = pg("e2e_hd_long")? else {
        return Ok(());
    };
    let _ = load_ok(p.loader_to(&pg.url)?)?;
    // Two distinct columns of at most 63 bytes, both starting with the shared head.
    let columns = pg_columns(&mut pg, "records")?;
    let long: Vec<&String> = columns.iter().filter(|c| c.starts_with("xxxx")).collect();
    ensure!(
        long.len() == 2 && long.iter().all(|c| c.len() <= 63) && long[0] != long[1],
        "{columns:?}"
    );
    let values = pg.query(&format!(
        "SELECT \"{}\", \"{}\" FROM {{schema}}.records WHERE id = 1",
        long[0], long[1]
    ))?;
    let mut got: Vec<String> = vec![values[0].get(0), values[0].get(1)];
    got.sort();
    ensure!(got == ["one", "two"], "{got:?}");
    // The child table's name is shortened too, and holds both elements.
    let tables = pg.query(&format!(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = '{}' \
         AND table_name LIKE 'records\\_\\_yyyy%'",
        pg.schema
    ))?;
    ensure!(tables.len() == 1, "{} child tables", tables.len());
    let child: String = tables[0].get(0);
    ensure!(child.len() <= 63, "{child}");
    let rows = pg.query(&format!("SELECT count(*) FROM {{schema}}.\"{child}\""))?;
    ensure!(rows[0].get::<_, i64>(0) == 2);
    Ok(())
}

#[test]
fn nul_in_text_is_removed_on_postgres_with_a_warning_naming_the_column() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(10, &[])?;
    let Some(mut pg) = pg("e2e_hd_nul")? else {
        return Ok(());
    };
    let p = case_pipeline(&broker, &api, "e2e_hd_nul", "nul-text")?;
    extract_ok(&p)?;
    let out = load_ok(p.loader_to(&pg.url)?)?;
    let err = stderr(&out);
    ensure!(
        err.contains("PostgreSQL cannot store NUL in text") && err.contains("column=text"),
        "{}",
        tail(&err, 10)
    );
    let rows = pg.query("SELECT text FROM {schema}.records WHERE id = 1")?;
    ensure!(rows[0].get::<_, String>(0) == "ab");
    Ok(())
}

#[test]
fn a_postgres_run_that_dead_letters_every_record_exits_3_with_the_servers_reason() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(30, &[])?;
    // Twice: by default the run exits 3; `--dead-letters-ok` keeps exit 0.
    for (name, args, exit) in [
        ("e2e_hd_refused", &[][..], 3),
        ("e2e_hd_refused_ok", &["--dead-letters-ok"][..], 0),
    ] {
        let Some(mut pg) = pg(name)? else {
            return Ok(());
        };
        let p = Pipeline::new(&broker, &api, name, "")?;
        // A table made beforehand whose constraint refuses every record the API has.
        let _ = pg.query(
            "CREATE TABLE {schema}.communications_data (id BIGINT NOT NULL PRIMARY KEY, \
             CONSTRAINT only_negative_ids CHECK (id < 0))",
        )?;
        extract_ok(&p)?;

        let out = load(p.loader_to(&pg.url)?, args)?;
        let (stdout, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
        ensure!(
            out.status.code() == Some(exit),
            "{name}: exit {:?}: {stdout}\n{}",
            out.status.code(),
            tail(&err, 20)
        );
        ensure!(
            e2e::figure(&stdout, "loaded", "dead_letters") == Some(30.0),
            "{stdout}"
        );
        ensure!(
            stdout.contains(&format!(
                "dead-lettered records=30 topic={name}.communications_data.dlq"
            )),
            "{stdout}"
        );
        let summary = if exit == 0 {
            "(exit 0: --dead-letters-ok)"
        } else {
            "(exit 3; --dead-letters-ok exits 0)"
        };
        ensure!(
            err.contains("loader: 30 record(s) went to the dead-letter topic(s)")
                && err.contains(summary),
            "{}",
            tail(&err, 5)
        );
        // Each dead letter's reason is the server's: its message and the constraint.
        let letters: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("record sent to the dead-letter topic"))
            .collect();
        ensure!(letters.len() == 30, "{} dead-letter lines", letters.len());
        for line in &letters {
            ensure!(
                line.contains("violates check constraint") && line.contains("only_negative_ids"),
                "{line}"
            );
        }
        let rows = pg.query("SELECT count(*) FROM {schema}.communications_data")?;
        ensure!(rows[0].get::<_, i64>(0) == 0);
    }
    Ok(())
}

/// A tmpfs of `size` mounted on `dir`, unmounted on drop; `None` (after saying why) when
/// mounting is not permitted here and `CI` is unset.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Option<Self>> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .context("running mount")?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            if std::env::var_os("CI").is_some() {
                bail!("CI is set and mounting a tmpfs failed: {why}");
            }
            eprintln!("skipped: mounting a tmpfs needs root: {why}");
            return Ok(None);
        }
        Ok(Some(Self {
            dir: dir.to_path_buf(),
        }))
    }

    fn remount(&self, options: &str) -> Result<()> {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.dir)
            .output()?;
        ensure!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
    }
}

/// No cause of `line` (the parts between `: `) appears twice.
fn each_cause_once(line: &str) -> Result<()> {
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        ensure!(
            part.len() < 12 || !parts[i + 1..].contains(part),
            "{part:?} repeats in {line}"
        );
    }
    Ok(())
}

fn error_line(err: &str) -> Result<&str> {
    err.lines()
        .find(|l| l.starts_with("loader: error:"))
        .with_context(|| format!("no error line: {}", tail(err, 10)))
}

#[test]
fn a_full_file_system_fails_the_sqlite_load_saying_so_and_loses_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some(fs) = Tmpfs::mount(&tmp.path().join("small"), "1m")? else {
        return Ok(());
    };
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(20_000, &[])?;
    let p = Pipeline::new(&broker, &api, "e2e_hd_full", "")?;
    extract_ok(&p)?;
    let db = fs.dir.join("dest.db");
    let url = format!("sqlite://{}", db.display());

    let out = load(p.loader_to(&url)?, &[])?;
    let err = stderr(&out);
    ensure!(out.status.code() == Some(1), "{}", tail(&err, 20));
    let line = error_line(&err)?;
    ensure!(
        line.contains("database or disk is full")
            && line.contains("the operating system says")
            && line.contains("No space left on device"),
        "{line}"
    );
    each_cause_once(line)?;
    ensure!(!err.contains("panicked"), "{}", tail(&err, 20));
    // A full disk is the destination's problem, not a record's: nothing was dead-lettered.
    ensure!(
        !err.contains("record sent to the dead-letter topic"),
        "{}",
        tail(&err, 20)
    );

    // With room made, the same group loads every record exactly once.
    fs.remount("size=256m")?;
    let _ = load_ok(p.loader_to(&url)?)?;
    let conn = rusqlite::Connection::open(&db)?;
    let (rows, ids): (i64, i64) = conn.query_row(
        "SELECT count(*), count(DISTINCT id) FROM communications_data",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    ensure!((rows, ids) == (20_000, 20_000), "{rows} rows, {ids} ids");
    Ok(())
}

#[test]
fn a_read_only_file_system_is_named_in_the_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some(fs) = Tmpfs::mount(&tmp.path().join("ro"), "64m")? else {
        return Ok(());
    };
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(200, &[])?;
    let p = Pipeline::new(&broker, &api, "e2e_hd_ro", "")?;
    let db = fs.dir.join("dest.db");
    let url = format!("sqlite://{}", db.display());
    // A first load makes the database; then the file system turns read-only (Linux refuses
    // that while a file on it is open for writing, so it happens between runs).
    extract_ok(&p)?;
    let _ = load_ok(p.loader_to(&url)?)?;
    fs.remount("ro")?;
    // The second run publishes every record again: the loader has rows to write.
    extract_ok(&p)?;

    let out = load(p.loader_to(&url)?, &[])?;
    let err = stderr(&out);
    ensure!(out.status.code() == Some(1), "{}", tail(&err, 20));
    let line = error_line(&err)?;
    ensure!(line.contains("Read-only file system"), "{line}");
    each_cause_once(line)?;
    fs.remount("rw")?;
    Ok(())
}
