//! The SQLite destination: one table per resource, merged by primary key, offsets in
//! `_pipeline_offsets`, each batch one `BEGIN IMMEDIATE … COMMIT`.
//!
//! Column types (SQLite affinities, chosen so nothing is converted on the way in):
//!
//! | data type   | column    | stored as                                                  |
//! |-------------|-----------|------------------------------------------------------------|
//! | `text`      | `TEXT`    | the text                                                   |
//! | `bigint`    | `INTEGER` | 64-bit integer                                             |
//! | `double`    | `REAL`    | 64-bit float                                               |
//! | `bool`      | `INTEGER` | `0` / `1`                                                  |
//! | `timestamp` | `TEXT`    | `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, always 6 digits, so text order is time order) |
//! | `decimal`   | `TEXT`    | the exact decimal text (a `NUMERIC` column would round it through a float) |
//! | `json`      | `TEXT`    | compact JSON text                                          |
//!
//! Identifiers are always double-quoted with embedded `"` doubled, so any table or column
//! name is just a name. Like SQLite itself, names are compared ASCII-case-insensitively.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::schema::{DataType, Field, Row, Scalar, TableSchema};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Statement, Transaction, TransactionBehavior};

use super::{
    Batch, BatchStats, DbError, Delete, Destination, DestinationError, NestedDelete, OFFSETS_TABLE,
    PartitionOffset, RUNS_TABLE, RunEnd, SchemaChanges, TableBatch, staging_prefix, staging_run,
};

/// How long a write waits for another connection's lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// Prepared statements kept per connection: one upsert per (table, writer schema), plus the
/// offsets statements.
const STATEMENT_CACHE_CAPACITY: usize = 128;
/// Upsert plans kept per table; a table sees a new writer schema only when the API's
/// records change shape, so a handful is plenty.
const PLANS_PER_TABLE: usize = 16;

/// A SQLite database file in WAL mode.
pub struct SqliteDestination {
    conn: Connection,
    path: String,
    state: State,
}

/// What this process knows about the database, so a batch does not re-read it.
#[derive(Default)]
struct State {
    /// Tables known to exist (ASCII-lowercased name) → their columns (ASCII-lowercased).
    /// Filled from `pragma_table_info` once per table, then kept up to date by our own
    /// `CREATE` / `ALTER`; forgotten when a batch rolls back.
    columns: HashMap<String, HashSet<String>>,
    /// Whether `_pipeline_offsets` is known to exist; forgotten when a batch rolls back.
    offsets_table_ready: bool,
    /// Destination table name → upsert plans for the writer schemas seen. Plans depend only
    /// on the schema, not on the database, so they survive rollbacks.
    plans: HashMap<String, Vec<Arc<Plan>>>,
    /// See [`Destination::set_version_column`].
    version_column: Option<String>,
}

impl State {
    /// The database may not hold what a rolled-back batch created: read it again.
    fn forget_tables(&mut self) {
        self.columns.clear();
        self.offsets_table_ready = false;
    }

