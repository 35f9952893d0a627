//! What the operating system says when SQLite only says `disk I/O error`.
//!
//! SQLite reports a failed write as `SQLITE_IOERR_*` (`disk I/O error`), `SQLITE_READONLY`,
//! `SQLITE_CANTOPEN` or `SQLITE_FULL`; the `errno` behind it (`sqlite3_system_errno`) is
//! not exposed by rusqlite without `unsafe`, and `std::io::Error::last_os_error` is long
//! overwritten by then. So on such an error the loader asks the file system itself: it
//! opens the database file and its WAL for writing, then creates, writes, syncs and
//! removes a small file next to them, and reports the first failure (`Read-only file
//! system (os error 30)`, `No space left on device (os error 28)`, …). When every probe
//! succeeds (e.g. SQLite's own `max_page_count` was reached) nothing is added.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use super::DestinationError;

/// Bytes the probe file writes: one page, so a full disk refuses it.
const PROBE_BYTES: usize = 4096;

/// `error` with what the operating system says about writing the database at `path`
/// added to SQLite's message, when SQLite's error is one the file system may be behind.
pub fn explain(path: &str, mut error: DestinationError) -> DestinationError {
    let Some(db) = error.db_error_mut() else {
        return error;
    };
    let code = db
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code);
    if !matches!(
        code,
        Some(
            ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::DiskFull
        )
    ) {
        return error;
    }
    if let Some(reason) = os_reason(Path::new(path)) {
        let sqlite = db.to_string();
        *db = Box::new(Explained { sqlite, reason });
    }
    error
}

/// SQLite's message and what the operating system said (always a resource problem, never
/// one record's fault: see [`super::DestinationError::is_row_error`]).
#[derive(Debug)]
pub struct Explained {
    sqlite: String,
    reason: String,
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (the operating system says: {})",
            self.sqlite, self.reason
        )
    }
}

/// No source: the text holds both.
impl std::error::Error for Explained {}

/// The first write the file system refuses: `<path>: <error>`, or `None`.
fn os_reason(path: &Path) -> Option<String> {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    for file in [path.to_path_buf(), with_suffix("-wal")] {
        if file.exists()
            && let Err(e) = OpenOptions::new().write(true).open(&file)
        {
            return Some(format!("opening {} for writing: {e}", file.display()));
        }
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let probe = dir.join(format!(
        ".{}.write-probe-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut file| {
            file.write_all(&[0; PROBE_BYTES])?;
            file.sync_all()
        });
    let _ = std::fs::remove_file(&probe);
    result
        .err()
        .map(|e| format!("writing a file in {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(code: i32, message: &str) -> DestinationError {
        DestinationError::Transaction {
            action: "committing",
            error: Box::new(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                Some(message.to_owned()),
            )),
        }
    }

    #[test]
    fn a_missing_directory_is_what_the_system_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone").join("x.db");
        let text = explain(
            &path.display().to_string(),
            sqlite_error(rusqlite::ffi::SQLITE_IOERR_WRITE, "disk I/O error"),
        )
        .to_string();
        assert!(
            text.starts_with("committing the batch transaction: disk I/O error (the operating system says: writing a file in "),
            "{text}"
        );
        assert!(text.contains("No such file or directory"), "{text}");
    }

    #[test]
    fn nothing_is_added_when_the_file_system_takes_writes_or_the_error_is_not_io() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db").display().to_string();
        let full = explain(
            &path,
            sqlite_error(rusqlite::ffi::SQLITE_FULL, "database or disk is full"),
        );
        assert_eq!(
            full.to_string(),
            "committing the batch transaction: database or disk is full"
        );
        let constraint = explain(
            "/nonexistent/x.db",
            sqlite_error(rusqlite::ffi::SQLITE_CONSTRAINT, "UNIQUE constraint failed"),
        );
        assert_eq!(
            constraint.to_string(),
            "committing the batch transaction: UNIQUE constraint failed"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "probe removed"
        );
    }
}
