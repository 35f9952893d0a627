//! dlt's incremental loading at run time: the start value goes into the request (its
//! `start_param` and the `{incremental.start_value}` placeholders, filled by
//! [`crate::placeholders`]), and each page's records are filtered to the range
//! `start_value ..= end_value` (by default dlt's closed start and open end; `range_start`
//! and `range_end` choose) while the largest cursor value is tracked: it is the next run's
//! start value. As in dlt (`transform.py`, `JsonIncremental`), records equal to the start
//! value that an earlier run loaded are skipped: the state keeps a digest of each record at
//! the cursor (its primary key's values, or the whole record without a key), dlt's
//! `unique_hashes`. A record without a cursor value is an error, kept or dropped
//! (`on_cursor_value_missing`); with `row_order`, a page with a record beyond the range
//! ends the paging.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use common::config::{Incremental, OnCursorValueMissing, RangeBound, RowOrder};
use common::cursor::cursor_order;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::jsonpath::{Selector, SelectorError};

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error(
        "record {index} of the page has no value at cursor_path `{path}` (set \
         `on_cursor_value_missing = \"include\"` or `\"exclude\"` to keep or drop such records)"
    )]
    Missing { index: usize, path: String },
    #[error(
        "record {index} of the page has {found} at cursor_path `{path}`, not a string or a number"
    )]
    NotScalar {
        index: usize,
        path: String,
        found: String,
    },
}

/// The larger of two cursor values.
pub fn max_cursor(a: Option<Value>, b: Option<Value>) -> Option<Value> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if cursor_order(&b, &a) == Ordering::Greater {
            b
        } else {
            a
        }),
        (a, b) => a.or(b),
    }
}

/// Folds a page's largest cursor value and the digests of its records at that value into
/// a running maximum and its digests: a larger value replaces them, an equal one adds its
/// digests. True when that changed anything.
pub fn fold_max(
    last: &mut Option<Value>,
    hashes: &mut BTreeSet<String>,
    max: Option<Value>,
    max_hashes: Vec<String>,
) -> bool {
    let Some(max) = max else {
        return false;
    };
    match last.as_ref().map(|l| cursor_order(&max, l)) {
        None | Some(Ordering::Greater) => {
            *last = Some(max);
            *hashes = max_hashes.into_iter().collect();
            true
        }
        Some(Ordering::Equal) => {
            let before = hashes.len();
            hashes.extend(max_hashes);
            hashes.len() != before
        }
        Some(Ordering::Less) => false,
    }
}

