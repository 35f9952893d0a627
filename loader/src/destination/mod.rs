//! Where the loader writes: one [`Destination`] trait, one file per database
//! (`sqlite.rs`, `postgres.rs` with its parts in `postgres/`), chosen by [`open`] from the
//! destination URL. What both share: `sql.rs` (identifier quoting, the statement-plan
//! cache, value checks, record keys), `swap.rs` (the `replace` swap, decided once),
//! `merge_key.rs` (dlt's delete-insert by merge key, decided once) and the
//! one retry loop for transient errors ([`MAX_ATTEMPTS`]).
//!
//! A [`Batch`] is what the loader consumed since its last write: rows per table plus the
//! Kafka offsets to resume from. A destination writes both in one transaction, so after a
//! crash the stored offsets say exactly which records are in the tables.

#[cfg(test)]
mod conformance;
pub mod merge_key; // dlt's delete-insert by merge key, decided once for both destinations
pub mod naming; // dlt's shortening of long names
mod pg_error; // PostgreSQL's report on one line
pub mod postgres;
pub mod scd2; // dlt's scd2 merge at a run's end, shared by both destinations
mod sql; // what the SQL destinations share: quoting, plan cache, value checks
pub mod sqlite;
mod sqlite_os; // what the OS says behind SQLite's `disk I/O error`
mod swap; // the replace-run swap, decided once for both destinations
#[cfg(test)]
pub(crate) mod test_support; // fixtures of the conformance suite and the destinations' tests

use std::sync::Arc;
use std::time::Duration;

use ::postgres::error::SqlState;
use backon::BackoffBuilder;
use common::retry::RetryPolicy;
use common::schema::{Row, TableSchema};

use self::pg_error::PgError;

pub use postgres::PostgresDestination;
pub(crate) use sql::record_key;
pub use sqlite::{SqliteDestination, timestamp_text};

/// The table that holds the consumer offsets, next to the data tables.
pub const OFFSETS_TABLE: &str = "_pipeline_offsets";

/// The table that records which partitions have ended which `replace` run, and which run
/// each topic's table was last swapped to (partition `-1`).
pub const RUNS_TABLE: &str = "_pipeline_runs";

/// Bytes of the destination table's name kept in a staging table's name, so that the
/// name with its `__r<run>` suffix fits PostgreSQL's 63-byte identifiers.
const STAGING_TABLE_PREFIX_BYTES: usize = 40;

/// The table a `replace` run's rows are merged into until every partition has ended the
/// run: `<table>__r<run>` (the table part cut to 40 bytes on a character boundary).
pub fn staging_table(table: &str, run: u64) -> String {
    format!("{}{run}", staging_prefix(table))
}

/// The part every staging table of `table` starts with: `<table cut to 40 bytes>__r`.
pub fn staging_prefix(table: &str) -> String {
    let mut end = table.len().min(STAGING_TABLE_PREFIX_BYTES);
    while !table.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}__r", &table[..end])
}