    /// The plan for this table and writer schema, built once.
    fn plan(&mut self, batch: &TableBatch) -> Result<Arc<Plan>, DestinationError> {
        if let Some(plans) = self.plans.get(&batch.table)
            && let Some(plan) = plans.iter().find(|plan| {
                Arc::ptr_eq(&plan.schema, &batch.schema) || plan.schema == batch.schema
            })
        {
            return Ok(Arc::clone(plan));
        }
        let plan = Arc::new(Plan::new(
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
    /// The table name, ASCII-lowercased (the key of [`State::columns`]).
    table_key: String,
    /// The field names, ASCII-lowercased, in schema order.
    column_keys: Vec<String>,
    /// Indexes of the primary key fields, in key order (for error messages).
    key_fields: Vec<usize>,
    upsert_sql: String,
}

impl Plan {
    fn new(
        table: &str,
        schema: &Arc<TableSchema>,
        version_column: Option<&str>,
    ) -> Result<Self, DestinationError> {
        let table_key = table.to_ascii_lowercase();
        if table_key == OFFSETS_TABLE || table_key == RUNS_TABLE {
            return Err(DestinationError::ReservedTable {
                table: table.to_owned(),
            });
        }
        let column_keys: Vec<String> = schema
            .fields
            .iter()
            .map(|field| field.name.to_ascii_lowercase())
            .collect();
        let key_fields = schema
            .primary_key
            .iter()
            .map(|key| {
                let key_lower = key.to_ascii_lowercase();
                column_keys
                    .iter()
                    .position(|column| *column == key_lower)
                    .ok_or_else(|| DestinationError::PrimaryKeyNotInSchema {
                        table: table.to_owned(),
                        column: key.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            table: table.to_owned(),
            schema: Arc::clone(schema),
            table_key,
            column_keys,
            key_fields,
            upsert_sql: upsert_sql(table, schema, version_column),
        })
    }

    /// The record's primary key for error messages (see [`super::record_key`]).
    fn record_key(&self, row: &Row, position: usize) -> String {
        super::record_key(&self.schema, &self.key_fields, row, position)
    }
}

impl SqliteDestination {
    /// Opens (creating if needed) the database file at `path` in WAL mode with
    /// `synchronous=NORMAL` and a 5 s busy timeout. The file's directory must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DestinationError> {
        let path = path.as_ref();
        let path_text = path.display().to_string();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            return Err(DestinationError::MissingDirectory {
                path: path_text,
                dir: dir.display().to_string(),
            });
        }
        let open_error = |error: rusqlite::Error| {
            let error = DestinationError::Open {
                path: path_text.clone(),
                error: db(error),
            };
            super::sqlite_os::explain(&path_text, error)
        };
        let conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        let journal_mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_error)?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                path = %path_text,
                journal_mode,
                "SQLite did not switch to WAL mode"
            );
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        tracing::debug!(path = %path_text, journal_mode, "opened SQLite destination");
        Ok(Self {
            conn,
            path: path_text,
            state: State::default(),
        })
    }

    /// The database file's path, as given.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Destination for SqliteDestination {
    fn write_batch(&mut self, batch: &Batch) -> Result<BatchStats, DestinationError> {
        let result = write_batch(&mut self.conn, &mut self.state, batch, true);
        if result.is_err() {
            // The transaction was rolled back (dropped): tables or columns it created are gone.
            self.state.forget_tables();
        }
        result.map_err(|error| super::sqlite_os::explain(&self.path, error))
    }

    fn try_batch(&mut self, batch: &Batch) -> Result<(), DestinationError> {
        let result = write_batch(&mut self.conn, &mut self.state, batch, false);
        // Rolled back either way: whatever it created is gone.
        self.state.forget_tables();
        result
            .map(|_| ())
            .map_err(|error| super::sqlite_os::explain(&self.path, error))
    }

    fn set_version_column(&mut self, column: Option<String>) {
        self.state.version_column = column;
        self.state.plans.clear();
    }

    fn schema_changes(
        &mut self,
        table: &str,
        schema: &TableSchema,
    ) -> Result<SchemaChanges, DestinationError> {
        let read_error = |error: rusqlite::Error| DestinationError::ReadColumns {
            table: table.to_owned(),
            error: db(error),
        };
        let mut statement = self
            .conn
            .prepare_cached("SELECT name, type FROM pragma_table_info(?1)")
            .map_err(read_error)?;
        let columns: HashMap<String, String> = statement
            .query_map([table], |row| {
                Ok((
                    row.get::<_, String>(0)?.to_ascii_lowercase(),
                    row.get::<_, String>(1)?,
                ))
            })
            .map_err(read_error)?
            .collect::<Result<_, _>>()
            .map_err(read_error)?;
        let mut changes = SchemaChanges {
            table_exists: !columns.is_empty(),
            ..SchemaChanges::default()
        };
        if !changes.table_exists {
            return Ok(changes);
        }
        for field in &schema.fields {
            match columns.get(&field.name.to_ascii_lowercase()) {
                None => changes.new_columns.push(field.name.clone()),
                Some(declared) if !declared.eq_ignore_ascii_case(column_type(field.data_type)) => {
                    changes.retyped_columns.push(field.name.clone());
                }
                Some(_) => {}
            }
        }
        Ok(changes)
    }

    fn stored_offsets(&mut self, group_id: &str) -> Result<Vec<PartitionOffset>, DestinationError> {
        let read_error = |error: rusqlite::Error| DestinationError::ReadOffsets {
            group_id: group_id.to_owned(),
            error: db(error),
        };
        if !self.state.offsets_table_ready {
            let exists: bool = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                     WHERE type = 'table' AND name = ?1 COLLATE NOCASE)",
                    [OFFSETS_TABLE],
                    |row| row.get(0),
                )
                .map_err(read_error)?;
            if !exists {
                return Ok(Vec::new());
            }
        }
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT \"topic\", \"partition\", \"next_offset\" FROM \"_pipeline_offsets\" \
                 WHERE \"group_id\" = ?1 ORDER BY \"topic\", \"partition\"",
            )
            .map_err(read_error)?;
        let offsets = statement
            .query_map([group_id], |row| {
                Ok(PartitionOffset {
                    topic: row.get(0)?,
                    partition: row.get(1)?,
                    next_offset: row.get(2)?,
                })
            })
            .map_err(read_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_error)?;
        Ok(offsets)
    }
    fn nested_tables(&mut self, table: &str) -> Result<Vec<String>, DestinationError> {
        let read_error = |error: rusqlite::Error| DestinationError::ReadColumns {
            table: table.to_owned(),
            error: db(error),
        };
        let pattern = format!("{}\\_\\_%", like_escape(table));
        let mut statement = self
            .conn
            .prepare(
                "SELECT m.name FROM sqlite_master AS m WHERE m.type = 'table' \
                 AND m.name LIKE ?1 ESCAPE '\\' \
                 AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) AS c WHERE c.name = ?2) \
                 ORDER BY m.name",
            )
            .map_err(read_error)?;
        let names = statement
            .query_map(rusqlite::params![pattern, crate::nested::ROOT_ID], |row| {
                row.get::<_, String>(0)
            })
            .map_err(read_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_error)?;
        Ok(names)
    }
}

