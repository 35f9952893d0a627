//! One suite, every destination: each test runs against SQLite and PostgreSQL and checks
//! what the [`Destination`] trait promises (merge by key, offsets in the same transaction,
//! all-or-nothing batches, new columns, widening, hostile names, several writers).
//!
//! PostgreSQL comes from `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets a schema of its own, dropped
//! at the end. When the server cannot be reached the PostgreSQL half is skipped with a
//! message, except when `CI` is set: then it fails.

use std::sync::Arc;

use common::schema::{DataType, Field, Row, Scalar, TableSchema};

use super::test_support::{batch_of, field, int, schema, table_batch, text};
use super::{Batch, Destination};

mod hostile; // long names, NUL, values and tables a database refuses
mod keep_whole; // json fields kept whole at max_table_nesting, not child tables
mod merge_key; // dlt's delete-insert by merge key, in any partition order
mod scd2; // dlt's scd2: versions, retired at a run's end

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Reads a destination back, independently of the code under test.
trait Probe {
    /// `columns` of `table` as text (NULL as `None`), ordered by `order_by`.
    fn rows(&mut self, table: &str, columns: &[&str], order_by: &str) -> Vec<Vec<Option<String>>>;
    /// Column names of `table`, in order.
    fn columns(&mut self, table: &str) -> Vec<String>;
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

struct SqliteProbe(rusqlite::Connection);

impl Probe for SqliteProbe {
    fn rows(&mut self, table: &str, columns: &[&str], order_by: &str) -> Vec<Vec<Option<String>>> {
        let list: Vec<String> = columns
            .iter()
            .map(|c| format!("CAST({} AS TEXT)", quote(c)))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            list.join(", "),
            quote(table),
            quote(order_by)
        );
        let mut stmt = self.0.prepare(&sql).unwrap();
        stmt.query_map([], |row| {
            (0..columns.len())
                .map(|i| row.get::<_, Option<String>>(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn columns(&mut self, table: &str) -> Vec<String> {
        let mut stmt = self
            .0
            .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
            .unwrap();
        stmt.query_map([table], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

struct PostgresProbe {
    client: postgres::Client,
    schema: String,
}

impl Probe for PostgresProbe {
    fn rows(&mut self, table: &str, columns: &[&str], order_by: &str) -> Vec<Vec<Option<String>>> {
        let list: Vec<String> = columns
            .iter()
            .map(|c| format!("{}::text", quote(c)))
            .collect();
        let sql = format!(
            "SELECT {} FROM {}.{} ORDER BY {}",
            list.join(", "),
            quote(&self.schema),
            quote(table),
            quote(order_by)
        );
        self.client
            .query(&sql, &[])
            .unwrap()
            .iter()
            .map(|row| (0..columns.len()).map(|i| row.get(i)).collect())
            .collect()
    }

    fn columns(&mut self, table: &str) -> Vec<String> {
        self.client
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&self.schema, &table],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

/// One destination under test: how to open it (again), and how to read it.
struct Target {
    name: &'static str,
    url: String,
    probe: Box<dyn Probe>,
    cleanup: Option<Box<dyn FnOnce()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    fn open(&self) -> Box<dyn Destination> {
        super::open(&self.url).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

fn sqlite_target() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conformance.db");
    let url = format!("sqlite://{}", path.display());
    // Creates the file in WAL mode before the probe opens it.
    drop(super::open(&url).unwrap());
    Target {
        name: "sqlite",
        url,
        probe: Box::new(SqliteProbe(rusqlite::Connection::open(&path).unwrap())),
        cleanup: None,
        _dir: Some(dir),
    }
}

/// The PostgreSQL target in a fresh schema named after the test, or `None` (with a note)
/// when no server answers and neither `CI` nor `TEST_POSTGRES_REQUIRED` (set by the test
/// script once it has started a server) is set.
fn postgres_target(test: &str) -> Option<Target> {
    let base = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let mut admin = match postgres::Client::connect(&base, postgres::NoTls) {
        Ok(client) => client,
        Err(e)
            if std::env::var_os("CI").is_none()
                && std::env::var_os("TEST_POSTGRES_REQUIRED").is_none() =>
        {
            eprintln!(
                "PostgreSQL half of {test} skipped: cannot connect to TEST_POSTGRES_URL \
                 ({}): {e}",
                super::redact_url(&base)
            );
            return None;
        }
        Err(e) => panic!(
            "CI or TEST_POSTGRES_REQUIRED is set and PostgreSQL at {} is unreachable: {e}",
            super::redact_url(&base)
        ),
    };
    let schema = format!("conformance_{test}_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}",
            quote(&schema)
        ))
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}schema={schema}");
    let probe = PostgresProbe {
        client: postgres::Client::connect(&base, postgres::NoTls).unwrap(),
        schema: schema.clone(),
    };
    let cleanup = move || {
        let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&schema)));
    };
    Some(Target {
        name: "postgres",
        url,
        probe: Box::new(probe),
        cleanup: Some(Box::new(cleanup)),
        _dir: None,
    })
}

fn targets(test: &str) -> Vec<Target> {
    let mut all = vec![sqlite_target()];
    all.extend(postgres_target(test));
    all
}

fn batch(schema: &Arc<TableSchema>, rows: Vec<Row>, offsets: &[(&str, i32, i64)]) -> Batch {
    batch_of("conformance", vec![table_batch(schema, rows)], offsets)
}

fn some(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some((*v).to_owned())).collect()
}

fn users() -> Arc<TableSchema> {
    schema(
        "users",
        &["id"],
        vec![
            field("id", DataType::Bigint, false),
            field("name", DataType::Text, true),
        ],
    )
}

fn offsets(dest: &mut dyn Destination) -> Vec<(String, i32, i64)> {
    dest.stored_offsets("conformance")
        .unwrap()
        .into_iter()
        .map(|o| (o.topic, o.partition, o.next_offset))
        .collect()
}

#[test]
fn merge_keeps_the_last_version_and_stores_offsets() {
    for mut t in targets("merge") {
        let mut dest = t.open();
        let s = users();
        let rows = vec![
            vec![int(1), text("ann")],
            vec![int(2), text("bob")],
            vec![int(2), text("bobby")],
            vec![int(i64::MAX), text("mäx ✓")],
        ];
        let stats = dest
            .write_batch(&batch(&s, rows, &[("users", 0, 3), ("users", 1, 1)]))
            .unwrap();
        assert_eq!(stats.rows, 4, "{}", t.name);
        assert_eq!(stats.tables_created, 1, "{}", t.name);
        let rerun = vec![vec![int(1), text("anna")], vec![int(3), None]];
        let _ = dest
            .write_batch(&batch(&s, rerun, &[("users", 0, 5)]))
            .unwrap();
        assert_eq!(
            t.probe.rows("users", &["id", "name"], "id"),
            vec![
                some(&["1", "anna"]),
                some(&["2", "bobby"]),
                vec![Some("3".into()), None],
                some(&[&i64::MAX.to_string(), "mäx ✓"]),
            ],
            "{}",
            t.name
        );
        assert_eq!(
            offsets(dest.as_mut()),
            vec![("users".into(), 0, 5), ("users".into(), 1, 1)],
            "{}",
            t.name
        );
        // A new process sees the same table and offsets, and merges into them.
        drop(dest);
        let mut again = t.open();
        assert_eq!(offsets(again.as_mut()).len(), 2, "{}", t.name);
        let stats = again
            .write_batch(&batch(&s, vec![vec![int(2), text("b")]], &[]))
            .unwrap();
        assert_eq!(stats.tables_created, 0, "{}", t.name);
        assert_eq!(
            t.probe.rows("users", &["name"], "id")[1],
            some(&["b"]),
            "{}",
            t.name
        );
    }
}

#[test]
fn a_failing_batch_leaves_nothing_behind() {
    for mut t in targets("rollback") {
        let mut dest = t.open();
        let s = users();
        let _ = dest
            .write_batch(&batch(
                &s,
                vec![vec![int(1), text("ann")]],
                &[("users", 0, 1)],
            ))
            .unwrap();
        // The third row has a NULL key: the whole batch, offsets included, must vanish.
        let bad = vec![
            vec![int(1), text("changed")],
            vec![int(2), text("new")],
            vec![None, text("no key")],
        ];
        let err = dest
            .write_batch(&batch(&s, bad, &[("users", 0, 4)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("users"), "{}: {err}", t.name);
        assert_eq!(
            t.probe.rows("users", &["id", "name"], "id"),
            vec![some(&["1", "ann"])],
            "{}",
            t.name
        );
        assert_eq!(
            offsets(dest.as_mut()),
            vec![("users".into(), 0, 1)],
            "{}",
            t.name
        );
        // A row that does not match its schema names the record.
        let short = dest
            .write_batch(&batch(&s, vec![vec![int(7)]], &[]))
            .unwrap_err()
            .to_string();
        assert!(short.contains("id=7"), "{}: {short}", t.name);
        // And the destination is still usable afterwards.
        let _ = dest
            .write_batch(&batch(
                &s,
                vec![vec![int(2), text("bob")]],
                &[("users", 0, 5)],
            ))
            .unwrap();
        assert_eq!(t.probe.rows("users", &["id"], "id").len(), 2, "{}", t.name);
    }
}

#[test]
fn a_new_field_becomes_a_nullable_column_and_bigint_widens_to_double() {
    for mut t in targets("evolve") {
        let mut dest = t.open();
        let v1 = schema(
            "calls",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("duration", DataType::Bigint, true),
            ],
        );
        let _ = dest
            .write_batch(&batch(&v1, vec![vec![int(1), int(60)]], &[]))
            .unwrap();
        let v2 = schema(
            "calls",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("duration", DataType::Double, true),
                field("channel", DataType::Text, true),
            ],
        );
        let stats = dest
            .write_batch(&batch(
                &v2,
                vec![vec![int(2), Some(Scalar::Double(1.5)), text("sms")]],
                &[],
            ))
            .unwrap();
        assert_eq!(stats.columns_added, 1, "{}", t.name);
        assert_eq!(
            t.probe.columns("calls"),
            vec!["id", "duration", "channel"],
            "{}",
            t.name
        );
        let rows = t.probe.rows("calls", &["id", "duration", "channel"], "id");
        assert_eq!(rows[0][2], None, "{}: old rows get NULL", t.name);
        let durations: Vec<f64> = rows
            .iter()
            .map(|r| r[1].as_deref().unwrap().parse().unwrap())
            .collect();
        assert_eq!(durations, vec![60.0, 1.5], "{}", t.name);
        // The older writer schema still loads into the evolved table.
        let _ = dest
            .write_batch(&batch(&v1, vec![vec![int(3), int(5)]], &[]))
            .unwrap();
        assert_eq!(t.probe.rows("calls", &["id"], "id").len(), 3, "{}", t.name);
    }
}

#[test]
fn hostile_names_are_just_names() {
    for mut t in targets("hostile") {
        let mut dest = t.open();
        let table = "x\"; DROP TABLE users; --";
        let s = schema(
            table,
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("a\"b", DataType::Text, true),
                field("select", DataType::Text, true),
            ],
        );
        let _ = dest
            .write_batch(&batch(
                &s,
                vec![vec![int(1), text("'); --"), text("ok")]],
                &[],
            ))
            .unwrap();
        assert_eq!(
            t.probe.rows(table, &["id", "a\"b", "select"], "id"),
            vec![some(&["1", "'); --", "ok"])],
            "{}",
            t.name
        );
        let reserved = schema(
            super::OFFSETS_TABLE,
            &["id"],
            vec![field("id", DataType::Bigint, false)],
        );
        let err = dest
            .write_batch(&batch(&reserved, vec![vec![int(1)]], &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("reserved"), "{}: {err}", t.name);
    }
}

#[test]
fn two_writers_merge_overlapping_keys() {
    for mut t in targets("writers") {
        // Creates the table first, as the first batch of any loader would.
        let _ = t
            .open()
            .write_batch(&batch(&users(), vec![vec![int(0), text("seed")]], &[]))
            .unwrap();
        std::thread::scope(|scope| {
            for writer in 0..2_i32 {
                let url = t.url.clone();
                let _ = scope.spawn(move || {
                    let mut dest = super::open(&url).unwrap();
                    for round in 0..20_i64 {
                        // Both writers touch keys 1..=50 in every batch, in opposite orders.
                        let mut rows: Vec<Row> = (1..=50)
                            .map(|id| vec![int(id), text(&format!("w{writer}r{round}"))])
                            .collect();
                        if writer == 1 {
                            rows.reverse();
                        }
                        let _ = dest
                            .write_batch(&batch(&users(), rows, &[("users", writer, round + 1)]))
                            .unwrap();
                    }
                });
            }
        });
        let rows = t.probe.rows("users", &["id"], "id");
        assert_eq!(rows.len(), 51, "{}", t.name);
        let mut dest = t.open();
        assert_eq!(
            offsets(dest.as_mut()),
            vec![("users".into(), 0, 20), ("users".into(), 1, 20)],
            "{}",
            t.name
        );
    }
}

#[test]
fn a_version_column_keeps_newer_rows() {
    for mut t in targets("version") {
        let mut dest = t.open();
        dest.set_version_column(Some("updated_at".into()));
        let s = schema(
            "msgs",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("body", DataType::Text, true),
                field("updated_at", DataType::Timestamp, true),
            ],
        );
        let at = |micros: i64| Some(Scalar::Timestamp(micros));
        let _ = dest
            .write_batch(&batch(
                &s,
                vec![
                    vec![int(1), text("new"), at(2_000)],
                    vec![int(2), text("new"), at(2_000)],
                    vec![int(3), text("old"), None],
                ],
                &[],
            ))
            .unwrap();
        // A replay of older versions: 1 is older (kept), 2 is as new (rewritten), 3 has no
        // version on the row (rewritten), 4 is new (inserted).
        let _ = dest
            .write_batch(&batch(
                &s,
                vec![
                    vec![int(1), text("stale"), at(1_000)],
                    vec![int(2), text("same"), at(2_000)],
                    vec![int(3), text("filled"), at(1_000)],
                    vec![int(4), text("fresh"), at(1_000)],
                ],
                &[],
            ))
            .unwrap();
        let bodies: Vec<Option<String>> = t
            .probe
            .rows("msgs", &["body"], "id")
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect();
        assert_eq!(
            bodies,
            some(&["new", "same", "filled", "fresh"]),
            "{}",
            t.name
        );
        // Without the rule the older version wins, as plain merge says.
        dest.set_version_column(None);
        let _ = dest
            .write_batch(&batch(
                &s,
                vec![vec![int(1), text("stale"), at(1_000)]],
                &[],
            ))
            .unwrap();
        assert_eq!(
            t.probe.rows("msgs", &["body"], "id")[0],
            some(&["stale"]),
            "{}",
            t.name
        );
    }
}

#[test]
fn deletes_come_before_the_rows_of_their_batch() {
    for mut t in targets("deletes") {
        let mut dest = t.open();
        let s = users();
        let rows = (1..=4).map(|id| vec![int(id), text("v1")]).collect();
        let _ = dest.write_batch(&batch(&s, rows, &[])).unwrap();
        let delete = |table: &str, id: &str| super::Delete {
            table: table.into(),
            key_columns: vec!["id".into()],
            key: vec![id.into()],
        };
        let mut b = batch(&s, vec![vec![int(3), text("v2")]], &[("users", 0, 9)]);
        b.deletes = vec![
            delete("users", "2"),
            delete("users", "3"),
            delete("users", "99"),
            delete("no_such_table", "1"),
        ];
        let stats = dest.write_batch(&b).unwrap();
        assert_eq!(stats.deleted, 2, "{}", t.name);
        assert_eq!(
            t.probe.rows("users", &["id", "name"], "id"),
            vec![some(&["1", "v1"]), some(&["3", "v2"]), some(&["4", "v1"])],
            "{}",
            t.name
        );
        assert_eq!(
            offsets(dest.as_mut()),
            vec![("users".into(), 0, 9)],
            "{}",
            t.name
        );
        // A composite key, text and bigint.
        let orgs = schema(
            "orgs",
            &["org", "id"],
            vec![
                field("org", DataType::Text, false),
                field("id", DataType::Bigint, false),
            ],
        );
        let _ = dest
            .write_batch(&batch(
                &orgs,
                vec![vec![text("a|b"), int(1)], vec![text("c"), int(1)]],
                &[],
            ))
            .unwrap();
        let mut b = batch(&orgs, vec![], &[]);
        b.tables.clear();
        b.deletes = vec![super::Delete {
            table: "orgs".into(),
            key_columns: vec!["org".into(), "id".into()],
            key: vec!["c".into(), "1".into()],
        }];
        assert_eq!(dest.write_batch(&b).unwrap().deleted, 1, "{}", t.name);
        assert_eq!(t.probe.rows("orgs", &["org"], "org"), vec![some(&["a|b"])]);
    }
}

/// A batch of `rows` for the staging table of `run`, and `ends` (partition, partitions).
fn run_batch(run: u64, rows: Vec<Row>, ends: &[(i32, i32)]) -> Batch {
    let s = users();
    let mut b = batch(&s, rows, &[]);
    b.tables[0].table = super::staging_table("users", run);
    if b.tables[0].rows.is_empty() {
        b.tables.clear();
    }
    b.run_ends = ends
        .iter()
        .map(|&(partition, partitions)| super::RunEnd {
            topic: "users-topic".to_owned(),
            table: "users".to_owned(),
            run,
            partition,
            partitions,
            scd2: None,
        })
        .collect();
    b
}

#[test]
fn a_replace_run_swaps_in_when_every_partition_has_ended_it() {
    for mut t in targets("replace") {
        let mut dest = t.open();
        let _ = dest
            .write_batch(&batch(
                &users(),
                vec![vec![int(1), text("old")], vec![int(2), text("old")]],
                &[],
            ))
            .unwrap();
        // Run 100 over two partitions: rows (a key twice: the later wins), one partition ends.
        let rows = vec![
            vec![int(2), text("new")],
            vec![int(3), text("new")],
            vec![int(3), text("newer")],
        ];
        let stats = dest.write_batch(&run_batch(100, rows, &[(0, 2)])).unwrap();
        assert_eq!(stats.runs.swapped, 0, "{}", t.name);
        assert_eq!(
            t.probe.rows("users", &["id", "name"], "id"),
            vec![some(&["1", "old"]), some(&["2", "old"])],
            "{}: the table is untouched until the run ends everywhere",
            t.name
        );
        // A partition ending twice (a replayed marker) does not count twice.
        let stats = dest
            .write_batch(&run_batch(100, vec![], &[(0, 2)]))
            .unwrap();
        assert_eq!(stats.runs.swapped, 0, "{}", t.name);
        let stats = dest
            .write_batch(&run_batch(100, vec![], &[(1, 2)]))
            .unwrap();
        assert_eq!(stats.runs.swapped, 1, "{}", t.name);
        assert_eq!(
            t.probe.rows("users", &["id", "name"], "id"),
            vec![some(&["2", "new"]), some(&["3", "newer"])],
            "{}",
            t.name
        );
        assert!(
            t.probe
                .columns(&super::staging_table("users", 100))
                .is_empty(),
            "{}: the staging table is gone",
            t.name
        );

        // An abandoned run's staging table is dropped when a later run swaps in.
        let _ = dest
            .write_batch(&run_batch(300, vec![vec![int(9), text("lost")]], &[(0, 1)]))
            .unwrap();
        let _ = dest
            .write_batch(&run_batch(250, vec![vec![int(8), text("abandoned")]], &[]))
            .unwrap();
        let stats = dest
            .write_batch(&run_batch(400, vec![vec![int(4), text("r400")]], &[(0, 1)]))
            .unwrap();
        assert_eq!(stats.runs.swapped, 1, "{}", t.name);
        assert_eq!(
            t.probe.rows("users", &["id", "name"], "id"),
            vec![some(&["4", "r400"])],
            "{}",
            t.name
        );
        assert!(
            t.probe
                .columns(&super::staging_table("users", 250))
                .is_empty(),
            "{}",
            t.name
        );

        // A run that completes after a later one was swapped in changes nothing.
        let stats = dest
            .write_batch(&run_batch(350, vec![vec![int(5), text("late")]], &[(0, 1)]))
            .unwrap();
        assert_eq!(stats.runs.swapped, 0, "{}", t.name);
        assert_eq!(
            t.probe.rows("users", &["id", "name"], "id"),
            vec![some(&["4", "r400"])],
            "{}",
            t.name
        );
        assert!(
            t.probe
                .columns(&super::staging_table("users", 350))
                .is_empty(),
            "{}",
            t.name
        );

        // A run with no records leaves the table empty; a new process sees the same.
        drop(dest);
        let mut again = t.open();
        let stats = again
            .write_batch(&run_batch(500, vec![], &[(0, 1)]))
            .unwrap();
        assert_eq!(stats.runs.swapped, 1, "{}", t.name);
        assert!(
            t.probe.rows("users", &["id"], "id").is_empty(),
            "{}",
            t.name
        );
        // And the next run fills it again, with a new column the old table lacked.
        let wider = schema(
            "users",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("name", DataType::Text, true),
                field("email", DataType::Text, true),
            ],
        );
        let mut b = batch(&wider, vec![vec![int(6), text("f"), text("f@x")]], &[]);
        b.tables[0].table = super::staging_table("users", 600);
        b.run_ends = run_batch(600, vec![], &[(0, 1)]).run_ends;
        let _ = again.write_batch(&b).unwrap();
        assert_eq!(
            t.probe.rows("users", &["id", "name", "email"], "id"),
            vec![some(&["6", "f", "f@x"])],
            "{}",
            t.name
        );
    }
}

#[test]
fn concurrent_run_ends_swap_exactly_once() {
    // Every partition's end is written at once by a writer of its own; exactly one of them
    // must complete the run. (On a 2-core machine the writers rarely overlap closely
    // enough to show a missing lock; this checks the outcome, not the race.)
    const PARTITIONS: i32 = 6;
    for mut t in targets("replace_writers") {
        let _ = t
            .open()
            .write_batch(&batch(&users(), vec![vec![int(0), text("old")]], &[]))
            .unwrap();
        for round in 0..5_u64 {
            let run = 1000 + round;
            let barrier = std::sync::Barrier::new(PARTITIONS as usize);
            std::thread::scope(|scope| {
                for partition in 0..PARTITIONS {
                    let url = t.url.clone();
                    let barrier = &barrier;
                    let _ = scope.spawn(move || {
                        let mut dest = super::open(&url).unwrap();
                        let id = i64::from(partition) + 1;
                        // Rows and the end of each partition, as two loaders would write them.
                        let _ = dest
                            .write_batch(&run_batch(run, vec![vec![int(id), text("run")]], &[]))
                            .unwrap();
                        let _ = barrier.wait();
                        let _ = dest
                            .write_batch(&run_batch(run, vec![], &[(partition, PARTITIONS)]))
                            .unwrap();
                    });
                }
            });
            assert_eq!(
                t.probe.rows("users", &["id", "name"], "id"),
                (1..=PARTITIONS)
                    .map(|id| some(&[&id.to_string(), "run"]))
                    .collect::<Vec<_>>(),
                "{} round {round}: the run was swapped in",
                t.name
            );
        }
    }
}

#[test]
fn schema_changes_name_new_and_retyped_columns() {
    for t in targets("changes") {
        let mut dest = t.open();
        let narrow = schema(
            "items",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("qty", DataType::Bigint, true),
            ],
        );
        let changes = dest.schema_changes("items", &narrow).unwrap();
        assert!(!changes.table_exists, "{}", t.name);
        let _ = dest
            .write_batch(&batch(&narrow, vec![vec![int(1), int(2)]], &[]))
            .unwrap();
        let wider = schema(
            "items",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("qty", DataType::Double, true),
                field("note", DataType::Text, true),
            ],
        );
        assert_eq!(
            dest.schema_changes("items", &wider).unwrap(),
            super::SchemaChanges {
                table_exists: true,
                new_columns: vec!["note".to_owned()],
                retyped_columns: vec!["qty".to_owned()],
            },
            "{}",
            t.name
        );
        assert_eq!(
            dest.schema_changes("items", &narrow).unwrap(),
            super::SchemaChanges {
                table_exists: true,
                ..Default::default()
            },
            "{}",
            t.name
        );
    }
}

