//! `max_table_nesting` beyond 0, on every destination: a `json` field the writer schema
//! marks kept whole (an object or list at nesting level `max_table_nesting` or deeper, as
//! dlt keeps them) stays one column, and objects inside a child table's elements are kept
//! whole from that level on, as dlt counts levels.

use std::collections::HashMap;

use common::schema::{DataType, Field};

use super::*;

fn whole(name: &str) -> Field {
    Field {
        keep_whole: true,
        ..field(name, DataType::Json, true)
    }
}

fn nester(max_table_nesting: Option<usize>) -> crate::nested::Nester {
    crate::nested::Nester::new(HashMap::from([(
        "mail".to_owned(),
        crate::nested::NestRoute {
            primary_key: vec!["id".into()],
            merge: true,
            max_table_nesting,
            json_columns: Default::default(),
            replace: false,
        },
    )]))
}

/// `max_table_nesting = 1` (the dlt parity config `nesting_one`): the extractor keeps
/// `sender__address` (an object inside `sender`) whole and marks it; the loader must not
/// take it for a list of one. The record's own list `items` is a child table, whose
/// elements' objects (level 1) stay JSON.
#[test]
fn a_field_kept_whole_stays_a_column_and_child_elements_keep_deep_objects_whole() {
    for mut t in targets("keep_whole") {
        let mut dest = t.open();
        let s = schema(
            "mail",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                whole("sender__address"),
                field("items", DataType::Json, true),
            ],
        );
        let row = vec![
            int(1),
            json(r#"{"city":"Oslo","country":"NO"}"#),
            json(r#"[{"sku":"x","meta":{"a":1}}]"#),
        ];
        let mut b = batch(&s, vec![row], &[]);
        nester(Some(1)).explode(&mut b, dest.as_mut()).unwrap();
        let _ = dest.write_batch(&b).unwrap();
        assert_eq!(
            t.probe.columns("mail"),
            ["id", "sender__address"],
            "{}",
            t.name
        );
        assert!(
            t.probe.columns("mail__sender__address").is_empty(),
            "{}: a kept-whole object became a child table",
            t.name
        );
        let address = t.probe.rows("mail", &["sender__address"], "id");
        let value: serde_json::Value =
            serde_json::from_str(address[0][0].as_deref().unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"city": "Oslo", "country": "NO"}),
            "{}",
            t.name
        );
        let items = t.probe.columns("mail__items");
        assert!(
            items.contains(&"meta".to_owned()) && !items.contains(&"meta__a".to_owned()),
            "{}: {items:?}",
            t.name
        );
        // Unbounded, the same element's object is flattened.
        let s2 = schema(
            "mail",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("items", DataType::Json, true),
            ],
        );
        let mut b = batch(
            &s2,
            vec![vec![int(2), json(r#"[{"sku":"y","meta":{"a":2}}]"#)]],
            &[],
        );
        let mut unbounded = nester(None);
        unbounded.explode(&mut b, dest.as_mut()).unwrap();
        assert!(
            b.tables
                .iter()
                .any(|tb| tb.table == "mail__items" && tb.schema.field_index("meta__a").is_some()),
            "{}",
            t.name
        );
    }
}
