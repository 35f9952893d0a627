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
//!   (up to [`MAX_ATTEMPTS`] times).
//! - DDL (`CREATE TABLE IF NOT EXISTS`, `ALTER TABLE … ADD COLUMN IF NOT EXISTS`) runs
//!   under `pg_advisory_xact_lock` on a hash of the schema-qualified table name, after
//!   re-reading the table's columns, so two loaders adding the same table or column do
//!   not both try (plain `IF NOT EXISTS` can still fail on a race). The lock is held until
//!   the batch commits.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::schema::{DataType, Field, Row, Scalar, TableSchema};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Statement, Transaction};

use super::naming::{POSTGRES_MAX_IDENTIFIER, shorten};
use super::pg_error::PgError;
use super::{
    Batch, BatchStats, DbError, Delete, Destination, DestinationError, NestedDelete, OFFSETS_TABLE,
    PartitionOffset, RUNS_TABLE, RunEnd, SchemaChanges, TableBatch, redact_url, staging_prefix,
    staging_run,
};

/// A batch that hits a deadlock or a serialization failure is retried this many times in all.
pub const MAX_ATTEMPTS: u32 = 3;
/// Upsert plans kept per table (see the SQLite destination).
const PLANS_PER_TABLE: usize = 16;
/// Microseconds from 1970-01-01 (Unix) to 2000-01-01 (PostgreSQL's timestamp epoch).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
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
    plans: HashMap<String, Vec<Arc<Plan>>>,
    /// See [`Destination::set_version_column`].
    version_column: Option<String>,
}

impl State {
    fn forget_tables(&mut self) {
        self.columns.clear();
        self.offsets_table_ready = false;
    }

