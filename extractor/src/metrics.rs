//! Everything the extractor reports to Prometheus, one function per event (as vector's
//! `internal_events`): the rest of the crate calls these and never names a metric.
//! Served by `common::telemetry` when `--metrics-addr` is given.

use std::sync::LazyLock;

use common::telemetry::{register, unix_now};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

struct Metrics {
    registry: Registry,
    records: IntCounterVec,
    sent: IntCounterVec,
    pages: IntCounterVec,
    responses: IntCounter,
    bytes: IntCounter,
    retries: IntCounterVec,
    throttled: IntCounter,
    runs: IntCounterVec,
    last_success: IntGauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help));
        let records = counter_vec(
            "extractor_records_total",
            "Records published and acknowledged by the broker, counted when a resource's run ends.",
            &["resource"],
        );
        let sent = counter_vec(
            "extractor_records_sent_total",
            "Records handed to the producer as they are published (acknowledged or not yet).",
            &["resource"],
        );
        let pages = counter_vec(
            "extractor_pages_total",
            "Pages fetched, counted when a resource's run ends.",
            &["resource"],
        );
        let responses = counter(
            "extractor_responses_total",
            "Successful API responses read (pages, child pages, ignored answers).",
        );
        let bytes = counter(
            "extractor_response_bytes_total",
            "Response bytes read from the API.",
        );
        let retries = counter_vec(
            "extractor_retries_total",
            "Requests retried, by the HTTP status that caused it (0: transport error).",
            &["status"],
        );
        let throttled = counter(
            "extractor_throttled_total",
            "HTTP 429 Too Many Requests answers.",
        );
        let runs = counter_vec(
            "extractor_runs_total",
            "Extraction runs ended, by outcome (success, failure).",
            &["outcome"],
        );
        let last_success = register(
            &registry,
            IntGauge::new(
                "extractor_last_success_timestamp_seconds",
                "Unix time at which the last successful run ended (0: none yet).",
            ),
        );
        Self {
            registry,
            records,
            sent,
            pages,
            responses,
            bytes,
            retries,
            throttled,
            runs,
            last_success,
        }
    }
}

/// The registry `/metrics` serves.
pub fn registry() -> Registry {
    METRICS.registry.clone()
}

/// A response was read from the API.
pub(crate) fn response_read(bytes: usize) {
    METRICS.responses.inc();
    METRICS.bytes.inc_by(bytes as u64);
}

/// A request is retried after `status` (0 for a transport error).
pub(crate) fn retrying(status: u16) {
    METRICS
        .retries
        .with_label_values(&[status.to_string().as_str()])
        .inc();
}

/// The API answered 429 Too Many Requests.
pub(crate) fn throttled() {
    METRICS.throttled.inc();
}

/// `records` of a page went to the producer.
pub(crate) fn records_sent(resource: &str, records: u64) {
    METRICS.sent.with_label_values(&[resource]).inc_by(records);
}

/// One resource's run ended with these figures.
pub(crate) fn resource_done(resource: &str, pages: u64, records: u64) {
    METRICS.pages.with_label_values(&[resource]).inc_by(pages);
    METRICS
        .records
        .with_label_values(&[resource])
        .inc_by(records);
}

/// A whole run (every selected resource) ended.
pub fn run_ended(success: bool) {
    let outcome = if success { "success" } else { "failure" };
    METRICS.runs.with_label_values(&[outcome]).inc();
    if success {
        METRICS.last_success.set(unix_now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Other tests of this crate fetch too (and so count): labels of their own here, and
    // deltas for the unlabelled counters.
    #[test]
    fn events_show_up_in_the_text_format() {
        let throttled_before = METRICS.throttled.get();
        let bytes_before = METRICS.bytes.get();
        retrying(599);
        retrying(599);
        throttled();
        resource_done("metrics_test", 3, 30);
        records_sent("metrics_test", 7);
        response_read(100);
        run_ended(true);
        let text = common::telemetry::render(&registry()).unwrap();
        for wanted in [
            "extractor_retries_total{status=\"599\"} 2",
            "extractor_records_total{resource=\"metrics_test\"} 30",
            "extractor_pages_total{resource=\"metrics_test\"} 3",
            "extractor_records_sent_total{resource=\"metrics_test\"} 7",
            "extractor_runs_total{outcome=\"success\"} 1",
        ] {
            assert!(text.contains(wanted), "{wanted} not in\n{text}");
        }
        assert!(METRICS.throttled.get() > throttled_before);
        assert!(METRICS.bytes.get() >= bytes_before + 100);
        assert!(METRICS.last_success.get() > 1_700_000_000);
    }

    #[test]
    fn docs_operations_lists_every_metric() {
        // A labelled family shows only once it has a child: give each one (adding 0, so
        // that the other test's exact figures hold whichever runs first).
        METRICS.retries.with_label_values(&["0"]).inc_by(0);
        for family in [&METRICS.sent, &METRICS.pages, &METRICS.records] {
            family.with_label_values(&["docs_test"]).inc_by(0);
        }
        METRICS.runs.with_label_values(&["failure"]).inc_by(0);
        let docs = include_str!("../../docs/operations.md");
        let (families, missing) = common::telemetry::undocumented(&registry(), docs);
        assert!(families >= 5, "{families}");
        assert!(
            missing.is_empty(),
            "docs/operations.md's metrics table lacks {missing:?}"
        );
    }
}
