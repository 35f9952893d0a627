//! The `/metrics` (Prometheus text format) and `/health` endpoints both binaries serve
//! with `--metrics-addr HOST:PORT`. Each binary keeps its metrics in one `metrics.rs`
//! (one function per event, as vector's `internal_events`); this module only serves them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

/// What `/health` answers: 200 with the status text while healthy, 503 with the reason
/// once something fatal happened.
#[derive(Debug)]
pub struct Health {
    state: Mutex<(bool, String)>,
}

impl Health {
    pub fn new(status: &str) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new((true, status.to_owned())),
        })
    }

    /// Healthy, doing `status` (e.g. "consuming", "waiting for partitions").
    pub fn ok(&self, status: &str) {
        let mut state = self.lock();
        // A failure is final: the process is about to end.
        if state.0 {
            *state = (true, status.to_owned());
        }
    }

    /// Unhealthy from now on.
    pub fn failed(&self, reason: &str) {
        *self.lock() = (false, reason.to_owned());
    }

    pub fn get(&self) -> (bool, String) {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, String)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The cause is part of the message, not a `source()`: printed once either way.
    #[error("--metrics-addr / METRICS_ADDR: cannot listen on `{addr}`: {error}")]
    Bind { addr: String, error: std::io::Error },
}

#[derive(Clone)]
struct Served {
    registry: Registry,
    health: Arc<Health>,
}

/// Listens on `addr` and serves `/metrics` from `registry` and `/health` from `health`
/// until the process ends. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: &str,
    registry: Registry,
    health: Arc<Health>,
) -> Result<SocketAddr, TelemetryError> {
    let bind = |error| TelemetryError::Bind {
        addr: addr.to_owned(),
        error,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health_check))
        .with_state(Served { registry, health });
    let _server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics and /health");
    Ok(bound)
}

async fn metrics(State(served): State<Served>) -> impl IntoResponse {
    match render(&served.registry) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e,
        ),
    }
}

async fn health_check(State(served): State<Served>) -> impl IntoResponse {
    match served.health.get() {
        (true, status) => (StatusCode::OK, status),
        (false, reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// Registers a metric defined in code (`metric` is its constructor's result): a bad name or
/// a second registration is a programming error caught by each binary's metrics test, not
/// something input can cause.
pub fn register<M>(registry: &Registry, metric: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric.expect("a metric defined in code has a valid name and help");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once, when its binary's metrics are first used");
    metric
}

/// Seconds since 1970, for the `*_last_success_timestamp_seconds` gauges (0 if the clock
/// is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The registry in Prometheus' text exposition format.
pub fn render(registry: &Registry) -> Result<String, String> {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// The metric families of `registry` that `docs` (docs/operations.md) has no table row
/// for (a line starting `| \`name`), with how many families there are: each binary's
/// tests keep its metrics documented with it.
pub fn undocumented(registry: &Registry, docs: &str) -> (usize, Vec<String>) {
    let families = registry.gather();
    let missing = families
        .iter()
        .map(|family| family.name())
        .filter(|name| !docs.contains(&format!("| `{name}")))
        .map(str::to_owned)
        .collect();
    (families.len(), missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_final() {
        let health = Health::new("starting");
        health.ok("consuming");
        assert_eq!(health.get(), (true, "consuming".to_owned()));
        health.failed("destination gone");
        health.ok("consuming");
        assert_eq!(health.get(), (false, "destination gone".to_owned()));
    }

    #[test]
    fn renders_the_text_format() {
        let registry = Registry::new();
        let counter = prometheus::IntCounter::new("x_total", "help text").unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        counter.inc_by(3);
        let text = render(&registry).unwrap();
        assert!(text.contains("# HELP x_total help text"), "{text}");
        assert!(text.contains("x_total 3"), "{text}");
    }
}