/// The run of a staging table of `table`, if `name` is one.
pub fn staging_run(table: &str, name: &str) -> Option<u64> {
    let prefix = staging_prefix(table);
    let head = name.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(&prefix) {
        return None;
    }
    let digits = &name[prefix.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A child table of a staging table of `table` (see [`crate::nested`]):
/// `<staging prefix><run>__<path>` → the run and `__<path>`, the part that follows the
/// table's name in the child table the swap makes of it.
pub fn staging_child<'a>(table: &str, name: &'a str) -> Option<(u64, &'a str)> {
    let prefix = staging_prefix(table);
    let head = name.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(&prefix) {
        return None;
    }
    let rest = &name[prefix.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let suffix = &rest[digits..];
    if digits == 0 || !suffix.starts_with("__") || suffix.len() == 2 {
        return None;
    }
    Some((rest[..digits].parse().ok()?, suffix))
}

/// What a `replace` swap does to the child tables of `end.table` and of its staging tables.
/// `children` are the tables with a `_dlt_root_id` column whose name starts with the
/// table's name cut to the staging prefix length. When the run's rows become the table
/// (`swap`), the table's own child tables are dropped and the run's are renamed to take
/// their place; the child tables of earlier runs (and of this run, when it is not swapped
/// in) are dropped. Returns (tables to drop, renames `from → to`), in order.
pub fn child_swap(
    end: &RunEnd,
    swap: bool,
    children: &[String],
) -> (Vec<String>, Vec<(String, String)>) {
    let mut drop = Vec::new();
    let mut rename = Vec::new();
    let live_prefix = format!("{}__", end.table);
    for name in children {
        match staging_child(&end.table, name) {
            Some((run, suffix)) if run == end.run && swap => {
                rename.push((name.clone(), format!("{}{suffix}", end.table)));
            }
            Some((run, _)) if run <= end.run => drop.push(name.clone()),
            Some(_) => {}
            None if swap && name.starts_with(&live_prefix) => drop.push(name.clone()),
            None => {}
        }
    }
    (drop, rename)
}

/// The table's name cut to the bytes a staging table keeps of it: every child table of the
/// table and of its staging tables starts with it.
pub fn child_search_prefix(table: &str) -> &str {
    let mut end = table.len().min(STAGING_TABLE_PREFIX_BYTES);
    while !table.is_char_boundary(end) {
        end -= 1;
    }
    &table[..end]
}

/// A partition reached the end of a `replace` run (the extractor's run-end marker). When
/// every partition of the topic has, the run's staging table becomes the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    pub topic: String,
    /// The destination table the run replaces.
    pub table: String,
    pub run: u64,
    pub partition: i32,
    /// How many partitions the topic had when the extractor ended the run.
    pub partitions: i32,
    /// dlt's `scd2` (with its options): the completed run's staging table is merged in as
    /// versions (see [`scd2`]) instead of replacing the table. `None`: `replace`.
    pub scd2: Option<Arc<common::config::Scd2Config>>,
}

impl RunEnd {
    /// The run id as the destinations store it (run ids are checked to fit when read, see
    /// [`common::run_markers::parse_run`]).
    pub fn run_id(&self) -> i64 {
        i64::try_from(self.run).unwrap_or(i64::MAX)
    }

    /// Whether table `name` is a staging table this run's end makes obsolete: one of an
    /// earlier run, or this run's own when a later run was already swapped in.
    pub fn obsoletes(&self, name: &str, later_swapped: bool) -> bool {
        staging_run(&self.table, name)
            .is_some_and(|old| old < self.run || (old == self.run && later_swapped))
    }
}

/// What [`RunEnd`]s did in a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Tables swapped to a finished run's rows.
    pub swapped: usize,
    /// Staging tables of older, unfinished runs dropped.
    pub dropped: usize,
}

/// The rows of one destination table in a batch.
#[derive(Debug, Clone)]
pub struct TableBatch {
    /// The destination table's name.
    pub table: String,
    /// The writer schema these rows follow; each row is aligned with its fields.
    pub schema: Arc<TableSchema>,
    /// In Kafka order; when two rows share a primary key, the later one wins.
    pub rows: Vec<Row>,
    /// dlt's `merge_key` columns (a `delete-insert` merge with a merge key; empty: none).
    /// Each row then has its run in [`merge_key::LOAD_ID_COLUMN`], and per merge key value
    /// the table keeps the rows of the newest run that had it (see [`merge_key`]).
    pub merge_key: Vec<String>,
}

/// Where to resume one partition: the offset of the next record to consume.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// A row to delete by primary key: what a tombstone (a Kafka record with a key and no
/// value) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub table: String,
    /// The primary key columns, in key order.
    pub key_columns: Vec<String>,
    /// The key's values as text, aligned with `key_columns` (the database converts them to
    /// the columns' types).
    pub key: Vec<String>,
}

/// The rows of a child table (see [`crate::nested`]) whose `_dlt_root_id` is one of
/// `root_ids`: the children of root records the batch loads anew or deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedDelete {
    pub table: String,
    pub root_ids: Vec<String>,
}

