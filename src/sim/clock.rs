//! The simulated clock: real elapsed time plus whatever tests add with
//! [`crate::sim::SimulatorHandle::advance_clock`]. Token expiry, change-token expiry and the
//! timestamps of mutations all read this clock, so tests can jump days ahead.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Simulated wall clock.
#[derive(Debug)]
pub(crate) struct Clock {
    start_unix: i64,
    started: Instant,
    advanced: Mutex<Duration>,
}

impl Clock {
    /// A clock starting at the real current time (whole seconds).
    pub(crate) fn new() -> Self {
        Clock {
            start_unix: chrono::Utc::now().timestamp(),
            started: Instant::now(),
            advanced: Mutex::new(Duration::ZERO),
        }
    }

    /// Current simulated time in Unix seconds.
    pub(crate) fn now(&self) -> i64 {
        self.start_unix + self.elapsed().as_secs() as i64
    }

    /// Simulated time since the start, to the nanosecond (the service protection windows).
    pub(crate) fn elapsed(&self) -> Duration {
        let adv = *self.advanced.lock().expect("clock lock");
        self.started.elapsed() + adv
    }

    /// Moves the clock forward.
    pub(crate) fn advance(&self, by: Duration) {
        *self.advanced.lock().expect("clock lock") += by;
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
