//! dlt's incremental loading at run time: the start value goes into the request (its
//! `start_param` and the `{incremental.start_value}` placeholders, filled by
//! [`crate::placeholders`]), and each page's records are filtered to
//! `start_value <= cursor < end_value` (dlt's closed start, open end) while the largest
//! cursor value is tracked: it is the next run's start value.
//! Records equal to the start value are kept (the loader merges them again, harmlessly).

use std::cmp::Ordering;

use common::config::Incremental;
use common::cursor::cursor_order;
use serde_json::Value;

use crate::jsonpath::{Selector, SelectorError};

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("record {index} of the page has no value at cursor_path `{path}`")]
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

/// One run's incremental: the cursor's selector and the range of values kept.
#[derive(Debug, Clone)]
pub struct CursorFilter {
    path: String,
    selector: Selector,
    start: Option<Value>,
    end: Option<Value>,
}

impl CursorFilter {
    /// `key` names the config key of `cursor_path`, for the error message.
    pub fn new(inc: &Incremental, start: Option<Value>, key: &str) -> Result<Self, SelectorError> {
        Ok(Self {
            path: inc.cursor_path.clone(),
            selector: Selector::parse(key, &inc.cursor_path)?,
            start,
            end: inc.end_value.clone(),
        })
    }

    /// The records whose cursor is in range, and the largest cursor among them.
    pub fn filter(&self, records: Vec<Value>) -> Result<(Vec<Value>, Option<Value>), CursorError> {
        let mut kept = Vec::with_capacity(records.len());
        let mut max: Option<Value> = None;
        for (index, record) in records.into_iter().enumerate() {
            let value = match self.selector.find(&record) {
                None | Some(Value::Null) => {
                    return Err(CursorError::Missing {
                        index,
                        path: self.path.clone(),
                    });
                }
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
            let below = self
                .start
                .as_ref()
                .is_some_and(|s| cursor_order(value, s) == Ordering::Less);
            let above = self
                .end
                .as_ref()
                .is_some_and(|e| cursor_order(value, e) != Ordering::Less);
            if below || above {
                continue;
            }
            if max
                .as_ref()
                .is_none_or(|m| cursor_order(value, m) == Ordering::Greater)
            {
                max = Some(value.clone());
            }
            kept.push(record);
        }
        Ok((kept, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inc(end: Option<Value>) -> Incremental {
        Incremental {
            start_param: Some("since".into()),
            end_param: end.is_some().then(|| "until".into()),
            cursor_path: "meta.updated".into(),
            initial_value: Some(json!("2024-01-01T00:00:00Z")),
            end_value: end,
        }
    }

    fn rec(id: u64, updated: Value) -> Value {
        json!({"id": id, "meta": {"updated": updated}})
    }

    fn ids(records: &[Value]) -> Vec<u64> {
        records.iter().map(|r| r["id"].as_u64().unwrap()).collect()
    }

    #[test]
    fn keeps_the_range_and_finds_the_max() {
        let f = CursorFilter::new(
            &inc(Some(json!("2024-03-01T00:00:00Z"))),
            Some(json!("2024-02-01T00:00:00Z")),
            "k",
        )
        .unwrap();
        let (kept, max) = f
            .filter(vec![
                rec(1, json!("2024-01-31T23:59:59Z")),
                rec(2, json!("2024-02-01T00:00:00Z")),
                rec(3, json!("2024-02-20T00:00:00Z")),
                rec(4, json!("2024-02-10T00:00:00Z")),
                rec(5, json!("2024-03-01T00:00:00Z")),
            ])
            .unwrap();
        assert_eq!(ids(&kept), [2, 3, 4]);
        assert_eq!(max, Some(json!("2024-02-20T00:00:00Z")));
    }

    #[test]
    fn numbers_compare_as_numbers() {
        let f = CursorFilter::new(&inc(None), Some(json!(9)), "k").unwrap();
        let (kept, max) = f
            .filter(vec![
                rec(1, json!(10)),
                rec(2, json!(8)),
                rec(3, json!(9.5)),
            ])
            .unwrap();
        assert_eq!(ids(&kept), [1, 3]);
        assert_eq!(max, Some(json!(10)));
        let (kept, max) = f.filter(vec![]).unwrap();
        assert!(kept.is_empty() && max.is_none());
    }

    #[test]
    fn a_missing_or_odd_cursor_is_an_error() {
        let f = CursorFilter::new(&inc(None), None, "k").unwrap();
        let e = f
            .filter(vec![rec(1, json!(1)), json!({"id": 2})])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "record 1 of the page has no value at cursor_path `meta.updated`"
        );
        let e = f.filter(vec![rec(1, json!({"a": 1}))]).unwrap_err();
        assert!(e.to_string().contains("{\"a\":1}"), "{e}");
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
}