    fn plan(&mut self, batch: &TableBatch, schema: &str) -> Result<Arc<Plan>, DestinationError> {
        if let Some(plans) = self.plans.get(&batch.table)
            && let Some(plan) = plans.iter().find(|plan| {
                Arc::ptr_eq(&plan.schema, &batch.schema) || plan.schema == batch.schema
            })
        {
            return Ok(Arc::clone(plan));
        }
        let plan = Arc::new(Plan::new(
            schema,
            &batch.table,
            &batch.schema,
            self.version_column.as_deref(),
        )?);
        let plans = self.plans.entry(batch.table.clone()).or_default();
        if plans.len() >= PLANS_PER_TABLE {
            drop(plans.remove(0));
        }
        plans.push(Arc::clone(&plan));
        Ok(plan)
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
        if table.eq_ignore_ascii_case(OFFSETS_TABLE) || table.eq_ignore_ascii_case(RUNS_TABLE) {
            return Err(DestinationError::ReservedTable {
                table: table.to_owned(),
            });
        }
        let key_fields = schema
            .primary_key
            .iter()
            .map(|key| {
                schema
                    .field_index(key)
                    .ok_or_else(|| DestinationError::PrimaryKeyNotInSchema {
                        table: table.to_owned(),
                        column: key.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
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
            upsert_rows(&mut tx, &plan, &table_batch.rows)?;
            stats.rows += table_batch.rows.len();
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
        let mut attempt = 1;
        loop {
            self.ensure_connected()?;
            let result = self.write_once(batch, true);
            let Err(error) = result else {
                return result;
            };
            // The transaction was rolled back: what it created is gone.
            self.state.forget_tables();
            if attempt >= MAX_ATTEMPTS || !is_transient(&error) {
                return Err(error);
            }
            tracing::warn!(attempt, error = %error, "batch hit a deadlock or serialization failure; retrying");
            std::thread::sleep(Duration::from_millis(20 * u64::from(attempt)));
            attempt += 1;
        }
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

/// The full (logical) names of the tables of `schema` that have a column `column`. A table
/// whose name was shortened (see [`identifier_key`]) has its full name as its comment
/// (see [`note_full_name`]); a comment counts only when it shortens to the table's name.
fn tables_by_full_name(
    client: &mut impl GenericClient,
    schema: &str,
    column: &str,
) -> Result<Vec<String>, postgres::Error> {
    let rows = client.query(
        "SELECT c.relname::text, obj_description(c.oid, 'pg_class') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND EXISTS \
          (SELECT 1 FROM pg_attribute a \
           WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped)",
        &[&schema, &column],
    )?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let comment: Option<String> = row.try_get(1)?;
            Ok(match comment {
                Some(full)
                    if full.len() > POSTGRES_MAX_IDENTIFIER && identifier_key(&full) == name =>
                {
                    full
                }
                _ => name,
            })
        })
        .collect()
}

/// Keeps the full name of a table whose name was shortened as its comment, so that
/// [`tables_by_full_name`] finds it (a child table by its parent's name).
fn note_full_name(
    tx: &mut Transaction<'_>,
    qualified: &str,
    table: &str,
) -> Result<(), postgres::Error> {
    if table.len() <= POSTGRES_MAX_IDENTIFIER {
        return Ok(());
    }
    let mut sql = format!("COMMENT ON TABLE {qualified} IS ");
    push_literal(&mut sql, table);
    tx.batch_execute(&sql)
}

/// Whether retrying the whole batch may succeed: a deadlock or a serialization failure.
fn is_transient(error: &DestinationError) -> bool {
    let source = match error {
        DestinationError::ReadColumns { error, .. }
        | DestinationError::CreateTable { error, .. }
        | DestinationError::AddColumn { error, .. }
        | DestinationError::PrepareUpsert { error, .. }
        | DestinationError::Upsert { error, .. }
        | DestinationError::StoreOffset { error, .. }
        | DestinationError::RunEnd { error, .. }
        | DestinationError::Transaction { error, .. } => error,
        _ => return false,
    };
    source
        .downcast_ref::<PgError>()
        .and_then(PgError::code)
        .is_some_and(|code| {
            *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
        })
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

/// Records that `end`'s partition ended its run; when that completes the run, swaps the
/// run's staging table in as the table (see [`Destination::write_batch`]). Writers of one
/// topic's run ends serialise on an advisory lock, so the last partition's writer sees every
/// other's row and exactly one of them swaps.
fn end_run(
    tx: &mut Transaction<'_>,
    schema: &str,
    columns: &mut HashMap<String, HashMap<String, String>>,
    end: &RunEnd,
    stats: &mut BatchStats,
) -> Result<(), DestinationError> {
    let error = |error: postgres::Error| DestinationError::RunEnd {
        topic: end.topic.clone(),
        table: end.table.clone(),
        run: end.run,
        error: db(error),
    };
    let run = end.run_id();
    let runs = qualified(schema, RUNS_TABLE);
    let lock_key = format!("{runs}:{}", end.topic);
    let _ = tx
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &lock_key],
        )
        .map_err(error)?;
    let exists = |tx: &mut Transaction<'_>, table: &str| -> Result<bool, DestinationError> {
        tx.query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&qualified(schema, table)],
        )
        .and_then(|row| row.try_get(0))
        .map_err(error)
    };
    if !exists(tx, RUNS_TABLE)? {
        let _ = tx
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &runs],
            )
            .map_err(error)?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {runs} (\"topic\" TEXT NOT NULL, \
             \"run_id\" BIGINT NOT NULL, \"partition\" INTEGER NOT NULL, \
             PRIMARY KEY (\"topic\", \"run_id\", \"partition\"))"
        ))
        .map_err(error)?;
    }
    let _ = tx
        .execute(
            &format!(
                "INSERT INTO {runs} (\"topic\", \"run_id\", \"partition\") VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING"
            ),
            &[&end.topic, &run, &end.partition],
        )
        .map_err(error)?;
    let ended: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM {runs} \
                 WHERE \"topic\" = $1 AND \"run_id\" = $2 AND \"partition\" >= 0"
            ),
            &[&end.topic, &run],
        )
        .and_then(|row| row.try_get(0))
        .map_err(error)?;
    if ended < i64::from(end.partitions) {
        return Ok(());
    }
    let swapped_to: Option<i64> = tx
        .query_one(
            &format!(
                "SELECT max(\"run_id\") FROM {runs} WHERE \"topic\" = $1 AND \"partition\" = -1"
            ),
            &[&end.topic],
        )
        .and_then(|row| row.try_get(0))
        .map_err(error)?;
    let staging = super::staging_table(&end.table, end.run);
    let target = qualified(schema, &end.table);
    let newer_swapped = swapped_to.is_some_and(|s| s > run);
    // Other writers' DDL on the table waits for this swap (see `ensure_table`).
    let _ = tx
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &target],
        )
        .map_err(error)?;
    if newer_swapped {
        tracing::info!(table = %end.table, run = end.run, "run ended after a later run was swapped in; its rows are dropped");
    } else if exists(tx, &staging)? {
        let mut sql = format!(
            "DROP TABLE IF EXISTS {target}; ALTER TABLE {} RENAME TO ",
            qualified(schema, &staging)
        );
        push_ident(&mut sql, &end.table);
        tx.batch_execute(&sql).map_err(error)?;
        note_full_name(tx, &target, &end.table).map_err(error)?;
        stats.runs.swapped += 1;
        tracing::info!(table = %end.table, run = end.run, "replaced the table with the run's rows");
    } else if exists(tx, &end.table)? {
        // The run had no records: the table holds exactly them, none.
        tx.batch_execute(&format!("DELETE FROM {target}"))
            .map_err(error)?;
        stats.runs.swapped += 1;
        tracing::info!(table = %end.table, run = end.run, "replaced the table with the run's rows (none)");
    }
    // Child tables follow the swap (see `child_swap`), found by their full names.
    let search = super::child_search_prefix(&end.table);
    let mut children: Vec<String> = tables_by_full_name(tx, schema, crate::nested::ROOT_ID)
        .map_err(error)?
        .into_iter()
        .filter(|name| name.starts_with(search))
        .collect();
    children.sort();
    let (drops, renames) = super::child_swap(end, !newer_swapped, &children);
    for name in &drops {
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", qualified(schema, name)))
            .map_err(error)?;
        let _ = columns.remove(&identifier_key(name));
    }
    for (from, to) in &renames {
        let mut sql = format!("ALTER TABLE {} RENAME TO ", qualified(schema, from));
        push_ident(&mut sql, to);
        tx.batch_execute(&sql).map_err(error)?;
        note_full_name(tx, &qualified(schema, to), to).map_err(error)?;
        let _ = columns.remove(&identifier_key(from));
        let _ = columns.remove(&identifier_key(to));
    }
    // Staging tables of this run (when not swapped in) and of earlier runs are done with.
    let prefix = identifier_key(&staging_prefix(&end.table));
    let names: Vec<String> = tx
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND left(table_name, length($2)) = $2",
            &[&schema, &prefix],
        )
        .map_err(error)?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(error)?;
    for name in names {
        if end.obsoletes(&name, newer_swapped) {
            tx.batch_execute(&format!("DROP TABLE {}", qualified(schema, &name)))
                .map_err(error)?;
            stats.runs.dropped += 1;
        }
    }
    let _ = tx
        .execute(
            &format!("DELETE FROM {runs} WHERE \"topic\" = $1 AND \"run_id\" <= $2"),
            &[&end.topic, &run],
        )
        .map_err(error)?;
    let _ = tx
        .execute(
            &format!(
                "INSERT INTO {runs} (\"topic\", \"run_id\", \"partition\") VALUES ($1, $2, -1) \
                 ON CONFLICT DO NOTHING"
            ),
            &[&end.topic, &swapped_to.unwrap_or(run).max(run)],
        )
        .map_err(error)?;
    // What this process knew about either table is stale now.
    let table_key = identifier_key(&end.table);
    columns.retain(|key, _| {
        *key != table_key && staging_run(&end.table, key).is_none() && !key.starts_with(search)
    });
    Ok(())
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
        if row.len() != fields.len() {
            return Err(DestinationError::RowLength {
                table: plan.table.clone(),
                key: plan.record_key(row, position),
                expected: fields.len(),
                got: row.len(),
            });
        }
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
                Some(value) if !value_fits(field.data_type, value) => {
                    return Err(DestinationError::ValueType {
                        table: plan.table.clone(),
                        key: plan.record_key(row, position),
                        column: field.name.clone(),
                        expected: field.data_type.as_str().to_owned(),
                        got: scalar_type_name(value).to_owned(),
                    });
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

/// One value of the binary `COPY`: the staging position or a field's value, encoded in
/// PostgreSQL's binary format for the column's type.
#[derive(Debug)]
enum Cell<'a> {
    Position(i64),
    Value(Option<&'a Scalar>),
}

impl ToSql for Cell<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let value = match self {
            Cell::Position(position) => {
                out.put_i64(*position);
                return Ok(IsNull::No);
            }
            Cell::Value(None) => return Ok(IsNull::Yes),
            Cell::Value(Some(value)) => value,
        };
        match value {
            Scalar::Text(text) => {
                for part in text.split('\0') {
                    out.put_slice(part.as_bytes());
                }
            }
            Scalar::Bigint(number) => out.put_i64(*number),
            Scalar::Double(number) => out.put_f64(*number),
            Scalar::Bool(flag) => out.put_u8(u8::from(*flag)),
            Scalar::Timestamp(micros) => out.put_i64(
                micros
                    .checked_sub(POSTGRES_EPOCH_MICROS)
                    .ok_or("timestamp out of range")?,
            ),
            Scalar::Decimal(text) => encode_numeric(text, out)?,
            Scalar::Json(text) => {
                out.put_u8(1); // jsonb format version
                out.put_slice(text.as_bytes());
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        // The staging table's types come from the same schema as the values, checked
        // by `check_rows`.
        true
    }

    to_sql_checked!();
}

/// Encodes decimal text (`-12.340`, `7`, `.5`) in `numeric`'s binary format: base-10000
/// digits with a weight, a sign and the display scale (the text's digits after the point).
fn encode_numeric(
    text: &str,
    out: &mut BytesMut,
) -> Result<(), Box<dyn std::error::Error + Sync + Send>> {
    let invalid = || format!("invalid decimal text {text:?}");
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid().into());
    }
    let int_part = int_part.trim_start_matches('0');
    let dscale = u16::try_from(frac_part.len()).map_err(|_| invalid())?;
    // Pad the integer part on the left and the fraction on the right to groups of 4.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let digits: Vec<u8> = std::iter::repeat_n(b'0', int_pad)
        .chain(int_part.bytes())
        .chain(frac_part.bytes())
        .chain(std::iter::repeat_n(b'0', frac_pad))
        .map(|b| b - b'0')
        .collect();
    let mut groups: Vec<i16> = digits
        .chunks(4)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0_i16, |acc, &digit| acc * 10 + i16::from(digit))
        })
        .collect();
    let mut weight = i32::try_from((int_part.len() + int_pad) / 4).map_err(|_| invalid())? - 1;
    let leading = groups.iter().take_while(|&&g| g == 0).count();
    let _ = groups.drain(..leading);
    weight -= i32::try_from(leading).map_err(|_| invalid())?;
    while groups.last() == Some(&0) {
        let _ = groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let ndigits = i16::try_from(groups.len()).map_err(|_| invalid())?;
    let weight = i16::try_from(weight).map_err(|_| invalid())?;
    out.put_i16(ndigits);
    out.put_i16(weight);
    out.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0x0000
    });
    out.put_u16(dscale);
    for group in groups {
        out.put_i16(group);
    }
    Ok(())
}

