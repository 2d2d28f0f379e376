//! The session-wide limit on requests in flight (Web API notes: "Throttling guidance"): start from
//! the server's `x-ms-dop-hint`, halve on every 429, and grow back by one after a run of successes
//! (additive increase, multiplicative decrease). Every scan of one connection shares it, so
//! parallel queries cannot gang up on the service-protection limits.

use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};

/// Successes needed before the limit grows by one.
const GROWTH_RUN: u32 = 20;
/// Dataverse's concurrency limit per user (Web API notes: "Throttling limits").
pub const MAX_CONCURRENCY: usize = 52;

#[derive(Debug)]
struct State {
    current: usize,
    /// The most we go up to: the server's hint (or the default before it has given one).
    ceiling: usize,
    successes: u32,
    /// Permits to retire as requests finish (the limit dropped below what was handed out).
    owed: usize,
}

#[derive(Debug)]
pub struct ConcurrencyLimit {
    semaphore: Semaphore,
    state: Mutex<State>,
}

/// Held while a request is in flight.
pub struct Permit<'a> {
    permit: Option<SemaphorePermit<'a>>,
    limit: &'a ConcurrencyLimit,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.limit.state.lock().expect("not poisoned");
        if state.owed > 0 {
            state.owed -= 1;
            if let Some(p) = self.permit.take() {
                p.forget();
            }
        }
    }
}

impl ConcurrencyLimit {
    pub fn new(initial: usize) -> Self {
        let initial = initial.clamp(1, MAX_CONCURRENCY);
        Self {
            semaphore: Semaphore::new(initial),
            state: Mutex::new(State {
                current: initial,
                ceiling: initial,
                successes: 0,
                owed: 0,
            }),
        }
    }

    pub async fn acquire(&self) -> Permit<'_> {
        let permit = self.semaphore.acquire().await.expect("never closed");
        Permit {
            permit: Some(permit),
            limit: self,
        }
    }

    /// The current limit.
    pub fn current(&self) -> usize {
        self.state.lock().expect("not poisoned").current
    }

    /// The server's recommended degree of parallelism: the new ceiling. The limit rises to
    /// it only while no 429 has lowered it, and falls to it at once.
    pub fn set_ceiling(&self, hint: usize) {
        let hint = hint.clamp(1, MAX_CONCURRENCY);
        let mut state = self.state.lock().expect("not poisoned");
        if hint > state.ceiling && state.current == state.ceiling {
            let by = hint - state.current;
            self.grow(&mut state, by);
        } else if hint < state.current {
            self.shrink(&mut state, hint);
        }
        state.ceiling = hint;
    }

    /// A 429: halve the limit (at least one request may still run).
    pub fn on_throttled(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        let target = (state.current / 2).max(1);
        self.shrink(&mut state, target);
        state.successes = 0;
    }

    fn shrink(&self, state: &mut State, target: usize) {
        let cut = state.current - target;
        state.current = target;
        // Retire idle permits now and the rest as in-flight requests finish.
        let forgotten = self.semaphore.forget_permits(cut);
        state.owed += cut - forgotten;
    }

    /// A success: after a run of them, allow one more request in flight.
    pub fn on_success(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        state.successes += 1;
        if state.successes >= GROWTH_RUN && state.current < state.ceiling {
            state.successes = 0;
            self.grow(&mut state, 1);
        }
    }

    fn grow(&self, state: &mut State, by: usize) {
        state.current += by;
        // Cancel retirements first: those permits are still in circulation.
        let cancelled = by.min(state.owed);
        state.owed -= cancelled;
        self.semaphore.add_permits(by - cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lower_hint_lowers_the_limit_at_once() {
        let limit = ConcurrencyLimit::new(4);
        let held = limit.acquire().await;
        limit.set_ceiling(2);
        assert_eq!(limit.current(), 2);
        let second = limit.acquire().await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), limit.acquire())
                .await
                .is_err(),
            "a third request must wait"
        );
        drop((held, second));
        limit.set_ceiling(6);
        assert_eq!(limit.current(), 6);
    }

    #[tokio::test]
    async fn throttling_halves_and_successes_grow_back_to_the_hint() {
        let limit = ConcurrencyLimit::new(4);
        limit.set_ceiling(8);
        assert_eq!(limit.current(), 8);
        limit.on_throttled();
        assert_eq!(limit.current(), 4);
        limit.on_throttled();
        limit.on_throttled();
        limit.on_throttled();
        assert_eq!(limit.current(), 1);
        for _ in 0..GROWTH_RUN {
            limit.on_success();
        }
        assert_eq!(limit.current(), 2);
        // The hint does not undo a throttle.
        limit.set_ceiling(8);
        assert_eq!(limit.current(), 2);
    }

    #[tokio::test]
    async fn in_flight_permits_are_retired_when_the_limit_drops() {
        let limit = ConcurrencyLimit::new(4);
        let held: Vec<_> = futures::future::join_all((0..4).map(|_| limit.acquire())).await;
        limit.on_throttled(); // 4 → 2 with every permit in use: two are owed
        drop(held);
        assert_eq!(limit.semaphore.available_permits(), 2);
        let _a = limit.acquire().await;
        let _b = limit.acquire().await;
        assert!(
            limit.semaphore.try_acquire().is_err(),
            "only two at once now"
        );
    }
}