/// Everything one destination transaction writes.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The Kafka consumer group; offsets are stored per group.
    pub group_id: String,
    /// Applied first, in order (a missing table or row is not an error). The loader
    /// starts a new batch at every tombstone, so deletes always precede the batch's rows.
    pub deletes: Vec<Delete>,
    /// Applied after `deletes`, before the rows (a missing table is not an error).
    pub nested_deletes: Vec<NestedDelete>,
    /// Written in this order, after the deletes.
    pub tables: Vec<TableBatch>,
    /// Applied after the rows, in order (see [`RunEnd`]).
    pub run_ends: Vec<RunEnd>,
    pub offsets: Vec<PartitionOffset>,
}

/// What a [`Destination::write_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Rows inserted or updated (every row of the batch, duplicates included).
    pub rows: usize,
    /// Rows removed by [`Batch::deletes`].
    pub deleted: usize,
    /// Child-table rows removed by [`Batch::nested_deletes`].
    pub nested_deleted: usize,
    pub tables_created: usize,
    pub columns_added: usize,
    pub runs: RunStats,
}

/// A database the loader merges records into.
pub trait Destination: Send {
    /// Writes the batch in ONE transaction: for each [`TableBatch`] in order, creates the
    /// table if missing and adds the columns it lacks, then upserts the rows by primary key
    /// (merge; a table without a primary key is appended to); finally upserts the offsets
    /// into `_pipeline_offsets(group_id, topic, partition, next_offset)`, keyed by
    /// `(group_id, topic, partition)`. All or nothing: on error nothing of the batch is
    /// visible.
    ///
    /// After the rows, each [`RunEnd`] is recorded in `_pipeline_runs`; the one that
    /// completes its run (every partition ended it) swaps the run's staging table in as the
    /// table (`DROP` + `RENAME`, or emptying the table when the run had no rows), unless the
    /// table was already swapped to a later run, and drops the staging tables of earlier
    /// runs. Concurrent writers serialise on the topic, so exactly one of them swaps.
    fn write_batch(&mut self, batch: &Batch) -> Result<BatchStats, DestinationError>;

    /// Writes the batch as [`Destination::write_batch`] would, then rolls the transaction
    /// back: whether it would succeed, and if not why. Nothing of it stays.
    fn try_batch(&mut self, batch: &Batch) -> Result<(), DestinationError>;

    /// Makes `column` a version column: an upsert leaves a row alone when both the row and
    /// the record have a value there and the record's is smaller, so replaying an older
    /// range of a topic never moves a row backwards. Tables whose writer schema lacks the
    /// column are merged as usual. `None` (the default) turns the rule off.
    fn set_version_column(&mut self, column: Option<String>);

    /// What writing rows of `schema` into `table` would change in the table as it is now
    /// (for the schema contract). Reads the database; changes nothing.
    fn schema_changes(
        &mut self,
        table: &str,
        schema: &TableSchema,
    ) -> Result<SchemaChanges, DestinationError>;

    /// The offsets stored by [`Destination::write_batch`] for this group, ordered by topic
    /// and partition; empty if there are none (or no offsets table yet).
    fn stored_offsets(&mut self, group_id: &str) -> Result<Vec<PartitionOffset>, DestinationError>;

    /// The child tables of `table` in the database (see [`crate::nested`]): tables named
    /// `<table>__…` that have a `_dlt_root_id` column, sorted. Reads; changes nothing.
    fn nested_tables(&mut self, table: &str) -> Result<Vec<String>, DestinationError>;
}

/// What writing a schema into a table would change, as the destination sees it now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaChanges {
    pub table_exists: bool,
    /// Fields of the schema the table has no column for.
    pub new_columns: Vec<String>,
    /// Fields whose column would change type (a widened field: `bigint` → `double`,
    /// `timestamp` → `text`).
    pub retyped_columns: Vec<String>,
}

