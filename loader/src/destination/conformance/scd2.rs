//! dlt's `scd2` merge strategy, on every destination: a run's end keeps unchanged rows,
//! inserts new and changed records as active versions, retires the active rows its records
//! no longer have, takes new columns, and a replayed or late older run changes nothing.

use super::super::scd2::{VALID_FROM, VALID_TO};
use super::*;

/// Runs one minute apart (whole seconds, so the probe's text shows them plainly).
const A: u64 = 1_764_400_000_000;
const B: u64 = A + 60_000;
const C: u64 = B + 60_000;

/// `contacts(id, name[, email])`: with a primary key, as a resource with one has.
fn contacts(email: bool) -> Arc<TableSchema> {
    let mut fields = vec![
        field("id", DataType::Bigint, false),
        field("name", DataType::Text, true),
    ];
    if email {
        fields.push(field("email", DataType::Text, true));
    }
    schema("contacts", &["id"], fields)
}

/// The rows of run `run` into its staging table, and the ends of `ends` (partition,
/// partitions) of the run, with offset `offset` on partition 0.
fn scd2_batch(
    schema: &Arc<TableSchema>,
    run: u64,
    rows: Vec<Row>,
    ends: &[(i32, i32)],
    offset: i64,
) -> Batch {
    let mut tb = table_batch(schema, rows);
    tb.table = super::super::staging_table("contacts", run);
    let tables = if tb.rows.is_empty() { vec![] } else { vec![tb] };
    let mut b = batch_of("conformance", tables, &[("contacts-topic", 0, offset)]);
    b.run_ends = ends
        .iter()
        .map(|&(partition, partitions)| super::super::RunEnd {
            topic: "contacts-topic".to_owned(),
            table: "contacts".to_owned(),
            run,
            partition,
            partitions,
            scd2: Some(Arc::default()),
        })
        .collect();
    b
}

/// A validity timestamp as the run it is (`A`, `B`, `C`), by its minute and second.
fn run_label(value: Option<String>) -> Option<String> {
    let value = value?;
    Some(
        [(":06:40", "A"), (":07:40", "B"), (":08:40", "C")]
            .iter()
            .find(|(time, _)| value.contains(time))
            .map_or(value.clone(), |(_, label)| (*label).to_owned()),
    )
}

/// Every row as `(id, name, from, to)`, sorted.
fn versions(t: &mut Target) -> Vec<[Option<String>; 4]> {
    let mut rows: Vec<[Option<String>; 4]> = t
        .probe
        .rows("contacts", &["id", "name", VALID_FROM, VALID_TO], "id")
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter();
            let mut next = || r.next().flatten();
            [next(), next(), run_label(next()), run_label(next())]
        })
        .collect();
    rows.sort();
    rows
}

fn v(id: i64, name: &str, from: &str, to: Option<&str>) -> [Option<String>; 4] {
    [
        Some(id.to_string()),
        Some(name.to_owned()),
        Some(from.to_owned()),
        to.map(str::to_owned),
    ]
}

