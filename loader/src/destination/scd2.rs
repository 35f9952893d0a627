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
//! hashes of the same content say; with `row_version_column_name`, when that column is. The
//! options (`common::config::Scd2Config`) rename the validity columns, give active rows a
//! "valid to" value, and fix the time. The run's time is its id (its start, milliseconds since
//! 1970, from the extractor), not the loader's clock, so a replay rebuilds the same table.

use common::config::Scd2Config;

use super::{RunEnd, timestamp_text};

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

/// The merge statements of one run end, for a destination's quoting, null-safe equality
/// and timestamp literals.
pub(crate) struct Scd2Sql<'a> {
    /// The table of versions and the run's staging table, quoted (and qualified).
    pub(crate) target: &'a str,
    pub(crate) staging: &'a str,
    /// The table's content columns (after it got the staging table's), each with whether
    /// the staging table has it.
    pub(crate) content: Vec<(String, bool)>,
    pub(crate) options: &'a Scd2Config,
    /// `IS` (SQLite) or `IS NOT DISTINCT FROM` (PostgreSQL).
    pub(crate) same: &'static str,
    /// The run's time (`boundary_timestamp` if set), an SQL literal of the validity type.
    pub(crate) time: String,
    /// The "valid to" of an active row: `active_record_timestamp` as a literal, or a null
    /// of the validity type (`NULL`; PostgreSQL's `SELECT DISTINCT` needs
    /// `NULL::timestamptz`).
    pub(crate) active: String,
    pub(crate) quote: fn(&mut String, &str),
}

/// The run's time and the active rows' "valid to" as SQL literals: `literal` makes one of
/// timestamp text; `null` is a null of the validity type.
pub(crate) fn literals(
    end: &RunEnd,
    options: &Scd2Config,
    literal: impl Fn(&str) -> String,
    null: &str,
) -> (String, String) {
    let time = match options.boundary_timestamp {
        Some(micros) => timestamp_text(micros),
        None => run_time(end.run),
    };
    let active = options.active_record_timestamp.map_or_else(
        || null.to_owned(),
        |micros| literal(&timestamp_text(micros)),
    );
    (literal(&time), active)
}