#[test]
fn a_trial_batch_leaves_nothing_and_names_a_refused_row() {
    for mut t in targets("trial") {
        let mut dest = t.open();
        let good = batch(
            &users(),
            vec![vec![int(1), text("ann")]],
            &[("users", 0, 1)],
        );
        dest.try_batch(&good).unwrap();
        assert!(
            t.probe.columns("users").is_empty(),
            "{}: rolled back",
            t.name
        );
        assert!(offsets(dest.as_mut()).is_empty(), "{}", t.name);
        // A text where the schema says bigint: refused, and the error is about that row.
        let bad = batch(
            &users(),
            vec![vec![int(1), text("ann")], vec![text("two"), text("bob")]],
            &[],
        );
        let err = dest.try_batch(&bad).unwrap_err();
        assert!(err.is_row_error(), "{}: {err}", t.name);
        // The real write still works afterwards.
        let _ = dest.write_batch(&good).unwrap();
        assert_eq!(
            t.probe.rows("users", &["id", "name"], "id"),
            vec![some(&["1", "ann"])],
            "{}",
            t.name
        );
    }
}

fn json(value: &str) -> Option<Scalar> {
    Some(Scalar::Json(value.to_owned()))
}

/// `orders(id, note, tags json, items json)`.
fn orders() -> Arc<TableSchema> {
    schema(
        "orders",
        &["id"],
        vec![
            field("id", DataType::Bigint, false),
            field("note", DataType::Text, true),
            field("tags", DataType::Json, true),
            field("items", DataType::Json, true),
        ],
    )
}

