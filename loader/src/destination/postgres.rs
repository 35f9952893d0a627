//! The PostgreSQL destination: one table per resource, merged by primary key, offsets in
//! `_pipeline_offsets`, each batch one `READ COMMITTED` transaction.
//!
//! URL: `postgres://user[:password]@host[:port]/database[?params]` (or `postgresql://`),
//! with the connection parameters of libpq URLs that `tokio-postgres` understands
//! (`options`, `application_name`, `connect_timeout`, `host=/run/postgresql` for a socket,
//! …) plus one of our own: `schema=NAME` puts the tables in that (existing) schema instead
//! of the server's default `search_path` (the same as `options=-csearch_path%3DNAME`).
//! TLS is not supported (`sslmode=require` fails to connect). The password never appears
//! in errors or logs: the URL is printed with it replaced by `***`.
//!
//! Column types:
//!
//! | data type   | column             |
//! |-------------|--------------------|
//! | `text`      | `TEXT`             |
//! | `bigint`    | `BIGINT`           |
//! | `double`    | `DOUBLE PRECISION` |
//! | `bool`      | `BOOLEAN`          |
//! | `timestamp` | `TIMESTAMPTZ`      |
//! | `decimal`   | `NUMERIC(p, s)`    |
//! | `json`      | `JSONB`            |
//!
//! When the extractor widens a field, the column follows: `BIGINT` → `DOUBLE PRECISION`,
//! `TIMESTAMPTZ` → `TEXT` (as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, like the SQLite destination).
//!
//! Identifiers are always double-quoted with embedded `"` doubled, so any table or column
//! name is just a name; unlike SQLite, names are case-sensitive (`"Users"` is not
//! `"users"`). A name longer than PostgreSQL's 63 bytes is shortened the way dlt shortens
//! it (head, hash tag, tail: [`naming`](super::naming)), so two long names that share
//! their first 63 bytes stay two columns, and a dlt user finds the same names; a shortened
//! table keeps its full name as its comment, which is how a child table is found by its
//! parent's name.
//!
//! Text: PostgreSQL cannot store NUL in `text`; it is removed, as dlt's PostgreSQL
//! destination does (a warning per column says so). NUL in JSON (`\u0000`) is refused by
//! `jsonb`, as it is for dlt: the record is dead-lettered with PostgreSQL's reason.
//!
//! Errors carry the server's report: message, SQLSTATE, detail, hint, table, column,
//! constraint and context ([`PgError`]).
//!
//! ## How a batch is written
//! Per [`TableBatch`]: binary `COPY` of the rows (plus their position) into a temporary
//! staging table, then one `INSERT INTO target SELECT DISTINCT ON (key) … ORDER BY key,
//! position DESC … ON CONFLICT (key) DO UPDATE`: the last row of a key wins, and rows are
//! inserted in key order. Then the offsets, sorted by (topic, partition). All in one
//! transaction.
//!
//! ## Several loaders on one database
//! - Isolation is `READ COMMITTED`, where `INSERT … ON CONFLICT DO UPDATE` always ends in
//!   an insert or an update, even when another transaction inserts the same key at the
//!   same time (it waits for that transaction, then updates its row). Stricter levels
//!   would fail such batches with serialization errors instead.
//! - Rows are upserted in primary key order, so two writers lock overlapping keys in the
//!   same order. Should a deadlock (or serialization failure) still happen — e.g. two
//!   batches touching the same tables in different orders — the whole batch is retried
//!   (up to [`MAX_ATTEMPTS`](super::MAX_ATTEMPTS) times).
//! - DDL (`CREATE TABLE IF NOT EXISTS`, `ALTER TABLE … ADD COLUMN IF NOT EXISTS`) runs
//!   under `pg_advisory_xact_lock` on a hash of the schema-qualified table name, after
//!   re-reading the table's columns, so two loaders adding the same table or column do
//!   not both try (plain `IF NOT EXISTS` can still fail on a race). The lock is held until
//!   the batch commits.

mod encode; // binary COPY values, NUL in text
mod run_end; // a replace run's swap
mod statements; // SQL text: identifiers, DDL, staging, merge

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{BufMut, BytesMut};
use common::schema::{DataType, Field, Row, Scalar, TableSchema};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Statement, Transaction};