/// The database driver's error, boxed so every destination fits one error type.
pub type DbError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A destination failure, naming the place (table, column, record key, offset) and the
/// database's own message.
///
/// The database error is part of the message (not a `source()`), so `{}` alone prints the
/// whole story: `upserting record id=42 into table "orders": NOT NULL constraint failed: ...`.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("destination URL {url:?} is not supported: {reason}")]
    UnsupportedUrl { url: String, reason: String },

    #[error("directory {dir:?} of SQLite database {path:?} does not exist")]
    MissingDirectory { path: String, dir: String },

    #[error("opening destination {path:?}: {error}")]
    Open { path: String, error: DbError },

    #[error("table {table:?} is reserved for the loader's offsets")]
    ReservedTable { table: String },

    #[error("table {table:?}: primary key column {column:?} is not a field of the schema")]
    PrimaryKeyNotInSchema { table: String, column: String },

    #[error("reading the columns of table {table:?}: {error}")]
    ReadColumns { table: String, error: DbError },

    #[error("creating table {table:?}: {error}")]
    CreateTable { table: String, error: DbError },

    #[error("adding column {column:?} to table {table:?}: {error}")]
    AddColumn {
        table: String,
        column: String,
        error: DbError,
    },

    #[error("preparing the upsert into table {table:?}: {error}")]
    PrepareUpsert { table: String, error: DbError },

    #[error("record {key} for table {table:?} has {got} values, the schema has {expected} fields")]
    RowLength {
        table: String,
        key: String,
        expected: usize,
        got: usize,
    },

    #[error(
        "record {key} for table {table:?}: column {column:?} is {expected} but the value is {got}"
    )]
    ValueType {
        table: String,
        key: String,
        column: String,
        expected: String,
        got: String,
    },

    #[error("upserting record {key} into table {table:?}: {error}")]
    Upsert {
        table: String,
        key: String,
        error: DbError,
    },

    #[error(
        "storing offset {next_offset} of topic {topic:?} partition {partition} for group {group_id:?}: {error}"
    )]
    StoreOffset {
        group_id: String,
        topic: String,
        partition: i32,
        next_offset: i64,
        error: DbError,
    },

    #[error("deleting key {key:?} from table {table:?}: {error}")]
    Delete {
        table: String,
        key: Vec<String>,
        error: DbError,
    },

    #[error("reading the stored offsets of group {group_id:?}: {error}")]
    ReadOffsets { group_id: String, error: DbError },

    #[error("ending run {run} of topic {topic:?} (table {table:?}): {error}")]
    RunEnd {
        topic: String,
        table: String,
        run: u64,
        error: DbError,
    },

    #[error("replacing the rows of the batch's merge keys in table {table:?}: {error}")]
    MergeKey { table: String, error: DbError },

    #[error("{action} the batch transaction: {error}")]
    Transaction {
        action: &'static str,
        error: DbError,
    },
}

impl DestinationError {
    /// The database's own error, in the variants that carry one.
    pub(crate) fn db_error_mut(&mut self) -> Option<&mut DbError> {
        match self {
            DestinationError::Open { error, .. }
            | DestinationError::ReadColumns { error, .. }
            | DestinationError::CreateTable { error, .. }
            | DestinationError::AddColumn { error, .. }
            | DestinationError::PrepareUpsert { error, .. }
            | DestinationError::Upsert { error, .. }
            | DestinationError::StoreOffset { error, .. }
            | DestinationError::Delete { error, .. }
            | DestinationError::ReadOffsets { error, .. }
            | DestinationError::RunEnd { error, .. }
            | DestinationError::MergeKey { error, .. }
            | DestinationError::Transaction { error, .. } => Some(error),
            DestinationError::UnsupportedUrl { .. }
            | DestinationError::MissingDirectory { .. }
            | DestinationError::ReservedTable { .. }
            | DestinationError::PrimaryKeyNotInSchema { .. }
            | DestinationError::RowLength { .. }
            | DestinationError::ValueType { .. } => None,
        }
    }

    /// Whether writing the whole batch again may succeed: a deadlock or a serialization
    /// failure (PostgreSQL's; SQLite waits for its lock instead, see its busy timeout).
    pub fn is_transient(&self) -> bool {
        let source = match self {
            DestinationError::ReadColumns { error, .. }
            | DestinationError::CreateTable { error, .. }
            | DestinationError::AddColumn { error, .. }
            | DestinationError::PrepareUpsert { error, .. }
            | DestinationError::Upsert { error, .. }
            | DestinationError::StoreOffset { error, .. }
            | DestinationError::RunEnd { error, .. }
            | DestinationError::MergeKey { error, .. }
            | DestinationError::Transaction { error, .. } => error,
            _ => return false,
        };
        source
            .downcast_ref::<PgError>()
            .and_then(PgError::code)
            .is_some_and(|code| {
                *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE
            })
    }