/// The whole batch in one immediate transaction; dropping `tx` on an error rolls back, and
/// so does the end of a trial (`commit` false).
fn write_batch(
    conn: &mut Connection,
    state: &mut State,
    batch: &Batch,
    commit: bool,
) -> Result<BatchStats, DestinationError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|error| DestinationError::Transaction {
            action: "beginning",
            error: db(error),
        })?;
    let mut stats = BatchStats::default();
    // Whether each table deletes touch exists, looked up once per batch.
    let mut tables: HashMap<String, bool> = HashMap::new();
    for delete in &batch.deletes {
        stats.deleted += delete_row(&tx, &mut tables, delete)?;
    }
    for delete in &batch.nested_deletes {
        stats.nested_deleted += delete_children(&tx, &mut tables, delete)?;
    }
    for table_batch in &batch.tables {
        let _span = tracing::debug_span!(
            "write_table",
            table = %table_batch.table,
            rows = table_batch.rows.len()
        )
        .entered();
        let plan = state.plan(table_batch)?;
        ensure_table(&tx, &mut state.columns, &plan, &mut stats)?;
        upsert_rows(&tx, &plan, &table_batch.rows)?;
        stats.rows += table_batch.rows.len();
    }
    for run_end in &batch.run_ends {
        end_run(&tx, &mut state.columns, run_end, &mut stats)?;
    }
    if !batch.offsets.is_empty() {
        if !state.offsets_table_ready {
            tx.execute_batch(CREATE_OFFSETS_TABLE).map_err(|error| {
                DestinationError::CreateTable {
                    table: OFFSETS_TABLE.to_owned(),
                    error: db(error),
                }
            })?;
            state.offsets_table_ready = true;
        }
        store_offsets(&tx, &batch.group_id, &batch.offsets)?;
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

/// Records that `end`'s partition ended its run; when that completes the run, swaps the
/// run's staging table in as the table (see [`Destination::write_batch`]).
fn end_run(
    tx: &Transaction<'_>,
    columns: &mut HashMap<String, HashSet<String>>,
    end: &RunEnd,
    stats: &mut BatchStats,
) -> Result<(), DestinationError> {
    let error = |error: rusqlite::Error| DestinationError::RunEnd {
        topic: end.topic.clone(),
        table: end.table.clone(),
        run: end.run,
        error: db(error),
    };
    let run = end.run_id();
    tx.execute_batch(CREATE_RUNS_TABLE).map_err(error)?;
    let _ = tx
        .execute(
            "INSERT INTO \"_pipeline_runs\" (\"topic\", \"run_id\", \"partition\") \
             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            rusqlite::params![end.topic, run, end.partition],
        )
        .map_err(error)?;
    let ended: i64 = tx
        .query_row(
            "SELECT count(*) FROM \"_pipeline_runs\" \
             WHERE \"topic\" = ?1 AND \"run_id\" = ?2 AND \"partition\" >= 0",
            rusqlite::params![end.topic, run],
            |row| row.get(0),
        )
        .map_err(error)?;
    if ended < i64::from(end.partitions) {
        return Ok(());
    }
    let swapped_to: Option<i64> = tx
        .query_row(
            "SELECT max(\"run_id\") FROM \"_pipeline_runs\" \
             WHERE \"topic\" = ?1 AND \"partition\" = -1",
            [&end.topic],
            |row| row.get(0),
        )
        .map_err(error)?;
    let staging = super::staging_table(&end.table, end.run);
    let staging_exists = table_exists(tx, &staging).map_err(error)?;
    let newer_swapped = swapped_to.is_some_and(|s| s > run);
    if newer_swapped {
        tracing::info!(table = %end.table, run = end.run, "run ended after a later run was swapped in; its rows are dropped");
    } else if staging_exists {
        let mut sql = String::from("DROP TABLE IF EXISTS ");
        push_ident(&mut sql, &end.table);
        sql.push_str("; ALTER TABLE ");
        push_ident(&mut sql, &staging);
        sql.push_str(" RENAME TO ");
        push_ident(&mut sql, &end.table);
        tx.execute_batch(&sql).map_err(error)?;
        stats.runs.swapped += 1;
        tracing::info!(table = %end.table, run = end.run, "replaced the table with the run's rows");
    } else if table_exists(tx, &end.table).map_err(error)? {
        // The run had no records: the table holds exactly them, none.
        let mut sql = String::from("DELETE FROM ");
        push_ident(&mut sql, &end.table);
        tx.execute_batch(&sql).map_err(error)?;
        stats.runs.swapped += 1;
        tracing::info!(table = %end.table, run = end.run, "replaced the table with the run's rows (none)");
    }
    // Child tables follow the swap (see `child_swap`).
    let pattern = format!("{}%", like_escape(super::child_search_prefix(&end.table)));
    let children: Vec<String> = tx
        .prepare(
            "SELECT m.name FROM sqlite_master AS m WHERE m.type = 'table' \
             AND m.name LIKE ?1 ESCAPE '\\' \
             AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) AS c WHERE c.name = ?2) \
             ORDER BY m.name",
        )
        .and_then(|mut statement| {
            statement
                .query_map(rusqlite::params![pattern, crate::nested::ROOT_ID], |row| {
                    row.get::<_, String>(0)
                })?
                .collect()
        })
        .map_err(error)?;
    let (drops, renames) = super::child_swap(end, !newer_swapped, &children);
    for name in &drops {
        let mut sql = String::from("DROP TABLE IF EXISTS ");
        push_ident(&mut sql, name);
        tx.execute_batch(&sql).map_err(error)?;
    }
    for (from, to) in &renames {
        let mut sql = String::from("ALTER TABLE ");
        push_ident(&mut sql, from);
        sql.push_str(" RENAME TO ");
        push_ident(&mut sql, to);
        tx.execute_batch(&sql).map_err(error)?;
    }
    // Staging tables of this run (when not swapped in) and of earlier runs are done with.
    let pattern = format!("{}%", like_escape(&staging_prefix(&end.table)));
    let names: Vec<String> = tx
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?1 ESCAPE '\\'")
        .and_then(|mut statement| {
            statement
                .query_map([&pattern], |row| row.get::<_, String>(0))?
                .collect()
        })
        .map_err(error)?;
    for name in names {
        if end.obsoletes(&name, newer_swapped) {
            let mut sql = String::from("DROP TABLE ");
            push_ident(&mut sql, &name);
            tx.execute_batch(&sql).map_err(error)?;
            stats.runs.dropped += 1;
        }
    }
    let _ = tx
        .execute(
            "DELETE FROM \"_pipeline_runs\" WHERE \"topic\" = ?1 AND \"run_id\" <= ?2",
            rusqlite::params![end.topic, run],
        )
        .map_err(error)?;
    let _ = tx
        .execute(
            "INSERT INTO \"_pipeline_runs\" (\"topic\", \"run_id\", \"partition\") \
             VALUES (?1, ?2, -1) ON CONFLICT DO NOTHING",
            rusqlite::params![end.topic, swapped_to.unwrap_or(run).max(run)],
        )
        .map_err(error)?;
    // What this process knew about either table is stale now.
    let search = super::child_search_prefix(&end.table).to_ascii_lowercase();
    columns.retain(|key, _| {
        !key.eq_ignore_ascii_case(&end.table)
            && staging_run(&end.table, key).is_none()
            && !key.to_ascii_lowercase().starts_with(&search)
    });
    Ok(())
}

fn table_exists(tx: &Transaction<'_>, table: &str) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master \
         WHERE type = 'table' AND name = ?1 COLLATE NOCASE)",
        [table],
        |row| row.get(0),
    )
}

