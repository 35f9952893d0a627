//! When the Kafka broker cannot be reached: one line every few seconds instead of
//! librdkafka's storm, and a bounded or unbounded wait both binaries share.
//!
//! librdkafka reports a refused or failed connection twice per attempt (a `FAIL` log line
//! and an error callback, `BrokerTransportFailure`, then `AllBrokersDown`), and retries
//! every 100 ms to 10 s: hundreds of lines a minute. The client contexts of both binaries
//! forward librdkafka's log lines and errors to [`log`] and [`error`] here, which note a
//! connection failure and say so at most once per [`REPORT_EVERY`] (naming the broker
//! and what librdkafka said), and pass every other line through unchanged.
//!
//! While a [`BrokerWait`] is alive (a binary waiting for the broker at its start) it does
//! the reporting instead, saying how long it has waited and which setting bounds it.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// librdkafka settings every client of both binaries gets unless the config's `kafka`
/// table sets them.
///
/// `reconnect.backoff.ms`: librdkafka suppresses a new cluster connection for half of it
/// (at least 11 ms) after the previous one. A new client's first request goes out on its
/// bootstrap connection, which librdkafka drops once the first metadata names the broker;
/// the request is then retried only when the suppression ends. At librdkafka's 100 ms
/// default that cost every new client about 50 ms (the extractor makes three before its
/// first page, each waiting on the one before); at 20 ms it costs 11. The backoff still
/// doubles on each failed attempt up to `reconnect.backoff.max.ms` (10 s).
pub const CLIENT_DEFAULTS: [(&str, &str); 1] = [("reconnect.backoff.ms", "20")];

/// A librdkafka config of [`CLIENT_DEFAULTS`] overridden by `settings` (the config's
/// `kafka` table).
pub fn client_config(settings: &BTreeMap<String, String>) -> ClientConfig {
    client_config_with(&[], settings)
}

/// [`client_config`] with a kind of client's own `defaults` (a producer's, a consumer's)
/// between [`CLIENT_DEFAULTS`] and `settings`: the config's `kafka` table overrides both.
pub fn client_config_with(
    defaults: &[(&str, &str)],
    settings: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    for (k, v) in CLIENT_DEFAULTS.iter().chain(defaults) {
        let _ = cfg.set(*k, *v);
    }
    for (k, v) in settings {
        let _ = cfg.set(k, v);
    }
    cfg
}

/// At most one "cannot reach the broker" line per this long.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// A client context that only routes librdkafka's log lines and errors through [`log`] and
/// [`error`]: for clients that need nothing else from theirs (admin, metadata).
#[derive(Debug, Default, Clone, Copy)]
pub struct BrokerContext;

impl ClientContext for BrokerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self::error(&error, reason);
    }
}

impl ConsumerContext for BrokerContext {}

/// A librdkafka log line (`ClientContext::log`): a connection failure is noted (and
/// reported at most every [`REPORT_EVERY`]), anything else is logged as rust-rdkafka's
/// default context would, under the target `librdkafka`.
pub fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    let serious = matches!(
        level,
        RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning
    );
    // `FAIL`: a broker connection failed (refused, reset, resolve, TLS); librdkafka also
    // reports it through the error callback, with its error code.
    if serious && fac == "FAIL" {
        connection_failed(strip_thread(message));
        return;
    }
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}");
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}");
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}");
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}");
        }
    }
}

/// A librdkafka error (`ClientContext::error`): a connection failure is noted (and
/// reported at most every [`REPORT_EVERY`]); any other error is logged.
pub fn error(error: &KafkaError, reason: &str) {
    match error.rdkafka_error_code() {
        // "1/1 brokers are down": follows the failures below, and says less.
        Some(RDKafkaErrorCode::AllBrokersDown) => {}
        _ if is_connection_failure(error) => connection_failed(reason),
        // A reader with `enable.partition.eof` reached a partition's end: its poll says so
        // too, and the reader decides what that means.
        Some(RDKafkaErrorCode::PartitionEOF) => {
            tracing::debug!(target: "librdkafka", "librdkafka: {error}: {reason}");
        }
        _ => tracing::error!(target: "librdkafka", "librdkafka: {error}: {reason}"),
    }
}

