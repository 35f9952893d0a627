//! The SQLite destination's own tests (the behaviour every destination shares is in the
//! conformance suite).

use super::*;
use crate::destination::Destination;
use crate::destination::test_support::{batch_of, field, int, schema, table_batch, text};

fn batch(tables: Vec<TableBatch>, offsets: &[(&str, i32, i64)]) -> Batch {
    batch_of("loader", tables, offsets)
}

struct Db {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    dest: SqliteDestination,
}

impl Db {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.db");
        let dest = SqliteDestination::open(&path).unwrap();
        Self {
            _dir: dir,
            path,
            dest,
        }
    }

    /// A second, independent connection: sees only committed data.
    fn reader(&self) -> Connection {
        Connection::open(&self.path).unwrap()
    }

    fn users(&self) -> Vec<(i64, Option<String>)> {
        let conn = self.reader();
        let mut statement = conn
            .prepare("SELECT id, name FROM users ORDER BY id")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn table_exists(&self, table: &str) -> bool {
        self.reader()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                [table],
                |row| row.get(0),
            )
            .unwrap()
    }

    /// (name, declared type, not null, primary key position) per column.
    fn columns(&self, table: &str) -> Vec<(String, String, bool, i64)> {
        let conn = self.reader();
        let mut statement = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
            .unwrap();
        statement
            .query_map([table], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn users_schema() -> Arc<TableSchema> {
    schema(
        "users",
        &["id"],
        vec![
            field("id", DataType::Bigint, false),
            field("name", DataType::Text, false),
        ],
    )
}

#[test]
fn creates_upserts_and_reupserts() {
    let mut db = Db::new();
    let users = users_schema();
    let stats = db
        .dest
        .write_batch(&batch(
            vec![table_batch(
                &users,
                vec![
                    vec![int(1), text("ann")],
                    vec![int(2), text("bob")],
                    vec![int(2), text("bobby")], // later row wins
                ],
            )],
            &[],
        ))
        .unwrap();
    assert_eq!(
        stats,
        BatchStats {
            rows: 3,
            deleted: 0,
            tables_created: 1,
            columns_added: 0,
            ..BatchStats::default()
        }
    );
    assert_eq!(
        db.users(),
        [(1, Some("ann".into())), (2, Some("bobby".into()))]
    );
    assert_eq!(
        db.columns("users"),
        [
            ("id".into(), "INTEGER".into(), true, 1),
            ("name".into(), "TEXT".into(), true, 0)
        ]
    );

    // A new Arc with the same content: same table, no new table, one row per id.
    let stats = db
        .dest
        .write_batch(&batch(
            vec![table_batch(
                &users_schema(),
                vec![vec![int(1), text("anne")], vec![int(3), text("cy")]],
            )],
            &[],
        ))
        .unwrap();
    assert_eq!(
        stats,
        BatchStats {
            rows: 2,
            deleted: 0,
            tables_created: 0,
            columns_added: 0,
            ..BatchStats::default()
        }
    );
    assert_eq!(
        db.users(),
        [
            (1, Some("anne".into())),
            (2, Some("bobby".into())),
            (3, Some("cy".into()))
        ]
    );
    assert_eq!(db.dest.state.plans.count("users"), 1, "plan reused");
}

#[test]
fn a_new_process_finds_the_existing_table() {
    let mut db = Db::new();
    let users = users_schema();
    let _ = db
        .dest
        .write_batch(&batch(
            vec![table_batch(&users, vec![vec![int(1), text("ann")]])],
            &[],
        ))
        .unwrap();
    let mut reopened = SqliteDestination::open(&db.path).unwrap();
    let stats = reopened
        .write_batch(&batch(
            vec![table_batch(&users, vec![vec![int(1), text("anne")]])],
            &[],
        ))
        .unwrap();
    assert_eq!(stats.tables_created, 0);
    assert_eq!(stats.columns_added, 0);
    assert_eq!(db.users(), [(1, Some("anne".into()))]);
}

#[test]
fn every_type_round_trips() {
    let mut db = Db::new();
    let all = schema(
        "all_types",
        &["id"],
        vec![
            field("id", DataType::Bigint, false),
            field("t", DataType::Text, true),
            field("i", DataType::Bigint, true),
            field("d", DataType::Double, true),
            field("b", DataType::Bool, true),
            field("ts", DataType::Timestamp, true),
            field("dec", DataType::Decimal, true),
            field("j", DataType::Json, true),
        ],
    );
    let unicode = "naïve café — 日本語 🦀 e\u{301} \"quoted\" 'single' \\ \n tab\t";
    let decimal = "12345678901234567890.123456789";
    let json = r#"[{"a":1},"x",null]"#;
    let ts = 1_700_000_000_123_456;
    let rows = vec![
        vec![
            int(1),
            text(unicode),
            int(i64::MAX),
            Some(Scalar::Double(-1.5e300)),
            Some(Scalar::Bool(true)),
            Some(Scalar::Timestamp(ts)),
            Some(Scalar::Decimal(decimal.to_owned())),
            Some(Scalar::Json(json.to_owned())),
        ],
        vec![
            int(2),
            text(""),
            int(i64::MIN),
            Some(Scalar::Double(0.1)),
            Some(Scalar::Bool(false)),
            Some(Scalar::Timestamp(0)),
            Some(Scalar::Decimal("-0.000000001".to_owned())),
            Some(Scalar::Json("{}".to_owned())),
        ],
        vec![int(3), None, None, None, None, None, None, None],
    ];
    let _ = db
        .dest
        .write_batch(&batch(vec![table_batch(&all, rows)], &[]))
        .unwrap();

    let columns = db.columns("all_types");
    let types: Vec<&str> = columns.iter().map(|column| column.1.as_str()).collect();
    assert_eq!(
        types,
        [
            "INTEGER", "TEXT", "INTEGER", "REAL", "INTEGER", "TEXT", "TEXT", "TEXT"
        ]
    );
    assert!(columns[1..].iter().all(|column| !column.2), "nullable");

    let conn = db.reader();
    type Stored = (
        String,
        Option<String>,
        Option<i64>,
        Option<f64>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let read = |id: i64| -> Stored {
        conn.query_row(
            "SELECT typeof(t) || typeof(i) || typeof(d) || typeof(b) || typeof(ts) \
             || typeof(dec) || typeof(j), t, i, d, b, ts, dec, j FROM all_types WHERE id = ?1",
            [id],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                ))
            },
        )
        .unwrap()
    };
    let one = read(1);
    assert_eq!(one.0, "textintegerrealintegertexttexttext");
    assert_eq!(one.1.unwrap().as_bytes(), unicode.as_bytes());
    assert_eq!(one.2, Some(i64::MAX));
    assert_eq!(one.3, Some(-1.5e300));
    assert_eq!(one.4, Some(1));
    assert_eq!(one.5.as_deref(), Some("2023-11-14T22:13:20.123456Z"));
    assert_eq!(one.5, Some(timestamp_text(ts)));
    assert_eq!(one.6.as_deref(), Some(decimal));
    assert_eq!(one.7.as_deref(), Some(json));

    let two = read(2);
    assert_eq!(two.0, "textintegerrealintegertexttexttext");
    assert_eq!(two.1.as_deref(), Some(""));
    assert_eq!(two.2, Some(i64::MIN));
    assert_eq!(two.3, Some(0.1));
    assert_eq!(two.4, Some(0));
    assert_eq!(two.5.as_deref(), Some("1970-01-01T00:00:00.000000Z"));
    assert_eq!(two.6.as_deref(), Some("-0.000000001"));
    assert_eq!(two.7.as_deref(), Some("{}"));

    let three = read(3);
    assert_eq!(three.0, "nullnullnullnullnullnullnull");
    assert_eq!(
        (
            three.1, three.2, three.3, three.4, three.5, three.6, three.7
        ),
        (None, None, None, None, None, None, None)
    );
}

