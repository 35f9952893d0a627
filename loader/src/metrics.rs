//! Everything the loader reports to Prometheus, one function per event (as vector's
//! `internal_events`): the rest of the crate calls these and never names a metric.
//! Served by `common::telemetry` when `--metrics-addr` is given.

use std::sync::{Arc, LazyLock};

use common::telemetry::{Health, register, unix_now};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

struct Metrics {
    registry: Registry,
    health: Arc<Health>,
    records: IntCounter,
    batches: IntCounter,
    batch_seconds: Histogram,
    lag: IntGaugeVec,
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
                    "Records between the destination's position and the partition's end, per assigned partition.",
                ),
                &["topic", "partition"],
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
            dead_letters,
            discarded,
            last_success,
        }
    }
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

/// The lag of one assigned partition, as last measured.
pub(crate) fn partition_lag(topic: &str, partition: i32, lag: i64) {
    METRICS
        .lag
        .with_label_values(&[topic, partition.to_string().as_str()])
        .set(lag);
}

/// Partitions were assigned (`true`) or revoked (`false`): healthy either way. Revoked
/// partitions' lag gauges are dropped.
pub(crate) fn assignment(assigned: bool, partitions: &[(String, i32)]) {
    if assigned {
        METRICS.health.ok("consuming");
    } else {
        for (topic, partition) in partitions {
            let _ = METRICS
                .lag
                .remove_label_values(&[topic, partition.to_string().as_str()]);
        }
        METRICS.health.ok("waiting for partitions");
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
        partition_lag("metrics_test", 3, 42);
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
            "# TYPE loader_records_total counter",
        ] {
            assert!(text.contains(wanted), "{wanted} not in\n{text}");
        }
        assignment(false, &[("metrics_test".into(), 3)]);
        let text = common::telemetry::render(&registry()).unwrap();
        assert!(!text.contains("topic=\"metrics_test\""), "{text}");
        assert_eq!(health().get(), (true, "waiting for partitions".into()));
    }

    #[test]
    fn docs_operations_lists_every_metric() {
        let docs = include_str!("../../docs/operations.md");
        let families = registry().gather();
        assert!(families.len() >= 5);
        for family in families {
            let name = family.name();
            assert!(
                docs.contains(&format!("| `{name}")),
                "docs/operations.md's metrics table lacks {name}"
            );
        }
    }
}