/// Whether `error` says a broker connection failed or none is up (what [`error`]
/// summarises): a consumer's poll returns these too, and need not log them again.
pub fn is_connection_failure(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::AllBrokersDown
        )
    )
}

/// `[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect to ...` without
/// the thread's name.
fn strip_thread(message: &str) -> &str {
    match message.strip_prefix("[thrd:") {
        Some(rest) => rest.split_once("]: ").map_or(message, |(_, text)| text),
        None => message,
    }
}

/// librdkafka's `127.0.0.1:9092/bootstrap: Connect to ... failed: Connection refused`
/// as the broker's address and what happened, when it has that shape.
fn split_broker(reason: &str) -> (Option<&str>, &str) {
    match reason.split_once(": ") {
        Some((name, rest)) if !name.contains(' ') && name.contains('/') => {
            let address = name.rsplit_once('/').map_or(name, |(address, _)| address);
            (Some(address), without_timing(rest))
        }
        _ => (None, without_timing(reason)),
    }
}

/// `Connection refused (after 0ms in state CONNECT, 1 identical error(s) suppressed)`
/// without the parenthesis, which changes from one attempt to the next.
fn without_timing(reason: &str) -> &str {
    match reason.rsplit_once(" (after ") {
        Some((text, rest)) if rest.ends_with(')') => text,
        _ => reason,
    }
}

/// The last connection failure librdkafka reported.
#[derive(Debug, Clone)]
struct Failure {
    at: Instant,
    broker: Option<String>,
    reason: String,
}

/// What the process knows about its broker connections: shared by every client (a line per
/// client would repeat the same news), so a process-wide value.
#[derive(Debug, Default)]
struct Watch {
    /// The last failure of each broker (the bootstrap servers, and those the cluster's
    /// metadata named), oldest first.
    failures: Vec<Failure>,
    /// When a "cannot reach" line was last logged.
    reported: Option<Instant>,
    /// Waits in progress: while there is one, it reports instead of [`connection_failed`].
    waiters: usize,
}

/// Brokers whose last failure is remembered.
const BROKERS_REMEMBERED: usize = 16;

static WATCH: Mutex<Watch> = Mutex::new(Watch {
    failures: Vec::new(),
    reported: None,
    waiters: 0,
});