#[test]
fn composite_primary_key() {
    let mut db = Db::new();
    let members = schema(
        "members",
        &["org", "id"],
        vec![
            field("org", DataType::Text, false),
            field("id", DataType::Bigint, false),
            field("role", DataType::Text, true),
        ],
    );
    let _ = db
        .dest
        .write_batch(&batch(
            vec![table_batch(
                &members,
                vec![
                    vec![text("a"), int(1), text("dev")],
                    vec![text("b"), int(1), text("ops")],
                    vec![text("a"), int(2), text("dev")],
                    vec![text("a"), int(1), text("lead")],
                ],
            )],
            &[],
        ))
        .unwrap();
    let conn = db.reader();
    let mut statement = conn
        .prepare("SELECT org, id, role FROM members ORDER BY org, id")
        .unwrap();
    let rows: Vec<(String, i64, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        [
            ("a".into(), 1, "lead".into()),
            ("a".into(), 2, "dev".into()),
            ("b".into(), 1, "ops".into())
        ]
    );
    let pk: Vec<(String, i64)> = db
        .columns("members")
        .into_iter()
        .map(|column| (column.0, column.3))
        .collect();
    assert_eq!(
        pk,
        [("org".into(), 1), ("id".into(), 2), ("role".into(), 0)]
    );
}