#[test]
fn a_run_end_retires_absent_rows_and_inserts_changed_ones() {
    for mut t in targets("scd2") {
        let mut dest = t.open();
        let s = contacts(false);
        let first = vec![
            vec![int(1), text("ann")],
            vec![int(2), text("bob")],
            vec![int(3), text("cy")],
        ];
        // Run A over two partitions: nothing is visible until both ended it.
        let _ = dest
            .write_batch(&scd2_batch(&s, A, first, &[(0, 2)], 3))
            .unwrap();
        assert!(
            t.probe.columns("contacts").is_empty(),
            "{}: no table before the run ends",
            t.name
        );
        let stats = dest
            .write_batch(&scd2_batch(&s, A, vec![], &[(1, 2)], 4))
            .unwrap();
        assert_eq!(stats.runs.swapped, 1, "{}", t.name);
        assert_eq!(
            versions(&mut t),
            vec![
                v(1, "ann", "A", None),
                v(2, "bob", "A", None),
                v(3, "cy", "A", None)
            ],
            "{}",
            t.name
        );
        // Run B (one partition): 1 unchanged, 2 changed, 3 gone, 4 new, and a new column.
        let s2 = contacts(true);
        let second = vec![
            vec![int(1), text("ann"), None],
            vec![int(2), text("bobby"), None],
            vec![int(4), text("di"), text("di@x")],
        ];
        let run_b = scd2_batch(&s2, B, second, &[(0, 1)], 8);
        let _ = dest.write_batch(&run_b).unwrap();
        let after_b = vec![
            v(1, "ann", "A", None),
            v(2, "bob", "A", Some("B")),
            v(2, "bobby", "B", None),
            v(3, "cy", "A", Some("B")),
            v(4, "di", "B", None),
        ];
        assert_eq!(versions(&mut t), after_b, "{}", t.name);
        assert!(
            t.probe.columns("contacts").contains(&"email".to_owned()),
            "{}",
            t.name
        );
        assert_eq!(
            offsets(dest.as_mut()),
            [("contacts-topic".to_owned(), 0, 8)],
            "{}: the offsets commit with the merge",
            t.name
        );
        // Run B's records and end again (a replay), then run A's (late and older): the
        // same records equal the active rows, and an older run than the merged one is
        // dropped.
        drop(dest);
        let mut dest = t.open();
        let _ = dest.write_batch(&run_b).unwrap();
        let late = vec![vec![int(9), text("zed")]];
        let _ = dest
            .write_batch(&scd2_batch(&s, A, late, &[(0, 1)], 9))
            .unwrap();
        assert_eq!(versions(&mut t), after_b, "{}", t.name);
        // Run C has no records: every active row is retired.
        let _ = dest
            .write_batch(&scd2_batch(&s, C, vec![], &[(0, 1)], 10))
            .unwrap();
        assert_eq!(
            versions(&mut t),
            vec![
                v(1, "ann", "A", Some("C")),
                v(2, "bob", "A", Some("B")),
                v(2, "bobby", "B", Some("C")),
                v(3, "cy", "A", Some("B")),
                v(4, "di", "B", Some("C")),
            ],
            "{}",
            t.name
        );
    }
}

#[test]
fn options_rename_the_validity_columns_mark_active_rows_and_pick_the_version_column() {
    for mut t in targets("scd2_options") {
        let mut dest = t.open();
        let options = Arc::new(common::config::Scd2Config {
            valid_from: "valid_from".into(),
            valid_to: "valid_to".into(),
            // 9999-12-31T00:00:00Z
            active_record_timestamp: Some(253_402_214_400_000_000),
            boundary_timestamp: None,
            row_version: Some("v".into()),
            merge_key: Vec::new(),
        });
        let s = schema(
            "contacts",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("name", DataType::Text, true),
                // dlt's row version: a value per version (a hash), compared instead of
                // every column.
                field("v", DataType::Text, true),
            ],
        );
        let run = |run: u64, rows: Vec<Row>, offset: i64| {
            let mut b = scd2_batch(&s, run, rows, &[(0, 1)], offset);
            b.run_ends[0].scd2 = Some(Arc::clone(&options));
            b
        };
        let rows = |t: &mut Target| -> Vec<[Option<String>; 4]> {
            let mut rows: Vec<[Option<String>; 4]> = t
                .probe
                .rows("contacts", &["id", "name", "valid_from", "valid_to"], "id")
                .into_iter()
                .map(|r| {
                    let mut r = r.into_iter();
                    let mut next = || r.next().flatten();
                    let (id, name, from, to) = (next(), next(), next(), next());
                    let to = to.map(|to| {
                        if to.starts_with("9999-12-31") {
                            "active".to_owned()
                        } else {
                            run_label(Some(to)).unwrap_or_default()
                        }
                    });
                    [id, name, run_label(from), to]
                })
                .collect();
            rows.sort();
            rows
        };
        let _ = dest
            .write_batch(&run(
                A,
                vec![
                    vec![int(1), text("ann"), text("a1")],
                    vec![int(2), text("bob"), text("b1")],
                ],
                2,
            ))
            .unwrap();
        // Run B: 1's name changed but not its version (no new version); 2's version did.
        let _ = dest
            .write_batch(&run(
                B,
                vec![
                    vec![int(1), text("ANN"), text("a1")],
                    vec![int(2), text("bobby"), text("b2")],
                ],
                4,
            ))
            .unwrap();
        assert_eq!(
            rows(&mut t),
            vec![
                v(1, "ann", "A", Some("active")),
                v(2, "bob", "A", Some("B")),
                v(2, "bobby", "B", Some("active")),
            ],
            "{}",
            t.name
        );
        assert!(
            !t.probe.columns("contacts").contains(&VALID_FROM.to_owned()),
            "{}: no default validity column",
            t.name
        );
        // Run C without records retires the active rows.
        let _ = dest.write_batch(&run(C, vec![], 5)).unwrap();
        assert_eq!(
            rows(&mut t),
            vec![
                v(1, "ann", "A", Some("C")),
                v(2, "bob", "A", Some("B")),
                v(2, "bobby", "B", Some("C")),
            ],
            "{}",
            t.name
        );
    }
}

