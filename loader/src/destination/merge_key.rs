//! dlt's `delete-insert` merge with a `merge_key`, decided once for every destination: which
//! destination rows a table batch's rows replace, and which of its rows are too old to write.
//! Pure; each destination reads and records each merge key's newest run in
//! `_pipeline_merge_keys` and executes the plan in its own SQL.
//!
//! dlt deletes, for each load, every destination row whose merge key (or primary key) one of
//! the load's rows has, then inserts the load's rows. Here a load is one extractor run: each
//! row carries its run id in [`LOAD_ID_COLUMN`]. Per merge key value the destination keeps
//! the rows of the newest run that had it: a row of a newer run than the recorded one
//! deletes the key's rows first; a row of an older run (a partition loaded late, a replay
//! whose partitions go at different speeds) is dropped. The result does not depend on the
//! order in which the partitions are loaded. A row whose merge key is null matches nothing
//! (as in dlt's SQL, `NULL = NULL` is not true): it is written and deletes nothing.

use std::collections::BTreeMap;

use common::schema::{Row, Scalar};

use super::{Delete, TableBatch};

/// The column holding the run a row of a merge-key table came from (dlt's load id column;
/// here the extractor's run id, milliseconds since 1970, as a bigint).
pub const LOAD_ID_COLUMN: &str = "_dlt_load_id";

/// The table recording each merge key's newest run: `(table_name, merge_key, run_id)`.
pub const MERGE_KEYS_TABLE: &str = "_pipeline_merge_keys";

/// What a merge-key table batch does before its rows are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergeKeyPlan {
    /// Every row of a merge key value that a newer run now has: delete them first.
    pub(crate) deletes: Vec<Delete>,
    /// Aligned with the batch's rows: whether to write each.
    pub(crate) keep: Vec<bool>,
    /// `(merge key as text, run)`: the newest run to record per merge key value.
    pub(crate) record: Vec<(String, i64)>,
}

impl MergeKeyPlan {
    /// The rows to write.
    pub(crate) fn kept(&self, rows: &[Row]) -> Vec<Row> {
        rows.iter()
            .zip(&self.keep)
            .filter(|(_, keep)| **keep)
            .map(|(row, _)| row.clone())
            .collect()
    }
}

/// The plan of a table batch with a merge key (`None` without one). `stored` looks up the
/// newest run recorded for a merge key (as text).
pub(crate) fn plan<E>(
    batch: &TableBatch,
    mut stored: impl FnMut(&str) -> Result<Option<i64>, E>,
) -> Result<Option<MergeKeyPlan>, E> {
    if batch.merge_key.is_empty() {
        return Ok(None);
    }
    let schema = &batch.schema;
    let key_fields: Option<Vec<usize>> = batch
        .merge_key
        .iter()
        .map(|c| schema.field_index(c))
        .collect();
    let run_field = schema.field_index(LOAD_ID_COLUMN);
    let mut keys: Vec<Option<(String, i64)>> = Vec::with_capacity(batch.rows.len());
    // merge key text → (its values as text, the newest run of the batch that has it)
    let mut newest: BTreeMap<String, (Vec<String>, i64)> = BTreeMap::new();
    let mut scratch = String::new();
    for row in &batch.rows {
        let key = match (&key_fields, run_field) {
            (Some(fields), Some(run_field)) => row_key(row, fields, run_field, &mut scratch),
            // A merge key field the writer schema lacks is null in every row.
            _ => None,
        };
        if let Some((text, values, run)) = key {
            let entry = newest.entry(text.clone()).or_insert((values, run));
            entry.1 = entry.1.max(run);
            keys.push(Some((text, run)));
        } else {
            keys.push(None);
        }
    }
    let mut deletes = Vec::new();
    let mut record = Vec::new();
    let mut winner: BTreeMap<&str, i64> = BTreeMap::new();
    for (text, (values, batch_run)) in &newest {
        let recorded = stored(text)?;
        if recorded.is_none_or(|r| r < *batch_run) {
            deletes.push(Delete {
                table: batch.table.clone(),
                key_columns: batch.merge_key.clone(),
                key: values.clone(),
            });
            record.push((text.clone(), *batch_run));
        }
        let _ = winner.insert(text, recorded.map_or(*batch_run, |r| r.max(*batch_run)));
    }
    let keep = keys
        .iter()
        .map(|key| match key {
            None => true,
            Some((text, run)) => winner.get(text.as_str()) == Some(run),
        })
        .collect();
    Ok(Some(MergeKeyPlan {
        deletes,
        keep,
        record,
    }))
}