#[test]
fn all_key_columns_do_nothing_and_no_key_appends() {
    let mut db = Db::new();
    let tags = schema("tags", &["tag"], vec![field("tag", DataType::Text, false)]);
    let events = schema("events", &[], vec![field("kind", DataType::Text, true)]);
    let _ = db
        .dest
        .write_batch(&batch(
            vec![
                table_batch(&tags, vec![vec![text("x")], vec![text("x")]]),
                table_batch(&events, vec![vec![text("x")], vec![text("x")]]),
            ],
            &[],
        ))
        .unwrap();
    let conn = db.reader();
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
    };
    assert_eq!(count("tags"), 1);
    assert_eq!(count("events"), 2);
}

#[test]
fn a_new_field_adds_a_nullable_column() {
    let mut db = Db::new();
    let v1 = users_schema();
    let v2 = schema(
        "users",
        &["id"],
        vec![
            field("id", DataType::Bigint, false),
            field("name", DataType::Text, false),
            field("Email", DataType::Text, false),
        ],
    );
    let _ = db
        .dest
        .write_batch(&batch(
            vec![table_batch(&v1, vec![vec![int(1), text("ann")]])],
            &[],
        ))
        .unwrap();
    let stats = db
        .dest
        .write_batch(&batch(
            vec![table_batch(
                &v2,
                vec![vec![int(2), text("bob"), text("bob@example.com")]],
            )],
            &[],
        ))
        .unwrap();
    assert_eq!(stats.columns_added, 1);
    assert_eq!(stats.tables_created, 0);
    let email = db.columns("users").pop().unwrap();
    assert_eq!(email, ("Email".into(), "TEXT".into(), false, 0));

    // The old writer schema leaves the column it lacks untouched; names match
    // case-insensitively, as SQLite's do.
    let v1_upper = schema(
        "USERS",
        &["ID"],
        vec![
            field("ID", DataType::Bigint, false),
            field("NAME", DataType::Text, false),
        ],
    );
    let stats = db
        .dest
        .write_batch(&batch(
            vec![
                table_batch(&v1, vec![vec![int(2), text("bobby")]]),
                table_batch(&v1_upper, vec![vec![int(3), text("cy")]]),
            ],
            &[],
        ))
        .unwrap();
    assert_eq!(stats.columns_added, 0);
    assert_eq!(stats.tables_created, 0);

    let conn = db.reader();
    let mut statement = conn
        .prepare("SELECT id, name, email FROM users ORDER BY id")
        .unwrap();
    let rows: Vec<(i64, String, Option<String>)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        [
            (1, "ann".into(), None),
            (2, "bobby".into(), Some("bob@example.com".into())),
            (3, "cy".into(), None),
        ]
    );
}