use self::encode::{Cell, without_nul};
use self::run_end::{end_run, note_full_name, tables_by_full_name};
use self::statements::{
    MergeSql, add_column_sql, copy_sql, create_staging_sql, create_table_sql, identifier_key,
    info_type, pg_type, push_ident, push_literal, qualified, widen_column_sql,
};
use super::merge_key;
use super::naming::{POSTGRES_MAX_IDENTIFIER, shorten};
use super::pg_error::PgError;
use super::sql::{self, PlanCache, Planned, push_list, push_quoted};
use super::{
    Batch, BatchStats, DbError, Delete, Destination, DestinationError, NestedDelete, OFFSETS_TABLE,
    PartitionOffset, RUNS_TABLE, RunEnd, SchemaChanges, TableBatch, redact_url, staging_prefix,
    staging_run,
};

/// First key of the advisory locks this destination takes (`'load'` in ASCII).
const LOCK_CLASS: i32 = 0x6c6f_6164;
/// The staging table of the table being written (temporary, dropped at commit).
const STAGING: &str = "pg_temp.\"_pipeline_stage\"";

/// A PostgreSQL database (one schema of it).
pub struct PostgresDestination {
    client: Client,
    config: Config,
    /// `schema=` from the URL, set as the `search_path` on every connection.
    schema_param: Option<String>,
    /// The URL with its password replaced, for messages.
    url: String,
    /// The schema the tables live in (`current_schema()` after connecting).
    schema: String,
    state: State,
}

/// What this process knows about the database, so a batch does not re-read it.
#[derive(Default)]
struct State {
    /// Tables known to exist → their columns → `information_schema` data type. Read once
    /// per table, then kept up to date by our own DDL; forgotten when a batch fails.
    columns: HashMap<String, HashMap<String, String>>,
    offsets_table_ready: bool,
    /// The prepared offsets upsert (valid for the connection's life).
    upsert_offset: Option<Statement>,
    plans: PlanCache<Plan>,
    /// See [`Destination::set_version_column`].
    version_column: Option<String>,
}

impl State {
    fn forget_tables(&mut self) {
        self.columns.clear();
        self.offsets_table_ready = false;
    }

    fn plan(&mut self, batch: &TableBatch, schema: &str) -> Result<Arc<Plan>, DestinationError> {
        let version_column = self.version_column.as_deref();
        self.plans.get(batch, || {
            Plan::new(schema, &batch.table, &batch.schema, version_column)
        })
    }
}

/// How to write one writer schema's rows into one table.
struct Plan {
    table: String,
    schema: Arc<TableSchema>,
    /// `"schema"."table"`.
    qualified: String,
    /// The table name as PostgreSQL stores it (the key of [`State::columns`]).
    table_key: String,
    /// The field names as PostgreSQL stores them, in schema order.
    column_keys: Vec<String>,
    key_fields: Vec<usize>,
    /// Staging column types: the position, then one per field.
    types: Vec<Type>,
    create_staging_sql: String,
    copy_sql: String,
    /// `SAVEPOINT …; INSERT … SELECT … FROM staging …; RELEASE …; DROP TABLE staging`.
    merge_sql: String,
    /// The same insert for the staging row at position `$1`, to find a failing record.
    single_sql: String,
    /// Per field: whether a text with NUL was seen (and logged) yet.
    nul_seen: Vec<AtomicBool>,
}

impl Plan {
    fn new(
        db_schema: &str,
        table: &str,
        schema: &Arc<TableSchema>,
        version_column: Option<&str>,
    ) -> Result<Self, DestinationError> {
        sql::check_not_reserved(table)?;
        let key_fields = sql::key_fields(table, schema, |key| schema.field_index(key))?;
        let mut types = vec![Type::INT8];
        types.extend(schema.fields.iter().map(|field| pg_type(field.data_type)));
        let mut qualified = String::new();
        push_quoted(&mut qualified, db_schema);
        qualified.push('.');
        push_ident(&mut qualified, table);
        let sql = MergeSql::new(&qualified, schema, &key_fields, version_column);
        Ok(Self {
            table: table.to_owned(),
            schema: Arc::clone(schema),
            qualified,
            table_key: identifier_key(table),
            column_keys: schema
                .fields
                .iter()
                .map(|field| identifier_key(&field.name))
                .collect(),
            key_fields,
            types,
            create_staging_sql: create_staging_sql(schema),
            copy_sql: copy_sql(schema),
            merge_sql: format!(
                "SAVEPOINT \"_pipeline_merge\"; {}; RELEASE SAVEPOINT \"_pipeline_merge\"; \
                 DROP TABLE {STAGING}",
                sql.merge
            ),
            single_sql: sql.single,
            nul_seen: schema
                .fields
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
        })
    }