/// dlt's de-duplication digest of a record (`digest_dedup_value`, in our own format: only
/// this project reads it back): of its primary key's values when it has a key (and the
/// record has them), else of the whole record; the JSON with its keys sorted, SHA-256, the
/// first 16 bytes in hex.
pub fn dedup_digest(record: &Value, primary_key: &[String]) -> String {
    let keys: Option<Vec<&Value>> = if primary_key.is_empty() {
        None
    } else {
        primary_key.iter().map(|k| record.get(k)).collect()
    };
    let mut text = String::new();
    match keys {
        Some(keys) if keys.len() == 1 => canonical_json(keys[0], &mut text),
        Some(keys) => canonical_json(
            &Value::Array(keys.into_iter().cloned().collect()),
            &mut text,
        ),
        None => canonical_json(record, &mut text),
    }
    let digest = Sha256::digest(text.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// `v` as JSON with every object's keys sorted.
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// What [`CursorFilter::filter`] kept of a page.
#[derive(Debug, Default)]
pub struct Kept {
    pub records: Vec<Value>,
    /// The largest cursor value among `records`.
    pub max: Option<Value>,
    /// The de-duplication digests of the records at `max` (none when the incremental does
    /// not de-duplicate).
    pub max_hashes: Vec<String>,
    /// With `row_order`: a record left the range on the side the order goes to, so no
    /// later page holds records in range (dlt's `can_close`).
    pub stop: bool,
}

/// One run's incremental: the cursor's selector and the range of values kept.
#[derive(Debug, Clone)]
pub struct CursorFilter {
    path: String,
    selector: Selector,
    start: Option<Value>,
    end: Option<Value>,
    range_start: RangeBound,
    range_end: RangeBound,
    row_order: Option<RowOrder>,
    on_missing: OnCursorValueMissing,
    /// The primary key the digests are of, when the incremental de-duplicates.
    dedup_key: Option<Vec<String>>,
    /// The digests of the records at the start value that an earlier run loaded.
    seen: BTreeSet<String>,
}

impl CursorFilter {
    /// `key` names the config key of `cursor_path`, for the error message; `primary_key` is
    /// the resource's and `seen` the digests of the records at `start` already loaded.
    pub fn new(
        inc: &Incremental,
        start: Option<Value>,
        primary_key: &[String],
        seen: &[String],
        key: &str,
    ) -> Result<Self, SelectorError> {
        let dedup = inc.deduplicates();
        Ok(Self {
            path: inc.cursor_path.clone(),
            selector: Selector::parse(key, &inc.cursor_path)?,
            start,
            end: inc.end_value.clone(),
            range_start: inc.options.range_start,
            range_end: inc.options.range_end,
            row_order: inc.options.row_order,
            on_missing: inc.options.on_cursor_value_missing,
            dedup_key: dedup.then(|| primary_key.to_vec()),
            seen: if dedup {
                seen.iter().cloned().collect()
            } else {
                BTreeSet::new()
            },
        })
    }

    /// Without `row_order`: a dependent resource's pages come per parent record, and dlt
    /// does not close a child's paging either.
    pub fn without_row_order(mut self) -> Self {
        self.row_order = None;
        self
    }

    /// The records whose cursor is in range (less those at the start value already
    /// loaded), their largest cursor and its digests, and whether the paging may stop.
    pub fn filter(&self, records: Vec<Value>) -> Result<Kept, CursorError> {
        let mut kept = Kept {
            records: Vec::with_capacity(records.len()),
            ..Kept::default()
        };
        let (mut below, mut above) = (false, false);
        for (index, record) in records.into_iter().enumerate() {
            let value = match self.selector.find(&record) {
                None | Some(Value::Null) => match self.on_missing {
                    OnCursorValueMissing::Raise => {
                        return Err(CursorError::Missing {
                            index,
                            path: self.path.clone(),
                        });
                    }
                    OnCursorValueMissing::Include => {
                        kept.records.push(record);
                        continue;
                    }
                    OnCursorValueMissing::Exclude => continue,
                },
                Some(v @ (Value::String(_) | Value::Number(_))) => v,
                Some(other) => {
                    let mut found = other.to_string();
                    found.truncate(80);
                    return Err(CursorError::NotScalar {
                        index,
                        path: self.path.clone(),
                        found,
                    });
                }
            };
            if let Some(e) = &self.end {
                let order = cursor_order(value, e);
                if order.is_gt() || (order.is_eq() && self.range_end == RangeBound::Open) {
                    above = true;
                    continue;
                }
            }
            // A record's digest is only needed at the start value or at the largest value.
            let digest = || {
                self.dedup_key
                    .as_ref()
                    .map(|key| dedup_digest(&record, key))
            };
            if let Some(s) = &self.start {
                match cursor_order(value, s) {
                    Ordering::Less => {
                        below = true;
                        continue;
                    }
                    Ordering::Equal if self.range_start == RangeBound::Open => {
                        below = true;
                        continue;
                    }
                    Ordering::Equal if digest().is_some_and(|d| self.seen.contains(&d)) => {
                        below = true;
                        continue;
                    }
                    _ => {}
                }
            }
            match kept.max.as_ref().map(|m| cursor_order(value, m)) {
                None | Some(Ordering::Greater) => {
                    kept.max_hashes = digest().into_iter().collect();
                    kept.max = Some(value.clone());
                }
                Some(Ordering::Equal) => kept.max_hashes.extend(digest()),
                Some(Ordering::Less) => {}
            }
            kept.records.push(record);
        }
        kept.stop = match self.row_order {
            Some(RowOrder::Asc) => above,
            Some(RowOrder::Desc) => below,
            None => false,
        };
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::IncrementalOptions;
    use serde_json::json;

    fn inc(end: Option<Value>) -> Incremental {
        Incremental {
            start_param: Some("since".into()),
            end_param: end.is_some().then(|| "until".into()),
            cursor_path: "meta.updated".into(),
            initial_value: Some(json!("2024-01-01T00:00:00Z")),
            end_value: end,
            options: IncrementalOptions::default(),
        }
    }

    fn rec(id: u64, updated: Value) -> Value {
        json!({"id": id, "meta": {"updated": updated}})
    }

    fn ids(records: &[Value]) -> Vec<u64> {
        records.iter().map(|r| r["id"].as_u64().unwrap()).collect()
    }

    fn filter(inc: &Incremental, start: Option<Value>, seen: &[String]) -> CursorFilter {
        CursorFilter::new(inc, start, &["id".to_owned()], seen, "k").unwrap()
    }

    #[test]
    fn keeps_the_range_and_finds_the_max() {
        let f = filter(
            &inc(Some(json!("2024-03-01T00:00:00Z"))),
            Some(json!("2024-02-01T00:00:00Z")),
            &[],
        );
        let kept = f
            .filter(vec![
                rec(1, json!("2024-01-31T23:59:59Z")),
                rec(2, json!("2024-02-01T00:00:00Z")),
                rec(3, json!("2024-02-20T00:00:00Z")),
                rec(4, json!("2024-02-10T00:00:00Z")),
                rec(5, json!("2024-03-01T00:00:00Z")),
            ])
            .unwrap();
        assert_eq!(ids(&kept.records), [2, 3, 4]);
        assert_eq!(kept.max, Some(json!("2024-02-20T00:00:00Z")));
        // An end_value turns the de-duplication off, as in dlt.
        assert!(kept.max_hashes.is_empty());
        assert!(!kept.stop);
    }

    #[test]
    fn numbers_compare_as_numbers() {
        let f = filter(&inc(None), Some(json!(9)), &[]);
        let kept = f
            .filter(vec![
                rec(1, json!(10)),
                rec(2, json!(8)),
                rec(3, json!(9.5)),
            ])
            .unwrap();
        assert_eq!(ids(&kept.records), [1, 3]);
        assert_eq!(kept.max, Some(json!(10)));
        let kept = f.filter(vec![]).unwrap();
        assert!(kept.records.is_empty() && kept.max.is_none());
    }

    #[test]
    fn records_at_the_start_value_already_loaded_are_skipped() {
        let key = ["id".to_owned()];
        let seen = [dedup_digest(&rec(2, json!(5)), &key)];
        let f = filter(&inc(None), Some(json!(5)), &seen);
        let kept = f
            .filter(vec![
                rec(2, json!(5)),
                rec(3, json!(5)),
                rec(4, json!(7)),
                rec(5, json!(7)),
            ])
            .unwrap();
        assert_eq!(ids(&kept.records), [3, 4, 5]);
        assert_eq!(kept.max, Some(json!(7)));
        let mut hashes = kept.max_hashes.clone();
        hashes.sort();
        let mut expected = vec![
            dedup_digest(&rec(4, json!(7)), &key),
            dedup_digest(&rec(5, json!(7)), &key),
        ];
        expected.sort();
        assert_eq!(hashes, expected);
        // The key decides, not the rest of the record; without a key the whole record does.
        assert_eq!(
            dedup_digest(&json!({"id": 2, "b": 1}), &key),
            dedup_digest(&json!({"b": 2, "id": 2}), &key)
        );
        assert_eq!(
            dedup_digest(&json!({"id": 2, "b": 1}), &[]),
            dedup_digest(&json!({"b": 1, "id": 2}), &[])
        );
        assert_ne!(
            dedup_digest(&json!({"id": 2, "b": 1}), &[]),
            dedup_digest(&json!({"id": 2, "b": 2}), &[])
        );
    }

    #[test]
    fn range_bounds_open_and_closed() {
        let mut i = inc(Some(json!(8)));
        i.options.range_start = RangeBound::Open;
        i.options.range_end = RangeBound::Closed;
        let f = filter(&i, Some(json!(5)), &[]);
        let kept = f
            .filter((4..=9).map(|n| rec(n, json!(n))).collect())
            .unwrap();
        assert_eq!(ids(&kept.records), [6, 7, 8]);
    }

    #[test]
    fn row_order_tells_when_the_range_is_left() {
        let mut i = inc(Some(json!(8)));
        i.options.row_order = Some(RowOrder::Asc);
        let f = filter(&i, Some(json!(5)), &[]);
        assert!(
            !f.filter(vec![rec(1, json!(6)), rec(2, json!(7))])
                .unwrap()
                .stop
        );
        assert!(
            f.filter(vec![rec(1, json!(7)), rec(2, json!(8))])
                .unwrap()
                .stop
        );
        // A child's pages never stop the paging.
        let child = f.clone().without_row_order();
        assert!(!child.filter(vec![rec(2, json!(8))]).unwrap().stop);
        i.options.row_order = Some(RowOrder::Desc);
        let f = filter(&i, Some(json!(5)), &[]);
        assert!(
            !f.filter(vec![rec(1, json!(7)), rec(2, json!(6))])
                .unwrap()
                .stop
        );
        assert!(
            f.filter(vec![rec(1, json!(6)), rec(2, json!(4))])
                .unwrap()
                .stop
        );
    }

    #[test]
    fn a_missing_cursor_is_an_error_unless_included_or_excluded() {
        let f = filter(&inc(None), None, &[]);
        let e = f
            .filter(vec![rec(1, json!(1)), json!({"id": 2})])
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("record 1 of the page has no value at cursor_path `meta.updated`"),
            "{e}"
        );
        let e = f.filter(vec![rec(1, json!({"a": 1}))]).unwrap_err();
        assert!(e.to_string().contains("{\"a\":1}"), "{e}");
        let page = || vec![rec(1, json!(1)), json!({"id": 2}), rec(3, Value::Null)];
        let mut i = inc(None);
        i.options.on_cursor_value_missing = OnCursorValueMissing::Include;
        let kept = filter(&i, None, &[]).filter(page()).unwrap();
        assert_eq!(ids(&kept.records), [1, 2, 3]);
        assert_eq!(kept.max, Some(json!(1)));
        i.options.on_cursor_value_missing = OnCursorValueMissing::Exclude;
        let kept = filter(&i, None, &[]).filter(page()).unwrap();
        assert_eq!(ids(&kept.records), [1]);
    }

    #[test]
    fn max_of_cursors() {
        assert_eq!(
            max_cursor(Some(json!("b")), Some(json!("a"))),
            Some(json!("b"))
        );
        assert_eq!(max_cursor(None, Some(json!(2))), Some(json!(2)));
        assert_eq!(max_cursor(Some(json!(10)), Some(json!(9))), Some(json!(10)));
        assert_eq!(max_cursor(None, None), None);
    }

    #[test]
    fn folding_maxima_keeps_the_digests_at_the_largest() {
        let (mut last, mut hashes) = (None, BTreeSet::new());
        assert!(fold_max(
            &mut last,
            &mut hashes,
            Some(json!(5)),
            vec!["a".into()]
        ));
        assert!(fold_max(
            &mut last,
            &mut hashes,
            Some(json!(5)),
            vec!["b".into()]
        ));
        assert!(!fold_max(
            &mut last,
            &mut hashes,
            Some(json!(4)),
            vec!["c".into()]
        ));
        assert!(!fold_max(&mut last, &mut hashes, None, vec![]));
        assert_eq!(hashes, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert!(fold_max(
            &mut last,
            &mut hashes,
            Some(json!(6)),
            vec!["d".into()]
        ));
        assert_eq!(
            (last, hashes),
            (Some(json!(6)), BTreeSet::from(["d".to_owned()]))
        );
    }
}
