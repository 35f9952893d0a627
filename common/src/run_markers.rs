//! Run boundaries on a resource topic, for `write_disposition = "replace"`.
//!
//! Each record of a `replace` resource carries its run's id in the [`RUN_HEADER`] header.
//! When every record of the run is acknowledged, the extractor writes one run-end marker to
//! every partition of the topic: a message whose [`MARKER_HEADER`] is [`RUN_END`], with the
//! run id and the topic's partition count in headers (and the same as JSON in the value,
//! for people reading the topic). A loader that has seen the marker on every partition knows
//! the run is complete, and swaps the table to hold exactly its records.

/// The header naming a control message; its value says which (`run-end`).
pub const MARKER_HEADER: &str = "pipeline.marker";
/// [`MARKER_HEADER`]'s value on a run-end marker.
pub const RUN_END: &str = "run-end";
/// The run id (decimal milliseconds since 1970 at the run's start) of a record or marker.
pub const RUN_HEADER: &str = "pipeline.run";
/// On a run-end marker: how many partitions the topic had (decimal).
pub const PARTITIONS_HEADER: &str = "pipeline.partitions";
/// On a run-end marker: the resource's write disposition.
pub const DISPOSITION_HEADER: &str = "pipeline.disposition";
/// The key of run-end markers (never a record's primary key: it starts with a NUL byte).
pub const MARKER_KEY: &[u8] = b"\0run-end";

/// A new run id: milliseconds since 1970, now.
pub fn new_run_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A run-end marker as the loader reads it from the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEndMarker {
    pub run: u64,
    pub partitions: i32,
}

impl RunEndMarker {
    /// The marker's JSON value (informational: the loader reads the headers).
    pub fn value(&self, records: u64) -> String {
        format!(
            "{{\"marker\":\"{RUN_END}\",\"run\":{},\"partitions\":{},\"records\":{records}}}",
            self.run, self.partitions
        )
    }

    /// The marker from header lookups, or why the headers do not make one.
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a [u8]>) -> Result<Self, String> {
        let number = |name: &str| -> Result<&'a str, String> {
            let value = header(name).ok_or_else(|| format!("a run-end marker without `{name}`"))?;
            std::str::from_utf8(value).map_err(|_| format!("`{name}` is not UTF-8"))
        };
        let run = number(RUN_HEADER)?;
        let run = parse_run(run.as_bytes())
            .ok_or_else(|| format!("`{RUN_HEADER}` {run:?} is not a run id"))?;
        let partitions = number(PARTITIONS_HEADER)?;
        let partitions = partitions
            .parse()
            .ok()
            .filter(|p: &i32| *p > 0)
            .ok_or_else(|| {
                format!("`{PARTITIONS_HEADER}` {partitions:?} is not a partition count")
            })?;
        Ok(RunEndMarker { run, partitions })
    }
}

/// A record's run id from its [`RUN_HEADER`] value: a whole number up to `i64::MAX` (the
/// destinations store it as a 64-bit signed integer).
pub fn parse_run(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value)
        .ok()?
        .parse()
        .ok()
        .filter(|run: &u64| i64::try_from(*run).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_through_headers() {
        let headers = [
            (RUN_HEADER, b"1764400000000".as_slice()),
            (PARTITIONS_HEADER, b"6".as_slice()),
        ];
        let lookup = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        assert_eq!(
            RunEndMarker::from_headers(lookup),
            Ok(RunEndMarker {
                run: 1_764_400_000_000,
                partitions: 6
            })
        );
        let value: serde_json::Value = serde_json::from_str(
            &RunEndMarker {
                run: 7,
                partitions: 2,
            }
            .value(10),
        )
        .unwrap();
        assert_eq!(value["run"], 7);
        assert_eq!(value["records"], 10);
    }

    #[test]
    fn bad_markers_say_what_is_wrong() {
        type Headers<'a> = &'a [(&'a str, &'a [u8])];
        let cases: [(Headers<'_>, &str); 4] = [
            (&[(PARTITIONS_HEADER, b"6")], "without `pipeline.run`"),
            (
                &[(RUN_HEADER, b"x"), (PARTITIONS_HEADER, b"6")],
                "not a run id",
            ),
            (&[(RUN_HEADER, b"1")], "without `pipeline.partitions`"),
            (
                &[(RUN_HEADER, b"1"), (PARTITIONS_HEADER, b"0")],
                "not a partition count",
            ),
        ];
        for (headers, expected) in cases {
            let lookup = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
            let err = RunEndMarker::from_headers(lookup).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        assert_eq!(parse_run(b"42"), Some(42));
        assert_eq!(parse_run(b"-1"), None);
        assert_eq!(parse_run(b"9223372036854775808"), None, "beyond i64");
    }
}