    /// The record's primary key for error messages (see [`super::record_key`]).
    fn record_key(&self, row: &Row, position: usize) -> String {
        super::record_key(&self.schema, &self.key_fields, row, position)
    }
}

impl Planned for Plan {
    fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }
}

impl PostgresDestination {
    /// Connects to the database a `postgres://` / `postgresql://` URL names (see the
    /// module docs for `schema=`).
    pub fn connect(url: &str) -> Result<Self, DestinationError> {
        let redacted = redact_url(url);
        let unsupported = |reason: String| DestinationError::UnsupportedUrl {
            url: redacted.clone(),
            reason,
        };
        let (conn_url, schema_param) = split_schema_param(url).map_err(unsupported)?;
        let config = Config::from_str(&conn_url)
            .map_err(|error| unsupported(format!("not a PostgreSQL URL: {error}")))?;
        let (client, schema) = connect(&config, schema_param.as_deref(), &redacted)?;
        tracing::debug!(url = %redacted, schema = %schema, "opened PostgreSQL destination");
        Ok(Self {
            client,
            config,
            schema_param,
            url: redacted,
            schema,
            state: State::default(),
        })
    }

    /// The URL, password replaced by `***`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema the tables are written to.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Reconnects when the server closed the connection (e.g. it restarted).
    fn ensure_connected(&mut self) -> Result<(), DestinationError> {
        if self.client.is_closed() {
            tracing::warn!(url = %self.url, "PostgreSQL connection closed; reconnecting");
            let (client, schema) = connect(&self.config, self.schema_param.as_deref(), &self.url)?;
            self.client = client;
            self.schema = schema;
            self.state = State::default();
        }
        Ok(())
    }

    /// One attempt at the batch, committed, or rolled back at the end when `commit` is false.
    fn write_once(&mut self, batch: &Batch, commit: bool) -> Result<BatchStats, DestinationError> {
        let Self {
            client,
            state,
            schema,
            ..
        } = self;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(|error| DestinationError::Transaction {
                action: "beginning",
                error: db(error),
            })?;
        let mut stats = BatchStats::default();
        // The key columns' types per table deletes touch, read once per batch.
        let mut key_types = HashMap::new();
        for delete in &batch.deletes {
            stats.deleted += delete_row(&mut tx, schema, &mut key_types, delete)?;
        }
        for delete in &batch.nested_deletes {
            stats.nested_deleted += delete_children(&mut tx, schema, delete)?;
        }
        for table_batch in &batch.tables {
            let _span = tracing::debug_span!(
                "write_table",
                table = %table_batch.table,
                rows = table_batch.rows.len()
            )
            .entered();
            let plan = state.plan(table_batch, schema)?;
            ensure_table(&mut tx, &mut state.columns, &plan, &mut stats)?;
            let rows = match merge_keys(&mut tx, schema, table_batch, &mut stats)? {
                Some(kept) => std::borrow::Cow::Owned(kept),
                None => std::borrow::Cow::Borrowed(&table_batch.rows),
            };
            upsert_rows(&mut tx, &plan, &rows)?;
            stats.rows += rows.len();
        }
        for run_end in &batch.run_ends {
            end_run(&mut tx, schema, &mut state.columns, run_end, &mut stats)?;
        }
        if !batch.offsets.is_empty() {
            if !state.offsets_table_ready {
                ensure_offsets_table(&mut tx, schema)?;
                state.offsets_table_ready = true;
            }
            store_offsets(
                &mut tx,
                &mut state.upsert_offset,
                schema,
                &batch.group_id,
                &batch.offsets,
            )?;
        }
        if !commit {
            return Ok(stats);
        }
        tx.commit().map_err(|error| DestinationError::Transaction {
            action: "committing",
            error: db(error),
        })?;
        Ok(stats)
    }
}