/// The server's whole report (see [`PgError`]), not `postgres::Error`'s `db error`.
fn db(error: postgres::Error) -> DbError {
    Box::new(PgError::new(&error, &|_| None))
}

/// The name as it is in the database: shortened as dlt shortens names longer than
/// PostgreSQL's 63 bytes (see [`naming`](super::naming)), so they stay unique.
fn identifier_key(name: &str) -> String {
    shorten(name, POSTGRES_MAX_IDENTIFIER).into_owned()
}

/// `"name"` (shortened, see [`identifier_key`]) with embedded `"` doubled: any text is a
/// valid, inert identifier.
fn push_ident(sql: &mut String, name: &str) {
    push_quoted(sql, &shorten(name, POSTGRES_MAX_IDENTIFIER));
}

/// `"name"` as given, with embedded `"` doubled.
fn push_quoted(sql: &mut String, name: &str) {
    sql.push('"');
    for c in name.chars() {
        if c == '"' {
            sql.push('"');
        }
        sql.push(c);
    }
    sql.push('"');
}

/// `'text'` as a string literal (`standard_conforming_strings`, on since PostgreSQL 9.1).
fn push_literal(sql: &mut String, text: &str) {
    sql.push('\'');
    sql.push_str(&text.replace('\'', "''"));
    sql.push('\'');
}