#[test]
fn hostile_names_are_just_names() {
    let mut db = Db::new();
    let victims = schema(
        "victims",
        &["id"],
        vec![field("id", DataType::Bigint, false)],
    );
    let table = "t\"; DROP TABLE victims; --";
    let hostile = Arc::new(TableSchema {
        name: table.to_owned(),
        primary_key: vec!["\"; DROP TABLE victims; --".to_owned()],
        fields: vec![
            field("\"; DROP TABLE victims; --", DataType::Text, false),
            field("a\"b", DataType::Bigint, true),
            field("select", DataType::Text, true),
            field("x y); DELETE FROM victims; (", DataType::Text, true),
            field("excluded", DataType::Text, true),
        ],
    });
    let _ = db
        .dest
        .write_batch(&batch(
            vec![
                table_batch(&victims, vec![vec![int(1)]]),
                table_batch(
                    &hostile,
                    vec![
                        vec![text("k"), int(1), text("s"), text("x"), text("e")],
                        vec![text("k"), int(2), text("s2"), text("x2"), text("e2")],
                    ],
                ),
            ],
            &[],
        ))
        .unwrap();
    assert!(db.table_exists("victims"));
    assert!(db.table_exists(table));
    let victims: i64 = db
        .reader()
        .query_row("SELECT count(*) FROM victims", [], |row| row.get(0))
        .unwrap();
    assert_eq!(victims, 1);
    let names: Vec<String> = db
        .columns(table)
        .into_iter()
        .map(|column| column.0)
        .collect();
    let expected: Vec<&str> = hostile
        .fields
        .iter()
        .map(|field| field.name.as_str())
        .collect();
    assert_eq!(names, expected);
    let row: (String, i64, String, String, String) = db
        .reader()
        .query_row(
            "SELECT * FROM \"t\"\"; DROP TABLE victims; --\"",
            [],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(row, ("k".into(), 2, "s2".into(), "x2".into(), "e2".into()));
}

#[test]
fn offsets_are_stored_read_back_and_updated() {
    let mut db = Db::new();
    assert_eq!(db.dest.stored_offsets("loader").unwrap(), []);
    let users = users_schema();
    let _ = db
        .dest
        .write_batch(&batch(
            vec![table_batch(&users, vec![vec![int(1), text("ann")]])],
            &[("users", 1, 5), ("users", 0, 10), ("orders", 0, 3)],
        ))
        .unwrap();
    let mut other_group = batch(vec![], &[("users", 0, 99)]);
    other_group.group_id = "other".to_owned();
    let _ = db.dest.write_batch(&other_group).unwrap();
    let offset = |topic: &str, partition, next_offset| PartitionOffset {
        topic: topic.to_owned(),
        partition,
        next_offset,
    };
    assert_eq!(
        db.dest.stored_offsets("loader").unwrap(),
        [
            offset("orders", 0, 3),
            offset("users", 0, 10),
            offset("users", 1, 5)
        ]
    );
    let _ = db
        .dest
        .write_batch(&batch(vec![], &[("users", 0, 20)]))
        .unwrap();
    let mut reopened = SqliteDestination::open(&db.path).unwrap();
    assert_eq!(
        reopened.stored_offsets("loader").unwrap(),
        [
            offset("orders", 0, 3),
            offset("users", 0, 20),
            offset("users", 1, 5)
        ]
    );
    assert_eq!(
        reopened.stored_offsets("other").unwrap(),
        [offset("users", 0, 99)]
    );
    assert_eq!(reopened.stored_offsets("nobody").unwrap(), []);
}

#[test]
fn a_failing_row_rolls_back_the_whole_batch() {
    let mut db = Db::new();
    let users = users_schema();
    let _ = db
        .dest
        .write_batch(&batch(
            vec![table_batch(&users, vec![vec![int(1), text("ann")]])],
            &[("users", 0, 1)],
        ))
        .unwrap();

    let orders = schema(
        "orders",
        &["id"],
        vec![field("id", DataType::Bigint, false)],
    );
    let users_v2 = schema(
        "users",
        &["id"],
        vec![
            field("id", DataType::Bigint, false),
            field("name", DataType::Text, false),
            field("email", DataType::Text, true),
        ],
    );
    let bad = batch(
        vec![
            table_batch(&orders, vec![vec![int(7)]]),
            table_batch(
                &users_v2,
                vec![
                    vec![int(1), text("anne"), text("a@x")],
                    vec![int(2), text("bob"), None],
                    vec![int(3), None, None], // NOT NULL violated
                    vec![int(4), text("dee"), None],
                ],
            ),
        ],
        &[("users", 0, 5)],
    );
    let err = db.dest.write_batch(&bad).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, DestinationError::Upsert { table, key, .. } if table == "users" && key == "id=3"),
        "{message}"
    );
    assert!(message.contains("NOT NULL"), "{message}");
    assert!(message.contains("id=3"), "{message}");

    assert_eq!(db.users(), [(1, Some("ann".into()))]);
    assert!(!db.table_exists("orders"));
    assert_eq!(db.columns("users").len(), 2, "email column rolled back");
    assert_eq!(
        db.dest.stored_offsets("loader").unwrap(),
        [PartitionOffset {
            topic: "users".into(),
            partition: 0,
            next_offset: 1
        }]
    );

    // The same destination recovers: it re-reads what exists instead of trusting
    // what the rolled-back transaction had created.
    let mut good = bad.clone();
    good.tables[1].rows[2] = vec![int(3), text("cy"), None];
    let stats = db.dest.write_batch(&good).unwrap();
    assert_eq!(
        stats,
        BatchStats {
            rows: 5,
            deleted: 0,
            tables_created: 1,
            columns_added: 1,
            ..BatchStats::default()
        }
    );
    assert_eq!(db.users().len(), 4);
    assert_eq!(db.dest.stored_offsets("loader").unwrap()[0].next_offset, 5);
}

