//! Everything the loader reports to Prometheus, one function per event (as vector's
//! `internal_events`): the rest of the crate calls these and never names a metric.
//! Served by `common::telemetry` when `--metrics-addr` is given.

use std::sync::{Arc, LazyLock, Mutex};

use common::telemetry::{Health, register, unix_now};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

struct Metrics {
    registry: Registry,
    health: Arc<Health>,
    records: IntCounter,
    batches: IntCounter,
    batch_seconds: Histogram,
    lag: IntGaugeVec,
    held: IntGauge,
    stalled: IntGauge,
    /// What `/health` says: consuming or waiting, and the stalled partitions.
    status: Mutex<Status>,
    dead_letters: IntCounter,
    discarded: IntCounter,
    last_success: IntGauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help));
        let records = counter(
            "loader_records_total",
            "Records written to the destination (committed with their offsets).",
        );
        let batches = counter(
            "loader_batches_total",
            "Destination transactions committed.",
        );
        let dead_letters = counter(
            "loader_dead_letters_total",
            "Records sent to a dead-letter topic by this process.",
        );
        let discarded = counter(
            "loader_discarded_total",
            "Records the schema contract discarded (discard_row).",
        );
        let batch_seconds = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "loader_batch_seconds",
                    "Time to write one batch and commit its transaction.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            ),
        );
        let lag = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "loader_consumer_lag",
                    "Records between the group's position (the destination's stored offset) and the partition's end, for every partition of the loader's topics, whoever holds it.",
                ),
                &["topic", "partition"],
            ),
        );
        let held = register(
            &registry,
            IntGauge::new(
                "loader_assigned_partitions",
                "Partitions this loader holds (assigned to it by the group).",
            ),
        );
        let stalled = register(
            &registry,
            IntGauge::new(
                "loader_stalled_partitions",
                "Partitions not held by this loader that are behind and whose stored offset has not moved for longer than the session timeout: no member of the group appears to be loading them.",
            ),
        );
        let last_success = register(
            &registry,
            IntGauge::new(
                "loader_last_success_timestamp_seconds",
                "Unix time of the last committed batch (0: none yet).",
            ),
        );
        Self {
            registry,
            health: Health::new("starting"),
            records,
            batches,
            batch_seconds,
            lag,
            held,
            stalled,
            status: Mutex::new(Status::default()),
            dead_letters,
            discarded,
            last_success,
        }
    }
}

/// What `/health` says while healthy.
#[derive(Debug, Default)]
struct Status {
    consuming: bool,
    stalled: usize,
}

impl Status {
    fn text(&self) -> String {
        let base = if self.consuming {
            "consuming"
        } else {
            "waiting for partitions"
        };
        match self.stalled {
            0 => base.to_owned(),
            n => format!(
                "{base}; {n} partition(s) stalled: behind with no member of the group loading them"
            ),
        }
    }
}

/// Updates the status and what `/health` answers (still 200: a stalled partition is the
/// group's problem, which restarting this loader would not solve).
fn set_status(change: impl FnOnce(&mut Status)) {
    let mut status = METRICS
        .status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    change(&mut status);
    METRICS.health.ok(&status.text());
}

/// The registry `/metrics` serves.
pub fn registry() -> Registry {
    METRICS.registry.clone()
}

/// What `/health` answers.
pub fn health() -> Arc<Health> {
    Arc::clone(&METRICS.health)
}

/// A batch of `records` was committed in `seconds`.
pub(crate) fn batch_written(records: u64, seconds: f64) {
    METRICS.records.inc_by(records);
    METRICS.batches.inc();
    METRICS.batch_seconds.observe(seconds);
    METRICS.last_success.set(unix_now());
}

/// A record went to the dead-letter topic.
pub(crate) fn dead_lettered() {
    METRICS.dead_letters.inc();
}

/// The schema contract discarded a record.
pub(crate) fn discarded() {
    METRICS.discarded.inc();
}

/// Every partition's lag, as last measured (set together, so a scrape sees one survey).
pub(crate) fn partition_lags(lags: &[(&str, i32, i64)]) {
    for (topic, partition, lag) in lags {
        METRICS
            .lag
            .with_label_values(&[*topic, partition.to_string().as_str()])
            .set(*lag);
    }
}

