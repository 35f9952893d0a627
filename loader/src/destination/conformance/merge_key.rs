//! dlt's `delete-insert` with a `merge_key`, on every destination: a newer run's rows replace
//! every row of their merge key values, an older run's rows that arrive late are dropped,
//! a null merge key matches nothing, and a new process sees the runs recorded before.

use common::schema::DataType;

use super::super::merge_key::LOAD_ID_COLUMN;
use super::*;

/// `events(id, day, v, _dlt_load_id)` merged by `day`.
fn events() -> Arc<TableSchema> {
    schema(
        "events",
        &["id"],
        vec![
            field("id", DataType::Bigint, false),
            field("day", DataType::Text, true),
            field("v", DataType::Bigint, true),
            field(LOAD_ID_COLUMN, DataType::Bigint, true),
        ],
    )
}

fn event(id: i64, day: Option<&str>, v: i64, run: i64) -> Row {
    vec![int(id), day.and_then(text), int(v), int(run)]
}

fn merge_batch(rows: Vec<Row>, offset: i64) -> Batch {
    let mut tb = table_batch(&events(), rows);
    tb.merge_key = vec!["day".into()];
    batch_of("conformance", vec![tb], &[("events", 0, offset)])
}

/// Every row, by id (as a number: the probe may order the text).
fn all(t: &mut Target) -> Vec<Vec<Option<String>>> {
    let mut rows = t
        .probe
        .rows("events", &["id", "day", "v", LOAD_ID_COLUMN], "id");
    rows.sort_by_key(|r| r[0].as_deref().and_then(|id| id.parse::<i64>().ok()));
    rows
}

fn row(id: i64, day: Option<&str>, v: i64, run: i64) -> Vec<Option<String>> {
    vec![
        Some(id.to_string()),
        day.map(str::to_owned),
        Some(v.to_string()),
        Some(run.to_string()),
    ]
}

#[test]
fn a_newer_run_replaces_its_merge_keys_and_an_older_one_is_dropped() {
    for mut t in targets("merge_key") {
        let mut dest = t.open();
        // Run 10: two rows of mon, one of tue, one without a day.
        let _ = dest
            .write_batch(&merge_batch(
                vec![
                    event(1, Some("mon"), 1, 10),
                    event(2, Some("mon"), 1, 10),
                    event(3, Some("tue"), 1, 10),
                    event(4, None, 1, 10),
                ],
                4,
            ))
            .unwrap();
        // Run 20 has mon again, with one row: every mon row of run 10 goes (dlt deletes
        // the merge key's rows, then inserts the load's); tue and the null day stay.
        let stats = dest
            .write_batch(&merge_batch(vec![event(5, Some("mon"), 2, 20)], 5))
            .unwrap();
        assert_eq!(stats.deleted, 2, "{}", t.name);
        assert_eq!(
            all(&mut t),
            vec![
                row(3, Some("tue"), 1, 10),
                row(4, None, 1, 10),
                row(5, Some("mon"), 2, 20),
            ],
            "{}",
            t.name
        );
        // Run 10's rows from a partition loaded late, and the rest of run 20, in a new
        // process: the late mon row is older than mon's run 20 and is dropped; the late
        // tue row belongs to tue's run and is written; run 20's next mon row joins its run.
        drop(dest);
        let mut again = t.open();
        let stats = again
            .write_batch(&merge_batch(
                vec![
                    event(6, Some("mon"), 1, 10),
                    event(7, Some("tue"), 1, 10),
                    event(8, Some("mon"), 2, 20),
                ],
                8,
            ))
            .unwrap();
        assert_eq!((stats.deleted, stats.rows), (0, 2), "{}", t.name);
        assert_eq!(
            all(&mut t),
            vec![
                row(3, Some("tue"), 1, 10),
                row(4, None, 1, 10),
                row(5, Some("mon"), 2, 20),
                row(7, Some("tue"), 1, 10),
                row(8, Some("mon"), 2, 20),
            ],
            "{}",
            t.name
        );
        // One batch with an older and a newer run of wed: only the newer run's rows stay.
        let _ = again
            .write_batch(&merge_batch(
                vec![
                    event(9, Some("wed"), 3, 30),
                    event(10, Some("wed"), 4, 40),
                    event(3, Some("tue"), 4, 40),
                ],
                11,
            ))
            .unwrap();
        assert_eq!(
            all(&mut t),
            vec![
                row(3, Some("tue"), 4, 40),
                row(4, None, 1, 10),
                row(5, Some("mon"), 2, 20),
                row(8, Some("mon"), 2, 20),
                row(10, Some("wed"), 4, 40),
            ],
            "{}: tue's run 40 replaced row 7 and updated row 3",
            t.name
        );
        assert_eq!(
            offsets(again.as_mut()),
            vec![("events".into(), 0, 11)],
            "{}",
            t.name
        );
    }
}