impl Scd2Sql<'_> {
    /// Whether `column` is one of the validity columns (not content).
    pub(crate) fn is_validity(options: &Scd2Config, column: &str) -> bool {
        column.eq_ignore_ascii_case(&options.valid_from)
            || column.eq_ignore_ascii_case(&options.valid_to)
    }

    /// `<alias>."to" IS NULL`, or `= <active_record_timestamp>`.
    fn active_row(&self, sql: &mut String, alias: &str) {
        sql.push_str(alias);
        (self.quote)(sql, &self.options.valid_to);
        if self.options.active_record_timestamp.is_some() {
            sql.push_str(" = ");
            sql.push_str(&self.active);
        } else {
            sql.push_str(" IS NULL");
        }
    }

    /// `t.<c> same s.<c> AND …` (`t.<c> IS NULL` for a column the staging table lacks);
    /// with `row_version_column_name`, that column only.
    fn equal(&self, sql: &mut String) {
        let version;
        let columns: &[(String, bool)] = match &self.options.row_version {
            Some(column) => {
                let staged = self.content.iter().any(|(c, s)| c == column && *s);
                version = [(column.clone(), staged)];
                &version
            }
            None => &self.content,
        };
        if columns.is_empty() {
            sql.push_str("1 = 1");
        }
        for (i, (column, staged)) in columns.iter().enumerate() {
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

    /// `UPDATE target AS t SET "to" = time WHERE <t active>`.
    fn retire_head(&self) -> String {
        let mut sql = format!("UPDATE {} AS t SET ", self.target);
        (self.quote)(&mut sql, &self.options.valid_to);
        sql.push_str(" = ");
        sql.push_str(&self.time);
        sql.push_str(" WHERE ");
        self.active_row(&mut sql, "t.");
        sql
    }

    /// With a merge key: ` AND EXISTS (<a staged record with the row's merge key>)` (dlt's
    /// `key IN (SELECT key FROM staging)`: a null merge key matches nothing).
    fn merge_key_present(&self, sql: &mut String) {
        if self.options.merge_key.is_empty() {
            return;
        }
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM {} AS k WHERE ",
            self.staging
        ));
        for (i, column) in self.options.merge_key.iter().enumerate() {
            if i > 0 {
                sql.push_str(" AND ");
            }
            let staged = self.content.iter().any(|(c, s)| c == column && *s);
            if !staged {
                // The run's records lack the column: every one of their keys is null.
                sql.push_str("1 = 0");
                continue;
            }
            sql.push_str("k.");
            (self.quote)(sql, column);
            sql.push_str(" = t.");
            (self.quote)(sql, column);
        }
        sql.push(')');
    }

    /// Retires every active row no record of the run equals (with a merge key: of the
    /// merge key values the run has).
    pub(crate) fn retire(&self) -> String {
        let mut sql = self.retire_head();
        self.merge_key_present(&mut sql);
        sql.push_str(&format!(
            " AND NOT EXISTS (SELECT 1 FROM {} AS s WHERE ",
            self.staging
        ));
        self.equal(&mut sql);
        sql.push(')');
        sql
    }

    /// A run without records: every active row is retired; `None` with a merge key (the
    /// run has no merge key values, so it retires nothing).
    pub(crate) fn retire_all(&self) -> Option<String> {
        self.options
            .merge_key
            .is_empty()
            .then(|| self.retire_head())
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
        (self.quote)(&mut sql, &self.options.valid_from);
        sql.push_str(", ");
        (self.quote)(&mut sql, &self.options.valid_to);
        sql.push_str(") SELECT DISTINCT ");
        for column in &staged {
            sql.push_str("s.");
            (self.quote)(&mut sql, column);
            sql.push_str(", ");
        }
        sql.push_str(&self.time);
        sql.push_str(&format!(
            ", {} FROM {} AS s WHERE NOT EXISTS (SELECT 1 FROM {} AS t WHERE ",
            self.active, self.staging, self.target
        ));
        self.active_row(&mut sql, "t.");
        sql.push_str(" AND ");
        self.equal(&mut sql);
        sql.push(')');
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
        let options = Scd2Config::default();
        assert!(Scd2Sql::is_validity(&options, "_DLT_VALID_TO"));
        assert!(!Scd2Sql::is_validity(&options, "id"));
    }

    #[test]
    fn statements_compare_every_content_column() {
        let sql = Scd2Sql {
            target: "\"t\"",
            staging: "\"t__r5\"",
            content: vec![("id".into(), true), ("gone".into(), false)],
            options: &Scd2Config::default(),
            same: "IS",
            time: "'x'".into(),
            active: "NULL".into(),
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

    #[test]
    fn options_name_the_columns_the_version_and_the_active_value() {
        let options = Scd2Config {
            valid_from: "from".into(),
            valid_to: "to".into(),
            active_record_timestamp: Some(0),
            boundary_timestamp: None,
            row_version: Some("v".into()),
            merge_key: Vec::new(),
        };
        let sql = Scd2Sql {
            target: "\"t\"",
            staging: "\"s\"",
            content: vec![("id".into(), true), ("v".into(), true)],
            options: &options,
            same: "IS",
            time: "'x'".into(),
            active: "'max'".into(),
            quote,
        };
        assert_eq!(
            sql.retire(),
            "UPDATE \"t\" AS t SET \"to\" = 'x' WHERE t.\"to\" = 'max' AND NOT EXISTS \
             (SELECT 1 FROM \"s\" AS s WHERE t.\"v\" IS s.\"v\")"
        );
        assert!(
            sql.insert()
                .contains("SELECT DISTINCT s.\"id\", s.\"v\", 'x', 'max' FROM"),
            "{}",
            sql.insert()
        );
        assert_eq!(
            sql.retire_all().as_deref(),
            Some("UPDATE \"t\" AS t SET \"to\" = 'x' WHERE t.\"to\" = 'max'")
        );
        let options = Scd2Config {
            merge_key: vec!["day".into(), "gone".into()],
            ..Scd2Config::default()
        };
        let sql = Scd2Sql {
            target: "\"t\"",
            staging: "\"s\"",
            content: vec![("id".into(), true), ("day".into(), true)],
            options: &options,
            same: "IS",
            time: "'x'".into(),
            active: "NULL".into(),
            quote,
        };
        assert_eq!(
            sql.retire(),
            "UPDATE \"t\" AS t SET \"_dlt_valid_to\" = 'x' WHERE t.\"_dlt_valid_to\" IS NULL \
             AND EXISTS (SELECT 1 FROM \"s\" AS k WHERE k.\"day\" = t.\"day\" AND 1 = 0) \
             AND NOT EXISTS (SELECT 1 FROM \"s\" AS s WHERE t.\"id\" IS s.\"id\" AND \
             t.\"day\" IS s.\"day\")"
        );
        assert_eq!(
            sql.retire_all(),
            None,
            "a run without records has no merge keys"
        );
    }
}