/// `text` for a `LIKE … ESCAPE '\'` pattern: `%`, `_` and `\` match only themselves.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Deletes the row with `delete`'s key, if its table exists (`tables` caches that per
/// batch); returns the rows deleted.
fn delete_row(
    tx: &Transaction<'_>,
    tables: &mut HashMap<String, bool>,
    delete: &Delete,
) -> Result<usize, DestinationError> {
    let error = |error: rusqlite::Error| DestinationError::Delete {
        table: delete.table.clone(),
        key: delete.key.clone(),
        error: db(error),
    };
    let exists = match tables.get(&delete.table) {
        Some(exists) => *exists,
        None => {
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                     WHERE type = 'table' AND name = ?1 COLLATE NOCASE)",
                    [&delete.table],
                    |row| row.get(0),
                )
                .map_err(error)?;
            let _ = tables.insert(delete.table.clone(), exists);
            exists
        }
    };
    if !exists || delete.key_columns.is_empty() {
        return Ok(0);
    }
    let mut sql = String::from("DELETE FROM ");
    push_ident(&mut sql, &delete.table);
    sql.push_str(" WHERE ");
    for (index, column) in delete.key_columns.iter().enumerate() {
        if index > 0 {
            sql.push_str(" AND ");
        }
        push_ident(&mut sql, column);
        // The column's affinity converts the text (`'42'` matches INTEGER 42).
        sql.push_str(&format!(" = ?{}", index + 1));
    }
    tx.execute(&sql, rusqlite::params_from_iter(&delete.key))
        .map_err(error)
}

