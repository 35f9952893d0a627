//! Hostile values and names, on every destination: names longer than PostgreSQL's 63
//! bytes (shortened as dlt does, child tables included), NUL in text and in JSON, values a
//! column cannot hold, and more columns than PostgreSQL allows. Each failure must carry
//! the database's own reason.

use std::collections::HashMap;

use common::schema::DataType;

use super::super::Delete;
use super::super::naming::{POSTGRES_MAX_IDENTIFIER, shorten};
use super::*;

/// A table name of 30 bytes: a child table's shortened name keeps only its first 29, so
/// the child is found by its full name (the table comment), not by a name prefix.
const LONG_TABLE: &str = "orders_with_a_rather_long_name";
const LONG_LIST: &str = "line_items_detail_with_extra_long_name";
/// Two fields that share their first 63 bytes (PostgreSQL used to cut both to one name).
const FIRST: &str = "long_name_abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij_first";
const SECOND: &str =
    "long_name_abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij_second";
/// What dlt 1.31.0 names them on PostgreSQL (printed by `NamingConvention.shorten_identifier`
/// and `shorten_fragments` with `max_length=63`).
const DLT_FIRST: &str = "long_name_abcdefghijabcdefghikrav8wijabcdefghijabcdefghij_first";
const DLT_SECOND: &str = "long_name_abcdefghijabcdefghicvyjhgjabcdefghijabcdefghij_second";
const DLT_CHILD: &str = "orders_with_a_rather_long_namlbtalw_detail_with_extra_long_name";

fn long_schema() -> Arc<TableSchema> {
    schema(
        LONG_TABLE,
        &["id"],
        vec![
            field("id", DataType::Bigint, false),
            field(FIRST, DataType::Text, true),
            field(SECOND, DataType::Text, true),
            field(LONG_LIST, DataType::Json, true),
        ],
    )
}

fn long_nester(replace: bool) -> crate::nested::Nester {
    crate::nested::Nester::new(HashMap::from([(
        LONG_TABLE.to_owned(),
        crate::nested::NestRoute {
            primary_key: vec!["id".into()],
            merge: true,
            max_table_nesting: None,
            json_columns: Default::default(),
            replace,
        },
    )]))
}

/// The name a table or column has in the target's database.
fn physical(t: &Target, name: &str) -> String {
    if t.name == "postgres" {
        shorten(name, POSTGRES_MAX_IDENTIFIER).into_owned()
    } else {
        name.to_owned()
    }
}