/// PostgreSQL's `text` cannot hold NUL: it is removed, as dlt's PostgreSQL destination
/// does (`SQL_ESCAPE_DICT` in `dlt/common/data_writers/escape.py` maps `\x00` to nothing).
fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn push_ident_list<'a>(sql: &mut String, names: impl IntoIterator<Item = &'a str>) {
    for (index, name) in names.into_iter().enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        push_ident(sql, name);
    }
}

fn qualified(schema: &str, table: &str) -> String {
    let mut sql = String::new();
    push_quoted(&mut sql, schema);
    sql.push('.');
    push_ident(&mut sql, table);
    sql
}

fn column_type(field: &Field) -> String {
    match field.data_type {
        DataType::Text => "TEXT".to_owned(),
        DataType::Bigint => "BIGINT".to_owned(),
        DataType::Double => "DOUBLE PRECISION".to_owned(),
        DataType::Bool => "BOOLEAN".to_owned(),
        DataType::Timestamp => "TIMESTAMPTZ".to_owned(),
        DataType::Decimal => format!("NUMERIC({}, {})", field.precision, field.scale),
        DataType::Json => "JSONB".to_owned(),
    }
}

/// The staging column's type (no typmod: values are checked by the target's column).
fn pg_type(data_type: DataType) -> Type {
    match data_type {
        DataType::Text => Type::TEXT,
        DataType::Bigint => Type::INT8,
        DataType::Double => Type::FLOAT8,
        DataType::Bool => Type::BOOL,
        DataType::Timestamp => Type::TIMESTAMPTZ,
        DataType::Decimal => Type::NUMERIC,
        DataType::Json => Type::JSONB,
    }
}

