//! The retry policy for API calls (config `client.retry`). The retry loop itself lives in the
//! extractor and runs on [`backon`] with [`RetryPolicy::backoff`].

use std::time::{Duration, SystemTime};

use backon::ExponentialBuilder;

/// When and how long to wait before calling the API again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; `0` never retries.
    pub max_retries: usize,
    /// Each delay is the previous one times this.
    pub backoff_factor: f32,
    /// The first delay.
    pub initial_delay: Duration,
    /// No delay is longer than this.
    pub max_delay: Duration,
    /// A server's `Retry-After` is obeyed up to this long.
    pub retry_after_max: Duration,
    /// HTTP statuses worth retrying (connection errors and timeouts always are).
    pub statuses: Vec<u16>,
    /// Adds a random part (up to the delay itself) to each delay.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            backoff_factor: 2.0,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(60),
            statuses: vec![429, 500, 502, 503, 504],
            jitter: true,
        }
    }
}

impl RetryPolicy {
    pub fn is_retryable_status(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }

    /// The backoff schedule: `initial_delay`, then times `backoff_factor` up to `max_delay`,
    /// at most `max_retries` delays.
    pub fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_factor(self.backoff_factor)
            .with_min_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries);
        if self.jitter {
            builder.with_jitter()
        } else {
            builder
        }
    }

    /// How long a `Retry-After` header asks to wait: delay-seconds or an HTTP date (a date in
    /// the past means now), capped at `retry_after_max`. `None` for a value that is neither.
    pub fn retry_after(&self, header_value: &str, now: SystemTime) -> Option<Duration> {
        let value = header_value.trim();
        let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            // All digits: too many of them to fit is still "a very long time".
            Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
        } else {
            let date = httpdate::parse_http_date(value).ok()?;
            date.duration_since(now).unwrap_or(Duration::ZERO)
        };
        Some(wait.min(self.retry_after_max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    fn no_jitter() -> RetryPolicy {
        RetryPolicy {
            jitter: false,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn default_schedule_is_1_2_4_then_stops() {
        let delays: Vec<Duration> = no_jitter().backoff().build().collect();
        assert_eq!(
            delays,
            [1, 2, 4].map(Duration::from_secs).to_vec(),
            "exactly max_retries delays"
        );
    }

    #[test]
    fn schedule_is_capped_by_max_delay() {
        let policy = RetryPolicy {
            max_retries: 5,
            backoff_factor: 3.0,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            ..no_jitter()
        };
        let delays: Vec<Duration> = policy.backoff().build().collect();
        assert_eq!(
            delays,
            [500, 1500, 4500, 5000, 5000]
                .map(Duration::from_millis)
                .to_vec()
        );
        let none = RetryPolicy {
            max_retries: 0,
            ..no_jitter()
        };
        assert_eq!(none.backoff().build().count(), 0);
    }

    #[test]
    fn jitter_stays_within_twice_the_delay() {
        let delays: Vec<Duration> = RetryPolicy::default().backoff().build().collect();
        assert_eq!(delays.len(), 3);
        for (delay, base) in delays.iter().zip([1, 2, 4]) {
            let base = Duration::from_secs(base);
            assert!(
                *delay >= base && *delay <= base * 2,
                "{delay:?} vs {base:?}"
            );
        }
    }

    #[test]
    fn retryable_statuses() {
        let policy = RetryPolicy::default();
        for s in [429, 500, 502, 503, 504] {
            assert!(policy.is_retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 501] {
            assert!(!policy.is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn retry_after_values() {
        let policy = RetryPolicy::default();
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let cases: [(&str, Option<u64>); 10] = [
            ("0", Some(0)),
            ("5", Some(5)),
            (" 12 ", Some(12)),
            ("3600", Some(60)),
            ("99999999999999999999999", Some(60)),
            ("Wed, 21 Oct 2015 07:28:30 GMT", Some(30)),
            ("Wed, 21 Oct 2015 09:28:00 GMT", Some(60)),
            ("Wed, 21 Oct 2015 07:00:00 GMT", Some(0)),
            ("soon", None),
            ("-1", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                policy.retry_after(value, now),
                expected.map(Duration::from_secs),
                "{value:?}"
            );
        }
        assert_eq!(policy.retry_after("", now), None);
        assert_eq!(policy.retry_after("1.5", now), None);
    }
}
