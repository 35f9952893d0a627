//! dlt's schema contract, applied by the loader: what happens to a record that would create a
//! table, add a column, or change a column's type (a variant column such as `qty__v_text`,
//! or a widened `bigint` → `double`), per the resource's `schema_contract`.
//!
//! Decided once per writer schema, against the destination table as it is then: a
//! [`Projection`] says which writer fields reach the destination and which of them make a
//! record rejected (freeze: dead-lettered) or skipped (discard_row) when it has a value
//! there. A field whose change the contract does not allow never reaches the destination,
//! so no column is created or changed for it.

use std::sync::Arc;

use common::config::{ContractMode, SchemaContract};
use common::schema::{DataType, Row, Scalar, TableSchema, variant_of};

use crate::destination::SchemaChanges;

/// What a contract entity is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Tables,
    Columns,
    DataType,
}

impl Entity {
    fn as_str(self) -> &'static str {
        match self {
            Entity::Tables => "tables",
            Entity::Columns => "columns",
            Entity::DataType => "data_type",
        }
    }
}

/// A writer field the contract watches: a value there rejects or discards the record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    /// Index in the writer schema; `None`: every record (a new table).
    field: Option<usize>,
    entity: Entity,
    /// `Freeze`, `DiscardRow`, or `DiscardValue` (for a widened field only: a value that no
    /// longer fits is dropped).
    mode: ContractMode,
    /// For a widened field: the column's type; a value that still fits it (an integral
    /// `double` in a `bigint` column, a timestamp text in a `timestamp` column) is
    /// converted back and passes.
    revert: Option<DataType>,
    what: String,
}

/// The type a widened field had before: `double` was `bigint`, `text` was `timestamp`.
fn narrower(data_type: DataType) -> Option<DataType> {
    match data_type {
        DataType::Double => Some(DataType::Bigint),
        DataType::Text => Some(DataType::Timestamp),
        _ => None,
    }
}

/// `value` as the narrower type, if it fits there exactly.
fn revert_value(value: &Scalar, to: DataType) -> Option<Scalar> {
    match (value, to) {
        (Scalar::Double(x), DataType::Bigint)
            if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 =>
        {
            Some(Scalar::Bigint(*x as i64))
        }
        (Scalar::Text(text), DataType::Timestamp) => {
            common::schema::parse_timestamp(text).map(Scalar::Timestamp)
        }
        _ => None,
    }
}

/// How one writer schema's records go into one table under a contract.
#[derive(Debug, Clone)]
pub struct Projection {
    /// The schema the destination gets.
    pub schema: Arc<TableSchema>,
    /// Writer field indexes kept, in order; `None` when every field is kept.
    keep: Option<Vec<usize>>,
    checks: Vec<Check>,
}

/// What to do with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Write this row (aligned with [`Projection::schema`]).
    Write(Row),
    /// The contract freezes what the record would change: dead-letter it.
    Reject(String),
    /// The contract discards the record.
    Discard(String),
}

impl Projection {
    /// Every field kept, nothing checked: what `evolve` everywhere means.
    pub fn identity(writer: Arc<TableSchema>) -> Self {
        Projection {
            schema: writer,
            keep: None,
            checks: Vec::new(),
        }
    }

