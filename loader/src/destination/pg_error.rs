//! PostgreSQL's own words for a failure, on one line.
//!
//! `postgres::Error` displays as `db error` and keeps the server's report in its source;
//! every [`DestinationError`](super::DestinationError) prints its database error with
//! `{}` alone, so the report must be in the text: the server's message, then in
//! parentheses its SQLSTATE, `detail`, `hint`, the table, column and constraint it names,
//! and its context (`where`). A client-side failure (I/O, a closed connection) is its
//! message followed by its causes.

use std::fmt;

use postgres::error::SqlState;

/// The context line PostgreSQL gives a failed `COPY` into the loader's staging table:
/// `COPY _pipeline_stage, line 3, column c1`. The column is the field's position.
const STAGING_COPY_CONTEXT: &str = "COPY _pipeline_stage";

/// A PostgreSQL failure with everything the server said.
#[derive(Debug)]
pub struct PgError {
    text: String,
    code: Option<SqlState>,
}

impl PgError {
    /// Renders `error` (see the module docs). `field_name` turns the staging table's
    /// column `cN` of a failed `COPY` into the field it holds.
    pub fn new(error: &postgres::Error, field_name: &dyn Fn(usize) -> Option<String>) -> Self {
        let Some(db) = error.as_db_error() else {
            return Self {
                text: chain(error),
                code: error.code().cloned(),
            };
        };
        let mut parts = vec![format!("SQLSTATE {}", db.code().code())];
        if let Some(detail) = db.detail() {
            parts.push(format!("detail: {}", one_line(detail)));
        }
        if let Some(hint) = db.hint() {
            parts.push(format!("hint: {}", one_line(hint)));
        }
        if let Some(table) = db.table() {
            parts.push(format!("table {table:?}"));
        }
        let mut column = db.column().map(str::to_owned);
        let mut context = Vec::new();
        for line in db.where_().unwrap_or_default().lines() {
            match line.strip_prefix(STAGING_COPY_CONTEXT) {
                Some(rest) if column.is_none() => {
                    column = staging_column(rest).and_then(field_name);
                }
                Some(_) => {}
                None if !line.trim().is_empty() => context.push(line.trim().to_owned()),
                None => {}
            }
        }
        if let Some(column) = column {
            parts.push(format!("column {column:?}"));
        }
        if let Some(constraint) = db.constraint() {
            parts.push(format!("constraint {constraint:?}"));
        }
        if !context.is_empty() {
            parts.push(format!("where: {}", context.join("; ")));
        }
        Self {
            text: format!("{} ({})", one_line(db.message()), parts.join("; ")),
            code: Some(db.code().clone()),
        }
    }

    /// The SQLSTATE, when the server (or the client library) gave one.
    pub fn code(&self) -> Option<&SqlState> {
        self.code.as_ref()
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// No source: the text already holds every cause.
impl std::error::Error for PgError {}

/// The field position in `, line 3, column c1[: …]`.
fn staging_column(rest: &str) -> Option<usize> {
    let after = &rest[rest.find(", column c")? + ", column c".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A client-side error and its causes, `: `-separated, each said once.
fn chain(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_staging_column_is_read_from_the_copy_context() {
        assert_eq!(staging_column(", line 3, column c12: \"x\""), Some(12));
        assert_eq!(staging_column(", line 1, column c0"), Some(0));
        assert_eq!(staging_column(", line 1"), None);
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