/// Deletes the rows of a child table whose root id is one of `delete.root_ids`, if the
/// table exists; returns the rows deleted.
fn delete_children(
    tx: &Transaction<'_>,
    tables: &mut HashMap<String, bool>,
    delete: &NestedDelete,
) -> Result<usize, DestinationError> {
    let error = |error: rusqlite::Error| DestinationError::Delete {
        table: delete.table.clone(),
        key: Vec::new(),
        error: db(error),
    };
    let exists = match tables.get(&delete.table) {
        Some(exists) => *exists,
        None => {
            let exists = table_exists(tx, &delete.table).map_err(error)?;
            let _ = tables.insert(delete.table.clone(), exists);
            exists
        }
    };
    if !exists {
        return Ok(0);
    }
    let mut sql = String::from("DELETE FROM ");
    push_ident(&mut sql, &delete.table);
    sql.push_str(" WHERE ");
    push_ident(&mut sql, crate::nested::ROOT_ID);
    sql.push_str(" = ?1");
    let mut statement = tx.prepare_cached(&sql).map_err(error)?;
    let mut deleted = 0;
    for id in &delete.root_ids {
        deleted += statement
            .execute([id])
            .map_err(|e| DestinationError::Delete {
                table: delete.table.clone(),
                key: vec![id.clone()],
                error: db(e),
            })?;
    }
    Ok(deleted)
}

/// Creates the table if missing and adds the columns of the writer schema it lacks.
fn ensure_table(
    tx: &Transaction<'_>,
    columns: &mut HashMap<String, HashSet<String>>,
    plan: &Plan,
    stats: &mut BatchStats,
) -> Result<(), DestinationError> {
    let table = &plan.table;
    if !columns.contains_key(&plan.table_key) {
        let existing = read_columns(tx, table)?;
        if existing.is_empty() {
            tx.execute_batch(&create_table_sql(table, &plan.schema))
                .map_err(|error| DestinationError::CreateTable {
                    table: table.clone(),
                    error: db(error),
                })?;
            tracing::info!(table = %table, columns = plan.schema.fields.len(), "created table");
            stats.tables_created += 1;
            let _ = columns.insert(
                plan.table_key.clone(),
                plan.column_keys.iter().cloned().collect(),
            );
            return Ok(());
        }
        let _ = columns.insert(plan.table_key.clone(), existing);
    }
    let Some(existing) = columns.get_mut(&plan.table_key) else {
        return Ok(()); // just inserted above
    };
    for (field, key) in plan.schema.fields.iter().zip(&plan.column_keys) {
        if existing.contains(key) {
            continue;
        }
        tx.execute_batch(&add_column_sql(table, field))
            .map_err(|error| DestinationError::AddColumn {
                table: table.clone(),
                column: field.name.clone(),
                error: db(error),
            })?;
        tracing::info!(table = %table, column = %field.name, data_type = ?field.data_type, "added column");
        stats.columns_added += 1;
        let _ = existing.insert(key.clone());
    }
    Ok(())
}

/// The table's columns (ASCII-lowercased); empty if the table does not exist.
fn read_columns(tx: &Transaction<'_>, table: &str) -> Result<HashSet<String>, DestinationError> {
    let read_error = |error: rusqlite::Error| DestinationError::ReadColumns {
        table: table.to_owned(),
        error: db(error),
    };
    let mut statement = tx
        .prepare_cached("SELECT name FROM pragma_table_info(?1)")
        .map_err(read_error)?;
    let names = statement
        .query_map([table], |row| row.get::<_, String>(0))
        .map_err(read_error)?
        .map(|name| name.map(|name| name.to_ascii_lowercase()))
        .collect::<Result<HashSet<_>, _>>()
        .map_err(read_error)?;
    Ok(names)
}

