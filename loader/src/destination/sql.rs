//! What the SQL destinations share: identifier quoting, the cache of per-(table, writer
//! schema) statement plans, the checks a plan makes (reserved tables, key columns, values
//! that fit their columns) and record keys for error messages.

use std::collections::HashMap;
use std::sync::Arc;

use common::schema::{Field, Row, Scalar, TableSchema};

use super::{DestinationError, OFFSETS_TABLE, RUNS_TABLE, TableBatch, timestamp_text};

/// Upsert plans kept per table; a table sees a new writer schema only when the API's
/// records change shape, so a handful is plenty.
const PLANS_PER_TABLE: usize = 16;

/// `"name"` with embedded `"` doubled: any text is a valid, inert identifier.
pub(super) fn push_quoted(sql: &mut String, name: &str) {
    sql.push('"');
    for c in name.chars() {
        if c == '"' {
            sql.push('"');
        }
        sql.push(c);
    }
    sql.push('"');
}

/// `names`, each written by `push` (a destination's identifier quoting), comma-separated.
pub(super) fn push_list<'a>(
    sql: &mut String,
    names: impl IntoIterator<Item = &'a str>,
    push: fn(&mut String, &str),
) {
    for (index, name) in names.into_iter().enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        push(sql, name);
    }
}

/// A destination's plan for one writer schema: the schema it was built for.
pub(super) trait Planned {
    fn schema(&self) -> &Arc<TableSchema>;
}

/// Destination table name → the plans built for the writer schemas seen, newest last.
/// Plans depend only on the schema, not on the database, so they survive rollbacks.
pub(super) struct PlanCache<P> {
    plans: HashMap<String, Vec<Arc<P>>>,
}

impl<P> Default for PlanCache<P> {
    fn default() -> Self {
        PlanCache {
            plans: HashMap::new(),
        }
    }
}

impl<P: Planned> PlanCache<P> {
    /// The plan for this table and writer schema, built by `build` the first time.
    pub(super) fn get(
        &mut self,
        batch: &TableBatch,
        build: impl FnOnce() -> Result<P, DestinationError>,
    ) -> Result<Arc<P>, DestinationError> {
        if let Some(plans) = self.plans.get(&batch.table)
            && let Some(plan) = plans.iter().find(|plan| {
                Arc::ptr_eq(plan.schema(), &batch.schema) || **plan.schema() == *batch.schema
            })
        {
            return Ok(Arc::clone(plan));
        }
        let plan = Arc::new(build()?);
        let plans = self.plans.entry(batch.table.clone()).or_default();
        if plans.len() >= PLANS_PER_TABLE {
            drop(plans.remove(0));
        }
        plans.push(Arc::clone(&plan));
        Ok(plan)
    }

    /// Every plan (a new version column changes the statements).
    pub(super) fn clear(&mut self) {
        self.plans.clear();
    }

    /// The plans kept for `table`.
    #[cfg(test)]
    pub(super) fn count(&self, table: &str) -> usize {
        self.plans.get(table).map_or(0, Vec::len)
    }
}

/// The loader's own tables cannot be written as a resource's.
pub(super) fn check_not_reserved(table: &str) -> Result<(), DestinationError> {
    if table.eq_ignore_ascii_case(OFFSETS_TABLE) || table.eq_ignore_ascii_case(RUNS_TABLE) {
        return Err(DestinationError::ReservedTable {
            table: table.to_owned(),
        });
    }
    Ok(())
}

/// Appends the column list of a `CREATE TABLE`: `"id" TYPE NOT NULL, …, PRIMARY KEY
/// ("id")`, columns in schema order, each name written by `push` and typed by
/// `column_type`; primary key columns are always `NOT NULL`.
pub(super) fn push_column_defs<T: AsRef<str>>(
    sql: &mut String,
    schema: &TableSchema,
    push: fn(&mut String, &str),
    column_type: impl Fn(&Field) -> T,
) {
    for (index, field) in schema.fields.iter().enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        push(sql, &field.name);
        sql.push(' ');
        sql.push_str(column_type(field).as_ref());
        if !field.nullable || schema.primary_key.contains(&field.name) {
            sql.push_str(" NOT NULL");
        }
    }
    if !schema.primary_key.is_empty() {
        sql.push_str(", PRIMARY KEY (");
        push_list(sql, schema.primary_key.iter().map(String::as_str), push);
        sql.push(')');
    }
}