#[test]
fn long_names_are_shortened_as_dlt_does_and_stay_unique() {
    assert_eq!(shorten(FIRST, POSTGRES_MAX_IDENTIFIER), DLT_FIRST);
    assert_eq!(shorten(SECOND, POSTGRES_MAX_IDENTIFIER), DLT_SECOND);
    let child = format!("{LONG_TABLE}__{LONG_LIST}");
    assert_eq!(shorten(&child, POSTGRES_MAX_IDENTIFIER), DLT_CHILD);
    for mut t in targets("long_names") {
        let mut dest = t.open();
        let mut nest = long_nester(false);
        let s = long_schema();
        let rows = vec![
            vec![int(1), text("one"), text("uno"), json(r#"["a","b"]"#)],
            vec![int(2), text("two"), text("dos"), json(r#"["c"]"#)],
        ];
        let mut b = batch(&s, rows, &[("t", 0, 2)]);
        nest.explode(&mut b, dest.as_mut()).unwrap();
        let _ = dest
            .write_batch(&b)
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        let table = physical(&t, LONG_TABLE);
        let (first, second) = (physical(&t, FIRST), physical(&t, SECOND));
        assert_eq!(
            t.probe.columns(&table),
            ["id", first.as_str(), second.as_str()],
            "{}",
            t.name
        );
        assert_eq!(
            t.probe.rows(&table, &["id", &first, &second], "id"),
            vec![some(&["1", "one", "uno"]), some(&["2", "two", "dos"])],
            "{}",
            t.name
        );
        let child_table = physical(&t, &child);
        if t.name == "postgres" {
            assert_eq!(child_table, DLT_CHILD);
        }
        assert_eq!(
            sorted(t.probe.as_mut(), &child_table, &["_dlt_parent_id", "value"]),
            vec![some(&["1", "a"]), some(&["1", "b"]), some(&["2", "c"])],
            "{}",
            t.name
        );
        // A new process (new destination, new nester) finds the child table by the
        // table's name: record 1's list is now empty, so its children go.
        drop(dest);
        let mut dest = t.open();
        assert_eq!(
            dest.nested_tables(LONG_TABLE).unwrap(),
            std::slice::from_ref(&child),
            "{}",
            t.name
        );
        let mut nest = long_nester(false);
        let mut b = batch(
            &s,
            vec![vec![int(1), text("one"), text("uno"), json("[]")]],
            &[("t", 0, 3)],
        );
        nest.explode(&mut b, dest.as_mut()).unwrap();
        let _ = dest.write_batch(&b).unwrap();
        assert_eq!(
            sorted(t.probe.as_mut(), &child_table, &["_dlt_parent_id", "value"]),
            vec![some(&["2", "c"])],
            "{}",
            t.name
        );
    }
}

#[test]
fn long_child_tables_follow_a_replace_swap() {
    let child = format!("{LONG_TABLE}__{LONG_LIST}");
    for mut t in targets("long_replace") {
        let mut dest = t.open();
        let mut nest = long_nester(true);
        let s = long_schema();
        let mut write = |dest: &mut Box<dyn Destination>, run: u64, rows: Vec<Row>, end: bool| {
            let mut b = batch(&s, rows, &[]);
            b.tables[0].table = super::super::staging_table(LONG_TABLE, run);
            if b.tables[0].rows.is_empty() {
                b.tables.clear();
            }
            if end {
                b.run_ends = vec![super::super::RunEnd {
                    topic: "long-topic".to_owned(),
                    table: LONG_TABLE.to_owned(),
                    run,
                    partition: 0,
                    partitions: 1,
                    scd2: None,
                }];
            }
            nest.explode(&mut b, dest.as_mut()).unwrap();
            dest.write_batch(&b)
                .unwrap_or_else(|e| panic!("{}: {e}", t.name))
        };
        let row = |id: i64, list: &str| vec![int(id), text("x"), text("y"), json(list)];
        let stats = write(&mut dest, 100, vec![row(1, r#"["a","b"]"#)], true);
        assert_eq!(stats.runs.swapped, 1, "{}", t.name);
        let child_table = physical(&t, &child);
        assert_eq!(
            sorted(t.probe.as_mut(), &child_table, &["_dlt_parent_id", "value"]),
            vec![some(&["1", "a"]), some(&["1", "b"])],
            "{}",
            t.name
        );
        // Run 200's children are staged under a long (shortened) name, then renamed.
        let _ = write(&mut dest, 200, vec![row(2, r#"["c"]"#)], false);
        let staged = format!(
            "{}__{LONG_LIST}",
            super::super::staging_table(LONG_TABLE, 200)
        );
        assert!(
            !t.probe.columns(&physical(&t, &staged)).is_empty(),
            "{}: the run's children are staged",
            t.name
        );
        let _ = write(&mut dest, 200, vec![], true);
        assert_eq!(
            sorted(t.probe.as_mut(), &child_table, &["_dlt_parent_id", "value"]),
            vec![some(&["2", "c"])],
            "{}: the swap replaced the children",
            t.name
        );
        assert!(
            t.probe.columns(&physical(&t, &staged)).is_empty(),
            "{}: the staged children were renamed",
            t.name
        );
        assert_eq!(
            dest.nested_tables(LONG_TABLE).unwrap(),
            std::slice::from_ref(&child),
            "{}",
            t.name
        );
    }
}

#[test]
fn nul_in_text_is_removed_on_postgres_as_dlt_does_and_kept_on_sqlite() {
    for mut t in targets("nul_text") {
        let mut dest = t.open();
        let s = schema(
            "notes",
            &["k"],
            vec![
                field("k", DataType::Text, false),
                field("body", DataType::Text, true),
            ],
        );
        let rows = vec![
            vec![text("a\0"), text("x\0y\0")],
            vec![text("b"), text("\0")],
        ];
        let _ = dest
            .write_batch(&batch(&s, rows, &[]))
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        let expected = if t.name == "postgres" {
            vec![some(&["a", "xy"]), some(&["b", ""])]
        } else {
            vec![some(&["a\0", "x\0y\0"]), some(&["b", "\0"])]
        };
        assert_eq!(
            t.probe.rows("notes", &["k", "body"], "k"),
            expected,
            "{}",
            t.name
        );
        // A tombstone for the key with its NUL deletes the row.
        let mut b = batch(&s, Vec::new(), &[]);
        b.tables.clear();
        b.deletes.push(Delete {
            table: "notes".to_owned(),
            key_columns: vec!["k".to_owned()],
            key: vec!["a\0".to_owned()],
        });
        let stats = dest.write_batch(&b).unwrap();
        assert_eq!(stats.deleted, 1, "{}", t.name);
        assert_eq!(
            t.probe.rows("notes", &["k"], "k"),
            vec![some(&["b"])],
            "{}",
            t.name
        );
    }
}

#[test]
fn nul_in_json_is_refused_by_postgres_with_its_reason() {
    for t in targets("nul_json") {
        let mut dest = t.open();
        let s = schema(
            "events",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("meta", DataType::Json, true),
            ],
        );
        let bad = batch(&s, vec![vec![int(1), json(r#"{"k":"a\u0000b"}"#)]], &[]);
        let result = dest.write_batch(&bad);
        if t.name == "sqlite" {
            let _ = result.unwrap();
            continue;
        }
        let err = result.unwrap_err();
        let text = err.to_string();
        assert!(err.is_row_error(), "{text}");
        for part in [
            "record id=1",
            "unsupported Unicode escape sequence",
            "SQLSTATE 22P05",
            "\\u0000 cannot be converted to text",
            "column \"meta\"",
        ] {
            assert!(text.contains(part), "{part:?} not in: {text}");
        }
        assert!(!text.contains("db error"), "{text}");
    }
}

/// The query string's `schema=` of a PostgreSQL target's URL.
fn schema_of(url: &str) -> String {
    url.split(['?', '&'])
        .find_map(|part| part.strip_prefix("schema="))
        .unwrap()
        .to_owned()
}

#[test]
fn a_value_the_column_cannot_hold_names_the_server_detail() {
    for mut t in targets("narrow_numeric") {
        let s = schema(
            "prices",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                Field {
                    precision: 38,
                    scale: 9,
                    keep_whole: false,
                    ..field("amount", DataType::Decimal, true)
                },
            ],
        );
        if t.name == "postgres" {
            // Someone created the table with a narrower column than the loader would.
            let base = t.url.split('?').next().unwrap().to_owned();
            let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
            admin
                .batch_execute(&format!(
                    "CREATE TABLE {}.\"prices\" (\"id\" BIGINT PRIMARY KEY, \"amount\" NUMERIC(5, 2))",
                    quote(&schema_of(&t.url))
                ))
                .unwrap();
        }
        let mut dest = t.open();
        let rows = vec![
            vec![int(1), Some(Scalar::Decimal("12.500000000".into()))],
            vec![int(2), Some(Scalar::Decimal("12345.678000000".into()))],
        ];
        let result = dest.write_batch(&batch(&s, rows, &[]));
        if t.name == "sqlite" {
            let _ = result.unwrap();
            continue;
        }
        let err = result.unwrap_err();
        let text = err.to_string();
        assert!(err.is_row_error(), "{text}");
        for part in [
            "record id=2",
            "numeric field overflow",
            "SQLSTATE 22003",
            "detail: A field with precision 5, scale 2 must round to an absolute value less than 10^3",
        ] {
            assert!(text.contains(part), "{part:?} not in: {text}");
        }
        let _ = t.probe.columns("prices");
    }
}

#[test]
fn more_columns_than_postgres_allows_fail_with_its_reason() {
    const COLUMNS: usize = 1700;
    for mut t in targets("wide") {
        let mut dest = t.open();
        let mut fields = vec![field("id", DataType::Bigint, false)];
        fields.extend((0..COLUMNS).map(|i| field(&format!("m_{i:04}"), DataType::Bigint, true)));
        let s = schema("wide", &["id"], fields);
        let mut row = vec![int(1)];
        row.extend((0..COLUMNS).map(|i| int(i as i64)));
        let result = dest.write_batch(&batch(&s, vec![row], &[("wide", 0, 1)]));
        if t.name == "sqlite" {
            let _ = result.unwrap();
            assert_eq!(t.probe.columns("wide").len(), COLUMNS + 1);
            continue;
        }
        let text = result.unwrap_err().to_string();
        for part in [
            "creating table \"wide\"",
            "tables can have at most 1600 columns",
            "SQLSTATE 54011",
        ] {
            assert!(text.contains(part), "{part:?} not in: {text}");
        }
        assert!(offsets(dest.as_mut()).is_empty(), "nothing stored");
    }
}