    /// Whether the error is about one record (its values, or the database refusing its
    /// row), so that the batch without that record may succeed. A full disk, an I/O error,
    /// a read-only file system or a lost connection while upserting a record is nobody's
    /// record's fault: not a row error (the loader stops instead of dead-lettering).
    pub fn is_row_error(&self) -> bool {
        match self {
            DestinationError::Upsert { error, .. } => !is_resource_error(error),
            DestinationError::ValueType { .. } | DestinationError::RowLength { .. } => true,
            _ => false,
        }
    }
}

/// A batch that hits a transient error ([`DestinationError::is_transient`]) is tried this
/// many times in all.
pub const MAX_ATTEMPTS: u32 = 3;

/// The waits between two attempts at a batch: 20 ms, then 40 ms.
fn transient_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: MAX_ATTEMPTS as usize - 1,
        backoff_factor: 2.0,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(40),
        jitter: false,
        ..RetryPolicy::default()
    }
}

/// Runs `attempt` (one whole batch transaction, rolled back when it fails) until it
/// succeeds, fails with an error that is not transient, or [`MAX_ATTEMPTS`] are used up:
/// the one retry loop of every destination.
pub(crate) fn retry_transient<T>(
    mut attempt: impl FnMut() -> Result<T, DestinationError>,
) -> Result<T, DestinationError> {
    let mut waits = transient_retry().backoff().build();
    let mut tried: u32 = 1;
    loop {
        let error = match attempt() {
            Ok(done) => return Ok(done),
            Err(error) => error,
        };
        let wait = match waits.next() {
            Some(wait) if error.is_transient() => wait,
            _ => return Err(error),
        };
        // Only PostgreSQL's errors are transient: the line keeps the target it had there.
        tracing::warn!(target: "loader::destination::postgres", attempt = tried, error = %error, "batch hit a deadlock or serialization failure; retrying");
        std::thread::sleep(wait);
        tried += 1;
    }
}

/// Whether a database error is about the database's resources (disk, file system,
/// memory, connection, locks, the server going down) rather than about the values written.
fn is_resource_error(error: &DbError) -> bool {
    use rusqlite::ErrorCode;
    if error.is::<sqlite_os::Explained>() {
        return true;
    }
    if let Some(error) = error.downcast_ref::<rusqlite::Error>() {
        return matches!(
            error.sqlite_error_code(),
            Some(
                ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::ReadOnly
                    | ErrorCode::CannotOpen
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::OutOfMemory
                    | ErrorCode::DatabaseCorrupt
                    | ErrorCode::NotADatabase
            )
        );
    }
    if let Some(error) = error.downcast_ref::<pg_error::PgError>() {
        // No SQLSTATE: the client failed (I/O, closed connection). Classes: 08 connection,
        // 40 rollback (deadlock), 53 insufficient resources (disk full, out of memory), 55
        // object not in prerequisite state (lock not available), 57 operator intervention
        // (shutdown), 58 system error (I/O), XX internal error.
        return error.code().is_none_or(|code| {
            ["08", "40", "53", "55", "57", "58", "XX"]
                .iter()
                .any(|class| code.code().starts_with(class))
        });
    }
    false
}

/// Opens the destination a URL names:
/// - `sqlite://path`, `sqlite:path` (`sqlite:///abs/path` is an absolute path), or a bare
///   path ending in `.db`, `.sqlite` or `.sqlite3`: SQLite;
/// - `postgres://…` / `postgresql://…`: PostgreSQL (see [`postgres`] for the parameters,
///   e.g. `?schema=NAME`).
///
/// Errors print the URL with its password replaced by `***` ([`redact_url`]).
pub fn open(url: &str) -> Result<Box<dyn Destination>, DestinationError> {
    match parse_url(url)? {
        Target::Sqlite(path) => Ok(Box::new(SqliteDestination::open(path)?)),
        Target::Postgres(url) => Ok(Box::new(PostgresDestination::connect(url)?)),
    }
}

/// A parsed destination URL.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Sqlite(&'a str),
    Postgres(&'a str),
}

