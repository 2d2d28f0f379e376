//! Service protection limits (Web API notes: "Throttling limits"): requests at once, requests per
//! sliding window and, with a server model, combined server time per sliding window, each answered
//! with 429, its documented code and message, and `Retry-After`.
//!
//! Times are the simulated clock's ([`crate::sim::clock::Clock::elapsed`], so tests can jump
//! past a window) as the simulator plays them: with a sped-up model the window and the server
//! times are already divided by the speedup, and `Retry-After` is rounded up to whole seconds of
//! the model, then divided too. Messages quote the model's (real) figures.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::sim::error::ApiError;
use crate::sim::options::{ServerModel, SimulatorOptions};

/// The limits one simulator enforces, in the model's (real) units.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Length of the sliding window.
    pub(crate) window: Duration,
    /// Requests per window.
    pub(crate) requests: usize,
    /// Combined server time per window (none without a server model).
    pub(crate) execution: Option<Duration>,
    /// Requests at once.
    pub(crate) concurrency: usize,
    /// How much faster than real the simulator plays the model.
    pub(crate) speedup: f64,
}

impl Limits {
    /// The server model's budget, or without one the options' two limits over 300 s.
    pub(crate) fn of(options: &SimulatorOptions) -> Self {
        match &options.server_model {
            Some(model) => Self::of_model(model),
            None => Limits {
                window: Duration::from_secs(300),
                requests: options.request_limit,
                execution: None,
                concurrency: options.concurrency_limit,
                speedup: 1.0,
            },
        }
    }

    fn of_model(model: &ServerModel) -> Self {
        Limits {
            window: model.window,
            requests: model.request_limit,
            execution: Some(model.execution_limit),
            concurrency: model.concurrency_limit,
            speedup: model.speedup,
        }
    }

    /// A model duration as played.
    fn played(&self, real: Duration) -> Duration {
        real.div_f64(self.speedup)
    }

    /// A played wait as `Retry-After`: rounded up to whole seconds of the model (at least one,
    /// as the service sends them), then played.
    fn retry_after(&self, played: Duration) -> Duration {
        // A microsecond of slack keeps float noise from adding a whole second.
        let model_secs = (played.as_secs_f64() * self.speedup - 1e-6).ceil().max(1.0);
        Duration::from_nanos((model_secs * 1e9 / self.speedup).round() as u64)
    }
}

/// What the throttle has seen (the service reports none of it; tests and benchmarks read it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetSnapshot {
    /// Requests admitted so far, over all windows.
    pub admitted: u64,
    /// 429s for the number of requests (`0x80072322`).
    pub refused_requests: u64,
    /// 429s for the combined server time (`0x80072321`).
    pub refused_execution: u64,
    /// 429s for requests at once (`0x80072326`).
    pub refused_concurrency: u64,
    /// The most requests admitted at once.
    pub peak_concurrency: usize,
    /// Server time charged so far, over all windows, in the model's (real) time.
    pub executed: Duration,
    /// Requests (refused ones included) in the current window.
    pub window_requests: usize,
    /// Combined server time in the current window, in the model's (real) time.
    pub window_execution: Duration,
}

impl BudgetSnapshot {
    /// Every 429 of the three kinds.
    pub fn refused(&self) -> u64 {
        self.refused_requests + self.refused_execution + self.refused_concurrency
    }

    /// What happened between `earlier` and `self`: counters are differences, the peak and
    /// the window are `self`'s.
    pub fn since(&self, earlier: &BudgetSnapshot) -> BudgetSnapshot {
        BudgetSnapshot {
            admitted: self.admitted - earlier.admitted,
            refused_requests: self.refused_requests - earlier.refused_requests,
            refused_execution: self.refused_execution - earlier.refused_execution,
            refused_concurrency: self.refused_concurrency - earlier.refused_concurrency,
            executed: self.executed.saturating_sub(earlier.executed),
            ..*self
        }
    }
}

/// Limits and counters.
#[derive(Debug)]
pub(crate) struct Throttle {
    limits: Limits,
    in_flight: Arc<AtomicUsize>,
    window: Mutex<Window>,
}

