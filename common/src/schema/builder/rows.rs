//! A page's records as rows aligned with the schema (values converted, a value of another
//! type sent to its variant field, the primary key rendered for the Kafka key), and, when the
//! loader makes child tables, each list checked as the child rows it will become.

use crate::json::view::{JsonView, View};

use super::*;

impl SchemaBuilder {
    pub(super) fn convert_page<'a, V: JsonView<'a>>(
        &mut self,
        records: &[V],
    ) -> Result<(Vec<Row>, Vec<String>), SchemaError> {
        let width = self.table.fields.len();
        let pk: Vec<usize> = self
            .required
            .iter()
            .filter(|r| r.primary_key)
            .filter_map(|r| r.field)
            .collect();
        let mut rows = Vec::with_capacity(records.len());
        let mut keys = Vec::with_capacity(records.len());
        for (index, &record) in records.iter().enumerate() {
            let View::Object(map) = record.view() else {
                return Err(SchemaError::NotAnObject {
                    index,
                    found: json_kind(record),
                });
            };
            let mut row: Row = vec![None; width];
            self.convert_object(ROOT, map, &mut row, RecordRef { record, index })?;
            let mut key = String::new();
            for (n, &i) in pk.iter().enumerate() {
                if n > 0 {
                    key.push('|');
                }
                if let Some(v) = &row[i] {
                    v.render(&mut key);
                }
            }
            keys.push(key);
            rows.push(row);
        }
        Ok((rows, keys))
    }

    fn convert_object<'a, V: JsonView<'a>>(
        &mut self,
        node: usize,
        map: V::Entries,
        row: &mut Row,
        at: RecordRef<V>,
    ) -> Result<(), SchemaError> {
        for (i, (key, value)) in map.enumerate() {
            if value.is_null() {
                continue;
            }
            let slot = self.slot_at(node, i, key);
            if let Some(index) = self.resolve(slot) {
                let field = &self.table.fields[index];
                match convert(value, field, self.hinted[index]) {
                    Ok(scalar) => {
                        self.check_child_rows(index, slot, value, at)?;
                        row[index] = Some(scalar);
                    }
                    Err(ConvertError::Mismatch(found)) => {
                        // A value of another type goes to its variant field, if inference
                        // made one (it does for every unhinted, nullable field).
                        let variant = detected_type(value)
                            .filter(|_| !self.hinted[index])
                            .and_then(|t| self.by_name.get(&variant_name(&field.name, t)))
                            .copied();
                        let Some(variant) = variant else {
                            return Err(self.mismatch(at, index, found));
                        };
                        let scalar = convert(value, &self.table.fields[variant], false)
                            .map_err(|e| self.convert_error(at, variant, value, e))?;
                        self.check_child_rows(variant, slot, value, at)?;
                        row[variant] = Some(scalar);
                    }
                    Err(e) => return Err(self.convert_error(at, index, value, e)),
                }
            } else if let (View::Object(map), Some(child)) = (value.view(), self.slots[slot].child)
            {
                self.convert_object(child, map, row, at)?;
            }
        }
        Ok(())
    }

    /// Checks `value`, going into field `index` from `slot`, as the child-table rows the
    /// loader will make of it (see [`Self::with_child_tables`]).
    fn check_child_rows<'a, V: JsonView<'a>>(
        &self,
        index: usize,
        slot: usize,
        value: V,
        at: RecordRef<V>,
    ) -> Result<(), SchemaError> {
        let Some(max) = self.child_tables else {
            return Ok(());
        };
        let field = &self.table.fields[index];
        if field.data_type != DataType::Json
            || field.keep_whole
            || self.hints.get(&field.name).and_then(|h| h.data_type) == Some(DataType::Json)
        {
            return Ok(());
        }
        check_list(value, &field.name, &self.slots[slot].raw, 1, max).map_err(|p| match p {
            Nested::Collision {
                column,
                first,
                second,
            } => SchemaError::NameCollision {
                record: self.record_id(at),
                field: column,
                keys: format!("{first} and {second}"),
            },
            Nested::Number {
                column,
                value: text,
            } => {
                let record = self.record_id(at);
                match classify(&text) {
                    Num::HugeFloat => SchemaError::FloatOutOfRange {
                        record,
                        field: column,
                        value: text,
                    },
                    _ => SchemaError::IntegerOutOfRange {
                        record,
                        field: column,
                        value: text,
                    },
                }
            }
        })
    }
}

/// What would stop the loader in a child-table row.
enum Nested {
    Collision {
        column: String,
        first: String,
        second: String,
    },
    Number {
        column: String,
        /// The number's text.
        value: String,
    },
}

/// Checks a list (or a single value, which the loader takes as a list of one) that becomes
/// rows of a child table at `depth`: `list` is its display name (`items`, `items[].codes`),
/// `raw` its raw key path.
fn check_list<'a, V: JsonView<'a>>(
    value: V,
    list: &str,
    raw: &str,
    depth: usize,
    max: Option<usize>,
) -> Result<(), Nested> {
    match value.view() {
        View::Null => Ok(()),
        View::Array(items) => {
            for (i, item) in items.enumerate() {
                check_item(item, i, list, raw, depth, max)?;
            }
            Ok(())
        }
        _ => check_item(value, 0, list, raw, depth, max),
    }
}