/// The URL with the password of its user info (`scheme://user:PASSWORD@host`) and the
/// value of a `password=` query parameter replaced by `***`; anything else unchanged.
pub fn redact_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let (before_query, query) = match url.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (url, None),
    };
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            out.push_str(scheme);
            out.push_str("://");
            match authority.rsplit_once('@') {
                Some((user_info, host)) => {
                    match user_info.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(user_info),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

fn parse_url(url: &str) -> Result<Target<'_>, DestinationError> {
    let unsupported = |reason: &str| DestinationError::UnsupportedUrl {
        url: redact_url(url),
        reason: reason.to_owned(),
    };
    let path = if let Some(path) = url.strip_prefix("sqlite://") {
        path
    } else if let Some(path) = url.strip_prefix("sqlite:") {
        path
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url));
    } else if [".db", ".sqlite", ".sqlite3"]
        .iter()
        .any(|ext| url.ends_with(ext))
    {
        url
    } else {
        return Err(unsupported(
            "expected sqlite://PATH, sqlite:PATH or a path ending in .db, .sqlite or .sqlite3",
        ));
    };
    if path.is_empty() {
        return Err(unsupported("the SQLite path is empty"));
    }
    Ok(Target::Sqlite(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waits PostgreSQL's hand-written loop had: 20 ms, then 40 ms, then give up.
    #[test]
    fn a_transient_error_is_retried_twice_after_20_then_40_ms() {
        let waits: Vec<Duration> = transient_retry().backoff().build().collect();
        // backon multiplies in floating point: the second wait is 39.999999 ms.
        let expected = [Duration::from_millis(20), Duration::from_millis(40)];
        assert_eq!(waits.len(), expected.len(), "{waits:?}");
        for (wait, expected) in waits.iter().zip(expected) {
            assert!(
                *wait <= expected && expected - *wait < Duration::from_micros(10),
                "{waits:?}"
            );
        }
        let mut calls = 0;
        let result: Result<(), DestinationError> = retry_transient(|| {
            calls += 1;
            Err(DestinationError::ReservedTable { table: "t".into() })
        });
        assert!(result.is_err());
        assert_eq!(calls, 1, "an error that is not transient is not retried");
    }

    #[test]
    fn urls_select_the_destination() {
        let cases = [
            ("sqlite://data/out.db", Target::Sqlite("data/out.db")),
            ("sqlite:///tmp/out.db", Target::Sqlite("/tmp/out.db")),
            ("sqlite:out.db", Target::Sqlite("out.db")),
            ("sqlite:out", Target::Sqlite("out")),
            ("out.db", Target::Sqlite("out.db")),
            ("/var/lib/x.sqlite", Target::Sqlite("/var/lib/x.sqlite")),
            ("x.sqlite3", Target::Sqlite("x.sqlite3")),
            ("postgres://u@h/db", Target::Postgres("postgres://u@h/db")),
            (
                "postgresql://u:p@h:5433/db?schema=s",
                Target::Postgres("postgresql://u:p@h:5433/db?schema=s"),
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(parse_url(url).unwrap(), expected, "{url}");
        }
    }

    #[test]
    fn bad_urls_are_rejected_with_a_reason() {
        let cases = [
            ("mysql://h/db", "expected sqlite://"),
            ("out.txt", "expected sqlite://"),
            ("sqlite://", "path is empty"),
        ];
        for (url, reason) in cases {
            let err = parse_url(url).unwrap_err().to_string();
            assert!(err.contains(reason), "{url}: {err}");
            assert!(err.contains(url), "{url}: {err}");
        }
        let err = open("mysql://u:hunter2@h/db").err().unwrap().to_string();
        assert!(err.contains("mysql://u:***@h/db"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn passwords_are_redacted() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://u:p%40ss@h/db?x=1", "postgres://u:***@h/db?x=1"),
            (
                "postgresql://h/db?user=u&password=secret&schema=s",
                "postgresql://h/db?user=u&password=***&schema=s",
            ),
            ("postgres://u:a@b@h/db", "postgres://u:***@h/db"),
            ("out.db", "out.db"),
            ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn a_postgres_connection_error_hides_the_password() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let err = open("postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("postgres://u:***@127.0.0.1:1/db"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