/// Upserts the rows in order with one cached prepared statement.
fn upsert_rows(tx: &Transaction<'_>, plan: &Plan, rows: &[Row]) -> Result<(), DestinationError> {
    let mut statement =
        tx.prepare_cached(&plan.upsert_sql)
            .map_err(|error| DestinationError::PrepareUpsert {
                table: plan.table.clone(),
                error: db(error),
            })?;
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
        let upsert_error = |error: rusqlite::Error| DestinationError::Upsert {
            table: plan.table.clone(),
            key: plan.record_key(row, position),
            error: db(error),
        };
        for (index, (field, value)) in fields.iter().zip(row).enumerate() {
            if let Some(value) = value
                && !value_fits(field.data_type, value)
            {
                return Err(DestinationError::ValueType {
                    table: plan.table.clone(),
                    key: plan.record_key(row, position),
                    column: field.name.clone(),
                    expected: data_type_name(field.data_type).to_owned(),
                    got: scalar_type_name(value).to_owned(),
                });
            }
            // SQLite would give a NULL in an INTEGER PRIMARY KEY a new rowid instead of
            // failing, so a missing key is refused here.
            if value.is_none() && plan.key_fields.contains(&index) {
                return Err(DestinationError::Upsert {
                    table: plan.table.clone(),
                    key: plan.record_key(row, position),
                    error: format!("primary key column {:?} is null", field.name).into(),
                });
            }
            bind_value(&mut statement, index + 1, value.as_ref()).map_err(upsert_error)?;
        }
        let _ = statement.raw_execute().map_err(upsert_error)?;
    }
    Ok(())
}

/// Binds one value, borrowing text from the row (SQLite copies it), without allocating.
fn bind_value(
    statement: &mut Statement<'_>,
    index: usize,
    value: Option<&Scalar>,
) -> rusqlite::Result<()> {
    let mut timestamp = TimestampBuf::default();
    let value = match value {
        None => ValueRef::Null,
        Some(Scalar::Text(text) | Scalar::Decimal(text) | Scalar::Json(text)) => {
            ValueRef::Text(text.as_bytes())
        }
        Some(Scalar::Bigint(number)) => ValueRef::Integer(*number),
        Some(Scalar::Double(number)) => ValueRef::Real(*number),
        Some(Scalar::Bool(flag)) => ValueRef::Integer(i64::from(*flag)),
        Some(Scalar::Timestamp(micros)) => ValueRef::Text(timestamp.format(*micros)),
    };
    statement.raw_bind_parameter(index, ToSqlOutput::Borrowed(value))
}

const CREATE_OFFSETS_TABLE: &str = "CREATE TABLE IF NOT EXISTS \"_pipeline_offsets\" (\
    \"group_id\" TEXT NOT NULL, \
    \"topic\" TEXT NOT NULL, \
    \"partition\" INTEGER NOT NULL, \
    \"next_offset\" INTEGER NOT NULL, \
    PRIMARY KEY (\"group_id\", \"topic\", \"partition\"))";

/// Partition `-1` marks the run the topic's table was last swapped to.
const CREATE_RUNS_TABLE: &str = "CREATE TABLE IF NOT EXISTS \"_pipeline_runs\" (\
    \"topic\" TEXT NOT NULL, \
    \"run_id\" INTEGER NOT NULL, \
    \"partition\" INTEGER NOT NULL, \
    PRIMARY KEY (\"topic\", \"run_id\", \"partition\"))";

const UPSERT_OFFSET: &str = "INSERT INTO \"_pipeline_offsets\" \
    (\"group_id\", \"topic\", \"partition\", \"next_offset\") VALUES (?1, ?2, ?3, ?4) \
    ON CONFLICT (\"group_id\", \"topic\", \"partition\") \
    DO UPDATE SET \"next_offset\" = excluded.\"next_offset\"";

fn store_offsets(
    tx: &Transaction<'_>,
    group_id: &str,
    offsets: &[PartitionOffset],
) -> Result<(), DestinationError> {
    let store_error =
        |offset: &PartitionOffset, error: rusqlite::Error| DestinationError::StoreOffset {
            group_id: group_id.to_owned(),
            topic: offset.topic.clone(),
            partition: offset.partition,
            next_offset: offset.next_offset,
            error: db(error),
        };
    let mut statement =
        tx.prepare_cached(UPSERT_OFFSET)
            .map_err(|error| DestinationError::CreateTable {
                table: OFFSETS_TABLE.to_owned(),
                error: db(error),
            })?;
    for offset in offsets {
        let _ = statement
            .execute(rusqlite::params![
                group_id,
                offset.topic,
                offset.partition,
                offset.next_offset
            ])
            .map_err(|error| store_error(offset, error))?;
    }
    Ok(())
}