/// `information_schema.columns.data_type` of the column we create for this type.
fn info_type(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Text => "text",
        DataType::Bigint => "bigint",
        DataType::Double => "double precision",
        DataType::Bool => "boolean",
        DataType::Timestamp => "timestamp with time zone",
        DataType::Decimal => "numeric",
        DataType::Json => "jsonb",
    }
}

/// `CREATE TABLE IF NOT EXISTS "s"."t" ("id" BIGINT NOT NULL, …, PRIMARY KEY ("id"))`.
fn create_table_sql(qualified: &str, schema: &TableSchema) -> String {
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {qualified} (");
    for (index, field) in schema.fields.iter().enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        push_ident(&mut sql, &field.name);
        sql.push(' ');
        sql.push_str(&column_type(field));
        if !field.nullable || schema.primary_key.contains(&field.name) {
            sql.push_str(" NOT NULL");
        }
    }
    if !schema.primary_key.is_empty() {
        sql.push_str(", PRIMARY KEY (");
        push_ident_list(&mut sql, schema.primary_key.iter().map(String::as_str));
        sql.push(')');
    }
    sql.push(')');
    sql
}

/// `ALTER TABLE "s"."t" ADD COLUMN IF NOT EXISTS "c" TYPE`: always nullable.
fn add_column_sql(qualified: &str, field: &Field) -> String {
    let mut sql = format!("ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS ");
    push_ident(&mut sql, &field.name);
    sql.push(' ');
    sql.push_str(&column_type(field));
    sql
}

/// `ALTER TABLE … ALTER COLUMN "c" TYPE …` for a widened field.
fn widen_column_sql(qualified: &str, field: &Field) -> String {
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
fn staging_column(index: usize) -> String {
    format!("\"c{index}\"")
}

fn create_staging_sql(schema: &TableSchema) -> String {
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
        });
    }
    sql.push_str(") ON COMMIT DROP");
    sql
}

