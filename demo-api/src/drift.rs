//! Schema drift, as an API shows it after a release: from a record index on (`drift_from` in
//! `POST /admin/state`), records change shape mid-stream:
//! - every third record (`i % 3 == 1`) gains a field `priority` (an integer 1..=5);
//! - `duration_seconds` becomes a float for `i % 3 == 2` (the value plus 0.5): an int field
//!   turning into a float;
//! - `customer_id` becomes a string (`"C-<n>"`) for `i % 7 == 0`: a value of an
//!   incompatible type.

use serde_json::{Value, json};

/// Record `i` after the drift (a no-op for a non-object).
pub fn apply(record: &mut Value, i: u64) {
    let Value::Object(fields) = record else {
        return;
    };
    if i % 3 == 1 {
        let _ = fields.insert("priority".to_owned(), json!(i % 5 + 1));
    }
    if i % 3 == 2
        && let Some(seconds) = fields.get("duration_seconds").and_then(Value::as_u64)
    {
        let _ = fields.insert("duration_seconds".to_owned(), json!(seconds as f64 + 0.5));
    }
    if i.is_multiple_of(7)
        && let Some(id) = fields.get("customer_id").and_then(Value::as_u64)
    {
        let _ = fields.insert("customer_id".to_owned(), json!(format!("C-{id}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record;

    #[test]
    fn drift_adds_a_field_floats_an_int_and_stringifies_another() {
        let mut r = record(1, 0, 10, 100);
        apply(&mut r, 1);
        assert_eq!(r["priority"], 2);
        let mut r = record(2, 0, 10, 100);
        let seconds = r["duration_seconds"].as_u64().unwrap();
        apply(&mut r, 2);
        assert_eq!(r["duration_seconds"], json!(seconds as f64 + 0.5));
        assert!(r.get("priority").is_none());
        let mut r = record(7, 0, 10, 100);
        let customer = r["customer_id"].as_u64().unwrap();
        apply(&mut r, 7);
        assert_eq!(r["customer_id"], json!(format!("C-{customer}")));
    }
}
