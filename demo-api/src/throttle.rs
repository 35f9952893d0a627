//! A stand-in for an API's rate limiting, to test how clients take it.
//!
//! - Concurrency limit: with `max_in_flight` set (`POST /admin/throttle`), a data request that
//!   arrives while more than that many are in flight (itself included) is answered
//!   `429 Too Many Requests` with `Retry-After: <retry_after>` at once, without the configured
//!   latency, and counted in `throttled`. Queued faults (`/admin/faults`) come first.
//! - Arrival times: every data request's arrival is timed, so `GET /admin/throttle` can tell
//!   the span from the first to the last arrival and the most arrivals within any one second,
//!   which is what a requests-per-second limit on the client bounds.
//!
//! `POST /admin/throttle` sets both knobs and starts the counters and arrival times afresh;
//! `POST /admin/reset-stats` starts them afresh too.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{ApiError, AppState, REQUEST_LOG_CAPACITY, lock};

#[derive(Debug)]
pub(crate) struct Throttle {
    state: Mutex<ThrottleState>,
}

#[derive(Debug)]
struct ThrottleState {
    max_in_flight: Option<u64>,
    retry_after: HeaderValue,
    throttled: u64,
    /// Arrival times, oldest first; at most `REQUEST_LOG_CAPACITY`.
    arrivals: Vec<Instant>,
}

/// The body of `POST /admin/throttle`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleSpec {
    /// `null` or absent: no concurrency limit.
    #[serde(default)]
    max_in_flight: Option<u64>,
    /// The `Retry-After` value of the 429 answers; default `0`.
    #[serde(default)]
    retry_after: Option<String>,
}

/// What `GET /admin/throttle` reports.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct ThrottleStats {
    max_in_flight: Option<u64>,
    retry_after: String,
    /// Requests answered 429 by the concurrency limit.
    throttled: u64,
    /// Data requests timed since the last reset.
    arrivals: u64,
    /// From the first to the last arrival, in milliseconds.
    arrival_span_ms: f64,
    /// The most arrivals within any one-second window.
    max_arrivals_per_second: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            state: Mutex::new(ThrottleState {
                max_in_flight: None,
                retry_after: HeaderValue::from_static("0"),
                throttled: 0,
                arrivals: Vec::new(),
            }),
        }
    }
}

impl Throttle {
    /// Times a data request that has `in_flight` requests in flight (itself included) and
    /// says whether it is refused: `Some(429 answer)` when that is over `max_in_flight`.
    /// `None` for `in_flight`: timed only (a queued fault answers it).
    pub(crate) fn arrive(&self, in_flight: Option<u64>) -> Option<Response> {
        let mut s = lock(&self.state);
        if s.arrivals.len() >= REQUEST_LOG_CAPACITY {
            let _ = s.arrivals.remove(0);
        }
        s.arrivals.push(Instant::now());
        let max = s.max_in_flight?;
        if in_flight? <= max {
            return None;
        }
        s.throttled += 1;
        let retry_after = s.retry_after.clone();
        drop(s);
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "error": format!("more than {max} requests in flight") })),
        )
            .into_response();
        let _ = response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after);
        Some(response)
    }

    pub(crate) fn reset(&self) {
        let mut s = lock(&self.state);
        s.throttled = 0;
        s.arrivals.clear();
    }

    fn stats(&self) -> ThrottleStats {
        let s = lock(&self.state);
        let span = match (s.arrivals.first(), s.arrivals.last()) {
            (Some(first), Some(last)) => last.duration_since(*first),
            _ => Duration::ZERO,
        };
        ThrottleStats {
            max_in_flight: s.max_in_flight,
            retry_after: s.retry_after.to_str().unwrap_or_default().to_owned(),
            throttled: s.throttled,
            arrivals: s.arrivals.len() as u64,
            arrival_span_ms: span.as_secs_f64() * 1000.0,
            max_arrivals_per_second: max_within(&s.arrivals, Duration::from_secs(1)),
        }
    }
}

/// The most of `times` (in order) that fall within any window of length `window`.
fn max_within(times: &[Instant], window: Duration) -> u64 {
    let mut best = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while t.duration_since(times[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best as u64
}

pub(crate) async fn get_throttle(State(state): State<AppState>) -> Json<ThrottleStats> {
    Json(state.inner.throttle.stats())
}

pub(crate) async fn post_throttle(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<ThrottleStats>, ApiError> {
    let spec: ThrottleSpec =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(e.to_string()))?;
    if spec.max_in_flight == Some(0) {
        return Err(ApiError::BadBody(
            "max_in_flight must be at least 1 (null for no limit)".into(),
        ));
    }
    let retry_after = match spec.retry_after {
        None => HeaderValue::from_static("0"),
        Some(v) => HeaderValue::from_str(&v)
            .map_err(|_| ApiError::BadBody(format!("invalid retry_after {v:?}")))?,
    };
    let throttle = &state.inner.throttle;
    {
        let mut s = lock(&throttle.state);
        s.max_in_flight = spec.max_in_flight;
        s.retry_after = retry_after;
    }
    throttle.reset();
    let stats = throttle.stats();
    tracing::info!(max_in_flight = ?stats.max_in_flight, retry_after = %stats.retry_after, "throttle set");
    Ok(Json(stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_is_429_with_retry_after() {
        let t = Throttle::default();
        assert!(t.arrive(Some(50)).is_none(), "no limit by default");
        lock(&t.state).max_in_flight = Some(3);
        for n in 1..=3 {
            assert!(t.arrive(Some(n)).is_none(), "{n} in flight");
        }
        assert!(t.arrive(None).is_none(), "a fault answers it");
        let r = t.arrive(Some(4)).unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "0");
        let stats = t.stats();
        assert_eq!(stats.throttled, 1);
        assert_eq!(stats.arrivals, 6);
        t.reset();
        assert_eq!(t.stats().arrivals, 0);
        assert_eq!(t.stats().throttled, 0);
        assert_eq!(t.stats().max_in_flight, Some(3), "reset keeps the settings");
    }

    #[test]
    fn max_within_a_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let second = Duration::from_secs(1);
        assert_eq!(max_within(&[], second), 0);
        assert_eq!(max_within(&[at(0)], second), 1);
        // 0, 20, ..., 1180: 50 fit in any second (the 51st is exactly one second later).
        let even: Vec<Instant> = (0..60).map(|i| at(i * 20)).collect();
        assert_eq!(max_within(&even, second), 50);
        let burst = [at(0), at(1), at(2), at(1500), at(1600)];
        assert_eq!(max_within(&burst, second), 3);
        assert_eq!(max_within(&burst, Duration::from_millis(200)), 3);
        assert_eq!(max_within(&burst[3..], Duration::from_millis(100)), 1);
    }
}