fn copy_sql(schema: &TableSchema) -> String {
    let mut sql = format!("COPY {STAGING} (\"s\"");
    for index in 0..schema.fields.len() {
        sql.push_str(", ");
        sql.push_str(&staging_column(index));
    }
    sql.push_str(") FROM STDIN (FORMAT binary)");
    sql
}

/// The merge from the staging table, and its one-row form.
struct MergeSql {
    merge: String,
    single: String,
}

impl MergeSql {
    /// With a key: `INSERT INTO t (…) SELECT c0, … FROM (SELECT DISTINCT ON (key) * FROM
    /// staging ORDER BY key, s DESC) AS d ORDER BY key ON CONFLICT (key) DO UPDATE SET
    /// a = EXCLUDED.a, …` (`DO NOTHING` when every column is in the key). Without a key
    /// the rows are appended in batch order.
    fn new(
        qualified: &str,
        schema: &TableSchema,
        key_fields: &[usize],
        version_column: Option<&str>,
    ) -> Self {
        let mut insert = format!("INSERT INTO {qualified} (");
        push_ident_list(
            &mut insert,
            schema.fields.iter().map(|field| field.name.as_str()),
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
        let mut conflict = String::from(" ON CONFLICT (");
        push_ident_list(
            &mut conflict,
            key_fields
                .iter()
                .map(|&index| schema.fields[index].name.as_str()),
        );
        conflict.push_str(") DO ");
        let updates: Vec<&Field> = schema
            .fields
            .iter()
            .enumerate()
            .filter(|(index, _)| !key_fields.contains(index))
            .map(|(_, field)| field)
            .collect();
        if updates.is_empty() {
            conflict.push_str("NOTHING");
        } else {
            conflict.push_str("UPDATE SET ");
            for (index, field) in updates.iter().enumerate() {
                if index > 0 {
                    conflict.push_str(", ");
                }
                push_ident(&mut conflict, &field.name);
                conflict.push_str(" = EXCLUDED.");
                push_ident(&mut conflict, &field.name);
            }
            // An older version never replaces a newer row (NULL on either side updates).
            if let Some(version) = version_column.and_then(|v| {
                schema
                    .fields
                    .iter()
                    .find(|field| field.name.eq_ignore_ascii_case(v))
            }) {
                let mut theirs = String::from("EXCLUDED.");
                push_ident(&mut theirs, &version.name);
                let mut ours = format!("{qualified}.");
                push_ident(&mut ours, &version.name);
                conflict.push_str(&format!(
                    " WHERE {ours} IS NULL OR {theirs} IS NULL OR {theirs} >= {ours}"
                ));
            }
        }
        Self {
            merge: format!(
                "{insert} FROM (SELECT DISTINCT ON ({key}) * FROM {STAGING} \
                 ORDER BY {key}, \"s\" DESC) AS \"d\" ORDER BY {key}{conflict}"
            ),
            single: format!("{insert} FROM {STAGING} WHERE \"s\" = $1{conflict}"),
        }
    }
}

fn value_fits(data_type: DataType, value: &Scalar) -> bool {
    matches!(
        (data_type, value),
        (DataType::Text, Scalar::Text(_))
            | (DataType::Bigint, Scalar::Bigint(_))
            | (DataType::Double, Scalar::Double(_))
            | (DataType::Bool, Scalar::Bool(_))
            | (DataType::Timestamp, Scalar::Timestamp(_))
            | (DataType::Decimal, Scalar::Decimal(_))
            | (DataType::Json, Scalar::Json(_))
    )
}

fn scalar_type_name(value: &Scalar) -> &'static str {
    match value {
        Scalar::Text(_) => "text",
        Scalar::Bigint(_) => "bigint",
        Scalar::Double(_) => "double",
        Scalar::Bool(_) => "bool",
        Scalar::Timestamp(_) => "timestamp",
        Scalar::Decimal(_) => "decimal",
        Scalar::Json(_) => "json",
    }
}
