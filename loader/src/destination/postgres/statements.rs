//! The SQL text the PostgreSQL destination runs: identifiers (shortened as dlt does),
//! literals, column types, DDL, the staging table, `COPY` and the merge.

use super::*;

/// The name as it is in the database: shortened as dlt shortens names longer than
/// PostgreSQL's 63 bytes (see [`naming`](crate::destination::naming)), so they stay unique.
pub(super) fn identifier_key(name: &str) -> String {
    shorten(name, POSTGRES_MAX_IDENTIFIER).into_owned()
}

/// `"name"` (shortened, see [`identifier_key`]) with embedded `"` doubled: any text is a
/// valid, inert identifier.
pub(super) fn push_ident(sql: &mut String, name: &str) {
    push_quoted(sql, &shorten(name, POSTGRES_MAX_IDENTIFIER));
}

/// `'text'` as a string literal (`standard_conforming_strings`, on since PostgreSQL 9.1).
pub(super) fn push_literal(sql: &mut String, text: &str) {
    sql.push('\'');
    sql.push_str(&text.replace('\'', "''"));
    sql.push('\'');
}

pub(super) fn qualified(schema: &str, table: &str) -> String {
    let mut sql = String::new();
    push_quoted(&mut sql, schema);
    sql.push('.');
    push_ident(&mut sql, table);
    sql
}

pub(super) fn column_type(field: &Field) -> String {
    match field.data_type {
        DataType::Text => "TEXT".to_owned(),
        DataType::Bigint => "BIGINT".to_owned(),
        DataType::Double => "DOUBLE PRECISION".to_owned(),
        DataType::Bool => "BOOLEAN".to_owned(),
        DataType::Timestamp => "TIMESTAMPTZ".to_owned(),
        DataType::Decimal => format!("NUMERIC({}, {})", field.precision, field.scale),
        DataType::Json => "JSONB".to_owned(),
        DataType::Date => "DATE".to_owned(),
        DataType::Time => "TIME".to_owned(),
        DataType::Binary => "BYTEA".to_owned(),
    }
}

/// The staging column's type (no typmod: values are checked by the target's column).
pub(super) fn pg_type(data_type: DataType) -> Type {
    match data_type {
        DataType::Text => Type::TEXT,
        DataType::Bigint => Type::INT8,
        DataType::Double => Type::FLOAT8,
        DataType::Bool => Type::BOOL,
        DataType::Timestamp => Type::TIMESTAMPTZ,
        DataType::Decimal => Type::NUMERIC,
        DataType::Json => Type::JSONB,
        DataType::Date => Type::DATE,
        DataType::Time => Type::TIME,
        DataType::Binary => Type::BYTEA,
    }
}

/// `information_schema.columns.data_type` of the column we create for this type.
pub(super) fn info_type(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Text => "text",
        DataType::Bigint => "bigint",
        DataType::Double => "double precision",
        DataType::Bool => "boolean",
        DataType::Timestamp => "timestamp with time zone",
        DataType::Decimal => "numeric",
        DataType::Json => "jsonb",
        DataType::Date => "date",
        DataType::Time => "time without time zone",
        DataType::Binary => "bytea",
    }
}