/// The number of partitions this loader holds, as last measured.
pub(crate) fn held_partitions(count: usize) {
    METRICS.held.set(count as i64);
}

/// The number of stalled partitions (see [`crate::lag`]); `/health` says so, still 200.
pub(crate) fn stalled_partitions(count: usize) {
    METRICS.stalled.set(count as i64);
    set_status(|s| s.stalled = count);
}

/// The group assigned this loader `count` partitions (0 when it revoked them): healthy
/// either way, `consuming` with some and `waiting for partitions` without.
pub(crate) fn assignment(count: usize) {
    METRICS.held.set(count as i64);
    set_status(|s| s.consuming = count > 0);
}

/// Waiting for a Kafka broker that cannot be reached (`status` says which and why; still
/// 200, as the loader keeps waiting), or (`None`) no longer.
pub(crate) fn waiting_for_broker(status: Option<&str>) {
    match status {
        Some(status) => METRICS.health.ok(status),
        None => set_status(|_| {}),
    }
}

/// A fatal error: `/health` answers 503 from now on.
pub fn failed(reason: &str) {
    METRICS.health.failed(reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry is the process's: other tests may count too, so the unlabelled
    // figures are compared as deltas and the labelled ones use labels of their own.
    #[test]
    fn events_show_up_in_the_text_format() {
        let records = METRICS.records.get();
        let batches = METRICS.batches.get();
        let observed = METRICS.batch_seconds.get_sample_count();
        let dead = METRICS.dead_letters.get();
        batch_written(10, 0.02);
        batch_written(5, 0.2);
        partition_lags(&[("metrics_test", 3, 42), ("metrics_test", 4, 0)]);
        dead_lettered();
        assert_eq!(METRICS.records.get() - records, 15);
        assert_eq!(METRICS.batches.get() - batches, 2);
        assert_eq!(METRICS.batch_seconds.get_sample_count() - observed, 2);
        assert_eq!(METRICS.dead_letters.get() - dead, 1);
        assert!(METRICS.last_success.get() > 1_700_000_000);
        let text = common::telemetry::render(&registry()).unwrap();
        for wanted in [
            "# TYPE loader_batch_seconds histogram",
            "loader_batch_seconds_bucket{le=\"0.025\"}",
            "loader_consumer_lag{partition=\"3\",topic=\"metrics_test\"} 42",
            "loader_consumer_lag{partition=\"4\",topic=\"metrics_test\"} 0",
            "# TYPE loader_records_total counter",
        ] {
            assert!(text.contains(wanted), "{wanted} not in\n{text}");
        }
        // Revoked partitions are still measured: their gauges stay.
        assignment(2);
        assert_eq!(METRICS.held.get(), 2);
        assert_eq!(health().get(), (true, "consuming".into()));
        assignment(0);
        let text = common::telemetry::render(&registry()).unwrap();
        assert!(text.contains("topic=\"metrics_test\""), "{text}");
        assert!(text.contains("loader_assigned_partitions 0"), "{text}");
        assert_eq!(health().get(), (true, "waiting for partitions".into()));
        // (In this test, not one of its own: the health is the process's.) Stalled
        // partitions show in their gauge and in /health, which stays 200.
        assignment(1);
        stalled_partitions(2);
        let text = common::telemetry::render(&registry()).unwrap();
        assert!(text.contains("loader_stalled_partitions 2"), "{text}");
        let (ok, status) = health().get();
        assert!(ok);
        assert!(
            status.starts_with("consuming; 2 partition(s) stalled"),
            "{status}"
        );
        stalled_partitions(0);
        assert_eq!(health().get(), (true, "consuming".into()));
    }

    #[test]
    fn docs_operations_lists_every_metric() {
        let docs = include_str!("../../docs/operations.md");
        let (families, missing) = common::telemetry::undocumented(&registry(), docs);
        assert!(families >= 5, "{families}");
        assert!(
            missing.is_empty(),
            "docs/operations.md's metrics table lacks {missing:?}"
        );
    }
}
