//! The extractor's state, kept in Kafka so that a stateless container finds it again: one
//! compacted topic per pipeline, `_<pipeline_name>_state`, keyed `<pipeline>/<resource>`, each
//! value a JSON [`ResourceState`]. The last value of a key wins.
//!
//! A run writes its resource's state when it starts (`complete: false`), again each time the
//! checkpoint moves (every page up to it acknowledged by the broker), and at the end with
//! `complete: true` and the new incremental cursor. A run that finds an unfinished state
//! resumes it: the same run id, the same incremental start value, from the checkpoint.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::broker::BrokerContext;
use common::config::Incremental;
use common::cursor::{apply_lag, cursor_order};
use common::topic::topic_name_from;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::incremental::max_cursor;
use crate::publish::client_config;

/// The state topic of a pipeline.
pub fn topic(pipeline_name: &str) -> String {
    format!("_{}_state", topic_name_from(pipeline_name))
}

/// The key of one resource's state.
pub fn key(pipeline_name: &str, resource: &str) -> String {
    format!("{pipeline_name}/{resource}")
}

/// The `transactional.id` of the producer that writes one resource's records and state:
/// the same on every run, so that a new extractor of the resource fences the old one.
pub fn transactional_id(pipeline_name: &str, resource: &str) -> String {
    format!("{pipeline_name}-extractor/{resource}")
}

/// One resource's state, as stored (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    /// The incremental start value of the run in progress, or (when `complete`) of the next
    /// run; `null` without an incremental.
    pub cursor: Option<Value>,
    /// The run's id (ms since the epoch when it started).
    pub run: u64,
    /// Where the unfinished run goes on: a paginator checkpoint; `null` means from the first
    /// page.
    pub checkpoint: Option<Value>,
    pub complete: bool,
    /// The largest cursor value among the records the unfinished run has had acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value: Option<Value>,
    /// dlt's `unique_hashes`: the de-duplication digests of the records at `cursor` that
    /// were loaded (see [`crate::incremental::dedup_digest`]); a run skips those records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique_hashes: Vec<String>,
    /// The digests of the unfinished run's acknowledged records at `last_value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_hashes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading the state topic `{topic}`: {message}")]
    Read { topic: String, message: String },
    #[error(
        "state `{key}`: the incremental's lag does not apply to the saved cursor {cursor}: {message}"
    )]
    Lag {
        key: String,
        cursor: Value,
        message: String,
    },
    #[error("state topic `{topic}`, offset {offset}: key `{key}` holds no state record: {message}")]
    Decode {
        topic: String,
        offset: i64,
        key: String,
        message: String,
    },
}

/// A consumer that reads a small topic of the extractor's own (the state topic, the schema
/// topic) once, from its start to its end, outside any consumer group's offsets.
pub(crate) fn reader_config(settings: &BTreeMap<String, String>, topic: &str) -> ClientConfig {
    let mut cfg = client_config(settings);
    let _ = cfg
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        // The end of a transactional partition is a commit marker, which is never
        // delivered: the end of partition event says that the reader got there.
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // A few small records read once at start. The end of a partition is known only
        // from a fetch that finds nothing, which the broker holds this long (librdkafka's
        // default is 500 ms): each of the two topics read costs it once. While another
        // extractor's transaction is open (waited for a few seconds at most), the reader
        // fetches this often.
        .set("fetch.wait.max.ms", "2");
    cfg
}

fn read_error(topic: &str, message: String) -> StateError {
    StateError::Read {
        topic: topic.to_owned(),
        message,
    }
}