/// `CREATE TABLE IF NOT EXISTS "s"."t" ("id" BIGINT NOT NULL, …, PRIMARY KEY ("id"))`.
pub(super) fn create_table_sql(qualified: &str, schema: &TableSchema) -> String {
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {qualified} (");
    sql::push_column_defs(&mut sql, schema, push_ident, column_type);
    sql.push(')');
    sql
}

/// `ALTER TABLE "s"."t" ADD COLUMN IF NOT EXISTS "c" TYPE`: always nullable.
pub(super) fn add_column_sql(qualified: &str, field: &Field) -> String {
    let mut sql = format!("ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS ");
    push_ident(&mut sql, &field.name);
    sql.push(' ');
    sql.push_str(&column_type(field));
    sql
}

/// `ALTER TABLE … ALTER COLUMN "c" TYPE …` for a widened field.
pub(super) fn widen_column_sql(qualified: &str, field: &Field) -> String {
    let mut column = String::new();
    push_ident(&mut column, &field.name);
    let using = if field.data_type == DataType::Text {
        format!(" USING to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    } else {
        String::new()
    };
    format!(
        "ALTER TABLE {qualified} ALTER COLUMN {column} TYPE {}{using}",
        column_type(field)
    )
}

/// Staging columns are named by position (`s` for the row's position in the batch,
/// `c0`, `c1`, … for the fields), so no field name can clash with them.
pub(super) fn staging_column(index: usize) -> String {
    format!("\"c{index}\"")
}

pub(super) fn create_staging_sql(schema: &TableSchema) -> String {
    let mut sql = format!("CREATE TEMP TABLE {STAGING} (\"s\" BIGINT");
    for (index, field) in schema.fields.iter().enumerate() {
        sql.push_str(", ");
        sql.push_str(&staging_column(index));
        sql.push(' ');
        sql.push_str(match field.data_type {
            DataType::Text => "TEXT",
            DataType::Bigint => "BIGINT",
            DataType::Double => "DOUBLE PRECISION",
            DataType::Bool => "BOOLEAN",
            DataType::Timestamp => "TIMESTAMPTZ",
            DataType::Decimal => "NUMERIC",
            DataType::Json => "JSONB",
            DataType::Date => "DATE",
            DataType::Time => "TIME",
            DataType::Binary => "BYTEA",
        });
    }
    sql.push_str(") ON COMMIT DROP");
    sql
}

pub(super) fn copy_sql(schema: &TableSchema) -> String {
    let mut sql = format!("COPY {STAGING} (\"s\"");
    for index in 0..schema.fields.len() {
        sql.push_str(", ");
        sql.push_str(&staging_column(index));
    }
    sql.push_str(") FROM STDIN (FORMAT binary)");
    sql
}

/// The merge from the staging table, and its one-row form.
pub(super) struct MergeSql {
    pub(super) merge: String,
    pub(super) single: String,
}

impl MergeSql {
    /// With a key: `INSERT INTO t (…) SELECT c0, … FROM (SELECT DISTINCT ON (key) * FROM
    /// staging ORDER BY key, s DESC) AS d ORDER BY key ON CONFLICT (key) DO UPDATE SET
    /// a = EXCLUDED.a, …` (`DO NOTHING` when every column is in the key). Without a key
    /// the rows are appended in batch order.
    pub(super) fn new(
        qualified: &str,
        schema: &TableSchema,
        key_fields: &[usize],
        version_column: Option<&str>,
    ) -> Self {
        let mut insert = format!("INSERT INTO {qualified} (");
        push_list(
            &mut insert,
            schema.fields.iter().map(|field| field.name.as_str()),
            push_ident,
        );
        insert.push_str(") SELECT ");
        insert.push_str(
            &(0..schema.fields.len())
                .map(staging_column)
                .collect::<Vec<_>>()
                .join(", "),
        );
        if key_fields.is_empty() {
            return Self {
                merge: format!("{insert} FROM {STAGING} ORDER BY \"s\""),
                single: format!("{insert} FROM {STAGING} WHERE \"s\" = $1"),
            };
        }
        let key = key_fields
            .iter()
            .map(|&index| staging_column(index))
            .collect::<Vec<_>>()
            .join(", ");
        let mut conflict = String::new();
        sql::push_on_conflict(
            &mut conflict,
            qualified,
            schema,
            key_fields,
            version_column,
            push_ident,
        );
        Self {
            merge: format!(
                "{insert} FROM (SELECT DISTINCT ON ({key}) * FROM {STAGING} \
                 ORDER BY {key}, \"s\" DESC) AS \"d\" ORDER BY {key}{conflict}"
            ),
            single: format!("{insert} FROM {STAGING} WHERE \"s\" = $1{conflict}"),
        }
    }
}
