//! The session-wide limit on requests in flight (Web API notes: "Throttling guidance"): start from
//! the server's `x-ms-dop-hint`, halve on a 429, and grow back by one after as many successes as
//! requests are allowed at once, about one round trip (additive increase, multiplicative
//! decrease). Every scan of one connection shares it, so parallel queries cannot gang up on the
//! service-protection limits.
//!
//! Two rules keep a scan of many streams from storming a throttled service:
//! * **One decrease per 429 episode.** When the budget runs out, every request in flight may
//!   come back 429; only a request sent after the last decrease lowers the limit again (TCP's
//!   one reduction per round trip). Without it eight streams would halve the limit eight times.
//!   For the server-time budget (`0x80072321`) a request sent after the decrease lowers it only
//!   once one such request has succeeded: the requests in flight during a pause use the room it
//!   makes, so the first ones after it are often refused again without the lower limit having
//!   been tried. The other limits decrease at once: a refused request counts against the
//!   request budget, so sending as many again after each pause would keep the window full of
//!   refusals.
//! * **A shared pause.** A 429's `Retry-After` (or backoff) holds every request not yet sent
//!   until it has passed, not only the one it answered: the service refuses them all until
//!   then, and each refusal counts against the budget too.
//!
//! Growing by one per round trip rather than after a fixed run of 20 successes matters against
//! the server-time budget: a halving there can land well below what the budget sustains, and
//! 20 successes per step kept a scan of `benches/budget.rs` at 2 requests at once (of the 4
//! the budget sustains) for most of its length.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

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
    /// Decreases so far: a 429 to a request sent before the last one does not decrease again.
    decreases: u64,
    /// Whether a request sent since the last decrease has succeeded (the level was tried).
    level_tried: bool,
    /// No request starts before this (a 429's `Retry-After`).
    paused_until: Option<Instant>,
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
    /// Decreases before the request was sent.
    sent_after: u64,
}

/// Which service protection limit refused a request (Web API notes: "Throttling limits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The combined server time per window.
    ServerTime,
    /// Requests per window, requests at once, or a 429 without a known code.
    Other,
}

impl Refusal {
    /// The refusal a Dataverse error code names.
    pub fn of_code(code: Option<&str>) -> Self {
        match code {
            Some("0x80072321") => Refusal::ServerTime,
            _ => Refusal::Other,
        }
    }
}