/// The sliding windows and the counters behind [`BudgetSnapshot`].
#[derive(Debug, Default)]
struct Window {
    /// When each request of the window arrived (played time).
    requests: VecDeque<Duration>,
    /// When each request of the window finished, and its played server time.
    executions: VecDeque<(Duration, Duration)>,
    /// The sum of `executions`' server times.
    execution_sum: Duration,
    counts: BudgetSnapshot,
}

impl Window {
    /// Forgets what left the window of length `window` by `now`.
    fn slide(&mut self, now: Duration, window: Duration) {
        while self.requests.front().is_some_and(|&t| t + window <= now) {
            self.requests.pop_front();
        }
        while let Some(&(t, took)) = self.executions.front() {
            if t + window > now {
                break;
            }
            self.executions.pop_front();
            self.execution_sum -= took;
        }
    }

    /// How long until the combined server time is back within `limit`: the time at which
    /// enough of the oldest executions have left the window.
    fn execution_wait(&self, now: Duration, window: Duration, limit: Duration) -> Duration {
        let mut left = self.execution_sum;
        for &(t, took) in &self.executions {
            left -= took;
            if left <= limit {
                return (t + window).saturating_sub(now);
            }
        }
        Duration::ZERO
    }
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

fn throttled(code: &str, message: String, retry_after: Duration) -> ApiError {
    let mut e = ApiError::new(429, code, message);
    e.retry_after = Some(retry_after);
    e
}

/// `1200000` as the service writes it in messages: `1,200,000`.
fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Throttle {
    /// New limits.
    pub(crate) fn new(limits: Limits) -> Self {
        Throttle {
            limits,
            in_flight: Arc::new(AtomicUsize::new(0)),
            window: Mutex::new(Window::default()),
        }
    }

    /// Admits a request at played time `now`, or says why not, with the requests left in the
    /// window. Every request counts towards the window, refused ones included (Web API notes:
    /// "Throttling guidance", "the 429s count too"). The request and time budgets refuse only
    /// once they are exceeded; requests at once are refused immediately (Web API notes:
    /// "Throttling limits").
    pub(crate) fn admit(&self, now: Duration) -> Result<(Permit, usize), ApiError> {
        let window = self.limits.played(self.limits.window);
        let mut w = self.window.lock().expect("throttle lock");
        w.slide(now, window);
        w.requests.push_back(now);
        if w.requests.len() > self.limits.requests {
            w.counts.refused_requests += 1;
            // Refused requests count too, so one more fits only once all but `limit - 1` of
            // the window's requests have left it: waiting just for the oldest would send a
            // client that retries as told into another refusal, for ever.
            let must_leave = w.requests.len() - self.limits.requests;
            let last_to_leave = w.requests[must_leave];
            return Err(self.too_many_requests((last_to_leave + window).saturating_sub(now)));
        }
        if let Some(limit) = self.limits.execution.map(|l| self.limits.played(l))
            && w.execution_sum > limit
        {
            w.counts.refused_execution += 1;
            return Err(self.too_much_time(w.execution_wait(now, window, limit)));
        }
        let remaining = self.limits.requests - w.requests.len();
        let prev = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let permit = Permit {
            in_flight: self.in_flight.clone(),
        };
        if prev >= self.limits.concurrency {
            w.counts.refused_concurrency += 1;
            return Err(self.too_many_at_once());
        }
        w.counts.admitted += 1;
        w.counts.peak_concurrency = w.counts.peak_concurrency.max(prev + 1);
        Ok((permit, remaining))
    }

    /// Charges a finished request's played server time to the window, at played time `now`.
    pub(crate) fn record_execution(&self, now: Duration, took: Duration) {
        let mut w = self.window.lock().expect("throttle lock");
        w.executions.push_back((now, took));
        w.execution_sum += took;
        w.counts.executed += took.mul_f64(self.limits.speedup);
    }

    /// The counters, and the current window at played time `now`.
    pub(crate) fn snapshot(&self, now: Duration) -> BudgetSnapshot {
        let mut w = self.window.lock().expect("throttle lock");
        w.slide(now, self.limits.played(self.limits.window));
        BudgetSnapshot {
            window_requests: w.requests.len(),
            window_execution: w.execution_sum.mul_f64(self.limits.speedup),
            ..w.counts
        }
    }

    fn too_many_requests(&self, wait: Duration) -> ApiError {
        throttled(
            "0x80072322",
            format!(
                "Number of requests exceeded the limit of {} over time window of {} seconds.",
                self.limits.requests,
                self.limits.window.as_secs()
            ),
            self.limits.retry_after(wait),
        )
    }

    fn too_much_time(&self, wait: Duration) -> ApiError {
        let limit = self.limits.execution.unwrap_or_default();
        throttled(
            "0x80072321",
            format!(
                "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                thousands(limit.as_millis()),
                self.limits.window.as_secs()
            ),
            self.limits.retry_after(wait),
        )
    }

    fn too_many_at_once(&self) -> ApiError {
        throttled(
            "0x80072326",
            format!(
                "Number of concurrent requests exceeded the limit of {}.",
                self.limits.concurrency
            ),
            // One second of the model: requests at once free up as soon as others finish.
            self.limits.retry_after(Duration::ZERO),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(speedup: f64) -> Limits {
        Limits {
            window: Duration::from_secs(300),
            requests: 3,
            execution: Some(Duration::from_secs(10)),
            concurrency: 2,
            speedup,
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_request_budget_is_refused_until_one_more_request_fits_in_the_window() {
        let history = || {
            let t = Throttle::new(limits(1.0));
            for i in 0..3 {
                drop(t.admit(i * S).unwrap());
            }
            t
        };
        let t = history();
        let e = t.admit(10 * S).unwrap_err();
        // The window holds 0, 1, 2 and the refused 10: two must leave for one more to fit.
        assert_eq!((e.status, e.retry_after), (429, Some(291 * S)));
        assert_eq!(
            e.message,
            "Number of requests exceeded the limit of 3 over time window of 300 seconds."
        );
        // The refused request counts too: the window holds four until the first leaves.
        assert_eq!(t.snapshot(10 * S).window_requests, 4);
        // A client that waits the Retry-After gets in.
        assert!(t.admit(10 * S + e.retry_after.unwrap()).is_ok());
        // One that retries when only the oldest has left is refused (and counted) again.
        let early = history();
        assert!(early.admit(10 * S).is_err());
        assert!(early.admit(300 * S).is_err());
        assert!(early.admit(302 * S).is_ok());
    }

    #[test]
    fn server_time_over_the_budget_is_refused_until_enough_of_it_leaves_the_window() {
        let mut l = limits(1.0);
        l.requests = 100;
        let t = Throttle::new(l);
        for (end, took) in [(5, 4), (6, 4), (7, 4)] {
            drop(t.admit(S).unwrap());
            t.record_execution(end * S, took * S);
        }
        // 12 s > 10 s: refused until the first 4 s leave the window, at 305 s.
        let e = t.admit(8 * S).unwrap_err();
        assert!(e.message.starts_with(
            "Combined execution time of incoming requests exceeded limit of 10,000 milliseconds over time window of 300 seconds."
        ));
        assert_eq!(e.retry_after, Some(297 * S));
        assert!(t.admit(305 * S).is_ok());
        assert_eq!(t.snapshot(305 * S).refused_execution, 1);
        assert_eq!(t.snapshot(305 * S).window_execution, 8 * S);
    }

    #[test]
    fn requests_at_once_over_the_limit_are_refused_immediately() {
        let t = Throttle::new(limits(1.0));
        let a = t.admit(Duration::ZERO).unwrap();
        let b = t.admit(Duration::ZERO).unwrap();
        let e = t.admit(Duration::ZERO).unwrap_err();
        assert_eq!(e.retry_after, Some(S));
        assert_eq!(
            e.message,
            "Number of concurrent requests exceeded the limit of 2."
        );
        drop((a, b));
        let snapshot = t.snapshot(Duration::ZERO);
        assert_eq!(
            (snapshot.peak_concurrency, snapshot.refused_concurrency),
            (2, 1)
        );
    }

    #[test]
    fn a_sped_up_model_plays_the_window_and_retry_after_faster() {
        // 100 times faster: the 300 s window lasts 3 s, 290 s of waiting 2.9 s.
        let t = Throttle::new(limits(100.0));
        for _ in 0..3 {
            drop(t.admit(Duration::ZERO).unwrap());
        }
        let e = t.admit(Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_millis(2900)));
        // Still the real figures in the message.
        assert!(e.message.contains("over time window of 300 seconds"));
        assert!(t.admit(Duration::from_millis(3001)).is_ok());
    }
}