#[test]
fn bad_batches_name_the_place() {
    let mut db = Db::new();
    let users = users_schema();
    let cases: Vec<(TableBatch, &str)> = vec![
        (
            table_batch(&users, vec![vec![int(1)]]),
            "record id=1 for table \"users\" has 1 values, the schema has 2 fields",
        ),
        (
            table_batch(&users, vec![vec![int(1), int(2)]]),
            "record id=1 for table \"users\": column \"name\" is text but the value is bigint",
        ),
        (
            table_batch(
                &schema("x", &["nope"], vec![field("id", DataType::Bigint, false)]),
                vec![],
            ),
            "table \"x\": primary key column \"nope\" is not a field of the schema",
        ),
        (
            table_batch(
                &schema(
                    "_Pipeline_Offsets",
                    &[],
                    vec![field("id", DataType::Bigint, false)],
                ),
                vec![],
            ),
            "table \"_Pipeline_Offsets\" is reserved",
        ),
    ];
    for (table, expected) in cases {
        let err = db
            .dest
            .write_batch(&batch(vec![table], &[("users", 0, 1)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
    assert_eq!(db.dest.stored_offsets("loader").unwrap(), []);
}

#[test]
fn wal_mode_is_on() {
    let db = Db::new();
    let mode: String = db
        .reader()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let synchronous: i64 = db
        .dest
        .conn
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .unwrap();
    assert_eq!(synchronous, 1, "NORMAL");
    let pages: i64 = db
        .dest
        .conn
        .query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
        .unwrap();
    assert_eq!(pages, WAL_AUTOCHECKPOINT_PAGES);
}

#[test]
fn a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/out.db");
    let err = SqliteDestination::open(&path).err().unwrap();
    assert!(
        matches!(err, DestinationError::MissingDirectory { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no/such/dir"), "{err}");
    assert!(!dir.path().join("no").exists());
}

#[test]
fn open_url_gives_a_working_destination() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let mut dest = crate::destination::open(&url).unwrap();
    let _ = dest
        .write_batch(&batch(
            vec![table_batch(&users_schema(), vec![vec![int(1), text("a")]])],
            &[],
        ))
        .unwrap();
    assert!(dir.path().join("x.db").exists());
}

#[test]
fn sql_is_generated_with_quoted_identifiers() {
    let s = schema(
        "my \"t\"",
        &["id"],
        vec![
            field("id", DataType::Bigint, false),
            field("a\"b", DataType::Decimal, true),
            field("c", DataType::Timestamp, false),
        ],
    );
    assert_eq!(
        create_table_sql(&s.name, &s),
        "CREATE TABLE \"my \"\"t\"\"\" (\"id\" INTEGER NOT NULL, \"a\"\"b\" TEXT, \
         \"c\" TEXT NOT NULL, PRIMARY KEY (\"id\"))"
    );
    assert_eq!(
        upsert_sql(&s.name, &s, &[0], None),
        "INSERT INTO \"my \"\"t\"\"\" (\"id\", \"a\"\"b\", \"c\") VALUES (?1, ?2, ?3) \
         ON CONFLICT (\"id\") DO UPDATE SET \"a\"\"b\" = excluded.\"a\"\"b\", \
         \"c\" = excluded.\"c\""
    );
    assert_eq!(
        add_column_sql("t", &field("x\"", DataType::Double, false)),
        "ALTER TABLE \"t\" ADD COLUMN \"x\"\"\" REAL"
    );
    let key_only = schema(
        "k",
        &["a", "b"],
        vec![
            field("a", DataType::Text, false),
            field("b", DataType::Bool, false),
        ],
    );
    assert_eq!(
        upsert_sql("k", &key_only, &[0, 1], None),
        "INSERT INTO \"k\" (\"a\", \"b\") VALUES (?1, ?2) ON CONFLICT (\"a\", \"b\") DO NOTHING"
    );
    let no_key = schema("n", &[], vec![field("a", DataType::Json, true)]);
    assert_eq!(
        upsert_sql("n", &no_key, &[], None),
        "INSERT INTO \"n\" (\"a\") VALUES (?1)"
    );
    assert_eq!(
        create_table_sql("n", &no_key),
        "CREATE TABLE \"n\" (\"a\" TEXT)"
    );
}

#[test]
fn timestamps_have_a_fixed_format() {
    let cases = [
        (0, "1970-01-01T00:00:00.000000Z"),
        (1, "1970-01-01T00:00:00.000001Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (1_700_000_000_123_456, "2023-11-14T22:13:20.123456Z"),
        (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),
        (951_868_799_999_999, "2000-02-29T23:59:59.999999Z"),
        (253_402_300_799_999_999, "9999-12-31T23:59:59.999999Z"),
        (-62_167_219_200_000_000, "0000-01-01T00:00:00.000000Z"),
        (i64::MAX, "294247-01-10T04:00:54.775807Z"),
        (i64::MIN, "-290308-12-21T19:59:05.224192Z"),
    ];
    for (micros, expected) in cases {
        assert_eq!(timestamp_text(micros), expected, "{micros}");
    }
    // Text order is time order.
    let mut sorted: Vec<i64> = vec![5, -5, 0, 1_700_000_000_000_000, -1_700_000_000_000_000];
    let mut texts: Vec<String> = sorted.iter().map(|&t| timestamp_text(t)).collect();
    sorted.sort_unstable();
    texts.sort();
    let expected: Vec<String> = sorted.iter().map(|&t| timestamp_text(t)).collect();
    assert_eq!(texts, expected);
}

/// A full database (SQLite's `max_page_count`, as a full disk would): the batch fails
/// whole, the message says it once, and nothing of the batch is stored.
#[test]
fn a_full_database_fails_the_batch_with_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut dest = SqliteDestination::open(dir.path().join("full.db")).unwrap();
    let s = schema(
        "blobs",
        &["id"],
        vec![
            field("id", DataType::Bigint, false),
            field("body", DataType::Text, true),
        ],
    );
    let small = vec![vec![
        Some(Scalar::Bigint(0)),
        Some(Scalar::Text("x".into())),
    ]];
    let _ = dest
        .write_batch(&batch(vec![table_batch(&s, small)], &[("blobs", 0, 1)]))
        .unwrap();
    let pages: i64 = dest
        .conn
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap();
    let _: i64 = dest
        .conn
        .query_row(
            &format!("PRAGMA max_page_count = {}", pages + 2),
            [],
            |row| row.get(0),
        )
        .unwrap();
    let rows = (1..50)
        .map(|id| {
            vec![
                Some(Scalar::Bigint(id)),
                Some(Scalar::Text("y".repeat(4000))),
            ]
        })
        .collect();
    let err = dest
        .write_batch(&batch(vec![table_batch(&s, rows)], &[("blobs", 0, 50)]))
        .unwrap_err();
    let line = common::cli::error_chain(&err);
    assert_eq!(
        line.matches("database or disk is full").count(),
        1,
        "{line}"
    );
    assert!(!err.is_row_error(), "no record is to blame: {line}");
    assert!(line.starts_with("upserting record id="), "{line}");
    assert!(
        !line.contains("operating system"),
        "the disk is not full: {line}"
    );
    assert_eq!(
        dest.stored_offsets("loader").unwrap(),
        [PartitionOffset {
            topic: "blobs".into(),
            partition: 0,
            next_offset: 1
        }]
    );
}