/// A row's merge key as text (see [`crate::nested::key_text`]), its values, and its run;
/// `None` when a merge key value (or the run) is null.
fn row_key(
    row: &Row,
    key_fields: &[usize],
    run_field: usize,
    scratch: &mut String,
) -> Option<(String, Vec<String>, i64)> {
    let Some(Some(Scalar::Bigint(run))) = row.get(run_field) else {
        return None;
    };
    let mut values = Vec::with_capacity(key_fields.len());
    for &index in key_fields {
        let value = row.get(index)?.as_ref()?;
        scratch.clear();
        value.render(scratch);
        values.push(scratch.clone());
    }
    let text = crate::nested::key_text(values.iter().map(String::as_str));
    Some((text, values, *run))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use common::schema::DataType;

    use super::*;
    use crate::destination::test_support::{field, int, schema, table_batch, text};

    fn batch(rows: Vec<Row>) -> TableBatch {
        let schema = schema(
            "t",
            &["id"],
            vec![
                field("id", DataType::Bigint, false),
                field("day", DataType::Text, true),
                field(LOAD_ID_COLUMN, DataType::Bigint, false),
            ],
        );
        let mut batch = table_batch(&schema, rows);
        batch.merge_key = vec!["day".into()];
        batch
    }

    fn plan_with(batch: &TableBatch, stored: &HashMap<&str, i64>) -> MergeKeyPlan {
        plan(batch, |key| Ok::<_, Infallible>(stored.get(key).copied()))
            .unwrap()
            .expect("a merge key")
    }

    #[test]
    fn a_newer_run_deletes_the_key_and_an_older_run_is_dropped() {
        let b = batch(vec![
            vec![int(1), text("mon"), int(5)],
            vec![int(2), text("mon"), int(7)],
            vec![int(3), text("tue"), int(5)],
            vec![int(4), None, int(3)],
        ]);
        let stored = HashMap::from([("tue", 6)]);
        let p = plan_with(&b, &stored);
        assert_eq!(
            p.deletes,
            [Delete {
                table: "t".into(),
                key_columns: vec!["day".into()],
                key: vec!["mon".into()],
            }],
            "only `mon` has a run newer than the recorded one"
        );
        assert_eq!(p.record, [("mon".to_owned(), 7)]);
        assert_eq!(
            p.keep,
            [false, true, false, true],
            "mon of run 5 and tue of run 5 (< 6) are older; a null key is kept"
        );
        assert_eq!(p.kept(&b.rows).len(), 2);
    }

    #[test]
    fn the_same_run_again_deletes_nothing() {
        let b = batch(vec![vec![int(1), text("mon"), int(5)]]);
        let p = plan_with(&b, &HashMap::from([("mon", 5)]));
        assert!(p.deletes.is_empty() && p.record.is_empty());
        assert_eq!(p.keep, [true]);
    }

    #[test]
    fn without_a_merge_key_there_is_no_plan() {
        let mut b = batch(vec![vec![int(1), text("mon"), int(5)]]);
        b.merge_key.clear();
        assert_eq!(plan(&b, |_| Ok::<_, Infallible>(None)), Ok(None));
    }

    #[test]
    fn composite_keys_are_joined_as_key_text() {
        let schema = schema(
            "t",
            &[],
            vec![
                field("a", DataType::Text, true),
                field("b", DataType::Bigint, true),
                field(LOAD_ID_COLUMN, DataType::Bigint, false),
            ],
        );
        let mut b = table_batch(&schema, vec![vec![text("x|y"), int(2), int(9)]]);
        b.merge_key = vec!["a".into(), "b".into()];
        let p = plan_with(&b, &HashMap::new());
        assert_eq!(p.record, [("x\\|y|2".to_owned(), 9)]);
        assert_eq!(p.deletes[0].key, ["x|y", "2"]);
    }
}