    /// The projection of `writer` into a table that needs `changes`, under `contract`.
    pub fn new(
        writer: &Arc<TableSchema>,
        changes: &SchemaChanges,
        contract: SchemaContract,
    ) -> Self {
        let mut checks = Vec::new();
        if !changes.table_exists {
            // A new table: its columns come with it; only `tables` applies.
            if matches!(
                contract.tables,
                ContractMode::Freeze | ContractMode::DiscardRow | ContractMode::DiscardValue
            ) {
                let mode = match contract.tables {
                    ContractMode::Freeze => ContractMode::Freeze,
                    _ => ContractMode::DiscardRow,
                };
                checks.push(Check {
                    field: None,
                    entity: Entity::Tables,
                    mode,
                    revert: None,
                    what: format!("table {:?} does not exist", writer.name),
                });
            }
            return Projection {
                schema: Arc::clone(writer),
                keep: None,
                checks,
            };
        }
        let mut keep = Vec::with_capacity(writer.fields.len());
        // Widened fields the contract does not let evolve keep their column's type.
        let mut narrowed: Vec<(usize, DataType)> = Vec::new();
        for (index, field) in writer.fields.iter().enumerate() {
            let is_new = changes.new_columns.iter().any(|c| c == &field.name);
            let is_retyped = changes.retyped_columns.iter().any(|c| c == &field.name);
            let (entity, what) = if is_retyped {
                (
                    Entity::DataType,
                    format!(
                        "column {:?} would change type to {}",
                        field.name, field.data_type
                    ),
                )
            } else if is_new && variant_of(&field.name).is_some() {
                (
                    Entity::DataType,
                    format!(
                        "a value of another type would add the variant column {:?}",
                        field.name
                    ),
                )
            } else if is_new {
                (
                    Entity::Columns,
                    format!("column {:?} is not in the table", field.name),
                )
            } else {
                keep.push(index);
                continue;
            };
            let mode = match entity {
                Entity::Columns => contract.columns,
                Entity::DataType | Entity::Tables => contract.data_type,
            };
            let revert = narrower(field.data_type).filter(|_| is_retyped);
            match (mode, revert) {
                (ContractMode::Evolve, _) => keep.push(index),
                (ContractMode::DiscardValue, None) => {}
                (_, Some(to)) => {
                    keep.push(index);
                    narrowed.push((index, to));
                    checks.push(Check {
                        field: Some(index),
                        entity,
                        mode,
                        revert: Some(to),
                        what,
                    });
                }
                (ContractMode::Freeze | ContractMode::DiscardRow, None) => checks.push(Check {
                    field: Some(index),
                    entity,
                    mode,
                    revert: None,
                    what,
                }),
            }
        }
        if keep.len() == writer.fields.len() && narrowed.is_empty() {
            return Projection {
                schema: Arc::clone(writer),
                keep: None,
                checks,
            };
        }
        let schema = TableSchema {
            name: writer.name.clone(),
            primary_key: writer.primary_key.clone(),
            fields: keep
                .iter()
                .map(|&i| {
                    let mut field = writer.fields[i].clone();
                    if let Some((_, to)) = narrowed.iter().find(|(n, _)| *n == i) {
                        field.data_type = *to;
                    }
                    field
                })
                .collect(),
        };
        Projection {
            schema: Arc::new(schema),
            keep: Some(keep),
            checks,
        }
    }

    /// Whether records pass through untouched (no check, every field kept).
    pub fn is_identity(&self) -> bool {
        self.keep.is_none() && self.checks.is_empty()
    }

    /// The verdict on one decoded record (aligned with the writer schema).
    pub fn apply(&self, mut row: Row) -> Verdict {
        for check in &self.checks {
            let hit = match check.field {
                None => true,
                Some(index) => match (row.get_mut(index), check.revert) {
                    (Some(slot @ Some(_)), Some(to)) => {
                        match slot.as_ref().and_then(|v| revert_value(v, to)) {
                            Some(narrow) => {
                                *slot = Some(narrow);
                                false
                            }
                            None if check.mode == ContractMode::DiscardValue => {
                                *slot = None;
                                false
                            }
                            None => true,
                        }
                    }
                    (Some(slot), None) => slot.is_some(),
                    _ => false,
                },
            };
            if hit {
                let message = format!(
                    "schema contract: {} and `{}` is `{}`",
                    check.what,
                    check.entity.as_str(),
                    check.mode.as_str()
                );
                return match check.mode {
                    ContractMode::Freeze => Verdict::Reject(message),
                    _ => Verdict::Discard(message),
                };
            }
        }
        match &self.keep {
            None => Verdict::Write(row),
            Some(keep) => Verdict::Write(keep.iter().map(|&i| row[i].take()).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use common::schema::Field;

    use super::*;

    fn field(name: &str, data_type: DataType) -> Field {
        Field {
            name: name.to_owned(),
            data_type,
            nullable: name != "id",
            precision: 0,
            scale: 0,
            keep_whole: false,
        }
    }

    fn writer() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            name: "orders".to_owned(),
            primary_key: vec!["id".to_owned()],
            fields: vec![
                field("id", DataType::Bigint),
                field("qty", DataType::Double),
                field("note", DataType::Text),
                field("qty__v_text", DataType::Text),
            ],
        })
    }

    fn changes() -> SchemaChanges {
        SchemaChanges {
            table_exists: true,
            new_columns: vec!["note".to_owned(), "qty__v_text".to_owned()],
            retyped_columns: vec!["qty".to_owned()],
        }
    }