/// Connects, sets the session up, and returns the schema tables go to.
fn connect(
    config: &Config,
    schema: Option<&str>,
    url: &str,
) -> Result<(Client, String), DestinationError> {
    let open_error = |error: DbError| DestinationError::Open {
        path: url.to_owned(),
        error,
    };
    let mut client = config.connect(NoTls).map_err(|e| open_error(db(e)))?;
    let mut setup = String::from("SET TimeZone = 'UTC'");
    if let Some(schema) = schema {
        setup.push_str("; SET search_path TO ");
        push_quoted(&mut setup, schema);
    }
    client
        .batch_execute(&setup)
        .map_err(|e| open_error(db(e)))?;
    let current: Option<String> = client
        .query_one("SELECT current_schema()", &[])
        .and_then(|row| row.try_get(0))
        .map_err(|e| open_error(db(e)))?;
    let Some(current) = current else {
        let message = match schema {
            Some(schema) => format!("schema {schema:?} does not exist (create it first)"),
            None => "no schema of the search_path exists".to_owned(),
        };
        return Err(open_error(message.into()));
    };
    Ok((client, current))
}

/// Takes `schema=NAME` out of the URL's query (percent-decoded); the rest goes to the driver.
fn split_schema_param(url: &str) -> Result<(String, Option<String>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("schema", value)) => {
                let decoded = url::form_urlencoded::parse(format!("s={value}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                if decoded.is_empty() {
                    return Err("the schema parameter is empty".to_owned());
                }
                schema = Some(decoded);
            }
            _ if pair.is_empty() => {}
            _ => rest.push(pair),
        }
    }
    let conn_url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((conn_url, schema))
}