fn nester(merge: bool, max_table_nesting: Option<usize>, json: &[&str]) -> crate::nested::Nester {
    crate::nested::Nester::new(std::collections::HashMap::from([(
        "orders".to_owned(),
        crate::nested::NestRoute {
            primary_key: vec!["id".into()],
            merge,
            max_table_nesting,
            json_columns: json.iter().map(|c| (*c).to_owned()).collect(),
            replace: false,
        },
    )]))
}

/// Rows of a child table as text, sorted (child ids are hashes: no natural order).
fn sorted(probe: &mut dyn Probe, table: &str, columns: &[&str]) -> Vec<Vec<Option<String>>> {
    let mut rows = probe.rows(table, columns, "_dlt_id");
    rows.sort();
    rows
}

#[test]
fn lists_become_child_tables_replaced_per_key() {
    use crate::nested::row_id;
    for mut t in targets("child_tables") {
        let mut dest = t.open();
        let mut nest = nester(true, None, &[]);
        let s = orders();
        let rows = vec![
            vec![
                int(1),
                text("one"),
                json(r#"["a","b"]"#),
                json(r#"[{"sku":"x","qty":2,"codes":[7,8]},{"sku":"y","qty":1}]"#),
            ],
            vec![int(2), text("two"), json("[]"), None],
            vec![int(3), text("v1"), json(r#"["p","q","r"]"#), None],
            // A later version in the same batch: only its children are loaded.
            vec![int(3), text("v2"), json(r#"["s"]"#), None],
        ];
        let mut b = batch(&s, rows, &[("orders", 0, 4)]);
        nest.explode(&mut b, dest.as_mut()).unwrap();
        let _ = dest.write_batch(&b).unwrap();
        assert_eq!(t.probe.columns("orders"), ["id", "note"], "{}", t.name);
        assert_eq!(
            t.probe.columns("orders__tags"),
            [
                "_dlt_root_id",
                "_dlt_parent_id",
                "_dlt_list_idx",
                "_dlt_id",
                "value"
            ],
            "{}",
            t.name
        );
        let tags = sorted(
            t.probe.as_mut(),
            "orders__tags",
            &["_dlt_parent_id", "_dlt_list_idx", "value", "_dlt_id"],
        );
        let expected = |rows: &[(&str, i64, &str)]| {
            let mut out: Vec<Vec<Option<String>>> = rows
                .iter()
                .map(|(parent, idx, value)| {
                    let id = row_id(parent, "orders__tags", *idx as usize);
                    some(&[parent, &idx.to_string(), value, &id])
                })
                .collect();
            out.sort();
            out
        };
        assert_eq!(
            tags,
            expected(&[("1", 0, "a"), ("1", 1, "b"), ("3", 0, "s")]),
            "{}",
            t.name
        );
        let items = sorted(
            t.probe.as_mut(),
            "orders__items",
            &[
                "_dlt_root_id",
                "_dlt_parent_id",
                "_dlt_list_idx",
                "sku",
                "qty",
            ],
        );
        assert_eq!(
            items,
            vec![
                some(&["1", "1", "0", "x", "2"]),
                some(&["1", "1", "1", "y", "1"])
            ],
            "{}",
            t.name
        );
        // The grandchild rows point at the child row's id.
        let item0 = row_id("1", "orders__items", 0);
        let codes = sorted(
            t.probe.as_mut(),
            "orders__items__codes",
            &["_dlt_root_id", "_dlt_parent_id", "_dlt_list_idx", "value"],
        );
        assert_eq!(
            codes,
            vec![
                some(&["1", &item0, "0", "7"]),
                some(&["1", &item0, "1", "8"])
            ],
            "{}",
            t.name
        );

        // A new process (it learns the child tables from the database): order 1 changes
        // (no codes any more, one tag), order 3 is deleted by a tombstone.
        drop(dest);
        let mut dest = t.open();
        let mut nest = nester(true, None, &[]);
        let mut b = batch(
            &s,
            vec![vec![
                int(1),
                text("one'"),
                json(r#"["c"]"#),
                json(r#"[{"sku":"z","qty":5}]"#),
            ]],
            &[("orders", 0, 6)],
        );
        b.deletes = vec![super::Delete {
            table: "orders".into(),
            key_columns: vec!["id".into()],
            key: vec!["3".into()],
        }];
        nest.explode(&mut b, dest.as_mut()).unwrap();
        let _ = dest.write_batch(&b).unwrap();
        assert_eq!(
            sorted(
                t.probe.as_mut(),
                "orders__tags",
                &["_dlt_parent_id", "_dlt_list_idx", "value", "_dlt_id"]
            ),
            expected(&[("1", 0, "c")]),
            "{}",
            t.name
        );
        assert_eq!(
            sorted(
                t.probe.as_mut(),
                "orders__items",
                &["_dlt_parent_id", "sku"]
            ),
            vec![some(&["1", "z"])],
            "{}",
            t.name
        );
        assert!(
            t.probe
                .rows("orders__items__codes", &["value"], "value")
                .is_empty(),
            "{}: stale grandchildren",
            t.name
        );
        assert_eq!(
            t.probe.rows("orders", &["id", "note"], "id"),
            vec![some(&["1", "one'"]), some(&["2", "two"])],
            "{}",
            t.name
        );
    }
}

#[test]
fn nesting_stops_at_max_table_nesting_and_json_hints() {
    for mut t in targets("child_nesting") {
        let mut dest = t.open();
        let s = orders();
        let row = || {
            vec![
                int(1),
                text("n"),
                json(r#"["a"]"#),
                json(r#"[{"sku":"x","codes":[7]}]"#),
            ]
        };
        // max_table_nesting = 1: child tables, but lists inside elements stay JSON.
        let mut b = batch(&s, vec![row()], &[]);
        nester(true, Some(1), &["tags"])
            .explode(&mut b, dest.as_mut())
            .unwrap();
        let _ = dest.write_batch(&b).unwrap();
        // `tags` is hinted json: it stays a column.
        assert_eq!(
            t.probe.columns("orders"),
            ["id", "note", "tags"],
            "{}",
            t.name
        );
        assert_eq!(
            t.probe.rows("orders__items", &["sku", "codes"], "sku"),
            vec![some(&["x", "[7]"])],
            "{}",
            t.name
        );
        assert!(
            t.probe.columns("orders__items__codes").is_empty(),
            "{}",
            t.name
        );
        // max_table_nesting = 0: today's JSON columns.
        let zero = schema("flat", &["id"], orders().fields.clone());
        let mut b = batch(&zero, vec![row()], &[]);
        let mut flat = crate::nested::Nester::new(std::collections::HashMap::from([(
            "flat".to_owned(),
            crate::nested::NestRoute {
                primary_key: vec!["id".into()],
                merge: true,
                max_table_nesting: Some(0),
                json_columns: Default::default(),
                replace: false,
            },
        )]));
        flat.explode(&mut b, dest.as_mut()).unwrap();
        let _ = dest.write_batch(&b).unwrap();
        assert_eq!(
            t.probe.columns("flat"),
            ["id", "note", "tags", "items"],
            "{}",
            t.name
        );
        assert!(t.probe.columns("flat__tags").is_empty(), "{}", t.name);
    }
}

#[test]
fn append_appends_children() {
    for mut t in targets("child_append") {
        let mut dest = t.open();
        let s = orders();
        for version in ["v1", "v2"] {
            let mut b = batch(
                &s,
                vec![vec![int(1), text(version), json(r#"["a","b"]"#), None]],
                &[],
            );
            b.tables[0].schema = schema("orders", &[], s.fields.clone());
            nester(false, None, &[])
                .explode(&mut b, dest.as_mut())
                .unwrap();
            let _ = dest.write_batch(&b).unwrap();
        }
        assert_eq!(
            t.probe.rows("orders", &["note"], "note").len(),
            2,
            "{}",
            t.name
        );
        assert_eq!(
            t.probe
                .rows("orders__tags", &["value"], "value")
                .into_iter()
                .flatten()
                .flatten()
                .collect::<Vec<_>>(),
            ["a", "a", "b", "b"],
            "{}",
            t.name
        );
    }
}

/// A batch of orders for the staging table of `run`, ending it (one partition) if `end`.
fn orders_run(run: u64, rows: Vec<Row>, end: bool) -> Batch {
    let s = orders();
    let mut b = batch(&s, rows, &[]);
    b.tables[0].table = super::staging_table("orders", run);
    if b.tables[0].rows.is_empty() {
        b.tables.clear();
    }
    if end {
        b.run_ends = vec![super::RunEnd {
            topic: "orders-topic".to_owned(),
            table: "orders".to_owned(),
            run,
            partition: 0,
            partitions: 1,
            scd2: None,
        }];
    }
    b
}

#[test]
fn child_tables_follow_a_replace_swap() {
    for mut t in targets("child_replace") {
        let mut dest = t.open();
        let mut nest = crate::nested::Nester::new(std::collections::HashMap::from([(
            "orders".to_owned(),
            crate::nested::NestRoute {
                primary_key: vec!["id".into()],
                merge: true,
                max_table_nesting: None,
                json_columns: Default::default(),
                replace: true,
            },
        )]));
        let mut write = |dest: &mut Box<dyn Destination>, mut b: Batch| {
            nest.explode(&mut b, dest.as_mut()).unwrap();
            dest.write_batch(&b).unwrap()
        };
        let tags = |probe: &mut dyn Probe| -> Vec<Vec<Option<String>>> {
            if probe.columns("orders__tags").is_empty() {
                return Vec::new();
            }
            sorted(
                probe,
                "orders__tags",
                &["_dlt_parent_id", "_dlt_list_idx", "value"],
            )
        };
        let row = |id: i64, tags: &str| vec![int(id), text("n"), json(tags), None];
        let stats = write(
            &mut dest,
            orders_run(100, vec![row(1, r#"["a","b"]"#), row(2, r#"["c"]"#)], true),
        );
        assert_eq!(stats.runs.swapped, 1, "{}", t.name);
        assert_eq!(
            tags(t.probe.as_mut()),
            vec![
                some(&["1", "0", "a"]),
                some(&["1", "1", "b"]),
                some(&["2", "0", "c"])
            ],
            "{}",
            t.name
        );
        // Run 200: its first rows change nothing until it ends.
        let _ = write(&mut dest, orders_run(200, vec![row(1, r#"["x"]"#)], false));
        assert_eq!(tags(t.probe.as_mut()).len(), 3, "{}", t.name);
        assert!(
            !t.probe.columns("orders__r200__tags").is_empty(),
            "{}: the run's children are staged",
            t.name
        );
        let _ = write(&mut dest, orders_run(200, vec![row(3, "[]")], true));
        assert_eq!(
            t.probe.rows("orders", &["id"], "id"),
            vec![some(&["1"]), some(&["3"])],
            "{}",
            t.name
        );
        assert_eq!(
            tags(t.probe.as_mut()),
            vec![some(&["1", "0", "x"])],
            "{}: the swap replaced the children",
            t.name
        );
        assert!(
            t.probe.columns("orders__r200__tags").is_empty(),
            "{}",
            t.name
        );
        // Run 300 stages children but never ends; run 400 ends with no rows at all: the
        // table and its children are empty, run 300's staging children are dropped.
        let _ = write(&mut dest, orders_run(300, vec![row(5, r#"["y"]"#)], false));
        let _ = write(&mut dest, orders_run(400, vec![], true));
        assert!(
            t.probe.rows("orders", &["id"], "id").is_empty(),
            "{}",
            t.name
        );
        assert!(tags(t.probe.as_mut()).is_empty(), "{}", t.name);
        assert!(
            t.probe.columns("orders__r300__tags").is_empty(),
            "{}",
            t.name
        );
        assert!(t.probe.columns("orders__r300").is_empty(), "{}", t.name);
    }
}

#[test]
fn staging_children_are_recognised() {
    assert_eq!(
        super::staging_child("orders", "orders__r12__tags"),
        Some((12, "__tags"))
    );
    assert_eq!(
        super::staging_child("orders", "orders__r12__items__codes"),
        Some((12, "__items__codes"))
    );
    for name in [
        "orders__r12",
        "orders__r12__",
        "orders__rx__tags",
        "orders__tags",
        "other__r1__t",
    ] {
        assert_eq!(super::staging_child("orders", name), None, "{name}");
    }
}