impl Permit<'_> {
    /// The request was throttled (429): lower the limit unless this episode did already, and
    /// hold every request until `pause` has passed.
    pub fn throttled(self, pause: Duration, refusal: Refusal) {
        self.limit.on_throttled(self.sent_after, pause, refusal);
    }

    /// The request succeeded: after as many successes as the limit, allow one more in flight.
    pub fn succeeded(self) {
        self.limit.on_success(self.sent_after);
    }
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
                decreases: 0,
                level_tried: true,
                paused_until: None,
            }),
        }
    }

    /// A slot for one request, once no pause holds requests back.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            self.wait_out_pause().await;
            let permit = self.semaphore.acquire().await.expect("never closed");
            // A pause may have begun while this waited for a slot.
            if self.pause_end().is_some() {
                drop(permit);
                continue;
            }
            let sent_after = self.state.lock().expect("not poisoned").decreases;
            return Permit {
                permit: Some(permit),
                limit: self,
                sent_after,
            };
        }
    }

    /// The end of the current pause, if one is running.
    fn pause_end(&self) -> Option<Instant> {
        let state = self.state.lock().expect("not poisoned");
        state.paused_until.filter(|&end| end > Instant::now())
    }

    async fn wait_out_pause(&self) {
        while let Some(end) = self.pause_end() {
            tokio::time::sleep_until(end).await;
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

    /// A 429 to a request sent after `sent_after` decreases: halve the limit (at least one
    /// request may still run) if the request was sent at the current limit (and for the
    /// server-time budget, once that limit has been tried), and pause new requests for `pause`.
    fn on_throttled(&self, sent_after: u64, pause: Duration, refusal: Refusal) {
        let mut state = self.state.lock().expect("not poisoned");
        let tried = state.level_tried || refusal == Refusal::Other;
        if sent_after == state.decreases && tried {
            let target = (state.current / 2).max(1);
            self.shrink(&mut state, target);
            state.decreases += 1;
            state.level_tried = false;
        }
        state.successes = 0;
        let end = Instant::now() + pause;
        state.paused_until = Some(state.paused_until.map_or(end, |p| p.max(end)));
    }

    fn shrink(&self, state: &mut State, target: usize) {
        let cut = state.current - target;
        state.current = target;
        // Retire idle permits now and the rest as in-flight requests finish.
        let forgotten = self.semaphore.forget_permits(cut);
        state.owed += cut - forgotten;
    }

    /// A success of a request sent after `sent_after` decreases: after as many as the limit
    /// (one round trip of every request allowed at once), allow one more request in flight.
    fn on_success(&self, sent_after: u64) {
        let mut state = self.state.lock().expect("not poisoned");
        state.level_tried |= sent_after == state.decreases;
        state.successes += 1;
        if state.successes as usize >= state.current && state.current < state.ceiling {
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
        // A 429 halves the limit; the next one halves it again once the lower limit has
        // been tried (a request sent since has succeeded).
        limit
            .acquire()
            .await
            .throttled(Duration::ZERO, Refusal::Other);
        assert_eq!(limit.current(), 4);
        for expected in [2, 1] {
            limit.acquire().await.succeeded();
            limit
                .acquire()
                .await
                .throttled(Duration::ZERO, Refusal::Other);
            assert_eq!(limit.current(), expected);
        }
        // One more after each round trip: 1 success at 1, 2 at 2, 3 at 3.
        for expected in [2, 2, 3, 3, 3, 4] {
            limit.acquire().await.succeeded();
            assert_eq!(limit.current(), expected);
        }
        // The hint does not undo a throttle.
        limit.set_ceiling(8);
        assert_eq!(limit.current(), 4);
    }

    #[tokio::test]
    async fn in_flight_permits_are_retired_when_the_limit_drops() {
        let limit = ConcurrencyLimit::new(4);
        let mut held: Vec<_> = futures::future::join_all((0..4).map(|_| limit.acquire())).await;
        held.pop()
            .unwrap()
            .throttled(Duration::ZERO, Refusal::Other); // 4 → 2 with every permit in use
        drop(held);
        assert_eq!(limit.semaphore.available_permits(), 2);
        let _a = limit.acquire().await;
        let _b = limit.acquire().await;
        assert!(
            limit.semaphore.try_acquire().is_err(),
            "only two at once now"
        );
    }

    /// Eight streams throttled at once lower the limit once, not eight times.
    #[tokio::test]
    async fn the_429s_of_one_episode_decrease_the_limit_once() {
        let limit = ConcurrencyLimit::new(8);
        let held: Vec<_> = futures::future::join_all((0..8).map(|_| limit.acquire())).await;
        for permit in held {
            permit.throttled(Duration::ZERO, Refusal::ServerTime);
        }
        assert_eq!(limit.current(), 4);
        // The first request after the pause is refused for server time again before any request
        // at the lower limit has succeeded: the same episode.
        limit
            .acquire()
            .await
            .throttled(Duration::ZERO, Refusal::ServerTime);
        assert_eq!(limit.current(), 4);
        // Once the lower limit has been tried, a 429 starts a new episode.
        let (tried, refused) = (limit.acquire().await, limit.acquire().await);
        tried.succeeded();
        refused.throttled(Duration::ZERO, Refusal::ServerTime);
        assert_eq!(limit.current(), 2);
        // Refused for the number of requests, a request sent after the decrease lowers the
        // limit again at once: every refusal counts against that budget.
        limit
            .acquire()
            .await
            .throttled(Duration::ZERO, Refusal::Other);
        assert_eq!(limit.current(), 1);
        assert_eq!(Refusal::of_code(Some("0x80072321")), Refusal::ServerTime);
        assert_eq!(Refusal::of_code(Some("0x80072322")), Refusal::Other);
    }

    /// A 429's pause holds back every request not yet sent, not only the throttled one.
    #[tokio::test]
    async fn a_retry_after_pauses_every_stream() {
        use futures::FutureExt;
        let limit = ConcurrencyLimit::new(4);
        let (a, b) = (limit.acquire().await, limit.acquire().await);
        a.throttled(Duration::from_secs(30), Refusal::Other);
        assert!(
            limit.acquire().now_or_never().is_none(),
            "another stream's request must wait for the pause"
        );
        // A shorter pause of the same episode does not cut the longer one short.
        b.throttled(Duration::from_secs(1), Refusal::Other);
        let left = limit.pause_end().expect("paused") - Instant::now();
        assert!(left > Duration::from_secs(29), "{left:?}");
        // Once the pause is over, requests go at once.
        let limit = ConcurrencyLimit::new(4);
        limit
            .acquire()
            .await
            .throttled(Duration::ZERO, Refusal::Other);
        assert!(limit.acquire().now_or_never().is_some());
    }
}
