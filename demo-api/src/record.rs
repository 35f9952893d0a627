//! The record set: a pure function of the index and the current knobs, so a page costs only the
//! records on it and tests can recompute the truth.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z, the `created_at` of record 0.
const EPOCH_SECONDS: i64 = 1_767_225_600;
/// First `external_ref`: 2^53 + 1, the smallest integer an `f64` cannot hold.
const EXTERNAL_REF_BASE: u64 = 9_007_199_254_740_993;

const CHANNELS: [&str; 5] = ["sms", "email", "voice", "chat", "whatsapp"];
const STATUSES: [&str; 5] = ["queued", "sent", "delivered", "failed", "read"];
const COUNTRIES: [&str; 5] = ["DE", "FR", "JP", "BR", "US"];
const CITIES: [&str; 5] = ["Zürich", "São Paulo", "東京", "Paris", "New York"];

/// Whether record `i` differs from revision 0 at `revision`.
pub fn is_changed(i: u64, revision: u64, changed_percent: u64) -> bool {
    // (i * 37) % 100 without overflow: only i % 100 matters.
    revision > 0 && (i % 100) * 37 % 100 < changed_percent
}

/// Record `i` (0-based) of a set of `total` records at `revision`.
///
/// Arithmetic is reduced modulo first or saturates, so any `i` gives a value; timestamps past
/// chrono's range saturate at its maximum (unreachable for any practical record count).
pub fn record(i: u64, revision: u64, changed_percent: u64, total: u64) -> Value {
    let changed = is_changed(i, revision, changed_percent);
    let rev = if changed { revision } else { 0 };
    let slot = usize::try_from(i % 5).unwrap_or_default();

    let created = minutes_after_epoch(i);
    let updated = hours_after(created, rev);

    let mut body = format!("Nachricht {i}: héllo wörld — 你好, ¿qué tal? 🚀 Zürich");
    if changed {
        body.push_str(&format!(" (rev {revision})"));
    }

    let external_ref = if total.checked_sub(1) == Some(i) {
        i64::MAX
    } else {
        i64::try_from(EXTERNAL_REF_BASE.saturating_add(i)).unwrap_or(i64::MAX)
    };

    json!({
        "id": i.saturating_add(1),
        "customer_id": 1_000_000 + (i % 5000) * 7919 % 5000,
        "channel": CHANNELS[slot],
        "direction": if i.is_multiple_of(2) { "inbound" } else { "outbound" },
        "status": STATUSES[usize::try_from((i % 5 + rev % 5) % 5).unwrap_or_default()],
        "body": body,
        "created_at": rfc3339(created),
        "updated_at": rfc3339(updated),
        "sender": {
            "name": format!("Customer {}", i % 5000),
            "address": { "country": COUNTRIES[slot], "city": CITIES[slot] },
        },
        // A changed record has `rev` more tags, modulo 4 (so some lists grow, some shrink).
        "tags": (0..(i % 4 + rev % 4) % 4).map(|t| format!("tag{t}")).collect::<Vec<_>>(),
        // k / 10000 is correctly rounded, so the shortest round-trip form has ≤ 4 decimals.
        "cost": (i % 1700) as f64 / 10_000.0,
        "duration_seconds": if i.is_multiple_of(3) { Value::Null } else { json!((i % 600) * 13 % 600) },
        "sentiment": ((i % 201) as f64 - 100.0) / 100.0,
        "is_read": i % 2 == 1,
        "external_ref": external_ref,
        "campaign_id": if i.is_multiple_of(4) { json!(format!("cmp-{}", i / 4)) } else { Value::Null },
    })
}