impl Destination for PostgresDestination {
    fn set_version_column(&mut self, column: Option<String>) {
        self.state.version_column = column;
        self.state.plans.clear();
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<BatchStats, DestinationError> {
        super::retry_transient(|| {
            self.ensure_connected()?;
            let result = self.write_once(batch, true);
            if result.is_err() {
                // The transaction was rolled back: what it created is gone.
                self.state.forget_tables();
            }
            result
        })
    }

    fn try_batch(&mut self, batch: &Batch) -> Result<(), DestinationError> {
        self.ensure_connected()?;
        let result = self.write_once(batch, false);
        // Rolled back either way: whatever it created is gone.
        self.state.forget_tables();
        result.map(|_| ())
    }

    fn schema_changes(
        &mut self,
        table: &str,
        schema: &TableSchema,
    ) -> Result<SchemaChanges, DestinationError> {
        self.ensure_connected()?;
        let plan = Plan::new(&self.schema, table, &Arc::new(schema.clone()), None)?;
        let mut tx = self
            .client
            .transaction()
            .map_err(|error| DestinationError::Transaction {
                action: "beginning",
                error: db(error),
            })?;
        let existing = read_columns(&mut tx, &plan)?;
        drop(tx);
        let mut changes = SchemaChanges {
            table_exists: !existing.is_empty(),
            ..SchemaChanges::default()
        };
        if !changes.table_exists {
            return Ok(changes);
        }
        for change in ddl_needed(&plan, &existing) {
            let name = schema.fields[change.field].name.clone();
            match change.kind {
                Change::Add => changes.new_columns.push(name),
                Change::Widen => changes.retyped_columns.push(name),
            }
        }
        Ok(changes)
    }

    fn stored_offsets(&mut self, group_id: &str) -> Result<Vec<PartitionOffset>, DestinationError> {
        self.ensure_connected()?;
        let read_error = |error: postgres::Error| DestinationError::ReadOffsets {
            group_id: group_id.to_owned(),
            error: db(error),
        };
        let table = qualified(&self.schema, OFFSETS_TABLE);
        if !self.state.offsets_table_ready {
            let exists: bool = self
                .client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .and_then(|row| row.try_get(0))
                .map_err(read_error)?;
            if !exists {
                return Ok(Vec::new());
            }
        }
        let sql = format!(
            "SELECT \"topic\", \"partition\", \"next_offset\" FROM {table} \
             WHERE \"group_id\" = $1 ORDER BY \"topic\" COLLATE \"C\", \"partition\""
        );
        let rows = self.client.query(&sql, &[&group_id]).map_err(read_error)?;
        rows.iter()
            .map(|row| {
                Ok(PartitionOffset {
                    topic: row.try_get(0)?,
                    partition: row.try_get(1)?,
                    next_offset: row.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, postgres::Error>>()
            .map_err(read_error)
    }
    fn nested_tables(&mut self, table: &str) -> Result<Vec<String>, DestinationError> {
        self.ensure_connected()?;
        let read_error = |error: postgres::Error| DestinationError::ReadColumns {
            table: table.to_owned(),
            error: db(error),
        };
        let prefix = format!("{table}__");
        let mut names: Vec<String> =
            tables_by_full_name(&mut self.client, &self.schema, crate::nested::ROOT_ID)
                .map_err(read_error)?
                .into_iter()
                .filter(|name| name.starts_with(&prefix))
                .collect();
        names.sort();
        Ok(names)
    }
}

/// Creates the table if missing, adds the columns the writer schema has and the table
/// lacks, and widens columns the extractor widened. DDL only under the table's advisory
/// lock, after re-reading the columns.
fn ensure_table(
    tx: &mut Transaction<'_>,
    cache: &mut HashMap<String, HashMap<String, String>>,
    plan: &Plan,
    stats: &mut BatchStats,
) -> Result<(), DestinationError> {
    if !cache.contains_key(&plan.table_key) {
        let existing = read_columns(tx, plan)?;
        if !existing.is_empty() {
            let _ = cache.insert(plan.table_key.clone(), existing);
        }
    }
    if let Some(existing) = cache.get(&plan.table_key)
        && ddl_needed(plan, existing).is_empty()
    {
        return Ok(());
    }

    let lock_error = |error: postgres::Error| DestinationError::CreateTable {
        table: plan.table.clone(),
        error: db(error),
    };
    let _ = tx
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &plan.qualified],
        )
        .map_err(lock_error)?;
    let mut existing = read_columns(tx, plan)?;
    if existing.is_empty() {
        tx.batch_execute(&create_table_sql(&plan.qualified, &plan.schema))
            .map_err(lock_error)?;
        note_full_name(tx, &plan.qualified, &plan.table).map_err(lock_error)?;
        tracing::info!(table = %plan.table, columns = plan.schema.fields.len(), "created table");
        stats.tables_created += 1;
        existing = read_columns(tx, plan)?;
    }
    for change in ddl_needed(plan, &existing) {
        let field = &plan.schema.fields[change.field];
        let sql = match change.kind {
            Change::Add => add_column_sql(&plan.qualified, field),
            Change::Widen => widen_column_sql(&plan.qualified, field),
        };
        tx.batch_execute(&sql)
            .map_err(|error| DestinationError::AddColumn {
                table: plan.table.clone(),
                column: field.name.clone(),
                error: db(error),
            })?;
        let key = &plan.column_keys[change.field];
        let _ = existing.insert(key.clone(), info_type(field.data_type).to_owned());
        match change.kind {
            Change::Add => {
                tracing::info!(table = %plan.table, column = %field.name, data_type = ?field.data_type, "added column");
                stats.columns_added += 1;
            }
            Change::Widen => {
                tracing::info!(table = %plan.table, column = %field.name, data_type = ?field.data_type, "widened column");
            }
        }
    }
    let _ = cache.insert(plan.table_key.clone(), existing);
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Widen,
}

#[derive(Debug, Clone, Copy)]
struct Ddl {
    field: usize,
    kind: Change,
}

/// The DDL the writer schema needs on a table with these columns.
fn ddl_needed(plan: &Plan, existing: &HashMap<String, String>) -> Vec<Ddl> {
    plan.schema
        .fields
        .iter()
        .zip(&plan.column_keys)
        .enumerate()
        .filter_map(|(index, (field, key))| {
            let kind = match existing.get(key).map(String::as_str) {
                None => Change::Add,
                Some("bigint") if field.data_type == DataType::Double => Change::Widen,
                Some("timestamp with time zone") if field.data_type == DataType::Text => {
                    Change::Widen
                }
                Some(_) => return None,
            };
            Some(Ddl { field: index, kind })
        })
        .collect()
}

/// The table's columns and their `information_schema` data types; empty if the table
/// does not exist.
fn read_columns(
    tx: &mut Transaction<'_>,
    plan: &Plan,
) -> Result<HashMap<String, String>, DestinationError> {
    let read_error = |error: postgres::Error| DestinationError::ReadColumns {
        table: plan.table.clone(),
        error: db(error),
    };
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&plan.table_key],
        )
        .map_err(read_error)?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<HashMap<_, _>, postgres::Error>>()
        .map_err(read_error)
}

/// Deletes the row with `delete`'s key, if its table exists; returns the rows deleted. The
/// key's text is cast to each key column's type (read once per table into `types_cache`),
/// so the primary key index is used.
/// Deletes the rows of a child table whose root id is one of `delete.root_ids` (one
/// statement, the ids as a text array), if the table exists; returns the rows deleted.
fn delete_children(
    tx: &mut Transaction<'_>,
    schema: &str,
    delete: &NestedDelete,
) -> Result<usize, DestinationError> {
    let error = |error: postgres::Error| DestinationError::Delete {
        table: delete.table.clone(),
        key: Vec::new(),
        error: db(error),
    };
    let table = qualified(schema, &delete.table);
    let exists: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .and_then(|row| row.try_get(0))
        .map_err(error)?;
    if !exists || delete.root_ids.is_empty() {
        return Ok(0);
    }
    let mut sql = format!("DELETE FROM {table} WHERE ");
    push_ident(&mut sql, crate::nested::ROOT_ID);
    sql.push_str(" = ANY($1::text[])");
    let root_ids: Vec<String> = delete
        .root_ids
        .iter()
        .map(|id| without_nul(id).into_owned())
        .collect();
    let deleted = tx.execute(&sql, &[&root_ids]).map_err(error)?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}

fn delete_row(
    tx: &mut Transaction<'_>,
    schema: &str,
    types_cache: &mut HashMap<String, HashMap<String, String>>,
    delete: &Delete,
) -> Result<usize, DestinationError> {
    let error = |error: postgres::Error| DestinationError::Delete {
        table: delete.table.clone(),
        key: delete.key.clone(),
        error: db(error),
    };
    let types = match types_cache.entry(delete.table.clone()) {
        std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
        std::collections::hash_map::Entry::Vacant(slot) => {
            let rows = tx
                .query(
                    "SELECT column_name::text, format_type(a.atttypid, a.atttypmod) \
                     FROM information_schema.columns c \
                     JOIN pg_attribute a \
                      ON a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass \
                      AND a.attname = c.column_name \
                     WHERE c.table_schema = $1 AND c.table_name = $2",
                    &[&schema, &identifier_key(&delete.table)],
                )
                .map_err(error)?;
            slot.insert(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        }
    };
    if types.is_empty() || delete.key_columns.is_empty() {
        return Ok(0);
    }
    let mut sql = format!("DELETE FROM {} WHERE ", qualified(schema, &delete.table));
    for (index, column) in delete.key_columns.iter().enumerate() {
        if index > 0 {
            sql.push_str(" AND ");
        }
        let sql_type = types
            .get(&identifier_key(column))
            .map_or("text", String::as_str);
        push_ident(&mut sql, column);
        sql.push_str(&format!(" = CAST(${}::text AS {sql_type})", index + 1));
    }
    // Stored without NUL (see `without_nul`), so matched without it.
    let key: Vec<String> = delete
        .key
        .iter()
        .map(|k| without_nul(k).into_owned())
        .collect();
    let params: Vec<&(dyn ToSql + Sync)> = key.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
    let deleted = tx.execute(&sql, &params).map_err(error)?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}

/// Checks the rows, copies them into the staging table and merges them into the table.
fn upsert_rows(
    tx: &mut Transaction<'_>,
    plan: &Plan,
    rows: &[Row],
) -> Result<(), DestinationError> {
    if rows.is_empty() {
        return Ok(());
    }
    check_rows(plan, rows)?;
    let prepare_error = |error: postgres::Error| DestinationError::PrepareUpsert {
        table: plan.table.clone(),
        error: db(error),
    };
    tx.batch_execute(&plan.create_staging_sql)
        .map_err(prepare_error)?;

    let copy_error = |error: postgres::Error| {
        let key = copy_error_row(&error)
            .and_then(|line| rows.get(line).map(|row| plan.record_key(row, line)))
            .unwrap_or_else(|| format!("(one of {} records)", rows.len()));
        let field_name = |index: usize| plan.schema.fields.get(index).map(|f| f.name.clone());
        DestinationError::Upsert {
            table: plan.table.clone(),
            key,
            error: Box::new(PgError::new(&error, &field_name)),
        }
    };
    let writer = tx.copy_in(&plan.copy_sql).map_err(copy_error)?;
    let mut writer = BinaryCopyInWriter::new(writer, &plan.types);
    let mut cells: Vec<Cell<'_>> = Vec::with_capacity(plan.types.len());
    for (position, row) in rows.iter().enumerate() {
        cells.clear();
        cells.push(Cell::Position(position as i64));
        cells.extend(row.iter().map(|value| Cell::Value(value.as_ref())));
        writer.write_raw(cells.iter()).map_err(copy_error)?;
    }
    let _ = writer.finish().map_err(copy_error)?;

    if let Err(error) = tx.batch_execute(&plan.merge_sql) {
        return Err(diagnose(tx, plan, rows, error));
    }
    Ok(())
}

/// The merge failed: find the first record that fails on its own, so the error names it.
fn diagnose(
    tx: &mut Transaction<'_>,
    plan: &Plan,
    rows: &[Row],
    error: postgres::Error,
) -> DestinationError {
    let upsert_error = |key: String, error: postgres::Error| DestinationError::Upsert {
        table: plan.table.clone(),
        key,
        error: db(error),
    };
    let unknown = format!("(one of {} records)", rows.len());
    let transient = error
        .code()
        .is_some_and(|code| *code == SqlState::T_R_DEADLOCK_DETECTED);
    if transient
        || tx
            .batch_execute("ROLLBACK TO SAVEPOINT \"_pipeline_merge\"")
            .is_err()
    {
        return upsert_error(unknown, error);
    }
    let Ok(statement) = tx.prepare_typed(&plan.single_sql, &[Type::INT8]) else {
        return upsert_error(unknown, error);
    };
    for (position, row) in rows.iter().enumerate() {
        if let Err(row_error) = tx.execute(&statement, &[&(position as i64)]) {
            return upsert_error(plan.record_key(row, position), row_error);
        }
    }
    upsert_error(unknown, error)
}

/// The 0-based row of a failed binary `COPY`, from its context line
/// (`COPY _pipeline_stage, line 3, column c1: …`).
fn copy_error_row(error: &postgres::Error) -> Option<usize> {
    let context = error.as_db_error()?.where_()?;
    let rest = &context[context.find(", line ")? + ", line ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<usize>().ok()?.checked_sub(1)
}

/// Row length, value types and nulls, checked before anything is sent, so the error
/// names the record.
fn check_rows(plan: &Plan, rows: &[Row]) -> Result<(), DestinationError> {
    let fields = &plan.schema.fields;
    for (position, row) in rows.iter().enumerate() {
        sql::check_length(&plan.table, fields, row, || plan.record_key(row, position))?;
        for (index, (field, value)) in fields.iter().zip(row).enumerate() {
            if let Some(Scalar::Text(text)) = value
                && text.contains('\0')
                && !plan.nul_seen[index].swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    table = %plan.table,
                    column = %field.name,
                    record = %plan.record_key(row, position),
                    "text with NUL characters: PostgreSQL cannot store NUL in text, so they \
                     are removed (as dlt's PostgreSQL destination does); logged once per column"
                );
            }
            match value {
                Some(value) => {
                    sql::check_fits(&plan.table, field, value, || plan.record_key(row, position))?;
                }
                None if !field.nullable || plan.key_fields.contains(&index) => {
                    return Err(DestinationError::Upsert {
                        table: plan.table.clone(),
                        key: plan.record_key(row, position),
                        error: format!(
                            "null value in column {:?} violates its NOT NULL constraint",
                            field.name
                        )
                        .into(),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

const OFFSETS_COLUMNS: &str = "(\
    \"group_id\" TEXT NOT NULL, \
    \"topic\" TEXT NOT NULL, \
    \"partition\" INTEGER NOT NULL, \
    \"next_offset\" BIGINT NOT NULL, \
    PRIMARY KEY (\"group_id\", \"topic\", \"partition\"))";

/// dlt's delete-insert by merge key (see [`merge_key`]): under an advisory lock (merge-key
/// writers of the database serialise, so each sees the runs the others recorded), deletes
/// the rows of every merge key value the batch has a newer run of, records the newest runs,
/// and returns the rows to write (`None`: the table has no merge key, write them all).
fn merge_keys(
    tx: &mut Transaction<'_>,
    schema: &str,
    batch: &TableBatch,
    stats: &mut BatchStats,
) -> Result<Option<Vec<Row>>, DestinationError> {
    if batch.merge_key.is_empty() {
        return Ok(None);
    }
    let error = |error: postgres::Error| DestinationError::MergeKey {
        table: batch.table.clone(),
        error: db(error),
    };
    let table = qualified(schema, merge_key::MERGE_KEYS_TABLE);
    let _ = tx
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &table],
        )
        .map_err(error)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (\
         \"table_name\" text NOT NULL, \"merge_key\" text NOT NULL, \
         \"run_id\" bigint NOT NULL, PRIMARY KEY (\"table_name\", \"merge_key\"))"
    ))
    .map_err(error)?;
    let lookup = tx
        .prepare(&format!(
            "SELECT \"run_id\" FROM {table} WHERE \"table_name\" = $1 AND \"merge_key\" = $2"
        ))
        .map_err(error)?;
    let plan = merge_key::plan(batch, |key| {
        let key = without_nul(key);
        tx.query_opt(&lookup, &[&batch.table, &key.as_ref()])
            .and_then(|row| row.map(|row| row.try_get::<_, i64>(0)).transpose())
    })
    .map_err(error)?;
    let Some(plan) = plan else {
        return Ok(None);
    };
    let mut types = HashMap::new();
    for delete in &plan.deletes {
        stats.deleted += delete_row(tx, schema, &mut types, delete)?;
    }
    let record = tx
        .prepare(&format!(
            "INSERT INTO {table} (\"table_name\", \"merge_key\", \"run_id\") \
             VALUES ($1, $2, $3) ON CONFLICT (\"table_name\", \"merge_key\") \
             DO UPDATE SET \"run_id\" = excluded.\"run_id\""
        ))
        .map_err(error)?;
    for (key, run) in &plan.record {
        let key = without_nul(key);
        let _ = tx
            .execute(&record, &[&batch.table, &key.as_ref(), run])
            .map_err(error)?;
    }
    Ok(Some(plan.kept(&batch.rows)))
}

fn ensure_offsets_table(tx: &mut Transaction<'_>, schema: &str) -> Result<(), DestinationError> {
    let create_error = |error: postgres::Error| DestinationError::CreateTable {
        table: OFFSETS_TABLE.to_owned(),
        error: db(error),
    };
    let table = qualified(schema, OFFSETS_TABLE);
    let exists: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .and_then(|row| row.try_get(0))
        .map_err(create_error)?;
    if exists {
        return Ok(());
    }
    let _ = tx
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &table],
        )
        .map_err(create_error)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table} {OFFSETS_COLUMNS}"
    ))
    .map_err(create_error)
}