fn watch() -> MutexGuard<'static, Watch> {
    WATCH.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Watch {
    fn due(&self, now: Instant) -> bool {
        self.reported
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY)
    }

    /// Notes a connection failure (`text`: what librdkafka said); returns the line to log
    /// now, if one is due and no wait reports instead.
    fn failed(&mut self, now: Instant, text: &str) -> Option<String> {
        let (broker, reason) = split_broker(text);
        self.failures.retain(|f| f.broker.as_deref() != broker);
        if self.failures.len() >= BROKERS_REMEMBERED {
            let _ = self.failures.remove(0);
        }
        self.failures.push(Failure {
            at: now,
            broker: broker.map(str::to_owned),
            reason: reason.to_owned(),
        });
        if self.waiters > 0 || !self.due(now) {
            return None;
        }
        self.reported = Some(now);
        Some(match broker {
            Some(broker) => format!("cannot reach the Kafka broker at {broker}: {reason}"),
            None => format!("cannot reach the Kafka broker: {reason}"),
        })
    }

    /// What librdkafka said about the connections since `since`, if anything: the reason
    /// alone when only one of `servers` failed, else each broker with its reason.
    fn reasons_since(&self, since: Instant, servers: &str) -> Option<String> {
        let recent: Vec<&Failure> = self.failures.iter().filter(|f| f.at >= since).collect();
        match recent.as_slice() {
            [] => None,
            [only]
                if only
                    .broker
                    .as_deref()
                    .is_none_or(|b| servers.split(',').any(|s| s.trim() == b)) =>
            {
                Some(only.reason.clone())
            }
            several => Some(
                several
                    .iter()
                    .map(|f| match &f.broker {
                        Some(broker) => format!("{broker}: {}", f.reason),
                        None => f.reason.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

fn connection_failed(text: &str) {
    let line = watch().failed(Instant::now(), text);
    if let Some(line) = line {
        tracing::warn!(target: "librdkafka", "{line} (said at most every {}s while it lasts)", REPORT_EVERY.as_secs());
    }
}

/// The broker could not be reached within the wait's limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach the Kafka broker at {servers} (kafka.\"bootstrap.servers\") within {}: {reason}; \
     raise {setting} to wait longer",
    seconds(*.waited)
)]
pub struct Unreachable {
    pub servers: String,
    pub waited: Duration,
    pub reason: String,
    pub setting: &'static str,
}

/// A binary waiting for its broker: call [`BrokerWait::failed`] after each failed attempt
/// to reach it. Reports (instead of the client contexts) while it lives.
#[derive(Debug)]
pub struct BrokerWait {
    servers: String,
    limit: Option<Duration>,
    setting: &'static str,
    started: Instant,
    /// Whether it said it cannot reach the broker.
    warned: bool,
}

/// What one failed attempt leads to.
#[derive(Debug, PartialEq)]
enum Step {
    Quiet,
    Report(String),
    GiveUp(String),
}

impl BrokerWait {
    /// Waiting for `servers` (the `bootstrap.servers` value), for at most `limit` (`None`:
    /// for ever), a limit set with `setting` (named in the messages, e.g. `--broker-timeout`).
    /// Start it before the clients: their first connection failure is then reported by
    /// the wait, with its limit.
    pub fn start(servers: &str, limit: Option<Duration>, setting: &'static str) -> Self {
        watch().waiters += 1;
        Self {
            servers: servers.to_owned(),
            limit,
            setting,
            started: Instant::now(),
            warned: false,
        }
    }

    /// The broker answered: says so if the wait had said it could not reach it.
    pub fn reached(self) {
        if self.warned {
            tracing::info!(
                servers = %self.servers,
                waited_ms = self.waited().as_millis(),
                "reached the Kafka broker at {} after {}",
                self.servers,
                seconds(self.waited())
            );
        }
    }

    /// One failed attempt (`error`: what it returned). Logs a warning at most every
    /// [`REPORT_EVERY`] (the first as soon as librdkafka says why, or after
    /// [`REPORT_EVERY`]); fails once the limit has passed.
    pub fn failed(&mut self, error: &dyn Display) -> Result<(), Unreachable> {
        let now = Instant::now();
        let step = self.step(&mut watch(), now, &error.to_string());
        match step {
            Step::Quiet => Ok(()),
            Step::Report(line) => {
                self.warned = true;
                tracing::warn!(servers = %self.servers, waited_s = now.duration_since(self.started).as_secs(), "{line}");
                Ok(())
            }
            Step::GiveUp(reason) => Err(Unreachable {
                servers: self.servers.clone(),
                waited: now.duration_since(self.started),
                reason,
                setting: self.setting,
            }),
        }
    }

    fn step(&self, watch: &mut Watch, now: Instant, error: &str) -> Step {
        let waited = now.saturating_duration_since(self.started);
        let said = watch.reasons_since(self.started, &self.servers);
        let reason = said.clone().unwrap_or_else(|| error.to_owned());
        if self.limit.is_some_and(|limit| waited >= limit) {
            return Step::GiveUp(reason);
        }
        // A slow first answer is no news; librdkafka's reason, or a long wait, is.
        if (said.is_none() && waited < REPORT_EVERY) || !watch.due(now) {
            return Step::Quiet;
        }
        watch.reported = Some(now);
        let more = match self.limit {
            Some(limit) => format!(
                "retrying for up to {} more ({})",
                seconds(limit.saturating_sub(waited)),
                self.setting
            ),
            None => format!("still trying after {}", seconds(waited)),
        };
        Step::Report(format!(
            "cannot reach the Kafka broker at {} (kafka.\"bootstrap.servers\"): {reason}; {more}",
            self.servers
        ))
    }

    /// What `/health` says while waiting.
    pub fn status(&self) -> String {
        let reason = watch()
            .reasons_since(self.started, &self.servers)
            .unwrap_or_else(|| "no answer yet".to_owned());
        format!("waiting for the Kafka broker at {}: {reason}", self.servers)
    }

    /// How long the wait has lasted.
    pub fn waited(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for BrokerWait {
    fn drop(&mut self) {
        let mut watch = watch();
        watch.waiters = watch.waiters.saturating_sub(1);
    }
}

/// A duration in seconds, with tenths below ten seconds (`0.5s`, `3s`, `59s`).
fn seconds(d: Duration) -> String {
    let tenths = format!("{:.1}", d.as_secs_f64());
    match tenths.strip_suffix(".0") {
        Some(whole) => format!("{whole}s"),
        None if d >= Duration::from_secs(10) => format!("{}s", d.as_secs()),
        None => format!("{tenths}s"),
    }
}

/// `--broker-timeout`, `--lag-every`: a human duration (`30s`, `5m`), at least a
/// millisecond.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.as_millis() >= 1 => Ok(d),
        Ok(_) => Err(format!("`{text}`: the duration must be at least 1ms")),
        Err(e) => Err(format!(
            "`{text}` is not a duration like `30s` or `5m`: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_defaults_yield_to_the_config() {
        let cfg = client_config(&BTreeMap::new());
        assert_eq!(cfg.get("reconnect.backoff.ms"), Some("20"));
        let given = BTreeMap::from([
            ("reconnect.backoff.ms".to_owned(), "250".to_owned()),
            ("client.id".to_owned(), "etl".to_owned()),
        ]);
        let cfg = client_config(&given);
        assert_eq!(cfg.get("reconnect.backoff.ms"), Some("250"));
        assert_eq!(cfg.get("client.id"), Some("etl"));
        let own = [("linger.ms", "20"), ("client.id", "own")];
        let cfg = client_config_with(&own, &given);
        assert_eq!(cfg.get("reconnect.backoff.ms"), Some("250"));
        assert_eq!(cfg.get("linger.ms"), Some("20"));
        assert_eq!(cfg.get("client.id"), Some("etl"));
    }

    const REFUSED: &str = "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to \
                           ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)";

    #[test]
    fn librdkafka_reasons_name_the_broker() {
        assert_eq!(
            split_broker(strip_thread(REFUSED)),
            (
                Some("127.0.0.1:1"),
                "Connect to ipv4#127.0.0.1:1 failed: Connection refused"
            )
        );
        assert_eq!(
            split_broker(
                "kafka:9092/1: Failed to resolve 'kafka:9092': Name or service not known \
                 (after 1ms in state CONNECT, 4 identical error(s) suppressed)"
            ),
            (
                Some("kafka:9092"),
                "Failed to resolve 'kafka:9092': Name or service not known"
            )
        );
        assert_eq!(
            split_broker("1/1 brokers are down"),
            (None, "1/1 brokers are down")
        );
        assert_eq!(strip_thread("no thread"), "no thread");
    }

    #[test]
    fn connection_failures_are_reported_once_per_interval() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        let first = w.failed(t0, strip_thread(REFUSED)).unwrap();
        assert_eq!(
            first,
            "cannot reach the Kafka broker at 127.0.0.1:1: Connect to ipv4#127.0.0.1:1 failed: \
             Connection refused"
        );
        // The storm that follows stays quiet until the interval has passed.
        for ms in (50..5000).step_by(50) {
            let at = t0 + Duration::from_millis(ms);
            assert_eq!(w.failed(at, strip_thread(REFUSED)), None, "{ms} ms");
        }
        assert!(w.failed(t0 + REPORT_EVERY, strip_thread(REFUSED)).is_some());
        // A wait in progress reports instead.
        w.waiters = 1;
        assert_eq!(w.failed(t0 + REPORT_EVERY * 3, REFUSED), None);
    }

    #[test]
    fn several_brokers_are_each_named_with_their_reason() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        let _ = w.failed(
            t0,
            "127.0.0.1:2/bootstrap: Connect to ipv4#127.0.0.1:2 failed: Connection refused",
        );
        assert_eq!(
            w.reasons_since(t0, "127.0.0.1:2").as_deref(),
            Some("Connect to ipv4#127.0.0.1:2 failed: Connection refused")
        );
        // A broker the metadata named (an advertised listener) is not one the user wrote.
        assert_eq!(
            w.reasons_since(t0, "localhost:9092").as_deref(),
            Some("127.0.0.1:2: Connect to ipv4#127.0.0.1:2 failed: Connection refused")
        );
        let _ = w.failed(
            t0,
            "kafka:9092/1: Failed to resolve 'kafka:9092': Name or service not known",
        );
        let _ = w.failed(
            t0,
            "127.0.0.1:2/bootstrap: Connect to ipv4#127.0.0.1:2 failed: Connection refused",
        );
        assert_eq!(
            w.reasons_since(t0, "127.0.0.1:2").as_deref(),
            Some(
                "kafka:9092: Failed to resolve 'kafka:9092': Name or service not known; \
                 127.0.0.1:2: Connect to ipv4#127.0.0.1:2 failed: Connection refused"
            )
        );
        // Only what was said since the wait began.
        assert_eq!(
            w.reasons_since(t0 + Duration::from_millis(1), "127.0.0.1:2"),
            None
        );
    }

    #[test]
    fn a_wait_reports_with_its_limit_and_gives_up_naming_the_setting() {
        // As while a wait is alive: the contexts leave the reporting to it.
        let mut w = Watch {
            waiters: 1,
            ..Watch::default()
        };
        let wait = BrokerWait {
            servers: "127.0.0.1:1".into(),
            limit: Some(Duration::from_secs(12)),
            setting: "--broker-timeout",
            started: Instant::now(),
            warned: false,
        };
        let t0 = wait.started;
        let at = |ms| t0 + Duration::from_millis(ms);
        // A timed-out attempt without librdkafka's reason: quiet for the first interval.
        assert_eq!(wait.step(&mut w, at(500), "Timed out"), Step::Quiet);
        let _ = w.failed(at(600), strip_thread(REFUSED));
        let Step::Report(line) = wait.step(&mut w, at(1000), "Timed out") else {
            panic!("no report once librdkafka said why");
        };
        assert_eq!(
            line,
            "cannot reach the Kafka broker at 127.0.0.1:1 (kafka.\"bootstrap.servers\"): Connect to \
             ipv4#127.0.0.1:1 failed: Connection refused; retrying \
             for up to 11s more (--broker-timeout)"
        );
        assert_eq!(wait.step(&mut w, at(3000), "Timed out"), Step::Quiet);
        assert!(matches!(
            wait.step(&mut w, at(6000), "Timed out"),
            Step::Report(_)
        ));
        let Step::GiveUp(reason) = wait.step(&mut w, at(12_000), "Timed out") else {
            panic!("did not give up at the limit");
        };
        let err = Unreachable {
            servers: wait.servers.clone(),
            waited: Duration::from_secs(12),
            reason,
            setting: wait.setting,
        };
        assert_eq!(
            err.to_string(),
            "cannot reach the Kafka broker at 127.0.0.1:1 (kafka.\"bootstrap.servers\") within 12s: \
             Connect to ipv4#127.0.0.1:1 failed: Connection refused; raise --broker-timeout to wait longer"
        );
        // A wait without a limit never gives up.
        let endless = BrokerWait {
            servers: "127.0.0.1:1".into(),
            limit: None,
            setting: "--broker-timeout",
            started: t0,
            warned: false,
        };
        assert!(matches!(
            endless.step(&mut w, at(3_600_000), "Timed out"),
            Step::Report(line) if line.ends_with("still trying after 3600s")
        ));
    }

    #[test]
    fn timeouts_are_human_durations() {
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
