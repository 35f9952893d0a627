//! Incremental cursor values (dlt's `incremental`): their order and their text in a query
//! parameter. The config checks `end_value` against `initial_value` with the same order the
//! extractor keeps its maximum with.

use serde_json::Value;

/// dlt's order of cursor values: as numbers when both are numbers, else as strings (ISO
/// timestamps in one format order correctly as strings).
pub fn cursor_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x.cmp(&y)
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x.cmp(&y)
            } else {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        }
        _ => cursor_text(a).cmp(&cursor_text(b)),
    }
}

/// A cursor value as it is sent in a query parameter.
pub fn cursor_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursor_values_order_as_numbers_or_strings() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        for (a, b, expected) in [
            (json!(9), json!(10), Less),
            (json!(9.5), json!(10), Less),
            (json!(u64::MAX), json!(1), Greater),
            (json!(-1), json!(u64::MAX), Less),
            (json!("9"), json!("10"), Greater),
            (
                json!("2024-01-02T00:00:00Z"),
                json!("2024-01-10T00:00:00Z"),
                Less,
            ),
            (json!("a"), json!("a"), Equal),
            (json!(10), json!("9"), Less),
        ] {
            assert_eq!(cursor_order(&a, &b), expected, "{a} vs {b}");
        }
    }
}
