//! The inference: flattening, types, widening, variants, primary keys, colliding keys and
//! the rollback of a failed page.

use crate::schema::test_support::*;
use crate::schema::*;
use serde_json::json;

#[test]
fn flattens_nested_objects_and_keeps_lists_as_json() {
    let mut b = builder(&["id"], &[]);
    let page = b
        .add_page(&[json!({
            "id": 1,
            "sender": {"address": {"city": "Oslo", "zipCode": "0150"}, "name": "Ann"},
            "tags": ["a", {"b": 1}],
        })])
        .unwrap();
    assert_eq!(
        names(&b),
        [
            "id",
            "sender__address__city",
            "sender__address__zip_code",
            "sender__name",
            "tags"
        ]
    );
    assert_eq!(field(&b, "tags").data_type, DataType::Json);
    assert_eq!(
        page.rows[0],
        vec![
            Some(Scalar::Bigint(1)),
            Some(Scalar::Text("Oslo".into())),
            Some(Scalar::Text("0150".into())),
            Some(Scalar::Text("Ann".into())),
            Some(Scalar::Json(r#"["a",{"b":1}]"#.into())),
        ]
    );
    assert_eq!(page.keys, ["1"]);
    assert!(page.schema_changed);
}

/// As dlt's normaliser: `max_table_nesting` keeps an object or a list at nesting level
/// `max_table_nesting` or deeper whole (a record's keys are at level 0), marked
/// `keep_whole` so the loader does not make it a child table: at 0 `sender` is one JSON
/// field; at 1 `sender__name` is flattened and `sender__address` and the list inside
/// `sender` are kept whole, while the record's own list is not (a child table); at 2 or
/// unbounded everything is flattened.
#[test]
fn max_table_nesting_keeps_deeper_objects_whole_as_dlt() {
    let record = json!({
        "id": 1,
        "sender": {"address": {"city": "Oslo"}, "name": "Ann", "phones": ["1"]},
        "tags": ["a"],
    });
    let flattened = |nesting: Option<usize>| {
        let mut b = builder(&["id"], &[]).with_child_tables(nesting);
        let page = b.add_page(std::slice::from_ref(&record)).unwrap();
        let fields: Vec<(String, DataType, bool)> = b
            .schema()
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.data_type, f.keep_whole))
            .collect();
        (fields, page.rows[0].clone())
    };
    let f = |name: &str, t: DataType, whole: bool| (name.to_owned(), t, whole);
    let (fields0, row0) = flattened(Some(0));
    assert_eq!(
        fields0,
        [
            f("id", DataType::Bigint, false),
            f("sender", DataType::Json, true),
            f("tags", DataType::Json, true)
        ]
    );
    assert_eq!(
        row0[1],
        Some(Scalar::Json(
            r#"{"address":{"city":"Oslo"},"name":"Ann","phones":["1"]}"#.into()
        ))
    );
    let (fields1, row1) = flattened(Some(1));
    assert_eq!(
        fields1,
        [
            f("id", DataType::Bigint, false),
            f("sender__address", DataType::Json, true),
            f("sender__name", DataType::Text, false),
            f("sender__phones", DataType::Json, true),
            f("tags", DataType::Json, false)
        ]
    );
    assert_eq!(row1[1], Some(Scalar::Json(r#"{"city":"Oslo"}"#.into())));
    for nesting in [Some(2), None] {
        let names: Vec<(String, bool)> = flattened(nesting)
            .0
            .into_iter()
            .map(|(n, _, w)| (n, w))
            .collect();
        assert_eq!(
            names,
            [
                ("id".to_owned(), false),
                ("sender__address__city".to_owned(), false),
                ("sender__name".to_owned(), false),
                ("sender__phones".to_owned(), false),
                ("tags".to_owned(), false)
            ]
        );
    }
    // A child table's rows start at their depth: at level 1 with max 1 an element's
    // object is kept whole.
    let mut child = builder(&[], &[]).with_child_tables(Some(1)).at_level(1);
    let _ = child
        .add_page(&[json!({"sku": "x", "meta": {"a": 1}})])
        .unwrap();
    assert_eq!(names(&child), ["sku", "meta"]);
    assert!(field(&child, "meta").keep_whole);
}

#[test]
fn infers_types() {
    let mut b = builder(&["id"], &[]);
    let page = b
        .add_page(&[json!({
            "id": 7, "price": 1.5, "paid": true, "note": "hi",
            "created": "2024-03-01T12:30:00.123456+01:00",
            "day": "2024-03-01",
        })])
        .unwrap();
    assert_eq!(field(&b, "id").data_type, DataType::Bigint);
    assert!(!field(&b, "id").nullable);
    assert_eq!(field(&b, "price").data_type, DataType::Double);
    assert!(field(&b, "price").nullable);
    assert_eq!(field(&b, "paid").data_type, DataType::Bool);
    assert_eq!(field(&b, "note").data_type, DataType::Text);
    assert_eq!(field(&b, "created").data_type, DataType::Timestamp);
    assert_eq!(
        field(&b, "day").data_type,
        DataType::Text,
        "a date alone is text"
    );
    let i = b.schema().field_index("created").unwrap();
    // 2024-03-01T11:30:00.123456Z
    assert_eq!(
        page.rows[0][i],
        Some(Scalar::Timestamp(1_709_292_600_123_456))
    );
}

#[test]
fn widens_bigint_to_double_within_and_across_pages() {
    let mut b = builder(&["id"], &[]);
    let page = b
        .add_page(&[
            json!({"id": 1, "amount": 3}),
            json!({"id": 2, "amount": 2.5}),
        ])
        .unwrap();
    assert_eq!(field(&b, "amount").data_type, DataType::Double);
    assert_eq!(cell(&b, &page.rows[0], "amount"), Some(Scalar::Double(3.0)));
    assert_eq!(cell(&b, &page.rows[1], "amount"), Some(Scalar::Double(2.5)));
    // Integers keep fitting a double field, and nothing changes.
    let page = b.add_page(&[json!({"id": 3, "amount": 4})]).unwrap();
    assert!(!page.schema_changed);
    assert_eq!(cell(&b, &page.rows[0], "amount"), Some(Scalar::Double(4.0)));
}

#[test]
fn widens_detected_timestamp_to_text() {
    let mut b = builder(&["id"], &[]);
    let page = b
        .add_page(&[json!({"id": 1, "when": "2024-01-01T00:00:00Z"})])
        .unwrap();
    assert_eq!(field(&b, "when").data_type, DataType::Timestamp);
    assert_eq!(
        cell(&b, &page.rows[0], "when"),
        Some(Scalar::Timestamp(1_704_067_200_000_000))
    );
    let page = b
        .add_page(&[
            json!({"id": 2, "when": "2024-01-02T00:00:00Z"}),
            json!({"id": 3, "when": "soon"}),
        ])
        .unwrap();
    assert!(page.schema_changed);
    assert_eq!(field(&b, "when").data_type, DataType::Text);
    assert_eq!(
        cell(&b, &page.rows[0], "when"),
        Some(Scalar::Text("2024-01-02T00:00:00Z".into()))
    );
    assert_eq!(
        cell(&b, &page.rows[1], "when"),
        Some(Scalar::Text("soon".into()))
    );
}

#[test]
fn hinted_timestamp_does_not_widen() {
    let mut b = builder(&["id"], &[("when", hint(DataType::Timestamp))]);
    let page = b.add_page(&[json!({"id": 1, "when": 86_400})]).unwrap();
    assert_eq!(
        cell(&b, &page.rows[0], "when"),
        Some(Scalar::Timestamp(86_400_000_000))
    );
    let err = b.add_page(&[json!({"id": 2, "when": "soon"})]).unwrap_err();
    assert!(
        matches!(&err, SchemaError::InvalidValue { record, field, .. }
            if record.starts_with("id=2") && field == "when"),
        "{err}"
    );
}

#[test]
fn a_value_of_another_type_goes_to_a_variant_field() {
    let mut b = builder(&["orderId"], &[]);
    let _ = b.add_page(&[json!({"orderId": "A-1", "qty": 1})]).unwrap();
    let page = b
        .add_page(&[
            json!({"orderId": "A-2", "qty": 2}),
            json!({"orderId": "A-3", "qty": "three"}),
            json!({"orderId": "A-4", "qty": {"n": 4}}),
            json!({"orderId": "A-5", "qty": "five"}),
        ])
        .unwrap();
    assert!(page.schema_changed);
    assert_eq!(names(&b), ["order_id", "qty", "qty__v_text", "qty__v_json"]);
    assert_eq!(field(&b, "qty").data_type, DataType::Bigint);
    assert_eq!(field(&b, "qty__v_text").data_type, DataType::Text);
    assert!(field(&b, "qty__v_json").nullable);
    let cells = |row: &Row| {
        (
            cell(&b, row, "qty"),
            cell(&b, row, "qty__v_text"),
            cell(&b, row, "qty__v_json"),
        )
    };
    assert_eq!(cells(&page.rows[0]), (Some(Scalar::Bigint(2)), None, None));
    assert_eq!(
        cells(&page.rows[1]),
        (None, Some(Scalar::Text("three".into())), None)
    );
    assert_eq!(
        cells(&page.rows[2]),
        (None, None, Some(Scalar::Json(r#"{"n":4}"#.into())))
    );
    assert_eq!(
        cells(&page.rows[3]),
        (None, Some(Scalar::Text("five".into())), None)
    );
    // The next page of integers changes nothing.
    let page = b.add_page(&[json!({"orderId": "A-6", "qty": 6})]).unwrap();
    assert!(!page.schema_changed);
    assert_eq!(variant_of("qty__v_text"), Some("qty"));
    assert_eq!(variant_of("qty__v_nope"), None);
    assert_eq!(variant_of("qty"), None);
}

#[test]
fn a_key_or_required_field_of_another_type_names_record_and_field() {
    let hints = [(
        "qty",
        ColumnHint {
            nullable: Some(false),
            ..ColumnHint::default()
        },
    )];
    let mut b = builder(&["orderId"], &hints);
    let _ = b.add_page(&[json!({"orderId": "A-1", "qty": 1})]).unwrap();
    let err = b
        .add_page(&[
            json!({"orderId": "A-2", "qty": 2}),
            json!({"orderId": "A-3", "qty": "three"}),
        ])
        .unwrap_err();
    assert_eq!(
        err,
        SchemaError::TypeMismatch {
            record: "id=A-3 (#1 in page)".into(),
            field: "qty".into(),
            expected: "bigint".into(),
            found: "string".into(),
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("A-3") && message.contains("`qty`"),
        "{message}"
    );
    let mut b = builder(&["id"], &[]);
    let _ = b.add_page(&[json!({"id": 1})]).unwrap();
    let err = b.add_page(&[json!({"id": "one"})]).unwrap_err();
    assert!(
        matches!(&err, SchemaError::TypeMismatch { field, .. } if field == "id"),
        "{err}"
    );
}

#[test]
fn failed_page_leaves_schema_unchanged() {
    let mut b = builder(&["id"], &[]);
    let _ = b.add_page(&[json!({"id": 1, "n": 1})]).unwrap();
    let before = b.schema().clone();
    let err = b.add_page(&[
        json!({"id": 2, "n": 1.5, "extra": "x", "obj": {"a": 1}}),
        json!({"id": 3, "n": 18446744073709551615_u64}),
    ]);
    assert!(err.is_err());
    assert_eq!(b.schema(), &before);
    // The same keys are handled afresh afterwards.
    let page = b
        .add_page(&[json!({"id": 4, "extra": 5, "obj": "flat"})])
        .unwrap();
    assert_eq!(names(&b), ["id", "n", "extra", "obj"]);
    assert_eq!(
        page.rows[0],
        vec![
            Some(Scalar::Bigint(4)),
            None,
            Some(Scalar::Bigint(5)),
            Some(Scalar::Text("flat".into()))
        ]
    );
}

#[test]
fn missing_or_null_primary_key() {
    let mut b = builder(&["id"], &[]);
    let err = b
        .add_page(&[json!({"id": 1}), json!({"name": "x"})])
        .unwrap_err();
    assert_eq!(
        err,
        SchemaError::MissingPrimaryKey {
            index: 1,
            field: "id".into()
        }
    );
    let err = b.add_page(&[json!({"id": null})]).unwrap_err();
    assert_eq!(
        err,
        SchemaError::MissingPrimaryKey {
            index: 0,
            field: "id".into()
        }
    );
}

#[test]
fn composite_key_and_no_key() {
    let mut b = builder(&["tenant", "id"], &[]);
    let page = b.add_page(&[json!({"id": 5, "tenant": "acme"})]).unwrap();
    assert_eq!(page.keys, ["acme|5"]);
    let mut b = builder(&[], &[]);
    let page = b.add_page(&[json!({"x": 1})]).unwrap();
    assert_eq!(page.keys, [""]);
    let err = b
        .add_page(&[json!({"x": 18446744073709551615_u64})])
        .unwrap_err();
    assert!(
        matches!(&err, SchemaError::IntegerOutOfRange { record, .. } if record == "#0 in page")
    );
}

#[test]
fn non_object_record_is_an_error() {
    let mut b = builder(&[], &[]);
    let err = b.add_page(&[json!({"a": 1}), json!([1, 2])]).unwrap_err();
    assert_eq!(
        err,
        SchemaError::NotAnObject {
            index: 1,
            found: "list"
        }
    );
}

#[test]
fn all_null_field_is_added_when_it_gets_a_value() {
    let mut b = builder(&["id"], &[]);
    let page = b
        .add_page(&[
            json!({"id": 1, "maybe": null}),
            json!({"id": 2, "maybe": null}),
        ])
        .unwrap();
    assert_eq!(names(&b), ["id"]);
    assert_eq!(page.rows[1], vec![Some(Scalar::Bigint(2))]);
    let page = b
        .add_page(&[
            json!({"id": 3, "maybe": null}),
            json!({"id": 4, "maybe": "now"}),
        ])
        .unwrap();
    assert!(page.schema_changed);
    assert_eq!(names(&b), ["id", "maybe"]);
    assert!(field(&b, "maybe").nullable);
    assert_eq!(page.rows[0], vec![Some(Scalar::Bigint(3)), None]);
    assert_eq!(
        page.rows[1],
        vec![Some(Scalar::Bigint(4)), Some(Scalar::Text("now".into()))]
    );
    // A record without the field gives null.
    let page = b.add_page(&[json!({"id": 5})]).unwrap();
    assert!(!page.schema_changed);
    assert_eq!(page.rows[0], vec![Some(Scalar::Bigint(5)), None]);
}

#[test]
fn hints_and_primary_key_use_normalised_names() {
    let mut b = builder(&["orderId"], &[("Order Total", hint(DataType::Double))]);
    let page = b
        .add_page(&[json!({"orderId": 9, "order_total": 2})])
        .unwrap();
    assert_eq!(b.schema().primary_key, ["order_id"]);
    assert_eq!(field(&b, "order_total").data_type, DataType::Double);
    assert_eq!(
        cell(&b, &page.rows[0], "order_total"),
        Some(Scalar::Double(2.0))
    );
}

#[test]
fn scalar_where_object_was_is_an_error() {
    let mut b = builder(&["id"], &[]);
    let _ = b.add_page(&[json!({"id": 1, "a": {"b": 1}})]).unwrap();
    let err = b.add_page(&[json!({"id": 2, "a": 5})]).unwrap_err();
    assert!(
        matches!(&err, SchemaError::TypeMismatch { field, expected, .. }
        if field == "a" && expected == "object"),
        "{err}"
    );
    // A list field accepts anything as JSON.
    let _ = b.add_page(&[json!({"id": 3, "l": [1]})]).unwrap();
    let page = b.add_page(&[json!({"id": 4, "l": {"x": 1}})]).unwrap();
    assert_eq!(
        cell(&b, &page.rows[0], "l"),
        Some(Scalar::Json(r#"{"x":1}"#.into()))
    );
}

#[test]
fn keys_normalising_to_one_field_with_different_values_are_an_error() {
    let cases = [
        (r#"{"id": 1, "Id": 2}"#, "id", r#""id""#, r#""Id""#),
        (
            r#"{"id": 1, "Name": "A", "name": "b"}"#,
            "name",
            r#""Name""#,
            r#""name""#,
        ),
        (
            r#"{"id": 1, "名前": "A", "😀": "b"}"#,
            "x",
            r#""名前""#,
            r#""😀""#,
        ),
        (
            r#"{"id": 1, "a.b": 1, "a_b": 2}"#,
            "a_b",
            r#""a.b""#,
            r#""a_b""#,
        ),
        (
            r#"{"id": 1, "s": {"Zip": "1"}, "S": {"zip": "2"}}"#,
            "s__zip",
            r#""s"."Zip""#,
            r#""S"."zip""#,
        ),
        (
            r#"{"id": 1, "": "e", " ": "sp"}"#,
            "_empty",
            r#""""#,
            r#"" ""#,
        ),
        (r#"{"id": 1, "ID": "one"}"#, "id", r#""id""#, r#""ID""#),
    ];
    for (text, field, first, second) in cases {
        let mut b = builder(&["id"], &[]);
        let before = b.schema().clone();
        let err = b.add_page(&parse(text)).unwrap_err();
        assert_eq!(
            err,
            SchemaError::NameCollision {
                record: "id=1 (#0 in page)".into(),
                field: field.into(),
                keys: format!("{first} and {second}"),
            },
            "{text}"
        );
        let message = err.to_string();
        assert!(
            message.contains("id=1") && message.contains(first),
            "{message}"
        );
        assert_eq!(b.schema(), &before, "a failed page changes nothing");
    }
}

#[test]
fn colliding_keys_never_overwrite_the_primary_key() {
    let mut b = builder(&["id"], &[]);
    // Record 1 is fine; record 2 carries `Id` as well: the error names it, and nothing of
    // the page is kept (the page fails before any row is made).
    let err = b
        .add_page(&parse(r#"[{"id": 1}, {"id": 2, "ID": 3}]"#))
        .unwrap_err();
    assert!(
        matches!(&err, SchemaError::NameCollision { record, field, .. }
            if record == "id=2 (#1 in page)" && field == "id"),
        "{err}"
    );
    // The same value under both keys loses nothing and loads; a null is no value.
    let page = b
        .add_page(&parse(
            r#"[{"id": 4, "ID": 4, "Name": null, "name": "n"}, {"Id": 5}]"#,
        ))
        .unwrap();
    assert_eq!(page.keys, ["4", "5"]);
    assert_eq!(
        cell(&b, &page.rows[0], "name"),
        Some(Scalar::Text("n".into()))
    );
    // Keys that share a name in different records are one field, as before.
    let page = b
        .add_page(&parse(
            r#"[{"id": 6, "Name": "a"}, {"id": 7, "name": "b"}]"#,
        ))
        .unwrap();
    assert_eq!(names(&b), ["id", "name"]);
    assert_eq!(
        cell(&b, &page.rows[1], "name"),
        Some(Scalar::Text("b".into()))
    );
    // Once two keys share a name, every later record is checked on the first pass.
    let err = b
        .add_page(&parse(r#"[{"id": 9, "name": "b", "Name": "c"}]"#))
        .unwrap_err();
    assert!(
        matches!(&err, SchemaError::NameCollision { keys, .. }
            if keys == r#""name" and "Name""#),
        "{err}"
    );
    // Objects under colliding keys flatten side by side until two leaves meet.
    let page = b
        .add_page(&parse(r#"[{"id": 8, "s": {"a": 1}, "S": {"b": 2}}]"#))
        .unwrap();
    assert_eq!(cell(&b, &page.rows[0], "s__a"), Some(Scalar::Bigint(1)));
    assert_eq!(cell(&b, &page.rows[0], "s__b"), Some(Scalar::Bigint(2)));
}

#[test]
fn a_blank_key_is_the_empty_field() {
    let mut b = builder(&["id"], &[]);
    let page = b
        .add_page(&parse(r#"[{"id": 1, "": "e", "n": {" ": 2}}]"#))
        .unwrap();
    assert_eq!(names(&b), ["id", "_empty", "n___empty"]);
    assert_eq!(
        cell(&b, &page.rows[0], "_empty"),
        Some(Scalar::Text("e".into()))
    );
    assert_eq!(normalize_key("  "), "_empty");
    assert_eq!(normalize_key("a__b"), "a_b");
}

#[test]
fn a_primary_key_holding_an_object_or_a_list_is_an_error() {
    for (text, found) in [
        (r#"{"id": {"a": 1}}"#, "an object"),
        (r#"{"id": [1, 2]}"#, "a list"),
    ] {
        let mut b = builder(&["id"], &[]);
        let err = b.add_page(&parse(text)).unwrap_err();
        assert_eq!(
            err,
            SchemaError::PrimaryKeyNotScalar {
                index: 0,
                field: "id".into(),
                found
            }
        );
    }
    // A float or a bool is a key like any other (as in dlt).
    let mut b = builder(&["id"], &[]);
    let page = b.add_page(&parse(r#"[{"id": 1.5}]"#)).unwrap();
    assert_eq!(page.keys, ["1.5"]);
    let mut b = builder(&["id"], &[]);
    let page = b.add_page(&parse(r#"[{"id": true}]"#)).unwrap();
    assert_eq!(page.keys, ["true"]);
    // A nested key field is fine under its object.
    let mut b = builder(&["sender__id"], &[]);
    let page = b.add_page(&parse(r#"[{"sender": {"id": 7}}]"#)).unwrap();
    assert_eq!(page.keys, ["7"]);
}

/// Records whose keys come in different orders, with keys missing, added and renamed at a
/// position, convert as records in one order do (the builder remembers the last record's
/// key order and checks it before hashing).
#[test]
fn key_order_changes_between_records_change_nothing() {
    let records = [
        json!({"id": 1, "a": "x", "b": 2, "n": {"p": 1, "q": "s"}}),
        json!({"b": 3, "id": 2, "n": {"q": "t", "p": 2}, "a": "y"}),
        json!({"id": 3, "c": true, "b": 4}),
        json!({"id": 4, "a": "z", "b": 5, "n": {"p": 3, "q": "u"}, "d": 1.5}),
    ];
    let sorted: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::to_value(
                r.as_object()
                    .unwrap()
                    .clone()
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap()
        })
        .collect();
    let mut in_order = builder(&["id"], &[]);
    let mut shuffled = builder(&["id"], &[]);
    // Page by page and all at once, so the remembered order is used within and across pages.
    let mut shuffled_rows = Vec::new();
    for r in &records {
        shuffled_rows.extend(shuffled.add_page(std::slice::from_ref(r)).unwrap().rows);
    }
    let sorted_rows = in_order.add_page(&sorted).unwrap().rows;
    let by_name = |b: &SchemaBuilder, rows: &[Row]| -> Vec<Vec<(String, Option<Scalar>)>> {
        rows.iter()
            .map(|row| {
                let mut cells: Vec<(String, Option<Scalar>)> = b
                    .schema()
                    .fields
                    .iter()
                    .map(|f| f.name.clone())
                    .zip(row.iter().cloned().chain(std::iter::repeat(None)))
                    .collect();
                cells.sort_by(|x, y| x.0.cmp(&y.0));
                cells
            })
            .collect()
    };
    assert_eq!(
        by_name(&shuffled, &shuffled_rows),
        by_name(&in_order, &sorted_rows)
    );
    assert_eq!(shuffled_rows[1][0], Some(Scalar::Bigint(2)));
}
