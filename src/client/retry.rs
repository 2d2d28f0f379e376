//! What is retried, and how long to wait (Web API notes: "Throttling guidance").
//!
//! * 429: wait `Retry-After` seconds when given (capped), else back off.
//! * 502/503/504, connection failures and bodies cut short: exponential backoff with full
//!   jitter (`delay = random(0, min(max, init * base^attempt))`, as described in
//!   <https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>).
//! * Everything else (4xx) is final: retrying a bad request only adds to the throttle count.
//!
//! The total time spent waiting is bounded; when it runs out the last error is returned with
//! the number of attempts, so a scan never silently stops early.

use std::time::Duration;

/// Retry settings with documented defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryConfig {
    /// First backoff ceiling (default 100 ms).
    pub init_backoff: Duration,
    /// Largest single backoff (default 15 s).
    pub max_backoff: Duration,
    /// Growth per attempt (default 2).
    pub base: f64,
    /// Attempts after the first (default 10).
    pub max_retries: u32,
    /// Attempts after the first for connection failures and cut bodies before the server has
    /// ever answered (default 4): a wrong URL should fail within a second or two, while a
    /// reset in the middle of a long export gets the full `max_retries`.
    pub max_transport_retries: u32,
    /// Total waiting allowed for one request, retries included (default 5 min).
    pub max_total_wait: Duration,
    /// Largest `Retry-After` honoured as given (default 60 s); longer values are capped.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
            max_retries: 10,
            max_transport_retries: 4,
            max_total_wait: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryConfig {
    /// Sets the attempts after the first (`max_retries`).
    pub fn with_max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets the attempts after the first for connection failures before the server has ever
    /// answered (`max_transport_retries`).
    pub fn with_max_transport_retries(mut self, retries: u32) -> Self {
        self.max_transport_retries = retries;
        self
    }

    /// Sets the first backoff ceiling and the largest single backoff.
    pub fn with_backoff(mut self, init: Duration, max: Duration) -> Self {
        self.init_backoff = init;
        self.max_backoff = max;
        self
    }
}

/// Why a request may be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retryable {
    /// 429 with the server's `Retry-After`, if any.
    Throttled(Option<Duration>),
    /// 502/503/504.
    Unavailable,
    /// Connection refused/reset, timeout, body cut short.
    Transport,
}

/// Classifies an HTTP status.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Option<Retryable> {
    match status {
        429 => Some(Retryable::Throttled(retry_after)),
        502..=504 => Some(Retryable::Unavailable),
        _ => None,
    }
}

/// Parses `Retry-After` as whole or fractional seconds (HTTP dates are not used by Dataverse).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: f64 = value?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// How many retries `why` gets; `reached_before` says whether the server has answered before.
pub fn retries_allowed(config: &RetryConfig, why: Retryable, reached_before: bool) -> u32 {
    match why {
        Retryable::Transport if !reached_before => {
            config.max_transport_retries.min(config.max_retries)
        }
        _ => config.max_retries,
    }
}

/// The delay before retry number `attempt` (0-based), with `unit` a uniform draw in [0, 1).
pub fn delay_for(config: &RetryConfig, why: Retryable, attempt: u32, unit: f64) -> Duration {
    if let Retryable::Throttled(Some(after)) = why {
        return after.min(config.max_retry_after);
    }
    let ceiling = config.init_backoff.as_secs_f64() * config.base.powi(attempt as i32);
    let ceiling = ceiling.min(config.max_backoff.as_secs_f64());
    Duration::from_secs_f64(ceiling * unit.clamp(0.0, 1.0))
}

/// A uniform draw in [0, 1) without a dependency: a SplitMix64 step over a per-process seed and
/// a counter. Jitter only needs to decorrelate clients, not to be unpredictable.
pub fn jitter_unit() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        ^ std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_jitter_spans_zero_to_the_ceiling() {
        let c = RetryConfig::default();
        let why = Retryable::Unavailable;
        assert_eq!(delay_for(&c, why, 0, 0.0), Duration::ZERO);
        assert_eq!(delay_for(&c, why, 0, 1.0), Duration::from_millis(100));
        assert_eq!(delay_for(&c, why, 3, 0.5), Duration::from_millis(400));
        assert_eq!(delay_for(&c, why, 30, 1.0), Duration::from_secs(15));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let c = RetryConfig::default();
        let after = parse_retry_after(Some("2"));
        assert_eq!(after, Some(Duration::from_secs(2)));
        assert_eq!(
            delay_for(&c, Retryable::Throttled(after), 5, 0.9),
            Duration::from_secs(2)
        );
        let huge = parse_retry_after(Some("3600"));
        assert_eq!(
            delay_for(&c, Retryable::Throttled(huge), 0, 0.0),
            Duration::from_secs(60)
        );
        assert_eq!(parse_retry_after(Some("soon")), None);
    }

    #[test]
    fn only_throttling_and_unavailability_are_retried() {
        assert_eq!(classify_status(400, None), None);
        assert_eq!(classify_status(401, None), None);
        assert_eq!(classify_status(503, None), Some(Retryable::Unavailable));
        assert!(matches!(
            classify_status(429, None),
            Some(Retryable::Throttled(None))
        ));
    }

    #[test]
    fn jitter_is_in_the_unit_interval() {
        for _ in 0..1000 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