/// Reads every key's last state from `topic` (partition 0) up to its high watermark, with
/// `consumer`, a short-lived `read_committed` reader made by [`reader_config`]: a state
/// record of a transaction that was aborted (or is still open) is never read, so a resumed
/// run starts from the checkpoint of the last committed transaction. Blocking: call it on a
/// blocking thread.
pub(crate) fn read(
    consumer: &BaseConsumer<BrokerContext>,
    topic: &str,
    timeout: Duration,
) -> Result<HashMap<String, ResourceState>, StateError> {
    let err = |message: String| read_error(topic, message);
    let deadline = Instant::now() + timeout;
    // A topic created a moment ago may not have a leader yet.
    let (low, high) = loop {
        match consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)) {
            Ok(w) => break w,
            Err(e) if Instant::now() < deadline && retriable(&e) => {
                tracing::debug!(error = %e, "state topic not ready; retrying");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(err(format!("fetching its watermarks: {e}"))),
        }
    };
    tracing::debug!(topic, low, high, "state topic watermarks");
    let mut states = HashMap::new();
    if high <= low {
        return Ok(states);
    }
    // How long an open transaction of another extractor is waited for.
    let open_deadline = Instant::now() + timeout / 3;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(|e| err(e.to_string()))?;
    consumer
        .assign(&assignment)
        .map_err(|e| err(e.to_string()))?;
    loop {
        if Instant::now() > deadline {
            return Err(err(format!(
                "not at its end (offset {high}) after {timeout:?}"
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(_)) => {
                // At the last stable offset. Past the high watermark, the read is done;
                // before it, a transaction of another extractor (another resource of
                // the pipeline) is still open: wait for it, for a while.
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|tpl| tpl.find_partition(topic, 0).map(|p| p.offset()));
                match position {
                    Some(Offset::Offset(at)) if at < high && Instant::now() < open_deadline => {
                        continue;
                    }
                    Some(Offset::Offset(at)) if at < high => {
                        tracing::warn!(
                            topic,
                            at,
                            high,
                            "the state topic holds an open transaction of another extractor; reading the state committed before it"
                        );
                    }
                    _ => {}
                }
                return Ok(states);
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        match message.payload() {
            // A tombstone forgets the key.
            None => {
                let _ = states.remove(&key);
            }
            Some(payload) => {
                let state = serde_json::from_slice(payload).map_err(|e| StateError::Decode {
                    topic: topic.to_owned(),
                    offset: message.offset(),
                    key: key.clone(),
                    message: e.to_string(),
                })?;
                let _ = states.insert(key, state);
            }
        }
        if message.offset() + 1 >= high {
            return Ok(states);
        }
    }
}

pub(crate) fn retriable(e: &KafkaError) -> bool {
    e.rdkafka_error_code().is_some_and(|code| {
        use rdkafka::types::RDKafkaErrorCode as C;
        matches!(
            code,
            C::UnknownTopicOrPartition
                | C::UnknownPartition
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::OperationTimedOut
                | C::RequestTimedOut
                | C::BrokerTransportFailure
                | C::AllBrokersDown
        )
    })
}

/// How one resource's run starts, decided from its saved state.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    pub run_id: u64,
    /// The incremental's start value: sent to the API, and the lower bound of the records
    /// kept (the saved cursor, or `initial_value`, moved back by `lag`).
    pub start_value: Option<Value>,
    /// What the state's `cursor` says while this run is unfinished, and at its end when the
    /// run does not move the cursor (an `end_value` backfill).
    pub state_cursor: Option<Value>,
    /// The de-duplication digests of the records at `state_cursor` already loaded: the
    /// state's `unique_hashes`.
    pub state_hashes: Vec<String>,
    /// The unfinished run's checkpoint when resuming.
    pub checkpoint: Option<Value>,
    /// The unfinished run's largest cursor so far when resuming.
    pub last_value: Option<Value>,
    /// The digests of the unfinished run's records at `last_value` when resuming.
    pub last_hashes: Vec<String>,
    /// Whether this continues an unfinished run.
    pub resumed: bool,
}

impl RunStart {
    /// The state `cursor` when the run completes with `last_value` the largest cursor it saw
    /// (as in dlt, never behind the saved cursor, whatever the lag), and its
    /// `unique_hashes`: the digests of the records loaded at that cursor, this run's
    /// (`last_hashes`, at `last_value`) and, when the cursor did not move, the earlier runs'.
    pub fn final_state(
        &self,
        incremental: Option<&Incremental>,
        last_value: Option<Value>,
        last_hashes: &BTreeSet<String>,
    ) -> (Option<Value>, Vec<String>) {
        match incremental {
            Some(inc) if inc.end_value.is_none() => {
                let cursor = max_cursor(self.state_cursor.clone(), last_value.clone());
                if !inc.deduplicates() {
                    return (cursor, Vec::new());
                }
                let same = |v: &Option<Value>| match (v, &cursor) {
                    (Some(v), Some(c)) => cursor_order(v, c).is_eq(),
                    _ => false,
                };
                let mut hashes = BTreeSet::new();
                if same(&self.state_cursor) {
                    hashes.extend(self.state_hashes.iter().cloned());
                }
                if same(&last_value) {
                    hashes.extend(last_hashes.iter().cloned());
                }
                (cursor, hashes.into_iter().collect())
            }
            _ => (self.state_cursor.clone(), self.state_hashes.clone()),
        }
    }
}

/// The start of a run of a resource with `incremental`, whose saved state (key `key`) is
/// `saved`: an unfinished run is resumed unless `fresh`; otherwise a new run `new_run_id`
/// starts from the saved cursor (or `initial_value`). As in dlt, an `end_value` makes the
/// run start at `initial_value` whatever the state says, and leaves the state's cursor
/// alone; otherwise a `lag` moves the start value back from the cursor (not below
/// `initial_value`), and the cursor itself stays.
pub fn plan_run(
    key: &str,
    saved: Option<&ResourceState>,
    incremental: Option<&Incremental>,
    fresh: bool,
    new_run_id: u64,
) -> Result<RunStart, StateError> {
    let saved_cursor = saved.and_then(|s| s.cursor.clone());
    let saved_hashes = saved.map(|s| s.unique_hashes.clone()).unwrap_or_default();
    // The state's cursor while the run goes: the saved one, or `initial_value` on a first
    // run; an `end_value` run keeps whatever was saved.
    let state_cursor = match incremental {
        Some(inc) if inc.end_value.is_none() => {
            saved_cursor.clone().or_else(|| inc.initial_value.clone())
        }
        _ => saved_cursor.clone(),
    };
    let state_hashes = if saved_cursor.is_some() {
        saved_hashes
    } else {
        Vec::new()
    };
    let start_value = match incremental {
        None => None,
        Some(inc) if inc.end_value.is_some() => inc.initial_value.clone(),
        Some(inc) => match (&state_cursor, inc.options.lag) {
            (Some(cursor), Some(lag)) if lag != 0.0 => Some(
                apply_lag(cursor, lag, inc.initial_value.as_ref()).map_err(|message| {
                    StateError::Lag {
                        key: key.to_owned(),
                        cursor: cursor.clone(),
                        message,
                    }
                })?,
            ),
            _ => state_cursor.clone(),
        },
    };
    Ok(match saved {
        Some(s) if !s.complete && !fresh => RunStart {
            run_id: s.run,
            start_value,
            state_cursor,
            state_hashes,
            checkpoint: s.checkpoint.clone(),
            last_value: s.last_value.clone(),
            last_hashes: s.last_hashes.clone(),
            resumed: true,
        },
        _ => RunStart {
            run_id: new_run_id,
            start_value,
            state_cursor,
            state_hashes,
            checkpoint: None,
            last_value: None,
            last_hashes: Vec::new(),
            resumed: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::config::IncrementalOptions;
    use serde_json::json;

    fn incremental(end_value: Option<Value>) -> Incremental {
        Incremental {
            start_param: Some("since".into()),
            end_param: None,
            cursor_path: "updated_at".into(),
            initial_value: Some(json!("2024-01-01")),
            end_value,
            options: IncrementalOptions::default(),
        }
    }

    fn saved(cursor: &str, complete: bool) -> ResourceState {
        ResourceState {
            cursor: Some(json!(cursor)),
            run: 7,
            checkpoint: (!complete).then(|| json!({"offset": 300})),
            complete,
            last_value: (!complete).then(|| json!("2024-03-09")),
            unique_hashes: vec!["h1".into()],
            last_hashes: if complete {
                Vec::new()
            } else {
                vec!["h9".into()]
            },
        }
    }

    #[test]
    fn names() {
        assert_eq!(topic("shop"), "_shop_state");
        assert_eq!(key("shop", "orders"), "shop/orders");
        assert_eq!(transactional_id("shop", "orders"), "shop-extractor/orders");
    }

    #[test]
    fn state_json_shape() {
        let s = saved("2024-02-01", false);
        let text = serde_json::to_value(&s).unwrap();
        assert_eq!(
            text,
            json!({"cursor": "2024-02-01", "run": 7, "checkpoint": {"offset": 300},
                   "complete": false, "last_value": "2024-03-09", "unique_hashes": ["h1"],
                   "last_hashes": ["h9"]})
        );
        let back: ResourceState = serde_json::from_value(
            json!({"cursor": null, "run": 1, "checkpoint": null, "complete": true}),
        )
        .unwrap();
        assert_eq!(back.last_value, None);
        assert!(back.unique_hashes.is_empty() && back.last_hashes.is_empty());
    }

    #[test]
    fn first_run_starts_at_the_initial_value() {
        let inc = incremental(None);
        let start = plan_run("k", None, Some(&inc), false, 100).unwrap();
        assert_eq!(start.run_id, 100);
        assert_eq!(start.start_value, Some(json!("2024-01-01")));
        assert!(!start.resumed && start.checkpoint.is_none());
        let hashes = BTreeSet::from(["h5".to_owned()]);
        assert_eq!(
            start.final_state(Some(&inc), Some(json!("2024-05-01")), &hashes),
            (Some(json!("2024-05-01")), vec!["h5".to_owned()])
        );
        // No records: the cursor stays.
        assert_eq!(
            start.final_state(Some(&inc), None, &BTreeSet::new()),
            (Some(json!("2024-01-01")), vec![])
        );
    }

    #[test]
    fn a_complete_state_gives_the_next_start() {
        let inc = incremental(None);
        let start = plan_run(
            "k",
            Some(&saved("2024-02-01", true)),
            Some(&inc),
            false,
            100,
        )
        .unwrap();
        assert_eq!(start.run_id, 100);
        assert_eq!(start.start_value, Some(json!("2024-02-01")));
        assert_eq!(start.state_hashes, ["h1"]);
        assert!(!start.resumed);
        // Records at the same cursor add their digests; a larger cursor replaces them.
        let more = BTreeSet::from(["h2".to_owned()]);
        assert_eq!(
            start.final_state(Some(&inc), Some(json!("2024-02-01")), &more),
            (
                Some(json!("2024-02-01")),
                vec!["h1".to_owned(), "h2".to_owned()]
            )
        );
        assert_eq!(
            start.final_state(Some(&inc), None, &BTreeSet::new()),
            (Some(json!("2024-02-01")), vec!["h1".to_owned()])
        );
        assert_eq!(
            start.final_state(Some(&inc), Some(json!("2024-02-02")), &more),
            (Some(json!("2024-02-02")), vec!["h2".to_owned()])
        );
    }

    #[test]
    fn lag_moves_the_start_back_and_the_cursor_only_forward() {
        let mut inc = incremental(None);
        inc.initial_value = Some(json!("2024-01-01T00:00:00Z"));
        inc.options.lag = Some(3600.0);
        let mut s = saved("2024-02-01T12:00:00Z", true);
        let start = plan_run("k", Some(&s), Some(&inc), false, 100).unwrap();
        assert_eq!(start.start_value, Some(json!("2024-02-01T11:00:00Z")));
        assert_eq!(start.state_cursor, Some(json!("2024-02-01T12:00:00Z")));
        // Only records inside the lag window: the cursor stays; no digests with a lag.
        assert_eq!(
            start.final_state(
                Some(&inc),
                Some(json!("2024-02-01T11:30:00Z")),
                &BTreeSet::new()
            ),
            (Some(json!("2024-02-01T12:00:00Z")), vec![])
        );
        // The first run starts at initial_value (lag never goes below it).
        let first = plan_run("k", None, Some(&inc), false, 100).unwrap();
        assert_eq!(first.start_value, Some(json!("2024-01-01T00:00:00Z")));
        s.cursor = Some(json!("yesterday"));
        let e = plan_run("k", Some(&s), Some(&inc), false, 100).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("state `k`: the incremental's lag"),
            "{e}"
        );
    }

    #[test]
    fn an_unfinished_run_resumes_unless_fresh() {
        let inc = incremental(None);
        let s = saved("2024-02-01", false);
        let start = plan_run("k", Some(&s), Some(&inc), false, 100).unwrap();
        assert_eq!(
            start,
            RunStart {
                run_id: 7,
                start_value: Some(json!("2024-02-01")),
                state_cursor: Some(json!("2024-02-01")),
                state_hashes: vec!["h1".into()],
                checkpoint: Some(json!({"offset": 300})),
                last_value: Some(json!("2024-03-09")),
                last_hashes: vec!["h9".into()],
                resumed: true,
            }
        );
        let fresh = plan_run("k", Some(&s), Some(&inc), true, 100).unwrap();
        assert_eq!(fresh.run_id, 100);
        assert_eq!(fresh.start_value, Some(json!("2024-02-01")));
        assert_eq!(fresh.checkpoint, None);
        assert!(!fresh.resumed);
    }

    #[test]
    fn end_value_backfills_without_moving_the_cursor() {
        let inc = incremental(Some(json!("2024-01-15")));
        let start = plan_run(
            "k",
            Some(&saved("2024-02-01", true)),
            Some(&inc),
            false,
            100,
        )
        .unwrap();
        assert_eq!(start.start_value, Some(json!("2024-01-01")));
        assert_eq!(
            start.final_state(Some(&inc), Some(json!("2024-01-14")), &BTreeSet::new()),
            (Some(json!("2024-02-01")), vec!["h1".to_owned()])
        );
    }

    #[test]
    fn without_incremental_only_the_run_is_kept() {
        let start = plan_run("k", None, None, false, 5).unwrap();
        assert_eq!(start.start_value, None);
        assert_eq!(
            start.final_state(None, None, &BTreeSet::new()),
            (None, vec![])
        );
        let resumed = plan_run("k", Some(&saved("x", false)), None, false, 5).unwrap();
        assert_eq!(resumed.run_id, 7);
        assert_eq!(resumed.start_value, None);
    }
}