fn db(error: rusqlite::Error) -> DbError {
    Box::new(error)
}

/// `"name"` with embedded `"` doubled: any text is a valid, inert identifier.
fn push_ident(sql: &mut String, name: &str) {
    sql.push('"');
    for c in name.chars() {
        if c == '"' {
            sql.push('"');
        }
        sql.push(c);
    }
    sql.push('"');
}

fn push_ident_list<'a>(sql: &mut String, names: impl IntoIterator<Item = &'a str>) {
    for (index, name) in names.into_iter().enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        push_ident(sql, name);
    }
}

fn column_type(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Bigint | DataType::Bool => "INTEGER",
        DataType::Double => "REAL",
        DataType::Text | DataType::Timestamp | DataType::Decimal | DataType::Json => "TEXT",
    }
}

/// `CREATE TABLE "t" ("id" INTEGER NOT NULL, …, PRIMARY KEY ("id"))`, columns in schema
/// order; primary key columns are always `NOT NULL`.
fn create_table_sql(table: &str, schema: &TableSchema) -> String {
    let mut sql = String::from("CREATE TABLE ");
    push_ident(&mut sql, table);
    sql.push_str(" (");
    for (index, field) in schema.fields.iter().enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        push_ident(&mut sql, &field.name);
        sql.push(' ');
        sql.push_str(column_type(field.data_type));
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

/// `ALTER TABLE "t" ADD COLUMN "c" TYPE`: always nullable, the existing rows have no value.
fn add_column_sql(table: &str, field: &Field) -> String {
    let mut sql = String::from("ALTER TABLE ");
    push_ident(&mut sql, table);
    sql.push_str(" ADD COLUMN ");
    push_ident(&mut sql, &field.name);
    sql.push(' ');
    sql.push_str(column_type(field.data_type));
    sql
}

/// `INSERT INTO "t" ("id", "a") VALUES (?1, ?2) ON CONFLICT ("id") DO UPDATE SET
/// "a" = excluded."a"` over the writer schema's fields; `DO NOTHING` when every column is
/// in the key; a plain `INSERT` (append) when there is no key. With a version column
/// that the schema has, the update is skipped for a record whose version is older than the
/// row's (`WHERE "t"."v" IS NULL OR excluded."v" IS NULL OR excluded."v" >= "t"."v"`).
fn upsert_sql(table: &str, schema: &TableSchema, version_column: Option<&str>) -> String {
    let mut sql = String::from("INSERT INTO ");
    push_ident(&mut sql, table);
    sql.push_str(" (");
    push_ident_list(
        &mut sql,
        schema.fields.iter().map(|field| field.name.as_str()),
    );
    sql.push_str(") VALUES (");
    for index in 1..=schema.fields.len() {
        if index > 1 {
            sql.push_str(", ");
        }
        sql.push('?');
        sql.push_str(&index.to_string());
    }
    sql.push(')');
    if schema.primary_key.is_empty() {
        return sql;
    }
    sql.push_str(" ON CONFLICT (");
    push_ident_list(&mut sql, schema.primary_key.iter().map(String::as_str));
    sql.push_str(") DO ");
    let mut updates = schema
        .fields
        .iter()
        .filter(|field| {
            !schema
                .primary_key
                .iter()
                .any(|key| key.eq_ignore_ascii_case(&field.name))
        })
        .peekable();
    if updates.peek().is_none() {
        sql.push_str("NOTHING");
        return sql;
    }
    sql.push_str("UPDATE SET ");
    for (index, field) in updates.enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        push_ident(&mut sql, &field.name);
        sql.push_str(" = excluded.");
        push_ident(&mut sql, &field.name);
    }
    if let Some(version) = version_column.and_then(|v| {
        schema
            .fields
            .iter()
            .find(|field| field.name.eq_ignore_ascii_case(v))
    }) {
        let mut theirs = String::from("excluded.");
        push_ident(&mut theirs, &version.name);
        let mut ours = String::new();
        push_ident(&mut ours, table);
        ours.push('.');
        push_ident(&mut ours, &version.name);
        sql.push_str(&format!(
            " WHERE {ours} IS NULL OR {theirs} IS NULL OR {theirs} >= {ours}"
        ));
    }
    sql
}