fn store_offsets(
    tx: &mut Transaction<'_>,
    statement: &mut Option<Statement>,
    schema: &str,
    group_id: &str,
    offsets: &[PartitionOffset],
) -> Result<(), DestinationError> {
    let statement = match statement {
        Some(statement) => statement.clone(),
        None => {
            let table = qualified(schema, OFFSETS_TABLE);
            let sql = format!(
                "INSERT INTO {table} (\"group_id\", \"topic\", \"partition\", \"next_offset\") \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (\"group_id\", \"topic\", \"partition\") \
                 DO UPDATE SET \"next_offset\" = EXCLUDED.\"next_offset\""
            );
            let prepared = tx
                .prepare_typed(&sql, &[Type::TEXT, Type::TEXT, Type::INT4, Type::INT8])
                .map_err(|error| DestinationError::CreateTable {
                    table: OFFSETS_TABLE.to_owned(),
                    error: db(error),
                })?;
            statement.insert(prepared).clone()
        }
    };
    // Sorted, so concurrent writers lock offset rows in the same order.
    let mut sorted: Vec<&PartitionOffset> = offsets.iter().collect();
    sorted.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    for offset in sorted {
        let _ = tx
            .execute(
                &statement,
                &[
                    &group_id,
                    &offset.topic,
                    &offset.partition,
                    &offset.next_offset,
                ],
            )
            .map_err(|error| DestinationError::StoreOffset {
                group_id: group_id.to_owned(),
                topic: offset.topic.clone(),
                partition: offset.partition,
                next_offset: offset.next_offset,
                error: db(error),
            })?;
    }
    Ok(())
}

/// The server's whole report (see [`PgError`]), not `postgres::Error`'s `db error`.
fn db(error: postgres::Error) -> DbError {
    Box::new(PgError::new(&error, &|_| None))
}
