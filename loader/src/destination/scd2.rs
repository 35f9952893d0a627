//! dlt's `scd2` merge strategy, decided once for every destination: the SQL that merges a
//! completed run's staging table into the table of versions. Each destination reads the
//! columns, creates or widens the table, and runs these statements in the run end's
//! transaction (see `end_run` in `sqlite.rs` and `postgres/run_end.rs`).
//!
//! As dlt does per load, at the end of a run (every partition ended it):
//! - an active row (`_dlt_valid_to` null) that no record of the run equals is retired: its
//!   `_dlt_valid_to` becomes the run's time;
//! - a record of the run that no active row equals is inserted as a new active version,
//!   `_dlt_valid_from` the run's time.
//!
//! dlt compares a row hash of the record's content (`_dlt_id`); here a row equals a record
//! when every content column (every column but the two validity columns) is the same,
//! nulls equal (a column the run's records lack counts as null), which is what equal
//! hashes of the same content say. The run's time is its id (its start, milliseconds since
//! 1970, from the extractor), not the loader's clock, so a replay rebuilds the same table.

use super::timestamp_text;

/// dlt's default validity columns.
pub const VALID_FROM: &str = "_dlt_valid_from";
pub const VALID_TO: &str = "_dlt_valid_to";

/// The run's time as timestamp text (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, UTC): its id, in
/// milliseconds since 1970.
pub fn run_time(run: u64) -> String {
    let micros = i64::try_from(run)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    timestamp_text(micros)
}

/// Whether `column` is one of the validity columns (not content).
pub fn is_validity(column: &str) -> bool {
    column.eq_ignore_ascii_case(VALID_FROM) || column.eq_ignore_ascii_case(VALID_TO)
}

/// The merge statements of one run end, for a destination's quoting and null-safe
/// equality.
pub(crate) struct Scd2Sql<'a> {
    /// The table of versions and the run's staging table, quoted (and qualified).
    pub(crate) target: &'a str,
    pub(crate) staging: &'a str,
    /// The table's content columns (after it got the staging table's), each with whether
    /// the staging table has it.
    pub(crate) content: Vec<(String, bool)>,
    /// `IS` (SQLite) or `IS NOT DISTINCT FROM` (PostgreSQL).
    pub(crate) same: &'static str,
    /// The run's time as an SQL expression of the validity columns' type.
    pub(crate) time: String,
    /// A null of the validity columns' type (`NULL`; PostgreSQL's `SELECT DISTINCT` needs
    /// `NULL::timestamptz`).
    pub(crate) null: &'static str,
    pub(crate) quote: fn(&mut String, &str),
}

impl Scd2Sql<'_> {
    /// `t.<c> same s.<c> AND …` (`t.<c> IS NULL` for a column the staging table lacks).
    fn equal(&self, sql: &mut String) {
        if self.content.is_empty() {
            sql.push_str("TRUE");
        }
        for (i, (column, staged)) in self.content.iter().enumerate() {
            if i > 0 {
                sql.push_str(" AND ");
            }
            sql.push_str("t.");
            (self.quote)(sql, column);
            if *staged {
                sql.push(' ');
                sql.push_str(self.same);
                sql.push_str(" s.");
                (self.quote)(sql, column);
            } else {
                sql.push_str(" IS NULL");
            }
        }
    }

    /// Retires every active row no record of the run equals.
    pub(crate) fn retire(&self) -> String {
        let mut sql = format!("UPDATE {} AS t SET ", self.target);
        (self.quote)(&mut sql, VALID_TO);
        sql.push_str(" = ");
        sql.push_str(&self.time);
        sql.push_str(" WHERE t.");
        (self.quote)(&mut sql, VALID_TO);
        sql.push_str(&format!(
            " IS NULL AND NOT EXISTS (SELECT 1 FROM {} AS s WHERE ",
            self.staging
        ));
        self.equal(&mut sql);
        sql.push(')');
        sql
    }

    /// Inserts, as active versions, the run's records no active row equals.
    pub(crate) fn insert(&self) -> String {
        let staged: Vec<&str> = self
            .content
            .iter()
            .filter(|(_, staged)| *staged)
            .map(|(c, _)| c.as_str())
            .collect();
        let mut sql = format!("INSERT INTO {} (", self.target);
        for column in &staged {
            (self.quote)(&mut sql, column);
            sql.push_str(", ");
        }
        (self.quote)(&mut sql, VALID_FROM);
        sql.push_str(", ");
        (self.quote)(&mut sql, VALID_TO);
        sql.push_str(") SELECT DISTINCT ");
        for column in &staged {
            sql.push_str("s.");
            (self.quote)(&mut sql, column);
            sql.push_str(", ");
        }
        sql.push_str(&self.time);
        sql.push_str(&format!(
            ", {} FROM {} AS s WHERE NOT EXISTS (SELECT 1 FROM {} AS t WHERE t.",
            self.null, self.staging, self.target
        ));
        (self.quote)(&mut sql, VALID_TO);
        sql.push_str(" IS NULL AND ");
        self.equal(&mut sql);
        sql.push(')');
        sql
    }

    /// A run without records: every active row is retired.
    pub(crate) fn retire_all(target: &str, time: &str, quote: fn(&mut String, &str)) -> String {
        let mut sql = format!("UPDATE {target} SET ");
        quote(&mut sql, VALID_TO);
        sql.push_str(" = ");
        sql.push_str(time);
        sql.push_str(" WHERE ");
        quote(&mut sql, VALID_TO);
        sql.push_str(" IS NULL");
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(sql: &mut String, name: &str) {
        super::super::sql::push_quoted(sql, name);
    }

    #[test]
    fn the_run_time_is_its_id() {
        assert_eq!(run_time(1_764_400_000_123), "2025-11-29T07:06:40.123000Z");
        assert!(is_validity("_DLT_VALID_TO") && !is_validity("id"));
    }

    #[test]
    fn statements_compare_every_content_column() {
        let sql = Scd2Sql {
            target: "\"t\"",
            staging: "\"t__r5\"",
            content: vec![("id".into(), true), ("gone".into(), false)],
            same: "IS",
            time: "'x'".into(),
            null: "NULL",
            quote,
        };
        assert_eq!(
            sql.retire(),
            "UPDATE \"t\" AS t SET \"_dlt_valid_to\" = 'x' WHERE t.\"_dlt_valid_to\" IS NULL \
             AND NOT EXISTS (SELECT 1 FROM \"t__r5\" AS s WHERE t.\"id\" IS s.\"id\" AND \
             t.\"gone\" IS NULL)"
        );
        assert_eq!(
            sql.insert(),
            "INSERT INTO \"t\" (\"id\", \"_dlt_valid_from\", \"_dlt_valid_to\") SELECT DISTINCT \
             s.\"id\", 'x', NULL FROM \"t__r5\" AS s WHERE NOT EXISTS (SELECT 1 FROM \"t\" AS t \
             WHERE t.\"_dlt_valid_to\" IS NULL AND t.\"id\" IS s.\"id\" AND t.\"gone\" IS NULL)"
        );
    }
}