/// Item `i` of a list [`check_list`] checks.
fn check_item<'a, V: JsonView<'a>>(
    item: V,
    i: usize,
    list: &str,
    raw: &str,
    depth: usize,
    max: Option<usize>,
) -> Result<(), Nested> {
    match item.view() {
        View::Object(map) => {
            let mut names = FastMap::default();
            let raw = format!("{raw}[{i}]");
            check_row::<V>(map, None, &raw, list, depth, max, &mut names)
        }
        View::Number(n) => check_number(n, &format!("{list}[].value")),
        _ => Ok(()),
    }
}

/// One child row (an object, flattened as the loader's schema flattens it): its leaves'
/// names must not collide and its numbers must be in range; lists inside it are checked as
/// grandchild tables while `depth` is below `max`.
fn check_row<'a, V: JsonView<'a>>(
    map: V::Entries,
    prefix: Option<&str>,
    raw_prefix: &str,
    list: &str,
    depth: usize,
    max: Option<usize>,
    names: &mut FastMap<String, (String, V)>,
) -> Result<(), Nested> {
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let own = normalize_key(key);
        let name = match prefix {
            Some(p) => format!("{p}{PATH_SEPARATOR}{own}"),
            None => own,
        };
        let raw = format!("{raw_prefix}.{key:?}");
        match value.view() {
            View::Object(inner) => {
                check_row(inner, Some(&name), &raw, list, depth, max, names)?;
                continue;
            }
            View::Array(_) if max.is_none_or(|m| depth < m) => {
                check_list(value, &format!("{list}[].{name}"), &raw, depth + 1, max)?;
            }
            View::Number(n) => check_number(n, &format!("{list}[].{name}"))?,
            _ => {}
        }
        match names.get(&name) {
            Some((first, earlier)) if !earlier.json_eq(value) => {
                return Err(Nested::Collision {
                    column: format!("{list}[].{name}"),
                    first: first.clone(),
                    second: raw,
                });
            }
            Some(_) => {}
            None => {
                let _ = names.insert(name, (raw, value));
            }
        }
    }
    Ok(())
}

fn check_number(n: &str, column: &str) -> Result<(), Nested> {
    match classify(n) {
        Num::BigInt | Num::HugeFloat => Err(Nested::Number {
            column: column.to_owned(),
            value: n.to_owned(),
        }),
        Num::Int(_) | Num::Float(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::test_support::*;
    use crate::schema::*;

    #[test]
    fn child_table_rows_are_checked_before_publishing() {
        let checked = || builder(&["id"], &[]).with_child_tables(None);
        let err = checked()
            .add_page(&parse(
                r#"{"id": 7, "items": [{"sku": "a"}, {"Name": "x", "name": "y"}]}"#,
            ))
            .unwrap_err();
        assert_eq!(
            err,
            SchemaError::NameCollision {
                record: "id=7 (#0 in page)".into(),
                field: "items[].name".into(),
                keys: r#""items"[1]."Name" and "items"[1]."name""#.into(),
            }
        );
        // Deeper lists, numbers, and a value going to a `__v_json` variant.
        let err = checked()
            .add_page(&parse(
                r#"{"id": 8, "items": [{"codes": [1, 18446744073709551616]}]}"#,
            ))
            .unwrap_err();
        assert!(
            matches!(&err, SchemaError::IntegerOutOfRange { field, .. }
                if field == "items[].codes[].value"),
            "{err}"
        );
        let mut b = checked();
        let _ = b.add_page(&parse(r#"{"id": 1, "q": 1}"#)).unwrap();
        let err = b
            .add_page(&parse(r#"{"id": 2, "q": {"a": 1, "A": 2}}"#))
            .unwrap_err();
        assert!(
            matches!(&err, SchemaError::NameCollision { field, .. } if field == "q__v_json[].a"),
            "{err}"
        );
        // The same in different elements, or equal values, is fine.
        let page = checked()
            .add_page(&parse(
                r#"{"id": 9, "items": [{"Name": "x"}, {"name": "y", "NAME": "y"}]}"#,
            ))
            .unwrap();
        assert_eq!(page.rows.len(), 1);
        // Not checked where the list stays JSON: below max_table_nesting, under a `json`
        // hint, without a primary key, or with max_table_nesting = 0.
        let text = r#"{"id": 1, "items": [{"codes": [{"a": 1, "A": 2}]}]}"#;
        assert!(
            builder(&["id"], &[])
                .with_child_tables(Some(1))
                .add_page(&parse(text))
                .is_ok()
        );
        assert!(
            builder(&["id"], &[])
                .with_child_tables(Some(2))
                .add_page(&parse(text))
                .is_err()
        );
        assert!(
            builder(&["id"], &[("items", hint(DataType::Json))])
                .with_child_tables(None)
                .add_page(&parse(text))
                .is_ok()
        );
        assert!(
            builder(&[], &[])
                .with_child_tables(None)
                .add_page(&parse(text))
                .is_ok()
        );
        assert!(
            builder(&["id"], &[])
                .with_child_tables(Some(0))
                .add_page(&parse(text))
                .is_ok()
        );
    }
}