/// Appends ` ON CONFLICT ("k", …) DO UPDATE SET "a" = excluded."a", …` over the fields
/// outside the key, `DO NOTHING` when every field is in it; each name written by `push` (a
/// destination's identifier quoting). With a version column the schema has, an older
/// record never replaces a newer row (NULL on either side updates): `WHERE <table>."v" IS
/// NULL OR excluded."v" IS NULL OR excluded."v" >= <table>."v"`, `quoted_table` being the
/// table as the statement names it.
pub(super) fn push_on_conflict(
    sql: &mut String,
    quoted_table: &str,
    schema: &TableSchema,
    key_fields: &[usize],
    version_column: Option<&str>,
    push: fn(&mut String, &str),
) {
    sql.push_str(" ON CONFLICT (");
    push_list(
        sql,
        key_fields
            .iter()
            .map(|&index| schema.fields[index].name.as_str()),
        push,
    );
    sql.push_str(") DO ");
    let mut updates = schema
        .fields
        .iter()
        .enumerate()
        .filter(|(index, _)| !key_fields.contains(index))
        .map(|(_, field)| field)
        .peekable();
    if updates.peek().is_none() {
        sql.push_str("NOTHING");
        return;
    }
    sql.push_str("UPDATE SET ");
    for (index, field) in updates.enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        push(sql, &field.name);
        sql.push_str(" = excluded.");
        push(sql, &field.name);
    }
    let version = version_column.and_then(|v| {
        schema
            .fields
            .iter()
            .find(|field| field.name.eq_ignore_ascii_case(v))
    });
    if let Some(version) = version {
        let mut theirs = String::from("excluded.");
        push(&mut theirs, &version.name);
        let mut ours = format!("{quoted_table}.");
        push(&mut ours, &version.name);
        sql.push_str(&format!(
            " WHERE {ours} IS NULL OR {theirs} IS NULL OR {theirs} >= {ours}"
        ));
    }
}

/// The indexes of the primary key fields, in key order, as `position` finds them.
pub(super) fn key_fields(
    table: &str,
    schema: &TableSchema,
    position: impl Fn(&str) -> Option<usize>,
) -> Result<Vec<usize>, DestinationError> {
    schema
        .primary_key
        .iter()
        .map(|key| {
            position(key).ok_or_else(|| DestinationError::PrimaryKeyNotInSchema {
                table: table.to_owned(),
                column: key.clone(),
            })
        })
        .collect()
}

/// A row with as many values as the schema has fields, or the error naming the record.
pub(super) fn check_length(
    table: &str,
    fields: &[Field],
    row: &Row,
    key: impl FnOnce() -> String,
) -> Result<(), DestinationError> {
    if row.len() != fields.len() {
        return Err(DestinationError::RowLength {
            table: table.to_owned(),
            key: key(),
            expected: fields.len(),
            got: row.len(),
        });
    }
    Ok(())
}

/// A value may go into a column of its field's data type only (the codec produces values
/// of the field's own type; anything else is a bug upstream, not data to coerce).
pub(super) fn check_fits(
    table: &str,
    field: &Field,
    value: &Scalar,
    key: impl FnOnce() -> String,
) -> Result<(), DestinationError> {
    if value.data_type() != field.data_type {
        return Err(DestinationError::ValueType {
            table: table.to_owned(),
            key: key(),
            column: field.name.clone(),
            expected: field.data_type.as_str().to_owned(),
            got: value.data_type().as_str().to_owned(),
        });
    }
    Ok(())
}

/// A record's primary key for error messages: `id=42`, `org="a", id=1`, or its position in
/// the batch when the table has no key.
pub(crate) fn record_key(
    schema: &TableSchema,
    key_fields: &[usize],
    row: &Row,
    position: usize,
) -> String {
    if key_fields.is_empty() {
        return format!("#{position} of the batch");
    }
    key_fields
        .iter()
        .map(|&index| {
            let name = &schema.fields[index].name;
            match row.get(index) {
                Some(Some(value)) => format!("{name}={}", display_scalar(value)),
                Some(None) => format!("{name}=NULL"),
                None => format!("{name}=<missing>"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as an error message shows it: text quoted, timestamps as stored.
pub(crate) fn display_scalar(value: &Scalar) -> String {
    match value {
        Scalar::Text(text) | Scalar::Json(text) => format!("{text:?}"),
        Scalar::Decimal(text) => text.clone(),
        Scalar::Bigint(number) => number.to_string(),
        Scalar::Double(number) => number.to_string(),
        Scalar::Bool(flag) => flag.to_string(),
        Scalar::Timestamp(micros) => timestamp_text(*micros),
        Scalar::Date(days) => common::schema::date_text(*days),
        Scalar::Time(micros) => common::schema::time_text(*micros),
        Scalar::Binary(bytes) => format!("<{} bytes>", bytes.len()),
    }
}
