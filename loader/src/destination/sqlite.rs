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

mod timestamp; // fixed-width UTC text

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::schema::{DataType, Field, Row, Scalar, TableSchema};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Statement, Transaction, TransactionBehavior};

use self::timestamp::TimestampBuf;
pub use self::timestamp::timestamp_text;
use super::merge_key;
use super::scd2::{self, Scd2Sql};
use super::sql::{self, PlanCache, Planned, push_list, push_quoted as push_ident};
use super::swap::{SwapPlan, TableSwap};
use super::{
    Batch, BatchStats, DbError, Delete, Destination, DestinationError, NestedDelete, OFFSETS_TABLE,
    PartitionOffset, RunEnd, SchemaChanges, TableBatch, staging_prefix, staging_run,
};

/// How long a write waits for another connection's lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// Prepared statements kept per connection: one upsert per (table, writer schema), plus the
/// offsets statements.
const STATEMENT_CACHE_CAPACITY: usize = 128;

/// WAL pages written before a commit checkpoints them into the database (SQLite's default
/// is 1,000, about 4 MiB). A row's page changed by several batches between checkpoints is
/// written back once: 300k-record replays into a fresh file took 0.527-0.537 CPU s per 100k
/// against 0.547-0.560 at the default, three alternating rounds. The WAL file grows to
/// about 40 MiB (4 KiB pages) and keeps that size; `PRAGMA wal_checkpoint(TRUNCATE)`
/// shrinks it.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

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
    /// Upsert plans per destination table and writer schema.
    plans: PlanCache<Plan>,
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
        let version_column = self.version_column.as_deref();
        self.plans.get(batch, || {
            Plan::new(&batch.table, &batch.schema, version_column)
        })
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
        sql::check_not_reserved(table)?;
        let table_key = table.to_ascii_lowercase();
        let column_keys: Vec<String> = schema
            .fields
            .iter()
            .map(|field| field.name.to_ascii_lowercase())
            .collect();
        let key_fields = sql::key_fields(table, schema, |key| {
            let key_lower = key.to_ascii_lowercase();
            column_keys.iter().position(|column| *column == key_lower)
        })?;
        let upsert_sql = upsert_sql(table, schema, &key_fields, version_column);
        Ok(Self {
            table: table.to_owned(),
            schema: Arc::clone(schema),
            table_key,
            column_keys,
            key_fields,
            upsert_sql,
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

impl SqliteDestination {
    /// Opens (creating if needed) the database file at `path` in WAL mode with
    /// `synchronous=NORMAL`, a checkpoint every [`WAL_AUTOCHECKPOINT_PAGES`] WAL pages and
    /// a 5 s busy timeout. The file's directory must exist.
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
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
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
        super::retry_transient(|| {
            let result = write_batch(&mut self.conn, &mut self.state, batch, true);
            if result.is_err() {
                // The transaction was rolled back (dropped): tables or columns it created
                // are gone.
                self.state.forget_tables();
            }
            result.map_err(|error| super::sqlite_os::explain(&self.path, error))
        })
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
        let rows = match merge_keys(&tx, table_batch, &mut stats)? {
            Some(kept) => std::borrow::Cow::Owned(kept),
            None => std::borrow::Cow::Borrowed(&table_batch.rows),
        };
        upsert_rows(&tx, &plan, &rows)?;
        stats.rows += rows.len();
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

/// dlt's delete-insert by merge key (see [`merge_key`]): deletes the rows of every merge key
/// value the batch has a newer run of, records the newest runs, and returns the rows to
/// write (`None`: the table has no merge key, write them all).
fn merge_keys(
    tx: &Transaction<'_>,
    batch: &TableBatch,
    stats: &mut BatchStats,
) -> Result<Option<Vec<Row>>, DestinationError> {
    if batch.merge_key.is_empty() {
        return Ok(None);
    }
    let error = |error: rusqlite::Error| DestinationError::MergeKey {
        table: batch.table.clone(),
        error: db(error),
    };
    tx.execute_batch(CREATE_MERGE_KEYS_TABLE).map_err(error)?;
    let plan = {
        let mut lookup = tx.prepare_cached(SELECT_MERGE_KEY).map_err(error)?;
        merge_key::plan(batch, |key| {
            lookup
                .query_row(rusqlite::params![batch.table, key], |row| row.get(0))
                .optional()
        })
        .map_err(error)?
    };
    let Some(plan) = plan else {
        return Ok(None);
    };
    let mut tables = HashMap::new();
    for delete in &plan.deletes {
        stats.deleted += delete_row(tx, &mut tables, delete)?;
    }
    let mut record = tx.prepare_cached(UPSERT_MERGE_KEY).map_err(error)?;
    for (key, run) in &plan.record {
        let _ = record
            .execute(rusqlite::params![batch.table, key, run])
            .map_err(error)?;
    }
    Ok(Some(plan.kept(&batch.rows)))
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
    let plan = SwapPlan::new(end, swapped_to);
    let swap = plan
        .table(|| Ok(staging_exists), || table_exists(tx, &end.table))
        .map_err(error)?;
    match swap {
        TableSwap::Rename | TableSwap::Empty if end.scd2.is_some() => {
            scd2_merge(tx, end, swap == TableSwap::Rename, &staging).map_err(error)?;
        }
        TableSwap::Rename => {
            let mut sql = String::from("DROP TABLE IF EXISTS ");
            push_ident(&mut sql, &end.table);
            sql.push_str("; ALTER TABLE ");
            push_ident(&mut sql, &staging);
            sql.push_str(" RENAME TO ");
            push_ident(&mut sql, &end.table);
            tx.execute_batch(&sql).map_err(error)?;
        }
        TableSwap::Empty => {
            let mut sql = String::from("DELETE FROM ");
            push_ident(&mut sql, &end.table);
            tx.execute_batch(&sql).map_err(error)?;
        }
        TableSwap::LaterRunSwapped | TableSwap::Nothing => {}
    }
    if let Some(message) = swap.done_as(end.scd2.is_some(), stats) {
        tracing::info!(table = %end.table, run = end.run, "{message}");
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
    let (drops, renames) = plan.children(end, &children);
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
        if plan.obsolete(end, &name) {
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
            rusqlite::params![end.topic, plan.recorded_run],
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

/// dlt's scd2 at the end of a run: the table of versions (created, or given the staging
/// table's new columns) takes the run's records (see [`scd2`]); the staging table goes.
/// Without a staging table (a run without records) every active row is retired.
fn scd2_merge(
    tx: &Transaction<'_>,
    end: &RunEnd,
    staged: bool,
    staging: &str,
) -> rusqlite::Result<()> {
    let Some(options) = end.scd2.as_deref() else {
        return Ok(());
    };
    let (time, active) = scd2::literals(end, options, |t| format!("'{t}'"), "NULL");
    let mut target = String::new();
    push_ident(&mut target, &end.table);
    if !staged {
        let sql = Scd2Sql {
            target: &target,
            staging: "",
            content: Vec::new(),
            options,
            same: "IS",
            time,
            active,
            quote: push_ident,
        };
        return sql
            .retire_all()
            .map_or(Ok(()), |sql| tx.execute_batch(&sql));
    }
    let columns_of = |table: &str| -> rusqlite::Result<Vec<(String, String)>> {
        tx.prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")?
            .query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect()
    };
    let staged = columns_of(staging)?;
    let mut existing: Vec<String> = columns_of(&end.table)?.into_iter().map(|c| c.0).collect();
    if existing.is_empty() {
        let mut sql = format!("CREATE TABLE {target} (");
        for (name, kind) in &staged {
            push_ident(&mut sql, name);
            sql.push(' ');
            sql.push_str(kind);
            sql.push_str(", ");
        }
        push_ident(&mut sql, &options.valid_from);
        sql.push_str(" TEXT, ");
        push_ident(&mut sql, &options.valid_to);
        sql.push_str(" TEXT)");
        tx.execute_batch(&sql)?;
        existing = staged.iter().map(|c| c.0.clone()).collect();
    } else {
        let has = |names: &[String], name: &str| names.iter().any(|n| n.eq_ignore_ascii_case(name));
        let mut missing: Vec<(String, String)> = staged
            .iter()
            .filter(|(name, _)| !has(&existing, name))
            .cloned()
            .collect();
        for validity in [&options.valid_from, &options.valid_to] {
            if !has(&existing, validity) {
                missing.push((validity.to_owned(), "TEXT".to_owned()));
            }
        }
        for (name, kind) in missing {
            let mut sql = format!("ALTER TABLE {target} ADD COLUMN ");
            push_ident(&mut sql, &name);
            sql.push(' ');
            sql.push_str(&kind);
            tx.execute_batch(&sql)?;
            existing.push(name);
        }
    }
    let content = existing
        .into_iter()
        .filter(|c| !Scd2Sql::is_validity(options, c))
        .map(|c| {
            let in_staging = staged.iter().any(|(s, _)| s.eq_ignore_ascii_case(&c));
            (c, in_staging)
        })
        .collect();
    let mut staging_sql = String::new();
    push_ident(&mut staging_sql, staging);
    let sql = Scd2Sql {
        target: &target,
        staging: &staging_sql,
        content,
        options,
        same: "IS",
        time,
        active,
        quote: push_ident,
    };
    tx.execute_batch(&sql.retire())?;
    tx.execute_batch(&sql.insert())?;
    tx.execute_batch(&format!("DROP TABLE {staging_sql}"))
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
        sql::check_length(&plan.table, fields, row, || plan.record_key(row, position))?;
        let upsert_error = |error: rusqlite::Error| DestinationError::Upsert {
            table: plan.table.clone(),
            key: plan.record_key(row, position),
            error: db(error),
        };
        for (index, (field, value)) in fields.iter().zip(row).enumerate() {
            if let Some(value) = value {
                sql::check_fits(&plan.table, field, value, || plan.record_key(row, position))?;
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
    // Dates and times as dlt's SQLite stores them: `2024-03-01`, `12:30:45.123456`.
    let calendar;
    let value = match value {
        None => ValueRef::Null,
        Some(Scalar::Text(text) | Scalar::Decimal(text) | Scalar::Json(text)) => {
            ValueRef::Text(text.as_bytes())
        }
        Some(Scalar::Bigint(number)) => ValueRef::Integer(*number),
        Some(Scalar::Double(number)) => ValueRef::Real(*number),
        Some(Scalar::Bool(flag)) => ValueRef::Integer(i64::from(*flag)),
        Some(Scalar::Timestamp(micros)) => ValueRef::Text(timestamp.format(*micros)),
        Some(Scalar::Date(days)) => {
            calendar = common::schema::date_text(*days);
            ValueRef::Text(calendar.as_bytes())
        }
        Some(Scalar::Time(micros)) => {
            calendar = common::schema::time_text(*micros);
            ValueRef::Text(calendar.as_bytes())
        }
        Some(Scalar::Binary(bytes)) => ValueRef::Blob(bytes),
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

/// Per merge-key table and merge key (as text), the newest run that had it.
const CREATE_MERGE_KEYS_TABLE: &str = "CREATE TABLE IF NOT EXISTS \"_pipeline_merge_keys\" (\
    \"table_name\" TEXT NOT NULL, \
    \"merge_key\" TEXT NOT NULL, \
    \"run_id\" INTEGER NOT NULL, \
    PRIMARY KEY (\"table_name\", \"merge_key\"))";

const SELECT_MERGE_KEY: &str = "SELECT \"run_id\" FROM \"_pipeline_merge_keys\" \
    WHERE \"table_name\" = ?1 AND \"merge_key\" = ?2";

const UPSERT_MERGE_KEY: &str = "INSERT INTO \"_pipeline_merge_keys\" \
    (\"table_name\", \"merge_key\", \"run_id\") VALUES (?1, ?2, ?3) \
    ON CONFLICT (\"table_name\", \"merge_key\") DO UPDATE SET \"run_id\" = excluded.\"run_id\"";

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

fn column_type(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Bigint | DataType::Bool => "INTEGER",
        DataType::Double => "REAL",
        DataType::Text | DataType::Timestamp | DataType::Decimal | DataType::Json => "TEXT",
        // As dlt's SQLite (through SQLAlchemy) declares them.
        DataType::Date => "DATE",
        DataType::Time => "TIME",
        DataType::Binary => "BLOB",
    }
}

/// `CREATE TABLE "t" ("id" INTEGER NOT NULL, …, PRIMARY KEY ("id"))`, columns in schema
/// order; primary key columns are always `NOT NULL`.
fn create_table_sql(table: &str, schema: &TableSchema) -> String {
    let mut sql = String::from("CREATE TABLE ");
    push_ident(&mut sql, table);
    sql.push_str(" (");
    sql::push_column_defs(&mut sql, schema, push_ident, |field| {
        column_type(field.data_type)
    });
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
fn upsert_sql(
    table: &str,
    schema: &TableSchema,
    key_fields: &[usize],
    version_column: Option<&str>,
) -> String {
    let mut sql = String::from("INSERT INTO ");
    push_ident(&mut sql, table);
    sql.push_str(" (");
    push_list(
        &mut sql,
        schema.fields.iter().map(|field| field.name.as_str()),
        push_ident,
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
    if key_fields.is_empty() {
        return sql;
    }
    let mut quoted_table = String::new();
    push_ident(&mut quoted_table, table);
    sql::push_on_conflict(
        &mut sql,
        &quoted_table,
        schema,
        key_fields,
        version_column,
        push_ident,
    );
    sql
}

#[cfg(test)]
mod tests;