    fn contract(
        tables: ContractMode,
        columns: ContractMode,
        data_type: ContractMode,
    ) -> SchemaContract {
        SchemaContract {
            tables,
            columns,
            data_type,
        }
    }

    fn row(qty: Option<f64>, note: Option<&str>, variant: Option<&str>) -> Row {
        vec![
            Some(Scalar::Bigint(1)),
            qty.map(Scalar::Double),
            note.map(|n| Scalar::Text(n.to_owned())),
            variant.map(|v| Scalar::Text(v.to_owned())),
        ]
    }

    use ContractMode::{DiscardRow, DiscardValue, Evolve, Freeze};

    #[test]
    fn evolve_keeps_everything() {
        let p = Projection::new(&writer(), &changes(), SchemaContract::default());
        assert!(p.is_identity());
        let r = row(Some(1.5), Some("n"), Some("x"));
        assert_eq!(p.apply(r.clone()), Verdict::Write(r));
    }

    #[test]
    fn freeze_rejects_only_records_with_a_value_in_a_changed_field() {
        let p = Projection::new(&writer(), &changes(), contract(Evolve, Freeze, Evolve));
        let names: Vec<&str> = p.schema.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "qty", "qty__v_text"]);
        assert_eq!(p.schema.fields[1].data_type, DataType::Double, "evolves");
        let Verdict::Reject(message) = p.apply(row(None, Some("n"), None)) else {
            panic!("rejected");
        };
        assert!(
            message.contains("column \"note\" is not in the table"),
            "{message}"
        );
        assert!(message.contains("`columns` is `freeze`"), "{message}");
        assert_eq!(
            p.apply(row(Some(2.0), None, Some("x"))),
            Verdict::Write(vec![
                Some(Scalar::Bigint(1)),
                Some(Scalar::Double(2.0)),
                Some(Scalar::Text("x".into()))
            ])
        );
    }

    #[test]
    fn data_type_covers_variants_and_widening() {
        let p = Projection::new(&writer(), &changes(), contract(Evolve, Evolve, DiscardRow));
        let fields: Vec<(&str, DataType)> = p
            .schema
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.data_type))
            .collect();
        assert_eq!(
            fields,
            [
                ("id", DataType::Bigint),
                ("qty", DataType::Bigint),
                ("note", DataType::Text)
            ],
            "the widened field keeps its column's type"
        );
        assert!(
            matches!(p.apply(row(Some(1.5), None, None)), Verdict::Discard(m) if m.contains("change type"))
        );
        assert!(
            matches!(p.apply(row(None, None, Some("x"))), Verdict::Discard(m) if m.contains("variant column"))
        );
        assert_eq!(
            p.apply(row(Some(3.0), Some("n"), None)),
            Verdict::Write(vec![
                Some(Scalar::Bigint(1)),
                Some(Scalar::Bigint(3)),
                Some(Scalar::Text("n".into()))
            ]),
            "an integral double still fits the bigint column"
        );
        let p = Projection::new(
            &writer(),
            &changes(),
            contract(Evolve, DiscardValue, DiscardValue),
        );
        assert_eq!(
            p.apply(row(Some(1.5), Some("n"), Some("x"))),
            Verdict::Write(vec![Some(Scalar::Bigint(1)), None])
        );
        assert_eq!(
            p.apply(row(Some(2.0), None, None)),
            Verdict::Write(vec![Some(Scalar::Bigint(1)), Some(Scalar::Bigint(2))])
        );
    }

    #[test]
    fn a_new_table_is_governed_by_tables() {
        let new_table = SchemaChanges {
            table_exists: false,
            new_columns: Vec::new(),
            retyped_columns: Vec::new(),
        };
        let p = Projection::new(&writer(), &new_table, contract(Evolve, Freeze, Freeze));
        assert!(p.is_identity(), "columns of a new table come with it");
        let p = Projection::new(&writer(), &new_table, contract(Freeze, Evolve, Evolve));
        assert!(
            matches!(p.apply(row(None, None, None)), Verdict::Reject(m) if m.contains("does not exist"))
        );
        let p = Projection::new(
            &writer(),
            &new_table,
            contract(DiscardValue, Evolve, Evolve),
        );
        assert!(matches!(
            p.apply(row(None, None, None)),
            Verdict::Discard(_)
        ));
    }
}