#[test]
fn a_boundary_timestamp_replaces_the_runs_time() {
    let end = super::super::RunEnd {
        topic: "t".into(),
        table: "t".into(),
        run: A,
        partition: 0,
        partitions: 1,
        scd2: None,
    };
    let mut options = common::config::Scd2Config::default();
    let quoted = |t: &str| format!("'{t}'");
    let (time, active) = super::super::scd2::literals(&end, &options, quoted, "NULL");
    assert_eq!(
        (time.as_str(), active.as_str()),
        ("'2025-11-29T07:06:40.000000Z'", "NULL")
    );
    options.boundary_timestamp = Some(0);
    let (time, _) = super::super::scd2::literals(&end, &options, quoted, "NULL");
    assert_eq!(time, "'1970-01-01T00:00:00.000000Z'");
}

#[test]
fn a_merge_key_retires_only_the_rows_of_the_runs_merge_key_values() {
    for mut t in targets("scd2_merge_key") {
        let mut dest = t.open();
        let options = Arc::new(common::config::Scd2Config {
            merge_key: vec!["name".into()],
            ..common::config::Scd2Config::default()
        });
        let s = contacts(false);
        let run = |run: u64, rows: Vec<Row>, offset: i64| {
            let mut b = scd2_batch(&s, run, rows, &[(0, 1)], offset);
            b.run_ends[0].scd2 = Some(Arc::clone(&options));
            b
        };
        let first = vec![
            vec![int(1), text("mon")],
            vec![int(2), text("tue")],
            vec![int(3), None],
        ];
        let _ = dest.write_batch(&run(A, first, 3)).unwrap();
        // Run B has `mon` only, with another record: `mon`'s row 1 is retired; `tue` and
        // the null key (matching nothing) stay active.
        let _ = dest
            .write_batch(&run(B, vec![vec![int(4), text("mon")]], 4))
            .unwrap();
        // Run C has no records, so no merge key values: nothing is retired.
        let _ = dest.write_batch(&run(C, vec![], 5)).unwrap();
        let mut rows: Vec<[Option<String>; 4]> = t
            .probe
            .rows("contacts", &["id", "name", VALID_FROM, VALID_TO], "id")
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter();
                let mut next = || r.next().flatten();
                [next(), next(), run_label(next()), run_label(next())]
            })
            .collect();
        rows.sort();
        let row = |id: i64, name: Option<&str>, from: &str, to: Option<&str>| {
            [
                Some(id.to_string()),
                name.map(str::to_owned),
                Some(from.to_owned()),
                to.map(str::to_owned),
            ]
        };
        assert_eq!(
            rows,
            vec![
                row(1, Some("mon"), "A", Some("B")),
                row(2, Some("tue"), "A", None),
                row(3, None, "A", None),
                row(4, Some("mon"), "B", None),
            ],
            "{}",
            t.name
        );
    }
}

#[test]
fn a_failing_run_end_rolls_the_merge_back_with_the_offsets() {
    for mut t in targets("scd2_rollback") {
        let mut dest = t.open();
        let s = contacts(false);
        let _ = dest
            .write_batch(&scd2_batch(
                &s,
                A,
                vec![vec![int(1), text("ann")]],
                &[(0, 1)],
                1,
            ))
            .unwrap();
        // Run B's end merges, then the batch's second run end fails (a table without
        // validity columns): nothing of the batch stays, offsets included.
        let mut b = scd2_batch(&s, B, vec![vec![int(1), text("bob")]], &[(0, 1)], 2);
        let mut failing = b.run_ends[0].clone();
        failing.topic = "other-topic".into();
        failing.table = super::super::OFFSETS_TABLE.into();
        b.run_ends.push(failing);
        let err = dest.write_batch(&b).unwrap_err().to_string();
        assert!(err.contains("ending run"), "{}: {err}", t.name);
        assert_eq!(
            versions(&mut t),
            vec![v(1, "ann", "A", None)],
            "{}: the merge is rolled back",
            t.name
        );
        assert_eq!(
            offsets(dest.as_mut()),
            [("contacts-topic".to_owned(), 0, 1)],
            "{}",
            t.name
        );
        // The batch again without the failing end (what a restarted loader reads from the
        // stored offsets): merged once.
        let _ = b.run_ends.pop();
        let _ = dest.write_batch(&b).unwrap();
        assert_eq!(
            versions(&mut t),
            vec![v(1, "ann", "A", Some("B")), v(1, "bob", "B", None)],
            "{}",
            t.name
        );
    }
}