/// Whether a value may go into a column of this data type (the codec produces values of
/// the field's own type; anything else is a bug upstream, not data to coerce).
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

fn data_type_name(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Text => "text",
        DataType::Bigint => "bigint",
        DataType::Double => "double",
        DataType::Bool => "bool",
        DataType::Timestamp => "timestamp",
        DataType::Decimal => "decimal",
        DataType::Json => "json",
    }
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

/// A timestamp (microseconds since the Unix epoch, UTC) as stored in SQLite:
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, always six fraction digits, so text order is time order
/// for years 0000–9999 (years outside that range get more digits or a `-`).
pub fn timestamp_text(micros: i64) -> String {
    TimestampBuf::default()
        .format(micros)
        .iter()
        .map(|&byte| char::from(byte))
        .collect()
}

/// Formats a timestamp on the stack (the bind path allocates nothing).
#[derive(Default)]
struct TimestampBuf {
    bytes: [u8; 32],
    len: usize,
}

impl TimestampBuf {
    /// The ASCII text of the timestamp.
    fn format(&mut self, micros: i64) -> &[u8] {
        let seconds = micros.div_euclid(1_000_000);
        let fraction = micros.rem_euclid(1_000_000).unsigned_abs();
        let days = seconds.div_euclid(86_400);
        let second_of_day = seconds.rem_euclid(86_400).unsigned_abs();
        let (year, month, day) = civil_from_days(days);

        self.len = 0;
        if year < 0 {
            self.push(b'-');
        }
        self.push_number(year.unsigned_abs(), 4);
        self.push(b'-');
        self.push_number(month, 2);
        self.push(b'-');
        self.push_number(day, 2);
        self.push(b'T');
        self.push_number(second_of_day / 3600, 2);
        self.push(b':');
        self.push_number(second_of_day / 60 % 60, 2);
        self.push(b':');
        self.push_number(second_of_day % 60, 2);
        self.push(b'.');
        self.push_number(fraction, 6);
        self.push(b'Z');
        &self.bytes[..self.len]
    }

    fn push(&mut self, byte: u8) {
        // At most 30 bytes: the year of i64 micros has at most 6 digits plus a sign.
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// `number` in decimal, zero-padded to at least `width` digits.
    fn push_number(&mut self, mut number: u64, width: usize) {
        let mut digits = [0_u8; 20];
        let mut count = 0;
        while number > 0 || count < width {
            digits[count] = b'0' + (number % 10) as u8;
            number /= 10;
            count += 1;
        }
        for &digit in digits[..count].iter().rev() {
            self.push(digit);
        }
    }
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1).unsigned_abs();
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    }
    .unsigned_abs();
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::Destination;

    fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
        Field {
            name: name.to_owned(),
            data_type,
            nullable,
            precision: 38,
            scale: 9,
        }
    }

    fn schema(name: &str, primary_key: &[&str], fields: Vec<Field>) -> Arc<TableSchema> {
        Arc::new(TableSchema {
            name: name.to_owned(),
            primary_key: primary_key.iter().map(|key| (*key).to_owned()).collect(),
            fields,
        })
    }

    fn table_batch(schema: &Arc<TableSchema>, rows: Vec<Row>) -> TableBatch {
        TableBatch {
            table: schema.name.clone(),
            schema: Arc::clone(schema),
            rows,
        }
    }

    fn batch(tables: Vec<TableBatch>, offsets: &[(&str, i32, i64)]) -> Batch {
        Batch {
            group_id: "loader".to_owned(),
            deletes: Vec::new(),
            nested_deletes: Vec::new(),
            tables,
            run_ends: Vec::new(),
            offsets: offsets
                .iter()
                .map(|(topic, partition, next_offset)| PartitionOffset {
                    topic: (*topic).to_owned(),
                    partition: *partition,
                    next_offset: *next_offset,
                })
                .collect(),
        }
    }

    fn text(value: &str) -> Option<Scalar> {
        Some(Scalar::Text(value.to_owned()))
    }

    fn int(value: i64) -> Option<Scalar> {
        Some(Scalar::Bigint(value))
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
        assert_eq!(db.dest.state.plans["users"].len(), 1, "plan reused");
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
            upsert_sql(&s.name, &s, None),
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
            upsert_sql("k", &key_only, None),
            "INSERT INTO \"k\" (\"a\", \"b\") VALUES (?1, ?2) ON CONFLICT (\"a\", \"b\") DO NOTHING"
        );
        let no_key = schema("n", &[], vec![field("a", DataType::Json, true)]);
        assert_eq!(
            upsert_sql("n", &no_key, None),
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
}
