//! Service protection limits (Web API notes: "Throttling limits"): concurrent requests and requests
//! per 300-second sliding window (on the simulated clock), answered with 429, `Retry-After` and the
//! documented codes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sim::error::ApiError;

/// Length of the request-count window in seconds.
const WINDOW_SECS: i64 = 300;

/// Limits and counters.
#[derive(Debug)]
pub(crate) struct Throttle {
    concurrency_limit: usize,
    request_limit: usize,
    in_flight: Arc<AtomicUsize>,
    window: Mutex<VecDeque<i64>>,
}

/// Decrements the in-flight gauge when the request finishes.
#[derive(Debug)]
pub(crate) struct Permit {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn throttled(code: &str, message: String, retry_after: u64) -> ApiError {
    let mut e = ApiError::new(429, code, message);
    e.retry_after = Some(retry_after);
    e
}

impl Throttle {
    /// New limits.
    pub(crate) fn new(concurrency_limit: usize, request_limit: usize) -> Self {
        Throttle {
            concurrency_limit,
            request_limit,
            in_flight: Arc::new(AtomicUsize::new(0)),
            window: Mutex::new(VecDeque::new()),
        }
    }

    /// Admits a request at simulated time `now`, or says why not. Every request counts towards the
    /// window, refused ones included (Web API notes: "Throttling guidance", "the 429s count too").
    pub(crate) fn admit(&self, now: i64) -> Result<(Permit, usize), ApiError> {
        let remaining = {
            let mut w = self.window.lock().expect("throttle lock");
            while w.front().is_some_and(|&t| t <= now - WINDOW_SECS) {
                w.pop_front();
            }
            w.push_back(now);
            if w.len() > self.request_limit {
                let oldest = *w.front().unwrap_or(&now);
                let wait = (oldest + WINDOW_SECS - now).max(1) as u64;
                return Err(throttled(
                    "0x80072322",
                    format!(
                        "Number of requests exceeded the limit of {} over time window of 300 seconds.",
                        self.request_limit
                    ),
                    wait,
                ));
            }
            self.request_limit - w.len()
        };
        let prev = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let permit = Permit {
            in_flight: self.in_flight.clone(),
        };
        if prev >= self.concurrency_limit {
            // The concurrency limit is reported immediately (Web API notes: "Throttling limits").
            return Err(throttled(
                "0x80072326",
                format!(
                    "Number of concurrent requests exceeded the limit of {}.",
                    self.concurrency_limit
                ),
                1,
            ));
        }
        Ok((permit, remaining))
    }
}