fn minutes_after_epoch(i: u64) -> DateTime<Utc> {
    i64::try_from(i)
        .ok()
        .and_then(|m| m.checked_mul(60))
        .and_then(|s| s.checked_add(EPOCH_SECONDS))
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn hours_after(t: DateTime<Utc>, hours: u64) -> DateTime<Utc> {
    i64::try_from(hours)
        .ok()
        .and_then(TimeDelta::try_hours)
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_zero_has_every_field() {
        let r = record(0, 0, 10, 10);
        assert_eq!(
            r,
            json!({
                "id": 1,
                "customer_id": 1_000_000,
                "channel": "sms",
                "direction": "inbound",
                "status": "queued",
                "body": "Nachricht 0: héllo wörld — 你好, ¿qué tal? 🚀 Zürich",
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
                "sender": {"name": "Customer 0", "address": {"country": "DE", "city": "Zürich"}},
                "tags": [],
                "cost": 0.0,
                "duration_seconds": null,
                "sentiment": -1.0,
                "is_read": false,
                "external_ref": 9_007_199_254_740_993_u64,
                "campaign_id": "cmp-0",
            })
        );
    }

    #[test]
    fn fields_vary_with_index() {
        let r = record(7, 0, 10, 100);
        assert_eq!(r["id"], 8);
        assert_eq!(r["customer_id"], 1_000_000 + 7 * 7919 % 5000);
        assert_eq!(r["channel"], "voice");
        assert_eq!(r["direction"], "outbound");
        assert_eq!(r["created_at"], "2026-01-01T00:07:00Z");
        assert_eq!(r["tags"], json!(["tag0", "tag1", "tag2"]));
        assert_eq!(r["duration_seconds"], 91);
        assert_eq!(r["is_read"], true);
        assert_eq!(r["campaign_id"], Value::Null);
        assert_eq!(r["sender"]["address"]["city"], "東京");
        assert_eq!(record(3, 0, 10, 100)["duration_seconds"], Value::Null);
        assert_eq!(
            record(1500, 0, 10, 2000)["created_at"],
            "2026-01-02T01:00:00Z"
        );
    }

    #[test]
    fn decimals_print_with_at_most_four_places() {
        let text = |i| serde_json::to_string(&record(i, 0, 0, 10_000)["cost"]).unwrap_or_default();
        assert_eq!(text(125), "0.0125");
        assert_eq!(text(1699), "0.1699");
        assert_eq!(text(3), "0.0003");
        for i in 0..1700 {
            let s = text(i);
            let decimals = s.split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 4, "cost of {i} printed as {s}");
        }
        assert_eq!(record(149, 0, 0, 1000)["sentiment"], json!(0.49));
    }

    #[test]
    fn last_record_has_i64_max_external_ref() {
        let text = serde_json::to_string(&record(99, 0, 0, 100)).unwrap_or_default();
        assert!(
            text.contains("\"external_ref\":9223372036854775807"),
            "{text}"
        );
        assert_eq!(
            record(98, 0, 0, 100)["external_ref"],
            9_007_199_254_741_091_u64
        );
    }

    #[test]
    fn changed_records_move_status_body_updated_at_and_tags() {
        // 0 * 37 % 100 = 0 < 10: record 0 changes; 1 * 37 = 37: record 1 does not.
        assert!(is_changed(0, 2, 10));
        assert!(!is_changed(1, 2, 10));
        assert!(!is_changed(0, 0, 100));
        let r = record(0, 2, 10, 100);
        assert_eq!(r["status"], "delivered");
        assert_eq!(
            r["body"],
            "Nachricht 0: héllo wörld — 你好, ¿qué tal? 🚀 Zürich (rev 2)"
        );
        assert_eq!(r["created_at"], "2026-01-01T00:00:00Z");
        assert_eq!(r["updated_at"], "2026-01-01T02:00:00Z");
        assert_eq!(r["tags"], json!(["tag0", "tag1"]));
        // Record 3 has three tags; at revision 1 it has none.
        assert_eq!(
            record(3, 0, 100, 100)["tags"],
            json!(["tag0", "tag1", "tag2"])
        );
        assert_eq!(record(3, 1, 100, 100)["tags"], json!([]));
        assert_eq!(record(1, 2, 10, 100), record(1, 0, 10, 100));
    }

    #[test]
    fn huge_indices_do_not_overflow() {
        let r = record(u64::MAX, u64::MAX, 100, u64::MAX);
        assert_eq!(r["id"], u64::MAX);
        assert_eq!(r["external_ref"], i64::MAX);
        assert!(r["created_at"].is_string());
    }
}
